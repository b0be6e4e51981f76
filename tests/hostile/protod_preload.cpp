// Test only, never installed: a preloaded library (LD_PRELOAD) that puts a
// scripted hostile program in protod's seat (the server's or the client's). protod goes through
// its whole real sandbox (chroot, uid change, capabilities, limits); once
// the real seccomp_load() has installed protod's filter, the library takes
// the process over and plays the file WGD_HOSTILE_SCRIPT_FILE against
// leased on protod's real channel (fd 3), reading leased's answers as it
// goes and reporting them on stderr (netd's log relay). The shipped
// binaries neither contain it nor read its variable.
//
// Script: steps separated by ';', fields by ':'.
//   frame:TYPE:FLAGS:HEX[*N]  a frame whose length field is the body's size
//                             (N times, answers read while sending)
//   deaf:TYPE:FLAGS:HEX[*N]   the same, never reading leased's answers
//   frameid:TYPE:ID:HEX       one frame with this id (the client's exchange number)
//   answer:HEX                the client: an ExchangeResult for the exchange
//                             netd hands to protod next
//   badlen:TYPE:LEN:HEX       a frame whose length field says LEN
//   raw:HEX                   a datagram of exactly these bytes
//   fd:TYPE:FLAGS:HEX         a frame with a descriptor attached (/dev/null)
//   big:BYTES                 one datagram of BYTES bytes, a query_leases header
//   kill:TARGET:SIG           kill() to leased, netd, init or -1 (all)
//   tgkill:TARGET:SIG         tgkill() to the same targets (not -1)
//   wait:MS                   read answers for MS ms
//   quiet:MS                  read answers until none came for MS ms
// After each step the answers that came are reported as
//   hostile: step K (KIND) answers A granted G refused R [v4 ADDR,...] in MS ms [leased gone]
#include "privsep/channels.hpp"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

namespace {

// protod's end of its channel to leased, and the client protod's to netd.
constexpr int kLeasedFd = wgd::privsep::channels::fds::server_protod::leased;
constexpr int kClientNetdFd = wgd::privsep::channels::fds::client_protod::netd;
static_assert(kLeasedFd == wgd::privsep::channels::fds::client_protod::leased);
constexpr std::uint16_t kExchangeResult = 13;
// privsep/messages.hpp: the two types leased sends to protod that count here.
constexpr std::uint16_t kLeaseAnswers = 2, kRefuseConnection = 3;
constexpr std::uint16_t kQueryLeases = 1;
// privsep/messages.cpp: conn, has4, ip4, has6, ip6, leasestart, leasetime, errnum.
constexpr std::size_t kAnswerItem = 4 + 5 + 17 + 8 + 4 + 1;

bool g_protod = false;
pid_t g_leased = -1;
pid_t g_netd = -1; // getppid() is not in protod's filter
std::string& script() {
    static std::string s;
    return s;
}

std::string read_small(const std::string& path) {
    std::string out;
    if (FILE* f = std::fopen(path.c_str(), "r")) {
        char buf[4096];
        size_t n = std::fread(buf, 1, sizeof buf, f);
        out.assign(buf, n);
        std::fclose(f);
    }
    return out;
}

bool has_arg(const std::string& cmdline, const char* arg) {
    for (size_t i = 0; i < cmdline.size();) {
        if (std::strcmp(cmdline.c_str() + i, arg) == 0)
            return true;
        i += std::strlen(cmdline.c_str() + i) + 1;
    }
    return false;
}

// leased is started before protod: it is the sibling whose command line
// says so. Found now, while /proc is still in reach.
pid_t find_leased_once() {
    const pid_t parent = ::getppid();
    DIR* d = ::opendir("/proc");
    if (!d)
        return -1;
    pid_t found = -1;
    while (dirent* e = ::readdir(d)) {
        pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
        if (pid <= 0 || pid == ::getpid())
            continue;
        std::string stat = read_small("/proc/" + std::to_string(pid) + "/stat");
        auto paren = stat.rfind(')');
        if (paren == std::string::npos || paren + 4 > stat.size())
            continue;
        if (std::atoi(stat.c_str() + paren + 4) != parent)
            continue;
        if (has_arg(read_small("/proc/" + std::to_string(pid) + "/cmdline"),
                    "--privsep-role=leased"))
            found = pid;
    }
    ::closedir(d);
    return found;
}

// leased may not have exec'd yet (its command line is still netd's).
pid_t find_leased() {
    for (int i = 0; i < 200; i++) {
        if (pid_t pid = find_leased_once(); pid > 0)
            return pid;
        ::usleep(10 * 1000);
    }
    return -1;
}

__attribute__((constructor)) void init() {
    std::string cmdline = read_small("/proc/self/cmdline");
    g_protod = has_arg(cmdline, "--privsep-role=protod");
    if (!g_protod)
        return;
    g_leased = find_leased();
    g_netd = ::getppid();
    if (const char* path = std::getenv("WGD_HOSTILE_SCRIPT_FILE")) {
        if (FILE* s = std::fopen(path, "r")) {
            char chunk[65536];
            size_t got;
            while ((got = std::fread(chunk, 1, sizeof chunk, s)) > 0)
                script().append(chunk, got);
            std::fclose(s);
        }
    }
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    size_t at = 0;
    for (;;) {
        size_t end = s.find(sep, at);
        out.push_back(s.substr(at, end == std::string::npos ? std::string::npos : end - at));
        if (end == std::string::npos)
            return out;
        at = end + 1;
    }
}

std::vector<std::uint8_t> unhex(const std::string& h) {
    std::vector<std::uint8_t> out;
    for (size_t i = 0; i + 1 < h.size(); i += 2)
        out.push_back(static_cast<std::uint8_t>(std::stoi(h.substr(i, 2), nullptr, 16)));
    return out;
}

std::vector<std::uint8_t> frame(std::uint16_t type, std::uint16_t flags, std::uint32_t length,
                                const std::vector<std::uint8_t>& body, std::uint32_t id = 0) {
    std::vector<std::uint8_t> f(12 + body.size());
    std::memcpy(&f[0], &type, 2);
    std::memcpy(&f[2], &flags, 2);
    std::memcpy(&f[4], &id, 4);
    std::memcpy(&f[8], &length, 4);
    if (!body.empty())
        std::memcpy(&f[12], body.data(), body.size());
    return f;
}

struct Tally {
    long answers = 0, granted = 0, refused = 0;
    std::set<std::string> v4;
    bool gone = false;
};
Tally g_tally;

// Reads what leased has sent, without waiting.
void drain_answers() {
    static std::vector<std::uint8_t> buf(80 * 1024);
    while (!g_tally.gone) {
        ssize_t n = ::recv(kLeasedFd, buf.data(), buf.size(), MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        if (n <= 0) {
            g_tally.gone = true;
            return;
        }
        std::uint16_t type;
        std::memcpy(&type, &buf[0], 2);
        if (type == kRefuseConnection)
            g_tally.refused++;
        if (type != kLeaseAnswers || n < 16)
            continue;
        std::uint32_t count;
        std::memcpy(&count, &buf[12], 4);
        for (std::uint32_t i = 0; i < count && 16 + (i + 1) * kAnswerItem <= size_t(n); i++) {
            const std::uint8_t* item = &buf[16 + i * kAnswerItem];
            g_tally.answers++;
            if (item[4] || item[9])
                g_tally.granted++;
            if (item[4] && g_tally.v4.size() < 8)
                g_tally.v4.insert(std::to_string(item[5]) + "." + std::to_string(item[6]) + "." +
                                  std::to_string(item[7]) + "." + std::to_string(item[8]));
        }
    }
}

void read_for(int ms) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!g_tally.gone) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        end - std::chrono::steady_clock::now())
                        .count();
        if (left <= 0)
            return;
        pollfd p{kLeasedFd, POLLIN, 0};
        if (::poll(&p, 1, int(left)) > 0)
            drain_answers();
    }
}

