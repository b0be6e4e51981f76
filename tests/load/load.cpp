// wgd-load: the server under load. Inside a lab namespace it makes a
// WireGuard interface (wireguard-go's, or the kernel's when
// WGD_LAB_WIREGUARD=kernel) with N peers (fe80::X/128 each), makes all of
// fe80::/64 local on that same interface (one AnyIP route) so that local
// sockets can bind any peer's address (IPV6_FREEBIND), routes two pools over
// it, starts wg-dynamic-server, and drives C concurrent clients from this one
// process: first leases, renewals, a mix of renewals and "any address"
// requests, a paced phase for latency at a fixed rate, optionally more peers
// up to M leases, with --hostile the paced phase again, alone and beside a
// peer changing its lease at full speed, then a restart (and with
// --renew-after-restart a renewal of every lease). Every answer is checked
// (family, pool, stability, no address given twice) and `wg show` is
// compared with what the answers said. Exit status 0 only when every answer
// was checked and nothing was wrong.
#include "common/addr.hpp"
#include "tests/lab/lab.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int kWireguardGoMaxPeers = 65'536;

using Clock = std::chrono::steady_clock;
using wgd::Ip4;
using wgd::Ip6;
using wgd::lab::sh;
using wgd::lab::sh_out;

const wgd::Prefix4 kPool4{*wgd::parse_ip4("10.0.0.0"), 8};
const wgd::Prefix6 kPool6{*wgd::parse_ip6("2001:db8::"), 64};
constexpr int kMaxAttempts = 5;
constexpr auto kRequestTimeout = std::chrono::seconds(20);

struct Config {
    int peers = 10'000;
    int concurrency = 1'000;
    int restart_leases = 0; // grow to this many leases before the restart
    int paced_rate = 2'000; // requests per second in the paced phase
    bool quick = false;
    bool floor = false;               // a trivial responder instead of the server (see run_floor)
    bool renew_after_restart = false; // every peer renews after the restart, then wg show
    int hostile_rounds = 0; // paced renewals quiet, then beside a full-speed peer, this many times
    std::string server = std::string(WGD_BINARY_DIR) + "/wg-dynamic-server";
};

[[noreturn]] void usage() {
    std::fprintf(stderr,
                 "usage: wgd-load [-n PEERS] [-c CONCURRENT] [--restart-leases M] [--rate R]\n"
                 "                [--quick] [--floor] [--renew-after-restart] [--hostile ROUNDS]\n"
                 "                [--server PATH]\n");
    std::exit(2);
}

Config parse(int argc, char** argv) {
    Config c;
    bool peers_given = false, conc_given = false;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto value = [&] {
            if (i + 1 >= argc)
                usage();
            return std::string(argv[++i]);
        };
        if (a == "-n")
            c.peers = std::stoi(value()), peers_given = true;
        else if (a == "-c")
            c.concurrency = std::stoi(value()), conc_given = true;
        else if (a == "--restart-leases")
            c.restart_leases = std::stoi(value());
        else if (a == "--rate")
            c.paced_rate = std::stoi(value());
        else if (a == "--server")
            c.server = value();
        else if (a == "--quick")
            c.quick = true;
        else if (a == "--floor")
            c.floor = true;
        else if (a == "--renew-after-restart")
            c.renew_after_restart = true;
        else if (a == "--hostile")
            c.hostile_rounds = std::stoi(value());
        else
            usage();
    }
    if (c.quick) {
        if (!peers_given)
            c.peers = 500;
        if (!conc_given)
            c.concurrency = 50;
    }
    if (c.peers < 1 || c.peers > 200'000 || c.concurrency < 1 || c.concurrency > 5'000 ||
        c.restart_leases > 200'000 || c.paced_rate < 1 || c.hostile_rounds < 0 ||
        (c.hostile_rounds > 0 && (c.peers < 2 || c.renew_after_restart)))
        usage();
    // Measured: wireguard-go refuses the 65,537th peer (its `wg addconf`
    // fails with a broken pipe), so more peers cannot be tested here.
    if (wgd::lab::lab_wireguard() == wgd::lab::Wireguard::userspace &&
        std::max(c.peers, c.restart_leases) > kWireguardGoMaxPeers) {
        std::fprintf(stderr, "wgd-load: wireguard-go holds at most %d peers\n",
                     kWireguardGoMaxPeers);
        std::exit(1);
    }
    return c;
}

double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

// Peer i's identity: fe80::H:L with H:L = i + 1, so 2^32 peers fit.
Ip6 lladdr_of(int i) {
    Ip6 a{};
    a.bytes[0] = 0xfe;
    a.bytes[1] = 0x80;
    std::uint32_t v = static_cast<std::uint32_t>(i) + 1;
    a.bytes[12] = static_cast<std::uint8_t>(v >> 24);
    a.bytes[13] = static_cast<std::uint8_t>(v >> 16);
    a.bytes[14] = static_cast<std::uint8_t>(v >> 8);
    a.bytes[15] = static_cast<std::uint8_t>(v);
    return a;
}

