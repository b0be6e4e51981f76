// Test only, never installed: a preloaded library (LD_PRELOAD) that puts a
// scripted hostile program in the server leased's seat. It lets leased go
// through its whole real sandbox, and once the real seccomp_load() has
// installed leased's filter, it takes the process over: it sends the frames
// of the file WGD_HOSTILE_SCRIPT_FILE to netd on leased's channel (fd 3), and writes what
// netd answers to stderr (netd's log relay). It cannot be abused in
// production: the shipped binaries neither contain it nor read its variable,
// and whoever can set LD_PRELOAD for a root daemon already controls it.
//
// Script: steps separated by ';', each TYPE:HEXBODY (one frame),
// TYPE:HEXBODY*COUNT (the same frame COUNT times, answers not awaited), or
// "hang": ignore every catchable signal that ends a process and netd's EOF,
// and never exit.
#include "privsep/channels.hpp"
#include "privsep/messages.hpp"

#include <dlfcn.h>
#include <poll.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

// leased's end of its channel to netd (the server's).
constexpr int kNetdFd = wgd::privsep::channels::fds::server_leased::netd;

bool g_leased = false;
// Built on first use: the constructor below may run before this file's
// other globals are initialised.
std::string& script() {
    static std::string s;
    return s;
}

__attribute__((constructor)) void init() {
    FILE* f = std::fopen("/proc/self/cmdline", "r");
    if (!f)
        return;
    char buf[4096];
    size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    for (size_t i = 0; i < n;) {
        if (std::strcmp(buf + i, "--privsep-role=leased") == 0)
            g_leased = true;
        i += std::strlen(buf + i) + 1;
    }
    // Read now, before the sandbox: a script can be larger than an
    // environment variable may be.
    if (const char* path = std::getenv("WGD_HOSTILE_SCRIPT_FILE"); path && g_leased) {
        if (FILE* s = std::fopen(path, "r")) {
            char chunk[65536];
            size_t got;
            while ((got = std::fread(chunk, 1, sizeof chunk, s)) > 0)
                script().append(chunk, got);
            std::fclose(s);
        }
    }
}

std::vector<std::uint8_t> unhex(const std::string& h) {
    std::vector<std::uint8_t> out;
    for (size_t i = 0; i + 1 < h.size(); i += 2)
        out.push_back(static_cast<std::uint8_t>(std::stoi(h.substr(i, 2), nullptr, 16)));
    return out;
}

bool send_frame(std::uint16_t type, std::uint32_t id, const std::vector<std::uint8_t>& body) {
    std::vector<std::uint8_t> f(12 + body.size());
    std::uint16_t flags = 0;
    std::uint32_t len = static_cast<std::uint32_t>(body.size());
    std::memcpy(&f[0], &type, 2);
    std::memcpy(&f[2], &flags, 2);
    std::memcpy(&f[4], &id, 4);
    std::memcpy(&f[8], &len, 4);
    if (!body.empty())
        std::memcpy(&f[12], body.data(), body.size());
    return ::send(kNetdFd, f.data(), f.size(), 0) == ssize_t(f.size());
}

int peers_reads = 0;

// Reads what netd sends for up to ms; returns the status list of the answer
// to `id` as text when it comes ("" on timeout, "gone" when netd is gone).
std::string await(std::uint32_t id, int ms) {
    static std::vector<std::uint8_t> buf(80 * 1024);
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            end - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            return "";
        pollfd p{kNetdFd, POLLIN, 0};
        if (::poll(&p, 1, int(left.count())) <= 0)
            continue;
        ssize_t n = ::recv(kNetdFd, buf.data(), buf.size(), 0);
        if (n <= 0)
            return "gone";
        std::uint16_t type;
        std::uint32_t got_id, len, count;
        std::memcpy(&type, &buf[0], 2);
        std::memcpy(&got_id, &buf[4], 4);
        std::memcpy(&len, &buf[8], 4);
        if (type == wgd::msg::peers_begin)
            peers_reads++;
        if (type != wgd::msg::allowed_ips_applied || got_id != id || len < 4)
            continue;
        std::memcpy(&count, &buf[12], 4);
        std::string text;
        for (std::uint32_t i = 0; i < count && 16 + 2 * i + 2 <= size_t(n); i++) {
            std::uint16_t s;
            std::memcpy(&s, &buf[16 + 2 * i], 2);
            text += (i ? "," : "") + std::to_string(s);
        }
        return text.empty() ? "none" : text;
    }
}

[[noreturn]] void hang() {
    for (int sig : {SIGHUP, SIGINT, SIGTERM, SIGPIPE, SIGUSR1, SIGUSR2, SIGALRM, SIGCONT})
        ::signal(sig, SIG_IGN);
    std::fprintf(stderr, "hostile: hanging\n");
    for (;;)
        ::poll(nullptr, 0, 1000);
}

[[noreturn]] void run_script() {
    await(0, 1000); // pools and peers at start
    std::uint32_t id = 1000;
    size_t at = 0;
    const std::string& g_script = script();
    while (at < g_script.size()) {
        size_t end = g_script.find(';', at);
        if (end == std::string::npos)
            end = g_script.size();
        std::string step = g_script.substr(at, end - at);
        at = end + 1;
        if (step == "hang")
            hang();
        size_t colon = step.find(':');
        size_t star = step.find('*');
        auto type = static_cast<std::uint16_t>(std::stoi(step.substr(0, colon)));
        int count = star == std::string::npos ? 1 : std::stoi(step.substr(star + 1));
        auto body = unhex(step.substr(colon + 1, star == std::string::npos ? std::string::npos
                                                                           : star - colon - 1));
        ++id;
        for (int i = 0; i < count; i++)
            if (!send_frame(type, id, body))
                break;
        if (type == wgd::msg::apply_allowed_ips) {
            std::string answer = await(id, 5000);
            std::fprintf(stderr, "hostile: order %u answered %s\n", id, answer.c_str());
        } else {
            peers_reads = 0;
            std::string gone = await(0xffffffffu, 3000);
            std::fprintf(stderr, "hostile: step %u (type %u x%d) read the device %d times%s\n", id,
                         type, count, peers_reads, gone == "gone" ? ", netd gone" : "");
        }
    }
    std::fprintf(stderr, "hostile: done\n");
    await(0xffffffffu, 60000);
    ::_exit(0);
}

} // namespace

extern "C" int seccomp_load(scmp_filter_ctx ctx) {
    using Fn = int (*)(scmp_filter_ctx);
    static Fn real = reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, "seccomp_load"));
    int rc = real(ctx);
    if (rc == 0 && g_leased && !script().empty())
        run_script();
    return rc;
}