// Sends one datagram, reading leased's answers while the channel is full
// (leased waits for us to read as we wait for it to).
// deaf: never reads, and blocks while the channel is full.
bool send_datagram(const std::vector<std::uint8_t>& d, int fd_to_pass = -1, bool deaf = false) {
    for (;;) {
        if (!deaf)
            drain_answers();
        if (g_tally.gone)
            return false;
        iovec iov{const_cast<std::uint8_t*>(d.data()), d.size()};
        msghdr mh{};
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
        if (fd_to_pass >= 0) {
            mh.msg_control = control;
            mh.msg_controllen = sizeof control;
            cmsghdr* c = CMSG_FIRSTHDR(&mh);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            std::memcpy(CMSG_DATA(c), &fd_to_pass, sizeof(int));
        }
        ssize_t n = ::sendmsg(kLeasedFd, &mh, (deaf ? 0 : MSG_DONTWAIT) | MSG_NOSIGNAL);
        if (n == ssize_t(d.size()))
            return true;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            std::fprintf(stderr, "hostile: send of %zu bytes failed: %s\n", d.size(),
                         std::strerror(errno));
            if (errno == EPIPE || errno == ECONNRESET)
                g_tally.gone = true;
            return false;
        }
        pollfd p{kLeasedFd, POLLIN | POLLOUT, 0};
        ::poll(&p, 1, 100);
    }
}

pid_t target_pid(const std::string& name) {
    if (name == "leased")
        return g_leased;
    if (name == "netd")
        return g_netd;
    if (name == "init")
        return 1;
    return -1; // "all"
}

void signal_step(const std::vector<std::string>& f) {
    const pid_t pid = target_pid(f[1]);
    const int sig = std::stoi(f[2]);
    std::fprintf(stderr, "hostile: %s(%s %d, %d)\n", f[0].c_str(), f[1].c_str(), int(pid), sig);
    // Time for netd to relay the line before the call ends protod.
    ::usleep(300 * 1000);
    long rc = f[0] == "kill" ? ::kill(pid, sig) : ::syscall(SYS_tgkill, pid, pid, sig);
    std::fprintf(stderr, "hostile: %s returned %ld (%s)\n", f[0].c_str(), rc,
                 rc == 0 ? "delivered" : std::strerror(errno));
}