// [X%IF]:970: a peer's source (lladdr_of) or, with fe80::, the server.
sockaddr_in6 port_970_of(const Ip6& a, unsigned ifindex) {
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    sa.sin6_port = htons(970);
    std::memcpy(&sa.sin6_addr, a.bytes.data(), 16);
    sa.sin6_scope_id = ifindex;
    return sa;
}
const Ip6 kServerAddress{{0xfe, 0x80}};

std::string field(const std::string& message, const std::string& key) {
    std::size_t pos = 0;
    while (pos < message.size()) {
        std::size_t end = message.find('\n', pos);
        if (end == std::string::npos)
            end = message.size();
        if (message.compare(pos, key.size() + 1, key + "=") == 0)
            return message.substr(pos + key.size() + 1, end - pos - key.size() - 1);
        pos = end + 1;
    }
    return "";
}

// What the load generator believes each peer holds.
struct Holding {
    std::optional<Ip4> v4;
    std::optional<Ip6> v6;
};

class Checker {
  public:
    explicit Checker(int peers) : held_(static_cast<std::size_t>(peers)) {}
    // For the floor responder's fixed answer: only errno is checked.
    void accept_any_addresses() { any_addresses_ = true; }

    // A lease answer for `peer`; `must_keep`: the peer held a lease already,
    // so the same addresses must come back.
    void check(int peer, const std::string& reply, bool must_keep) {
        checked_++;
        auto fail = [&](const std::string& why) {
            if (errors_++ < 10)
                std::fprintf(stderr, "load: peer %d: %s; answer:\n%s", peer, why.c_str(),
                             reply.c_str());
        };
        if (field(reply, "errno") != "0")
            return fail("errno is not 0");
        if (any_addresses_)
            return;
        std::string a4 = field(reply, "ipv4"), a6 = field(reply, "ipv6");
        if (a4.size() < 4 || a4.compare(a4.size() - 3, 3, "/32") != 0)
            return fail("no /32 IPv4 address");
        if (a6.size() < 5 || a6.compare(a6.size() - 4, 4, "/128") != 0)
            return fail("no /128 IPv6 address");
        auto ip4 = wgd::parse_ip4(a4.substr(0, a4.size() - 3));
        auto ip6 = wgd::parse_ip6(a6.substr(0, a6.size() - 4));
        if (!ip4 || !kPool4.contains(*ip4))
            return fail("IPv4 address outside the pool");
        if (!ip6 || !kPool6.contains(*ip6))
            return fail("IPv6 address outside the pool");
        Holding& h = held_[static_cast<std::size_t>(peer)];
        if (must_keep && (h.v4 != ip4 || h.v6 != ip6))
            return fail("a renewal changed the addresses");
        if (h.v4 != ip4) {
            auto [it, fresh] = owner4_.emplace(*ip4, peer);
            if (!fresh && it->second != peer)
                return fail("IPv4 address already given to peer " + std::to_string(it->second));
            if (h.v4)
                owner4_.erase(*h.v4);
            h.v4 = ip4;
        }
        if (h.v6 != ip6) {
            auto [it, fresh] = owner6_.emplace(*ip6, peer);
            if (!fresh && it->second != peer)
                return fail("IPv6 address already given to peer " + std::to_string(it->second));
            if (h.v6)
                owner6_.erase(*h.v6);
            h.v6 = ip6;
        }
    }
    void transport_failure(int peer, const std::string& why) {
        if (errors_++ < 10)
            std::fprintf(stderr, "load: peer %d: no answer after %d attempts (%s)\n", peer,
                         kMaxAttempts, why.c_str());
    }
    void error(const std::string& why) {
        if (errors_++ < 10)
            std::fprintf(stderr, "load: %s\n", why.c_str());
    }
    const Holding& held(int peer) const { return held_[static_cast<std::size_t>(peer)]; }
    long checked() const { return checked_; }
    long errors() const { return errors_; }

  private:
    std::vector<Holding> held_;
    std::map<Ip4, int> owner4_;
    std::map<Ip6, int> owner6_;
    long checked_ = 0;
    long errors_ = 0;
    bool any_addresses_ = false;
};

struct Job {
    int peer;
    std::string request;
    bool must_keep;
};

struct PhaseResult {
    int done = 0;
    double seconds = 0;
    long retries = 0;
    std::vector<double> latencies_ms;
};

// Runs the jobs with at most `concurrency` connections open, each job one
// connection: bind [fe80::X%if]:970, connect to [fe80::%if]:970, send, read
// one answer, close with a reset (no TIME_WAIT, so the next job of the same
// peer may bind again at once). With `rate` > 0 jobs start at that pace.
class Driver {
  public:
    Driver(unsigned ifindex, Checker& checker) : ifindex_(ifindex), checker_(checker) {
        epfd_ = epoll_create1(EPOLL_CLOEXEC);
        if (epfd_ < 0)
            throw std::runtime_error("epoll_create1 failed");
    }
    ~Driver() { close(epfd_); }