[[noreturn]] void run_script() {
    const std::string& s = script();
    std::fprintf(stderr, "hostile: protod's seat, leased is %d\n", int(g_leased));
    int k = 0;
    for (const std::string& step : split(s, ';')) {
        if (step.empty())
            continue;
        ++k;
        const bool gone = g_tally.gone;
        g_tally = Tally{};
        g_tally.gone = gone;
        std::vector<std::string> f = split(step, ':');
        const std::string& kind = f[0];
        int settle = 500;
        const auto started = std::chrono::steady_clock::now();
        if (kind == "frame" || kind == "deaf") {
            std::string hex = f[3];
            long count = 1;
            if (auto star = hex.find('*'); star != std::string::npos) {
                count = std::stol(hex.substr(star + 1));
                hex.resize(star);
            }
            auto body = unhex(hex);
            auto d = frame(std::uint16_t(std::stoi(f[1])), std::uint16_t(std::stoi(f[2])),
                           std::uint32_t(body.size()), body);
            for (long i = 0; i < count && send_datagram(d, -1, kind == "deaf"); i++) {
            }
            settle = count > 1 ? 3000 : 500;
            if (kind == "deaf") {
                // Reads nothing, and waits for leased to give up on us.
                for (int i = 0; i < 300 && !g_tally.gone; i++) {
                    pollfd p{kLeasedFd, 0, 0};
                    if (::poll(&p, 1, 100) > 0 && (p.revents & POLLHUP))
                        g_tally.gone = true;
                }
                settle = 0;
            }
        } else if (kind == "frameid") {
            auto body = unhex(f[3]);
            send_datagram(frame(std::uint16_t(std::stoi(f[1])), 0, std::uint32_t(body.size()), body,
                                std::uint32_t(std::stoul(f[2]))));
        } else if (kind == "answer") {
            // The client: the id of the exchange netd hands us next (the
            // one leased waits for), answered with this body.
            std::uint8_t head[12] = {};
            pollfd p{kClientNetdFd, POLLIN, 0};
            if (::poll(&p, 1, 10000) > 0 && ::recv(kClientNetdFd, head, sizeof head, 0) > 0) {
                std::uint32_t id;
                std::memcpy(&id, &head[4], 4);
                std::fprintf(stderr, "hostile: answering exchange %u\n", id);
                auto body = unhex(f[1]);
                send_datagram(frame(kExchangeResult, 0, std::uint32_t(body.size()), body, id));
            }
        } else if (kind == "badlen") {
            auto body = unhex(f[3]);
            send_datagram(
                frame(std::uint16_t(std::stoi(f[1])), 0, std::uint32_t(std::stoul(f[2])), body));
        } else if (kind == "raw") {
            send_datagram(unhex(f[1]));
        } else if (kind == "fd") {
            auto body = unhex(f[3]);
            send_datagram(frame(std::uint16_t(std::stoi(f[1])), std::uint16_t(std::stoi(f[2])),
                                std::uint32_t(body.size()), body),
                          0);
        } else if (kind == "big") {
            std::vector<std::uint8_t> body(std::stoul(f[1]) - 12);
            send_datagram(frame(kQueryLeases, 0, std::uint32_t(body.size()), body));
        } else if (kind == "kill" || kind == "tgkill") {
            signal_step(f);
        } else if (kind == "wait") {
            settle = std::stoi(f[1]);
        } else if (kind == "quiet") {
            // Until nothing came for MS ms (at most a minute): a loaded
            // machine answers a flood late, but it answers.
            for (int i = 0; i < 60000 / std::stoi(f[1]) && !g_tally.gone; i++) {
                const long before = g_tally.answers + g_tally.refused;
                read_for(std::stoi(f[1]));
                if (g_tally.answers + g_tally.refused == before)
                    break;
            }
            settle = 0;
        }
        read_for(settle);
        const long ms = long(std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::steady_clock::now() - started)
                                 .count());
        std::string v4;
        for (const std::string& a : g_tally.v4)
            v4 += (v4.empty() ? " v4 " : ",") + a;
        std::fprintf(stderr,
                     "hostile: step %d (%s) answers %ld granted %ld refused %ld%s in %ld ms%s\n", k,
                     kind.c_str(), g_tally.answers, g_tally.granted, g_tally.refused, v4.c_str(),
                     ms, g_tally.gone ? " leased gone" : "");
        if (g_tally.gone)
            break;
    }
    std::fprintf(stderr, "hostile: done\n");
    // Stays in the seat (answers read, nothing sent) until the suite stops.
    while (!g_tally.gone)
        read_for(60000);
    ::_exit(0);
}

} // namespace

extern "C" int seccomp_load(scmp_filter_ctx ctx) {
    using Fn = int (*)(scmp_filter_ctx);
    static Fn real = reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, "seccomp_load"));
    int rc = real(ctx);
    if (rc == 0 && g_protod && !script().empty())
        run_script();
    return rc;
}