    PhaseResult run(const std::vector<Job>& jobs, int concurrency, int rate = 0) {
        PhaseResult result;
        result.latencies_ms.reserve(jobs.size());
        slots_.assign(static_cast<std::size_t>(concurrency), Slot{});
        std::vector<std::size_t> free_slots;
        for (std::size_t i = slots_.size(); i-- > 0;)
            free_slots.push_back(i);
        std::vector<std::pair<std::size_t, int>> retry; // job, attempt
        std::size_t next = 0;
        int open = 0;
        auto start = Clock::now();
        auto last_sweep = start;
        std::vector<epoll_event> events(static_cast<std::size_t>(concurrency));
        auto finish = [&](std::size_t s) {
            Slot& slot = slots_[s];
            epoll_ctl(epfd_, EPOLL_CTL_DEL, slot.fd, nullptr);
            close(slot.fd);
            slot.fd = -1;
            free_slots.push_back(s);
            open--;
        };
        auto failed = [&](std::size_t s, const char* why) {
            Slot& slot = slots_[s];
            std::size_t job = slot.job;
            int attempt = slot.attempt;
            finish(s);
            if (attempt + 1 < kMaxAttempts) {
                result.retries++;
                retry.emplace_back(job, attempt + 1);
            } else {
                checker_.transport_failure(jobs[job].peer, why);
                result.done++;
            }
        };
        while (result.done < static_cast<int>(jobs.size())) {
            auto now = Clock::now();
            while (!free_slots.empty() && (!retry.empty() || next < jobs.size())) {
                std::size_t job;
                int attempt = 0;
                if (!retry.empty()) {
                    job = retry.back().first;
                    attempt = retry.back().second;
                    retry.pop_back();
                } else {
                    if (rate > 0 && now < start + std::chrono::microseconds(
                                                      static_cast<long>(next) * 1'000'000 / rate))
                        break;
                    job = next++;
                }
                std::size_t s = free_slots.back();
                free_slots.pop_back();
                open++;
                if (!begin(s, jobs[job], job, attempt))
                    failed(s, std::strerror(errno));
            }
            int wait_ms = rate > 0 ? 1 : 100;
            int n = epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), wait_ms);
            for (int i = 0; i < n; i++) {
                std::size_t s = events[static_cast<std::size_t>(i)].data.u32;
                Slot& slot = slots_[s];
                if (slot.fd < 0)
                    continue;
                const Job& job = jobs[slot.job];
                if (!slot.connected) {
                    int err = 0;
                    socklen_t len = sizeof err;
                    getsockopt(slot.fd, SOL_SOCKET, SO_ERROR, &err, &len);
                    if (err != 0) {
                        failed(s, std::strerror(err));
                        continue;
                    }
                    slot.connected = true;
                    ssize_t sent =
                        send(slot.fd, job.request.data(), job.request.size(), MSG_NOSIGNAL);
                    if (sent != static_cast<ssize_t>(job.request.size())) {
                        failed(s, "short send");
                        continue;
                    }
                    epoll_event ev{};
                    ev.events = EPOLLIN;
                    ev.data.u32 = static_cast<std::uint32_t>(s);
                    epoll_ctl(epfd_, EPOLL_CTL_MOD, slot.fd, &ev);
                    continue;
                }
                char buf[2048];
                ssize_t got = recv(slot.fd, buf, sizeof buf, 0);
                if (got < 0 && (errno == EAGAIN || errno == EINTR))
                    continue;
                if (got <= 0) {
                    failed(s, got == 0 ? "closed without an answer" : std::strerror(errno));
                    continue;
                }
                slot.reply.append(buf, static_cast<std::size_t>(got));
                if (slot.reply.find("\n\n") == std::string::npos)
                    continue;
                result.latencies_ms.push_back(
                    std::chrono::duration<double, std::milli>(Clock::now() - slot.started).count());
                checker_.check(job.peer, slot.reply, job.must_keep);
                result.done++;
                finish(s);
            }
            if (Clock::now() - last_sweep > std::chrono::milliseconds(200)) {
                last_sweep = Clock::now();
                for (std::size_t s = 0; s < slots_.size(); s++)
                    if (slots_[s].fd >= 0 && last_sweep - slots_[s].started > kRequestTimeout)
                        failed(s, "timed out");
            }
        }
        (void)open;
        result.seconds = seconds_since(start);
        return result;
    }

  private:
    struct Slot {
        int fd = -1;
        std::size_t job = 0;
        int attempt = 0;
        bool connected = false;
        std::string reply;
        Clock::time_point started;
    };

    bool begin(std::size_t s, const Job& job, std::size_t job_index, int attempt) {
        Slot& slot = slots_[s];
        slot.job = job_index;
        slot.attempt = attempt;
        slot.connected = false;
        slot.reply.clear();
        slot.started = Clock::now();
        slot.fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (slot.fd < 0)
            return false;
        int one = 1;
        setsockopt(slot.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(slot.fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof one);
        linger lg{1, 0};
        setsockopt(slot.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        sockaddr_in6 src = port_970_of(lladdr_of(job.peer), ifindex_);
        if (bind(slot.fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0)
            return false;
        sockaddr_in6 dst = port_970_of(kServerAddress, ifindex_);
        if (connect(slot.fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0 &&
            errno != EINPROGRESS)
            return false;
        epoll_event ev{};
        ev.events = EPOLLOUT;
        ev.data.u32 = static_cast<std::uint32_t>(s);
        return epoll_ctl(epfd_, EPOLL_CTL_ADD, slot.fd, &ev) == 0;
    }

    unsigned ifindex_;
    Checker& checker_;
    int epfd_ = -1;
    std::vector<Slot> slots_;
};

std::string renewal(const Holding& h) {
    std::string r = "request_ip=1\n";
    if (h.v4)
        r += "ipv4=" + wgd::to_string(*h.v4) + "/32\n";
    if (h.v6)
        r += "ipv6=" + wgd::to_string(*h.v6) + "/128\n";
    return r + "\n";
}

double percentile(std::vector<double> v, double p) {
    if (v.empty())
        return 0;
    std::size_t k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
    std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
    return v[k];
}

void report(const char* name, const PhaseResult& r) {
    double max = r.latencies_ms.empty()
                     ? 0
                     : *std::max_element(r.latencies_ms.begin(), r.latencies_ms.end());
    std::printf("%-9s %7d in %6.3f s = %8.0f /s   latency ms: median %7.2f  p99 %7.2f  max "
                "%7.2f   retries %ld\n",
                name, r.done, r.seconds, r.done / r.seconds, percentile(r.latencies_ms, 0.5),
                percentile(r.latencies_ms, 0.99), max, r.retries);
    std::fflush(stdout);
}

std::string proc_status(pid_t pid, const std::string& key) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind(key + ":", 0) == 0) {
            std::istringstream words(line.substr(key.size() + 1));
            std::string kb;
            words >> kb;
            return kb;
        }
    return "?";
}

std::vector<pid_t> children_of(pid_t parent) {
    std::vector<pid_t> out;
    std::ifstream f("/proc/" + std::to_string(parent) + "/task/" + std::to_string(parent) +
                    "/children");
    pid_t pid;
    while (f >> pid)
        out.push_back(pid);
    return out;
}

std::string role_of(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/cmdline");
    std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (all.find("leased") != std::string::npos)
        return "leased";
    if (all.find("protod") != std::string::npos)
        return "protod";
    return "child";
}

// CPU time (user + system) of a process in seconds, 0 when it is gone.
double cpu_seconds(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto close_paren = stat.rfind(')');
    if (close_paren == std::string::npos)
        return 0;
    std::istringstream rest(stat.substr(close_paren + 2));
    std::string skip;
    for (int i = 0; i < 11; i++) // fields 3 to 13
        rest >> skip;
    unsigned long long utime = 0, stime = 0;
    rest >> utime >> stime;
    return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

pid_t wireguard_go_of(const std::string& iface) {
    std::string wanted = std::string("wireguard-go") + '\0' + "-f" + '\0' + iface + '\0';
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
        std::string name = entry.path().filename();
        if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0])))
            continue;
        std::ifstream f(entry.path() / "cmdline");
        std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        if (all == wanted)
            return static_cast<pid_t>(std::stol(name));
    }
    return -1;
}

// CPU used by each process of the server, by wireguard-go and by this
// generator: on a shared machine the rates depend on who else runs, the CPU
// per request much less.
struct CpuSample {
    double netd = 0, leased = 0, protod = 0, wg = 0, self = 0;
};

CpuSample cpu_sample(pid_t server, pid_t wg) {
    CpuSample c;
    c.netd = cpu_seconds(server);
    for (pid_t child : children_of(server)) {
        std::string role = role_of(child);
        (role == "leased" ? c.leased : c.protod) += cpu_seconds(child);
    }
    c.wg = wg > 0 ? cpu_seconds(wg) : 0;
    c.self = cpu_seconds(getpid());
    return c;
}

void report_cpu(const CpuSample& a, const CpuSample& b, int requests) {
    auto us = [&](double x, double y) { return (y - x) * 1e6 / std::max(requests, 1); };
    double server = us(a.netd + a.leased + a.protod, b.netd + b.leased + b.protod);
    std::printf("          cpu us/request: netd %.0f  leased %.0f  protod %.0f  (server %.0f)  "
                "wireguard-go %.0f  generator %.0f\n",
                us(a.netd, b.netd), us(a.leased, b.leased), us(a.protod, b.protod), server,
                us(a.wg, b.wg), us(a.self, b.self));
    std::fflush(stdout);
}

void report_memory(pid_t server) {
    std::printf("memory    peak (VmHWM) / now (VmRSS) kB:  netd %s / %s",
                proc_status(server, "VmHWM").c_str(), proc_status(server, "VmRSS").c_str());
    for (pid_t child : children_of(server))
        std::printf("  %s %s / %s", role_of(child).c_str(), proc_status(child, "VmHWM").c_str(),
                    proc_status(child, "VmRSS").c_str());
    std::printf("\n");
    std::fflush(stdout);
}

// Builds the peers: `wg addconf` per 10,000 peers (wireguard-go drops one
// UAPI connection that carries 100,000: broken pipe). Their link-local
// addresses are not put on the interface one by one: Linux keeps an
// interface's addresses in one list that each addition walks, so 20,000 of
// them took 125 s here and 100,000 most of an hour under emulation, and
// wireguard-go exits when the address events overflow its netlink socket.
// One local route for fe80::/64 instead delivers every peer's address here.
std::vector<std::string> add_peers(const wgd::lab::Lab& lab, int peers) {
    constexpr int kPeersPerConf = 10'000;
    std::vector<std::string> keys;
    keys.reserve(static_cast<std::size_t>(peers));
    std::string conf_path = lab.state_dir + "/../wgd-load-" + lab.id() + ".conf";
    bool ok = true;
    for (int first = 0; first < peers && ok; first += kPeersPerConf) {
        std::ofstream conf(conf_path);
        for (int i = first; i < std::min(peers, first + kPeersPerConf); i++) {
            wgd::PublicKey key;
            if (getrandom(key.bytes.data(), key.bytes.size(), 0) != 32)
                throw std::runtime_error("getrandom failed");
            keys.push_back(wgd::to_base64(key));
            conf << "[Peer]\nPublicKey = " << keys.back()
                 << "\nAllowedIPs = " << wgd::to_string(lladdr_of(i)) << "/128\n";
        }
        conf.close();
        ok = sh("ip netns exec " + lab.server_ns + " wg addconf " + lab.server_iface + " " +
                conf_path) == 0;
    }
    ok = ok &&
         sh("ip -n " + lab.server_ns + " address replace fe80::/64 dev " + lab.server_iface +
            " nodad") == 0 &&
         sh("ip -n " + lab.server_ns + " -6 route add local fe80::/64 dev " + lab.server_iface +
            " table local") == 0;
    std::remove(conf_path.c_str());
    if (!ok)
        throw std::runtime_error("cannot add the peers (wg addconf or ip route failed)");
    return keys;
}

// `wg show` must hold exactly what the answers said for every peer.
void check_device(const wgd::lab::Lab& lab, const std::vector<std::string>& keys,
                  const Checker& checker, int peers) {
    std::map<std::string, int> index;
    for (int i = 0; i < static_cast<int>(keys.size()); i++)
        index[keys[static_cast<std::size_t>(i)]] = i;
    std::istringstream lines(lab.server_allowed_ips());
    std::string line;
    std::vector<bool> seen(keys.size(), false);
    int compared = 0;
    auto& mutable_checker = const_cast<Checker&>(checker);
    while (std::getline(lines, line)) {
        auto tab = line.find('\t');
        if (tab == std::string::npos)
            continue;
        auto it = index.find(line.substr(0, tab));
        if (it == index.end()) {
            mutable_checker.error("wg show lists an unknown peer");
            continue;
        }
        int i = it->second;
        seen[static_cast<std::size_t>(i)] = true;
        std::istringstream words(line.substr(tab + 1));
        std::string w;
        std::optional<Ip4> v4;
        std::optional<Ip6> v6;
        bool has_ll = false, extra = false;
        while (words >> w) {
            auto slash = w.find('/');
            std::string addr = w.substr(0, slash), len = w.substr(slash + 1);
            if (auto a4 = wgd::parse_ip4(addr); a4 && len == "32" && !v4)
                v4 = a4;
            else if (auto a6 = wgd::parse_ip6(addr); a6 && len == "128" && a6 == lladdr_of(i))
                has_ll = true;
            else if (a6 && len == "128" && !a6->is_link_local() && !v6)
                v6 = a6;
            else
                extra = true;
        }
        const Holding& h = checker.held(i);
        if (i >= peers) {
            if (!has_ll || extra)
                mutable_checker.error("wg show: peer " + std::to_string(i) + " changed: " + line);
            continue;
        }
        compared++;
        if (!has_ll || extra || v4 != h.v4 || v6 != h.v6)
            mutable_checker.error("wg show disagrees with the answers for peer " +
                                  std::to_string(i) + ": " + line);
    }
    for (std::size_t i = 0; i < seen.size(); i++)
        if (!seen[i])
            mutable_checker.error("wg show lacks peer " + std::to_string(i));
    std::printf("wg show   %d peers agree with the answers\n", compared);
}

std::vector<Job> renewals(const Checker& checker, int from, int to) {
    std::vector<Job> jobs;
    for (int i = from; i < to; i++)
        jobs.push_back({i, renewal(checker.held(i)), true});
    return jobs;
}

// A blocking connection from [peer's address%IF]:970 to the server, with
// a 2 s receive timeout; -1 when it cannot be made.
int connect_as_peer(unsigned ifindex, int peer) {
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof one);
    linger lg{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    timeval tv{2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in6 src = port_970_of(lladdr_of(peer), ifindex);
    sockaddr_in6 dst = port_970_of(kServerAddress, ifindex);
    if (bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0 ||
        connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

// One blocking attempt at a renewal by peer 0, for the restart measurement.
std::optional<std::string> try_once(unsigned ifindex, const std::string& request) {
    int fd = connect_as_peer(ifindex, 0);
    if (fd < 0)
        return std::nullopt;
    std::optional<std::string> out;
    if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size())) {
        std::string reply;
        char buf[2048];
        ssize_t n;
        while ((n = recv(fd, buf, sizeof buf, 0)) > 0) {
            reply.append(buf, static_cast<std::size_t>(n));
            if (reply.find("\n\n") != std::string::npos) {
                out = reply;
                break;
            }
        }
    }
    close(fd);
    return out;
}

// The full-speed peer (--hostile): one connection from peer `peer`, trading
// families (`ipv4=`-only, then `ipv6=`-only) as fast as the server answers,
// until `stop`. Each answer would release one address and lease another;
// the server's budget of changes holds it to a few. Returns its answers.
long trade_families(unsigned ifindex, int peer, const std::atomic<bool>& stop) {
    int fd = connect_as_peer(ifindex, peer);
    if (fd < 0)
        return 0;
    long answers = 0;
    const std::string req[2] = {"request_ip=1\nipv4=0.0.0.0/32\n\n",
                                "request_ip=1\nipv6=::/128\n\n"};
    std::string buf;
    while (!stop) {
        const std::string& r = req[answers % 2];
        if (send(fd, r.data(), r.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(r.size()))
            break;
        std::size_t at;
        char b[512];
        ssize_t n = 1;
        while ((at = buf.find("\n\n")) == std::string::npos && (n = recv(fd, b, sizeof b, 0)) > 0)
            buf.append(b, static_cast<std::size_t>(n));
        if (n <= 0)
            break;
        buf.erase(0, at + 2);
        answers++;
    }
    close(fd);
    return answers;
}

// --hostile: the paced renewals of every peer but the last, alone and then
// beside the last peer trading families at full speed, `rounds` times in
// alternation (the machine's noise moves both alike); the medians of the
// rounds' p99 latencies, and their ratio.
void run_hostile(const Config& cfg, unsigned ifindex, Driver& driver, Checker& checker) {
    const int hostile = cfg.peers - 1;
    const int count = std::min(hostile, cfg.paced_rate * (cfg.quick ? 1 : 3));
    std::vector<double> quiet, beside, quiet50, beside50; // p99s and medians of the runs
    std::printf("hostile   paced renewals at %d/s of %d peers; peer %d trades families at full "
                "speed in every second run:\n",
                cfg.paced_rate, count, hostile);
    for (int round = 0; round < cfg.hostile_rounds; round++) {
        for (bool with : {false, true}) {
            std::atomic<bool> stop{false};
            long answers = 0;
            std::thread flood;
            if (with)
                flood = std::thread([&] { answers = trade_families(ifindex, hostile, stop); });
            auto start = Clock::now();
            PhaseResult r =
                driver.run(renewals(checker, 0, count), cfg.concurrency, cfg.paced_rate);
            stop = true;
            if (flood.joinable())
                flood.join();
            (with ? beside : quiet).push_back(percentile(r.latencies_ms, 0.99));
            (with ? beside50 : quiet50).push_back(percentile(r.latencies_ms, 0.5));
            report(with ? "beside" : "quiet", r);
            if (with)
                std::printf("          the full-speed peer: %ld answers = %.0f /s\n", answers,
                            static_cast<double>(answers) / seconds_since(start));
            if (with && answers == 0) // no flood: the comparison would mean nothing
                checker.error("the full-speed peer got no answer");
        }
    }
    const double q = percentile(quiet, 0.5), b = percentile(beside, 0.5);
    std::printf("hostile   medians of %d rounds: p99 quiet %.2f ms, beside the full-speed peer "
                "%.2f ms (%.2fx); median quiet %.2f ms, beside %.2f ms\n",
                cfg.hostile_rounds, q, b, q > 0 ? b / q : 0.0, percentile(quiet50, 0.5),
                percentile(beside50, 0.5));
}

// The floor (--floor): what the kernel's TCP and this generator cost
// without the server. A single process does only what any server of this
// protocol must (accept, read the request, write an answer, keep the
// connection until the client closes it, close), with one fixed answer: no
// decision, no other process, no disk, no WireGuard change. The server's
// rate and CPU per request are best read against it, on the same machine.
[[noreturn]] void run_floor_responder(unsigned ifindex) {
    static const std::string answer =
        "errno=0\nipv4=10.0.0.1/32\nipv6=2001:db8::1/128\nleasestart=1764201600\n"
        "leasetime=3600\n\n";
    int listener = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in6 any = port_970_of(kServerAddress, ifindex);
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = listener;
    if (bind(listener, reinterpret_cast<sockaddr*>(&any), sizeof any) != 0 ||
        listen(listener, 4096) != 0 || epfd < 0 ||
        epoll_ctl(epfd, EPOLL_CTL_ADD, listener, &ev) != 0) {
        std::perror("floor responder");
        _exit(1);
    }
    std::map<int, std::string> requests;
    // Reads what is there; answers a complete request; false: closed.
    auto serve = [&](int fd) {
        char buf[2048];
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN)
            return true;
        if (n <= 0)
            return false;
        std::string& r = requests[fd];
        r.append(buf, static_cast<std::size_t>(n));
        if (r.find("\n\n") != std::string::npos) {
            r.clear();
            send(fd, answer.data(), answer.size(), MSG_NOSIGNAL);
        }
        return true;
    };
    std::vector<epoll_event> events(256);
    for (;;) {
        int n = epoll_wait(epfd, events.data(), static_cast<int>(events.size()), -1);
        for (int i = 0; i < n; i++) {
            int fd = events[static_cast<std::size_t>(i)].data.fd;
            if (fd != listener) {
                if (!serve(fd)) {
                    requests.erase(fd);
                    close(fd);
                }
                continue;
            }
            int conn;
            while ((conn = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >=
                   0) {
                epoll_event cev{};
                cev.events = EPOLLIN;
                cev.data.fd = conn;
                if (!serve(conn) || epoll_ctl(epfd, EPOLL_CTL_ADD, conn, &cev) != 0) {
                    requests.erase(conn);
                    close(conn);
                }
            }
        }
    }
}

// The first phase's jobs (one request each, all peers) against the floor
// responder; reported like a phase of the server.
int run_floor(const Config& cfg, wgd::lab::Lab& lab, unsigned ifindex) {
    (void)lab; // kept alive by the caller: the namespace and wireguard-go
    pid_t responder = fork();
    if (responder == 0)
        run_floor_responder(ifindex);
    auto wait_start = Clock::now();
    while (!try_once(ifindex, "request_ip=1\n\n")) {
        if (seconds_since(wait_start) > 10) {
            kill(responder, SIGKILL);
            throw std::runtime_error("the floor responder did not start");
        }
        usleep(10'000);
    }
    Checker checker(cfg.peers);
    checker.accept_any_addresses();
    Driver driver(ifindex, checker);
    std::vector<Job> jobs;
    for (int i = 0; i < cfg.peers; i++)
        jobs.push_back({i, "request_ip=1\n\n", false});
    for (const char* name : {"floor", "floor"}) {
        CpuSample before = cpu_sample(responder, -1);
        PhaseResult r = driver.run(jobs, cfg.concurrency);
        CpuSample after = cpu_sample(responder, -1);
        report(name, r);
        report_cpu(before, after, r.done);
    }
    std::printf("          (floor: one process answers with a fixed answer; its CPU is in the "
                "netd column)\n");
    kill(responder, SIGKILL);
    waitpid(responder, nullptr, 0);
    std::printf("checked %ld answers, %ld errors\n", checker.checked(), checker.errors());
    return checker.errors() == 0 ? 0 : 1;
}

int run(const Config& cfg) {
    if (!wgd::lab::running_as_root()) {
        std::fprintf(stderr, "wgd-load needs root (network namespaces, wireguard-go)\n");
        return 77;
    }
    rlimit nofile{};
    getrlimit(RLIMIT_NOFILE, &nofile);
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
    if (static_cast<rlim_t>(cfg.concurrency) + 64 > nofile.rlim_cur) {
        std::fprintf(stderr, "wgd-load: -c %d needs more open files than the limit %lu\n",
                     cfg.concurrency, static_cast<unsigned long>(nofile.rlim_cur));
        return 2;
    }
    int total = std::max(cfg.peers, cfg.restart_leases);
    std::printf("wgd-load: %d peers, %d concurrent clients%s\n", cfg.peers, cfg.concurrency,
                cfg.restart_leases > cfg.peers
                    ? (", " + std::to_string(total) + " leases before the restart").c_str()
                    : "");

    auto setup_start = Clock::now();
    wgd::lab::Lab lab({.clients = 0, .pools = false, .client_adds_lladdr = false});
    std::vector<std::string> keys = add_peers(lab, total);
    if (sh("ip -n " + lab.server_ns + " route add 10.0.0.0/8 dev " + lab.server_iface) != 0 ||
        sh("ip -n " + lab.server_ns + " route add 2001:db8::/64 dev " + lab.server_iface) != 0)
        throw std::runtime_error("cannot route the pools");
    int nsfd = open(("/run/netns/" + lab.server_ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0)
        throw std::runtime_error("cannot enter the lab namespace");
    close(nsfd);
    unsigned ifindex = if_nametoindex(lab.server_iface.c_str());
    std::printf("setup     %.2f s (%d peers)\n", seconds_since(setup_start), total);

    std::string log = lab.state_dir + ".log";
    std::vector<std::string> args{"-f", "--state-dir", lab.state_dir, lab.server_iface};
    if (cfg.floor)
        return run_floor(cfg, lab, ifindex);
    pid_t server = lab.start(lab.server_ns, cfg.server, args, log);

    Checker checker(total);
    Driver driver(ifindex, checker);
    auto wait_start = Clock::now();
    // The first leases include the start: the first jobs wait in the
    // kernel's accept queue or are retried until the server listens.
    while (!try_once(ifindex, "request_ip=1\nipv4=10.0.0.1/24\n\n")) {
        if (seconds_since(wait_start) > 30)
            throw std::runtime_error("the server did not start; log: " + log);
        usleep(10'000);
    }
    std::printf("start     serving after %.3f s\n", seconds_since(wait_start));

    std::vector<Job> grants;
    for (int i = 0; i < cfg.peers; i++)
        grants.push_back({i, "request_ip=1\n\n", false});
    pid_t wg = wireguard_go_of(lab.server_iface);
    auto phase = [&](const char* name, const std::vector<Job>& jobs, int rate = 0) {
        CpuSample before = cpu_sample(server, wg);
        PhaseResult r = driver.run(jobs, cfg.concurrency, rate);
        CpuSample after = cpu_sample(server, wg);
        report(name, r);
        report_cpu(before, after, r.done);
        // Failures en masse have outside causes: say which part is gone.
        if (wg > 0 && kill(wg, 0) != 0)
            std::printf("          wireguard-go (pid %d) is gone: its output is kept in %s\n", wg,
                        wgd::lab::Lab::wireguard_go_log(lab.server_iface).c_str());
        if (waitpid(server, nullptr, WNOHANG) != 0)
            std::printf("          the server exited: its log is %s\n", log.c_str());
    };
    phase("grants", grants);
    phase("renewals", renewals(checker, 0, cfg.peers));
    std::vector<Job> mix = renewals(checker, 0, cfg.peers);
    for (std::size_t i = 1; i < mix.size(); i += 2)
        mix[i].request = "request_ip=1\nipv4=0.0.0.0/32\nipv6=::/128\n\n";
    std::reverse(mix.begin(), mix.end());
    phase("mix", mix);
    int paced_count = std::min(cfg.peers, cfg.paced_rate * (cfg.quick ? 1 : 3));
    std::printf("paced at %d/s:\n", cfg.paced_rate);
    phase("renewals", renewals(checker, 0, paced_count), cfg.paced_rate);
    if (total > cfg.peers) {
        std::vector<Job> more;
        for (int i = cfg.peers; i < total; i++)
            more.push_back({i, "request_ip=1\n\n", false});
        phase("grants+", more);
    }
    check_device(lab, keys, checker, total);
    report_memory(server);
    // Last before the restart: the full-speed peer leaves its own lease
    // other than the checker knows it.
    if (cfg.hostile_rounds > 0)
        run_hostile(cfg, ifindex, driver, checker);

    // Restart: SIGTERM, wait, start again; time until a renewal is answered.
    kill(server, SIGTERM);
    int status = 0;
    waitpid(server, &status, 0);
    auto restart = Clock::now();
    server = lab.start(lab.server_ns, cfg.server, args, log);
    std::string request = renewal(checker.held(0));
    std::optional<std::string> reply;
    while (!(reply = try_once(ifindex, request))) {
        if (seconds_since(restart) > 60)
            throw std::runtime_error("the server did not come back; log: " + log);
        usleep(2'000);
    }
    std::printf("restart   %d leases: first answer after %.3f s\n", total, seconds_since(restart));
    checker.check(0, *reply, true);
    report_memory(server);
    if (cfg.renew_after_restart) {
        phase("renewals", renewals(checker, 0, total));
        check_device(lab, keys, checker, total);
        report_memory(server);
    }
    for (const auto& entry : std::filesystem::directory_iterator(lab.state_dir))
        if (entry.is_regular_file())
            std::printf("state     %s: %ju bytes\n", entry.path().filename().c_str(),
                        static_cast<std::uintmax_t>(entry.file_size()));

    std::printf("checked %ld answers, %ld errors\n", checker.checked(), checker.errors());
    if (checker.errors() != 0)
        std::printf("server log: %s\n", log.c_str());
    else
        std::remove(log.c_str());
    return checker.errors() == 0 && checker.checked() > 0 ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
    Config cfg = parse(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    try {
        return run(cfg);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "wgd-load: %s\n", e.what());
        return 1;
    }
}
