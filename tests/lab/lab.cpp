#include "tests/lab/lab.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>

namespace wgd::lab {

bool running_as_root() {
    return geteuid() == 0;
}

Wireguard lab_wireguard() {
    const char* which = std::getenv("WGD_LAB_WIREGUARD");
    return which && std::strcmp(which, "kernel") == 0 ? Wireguard::kernel : Wireguard::userspace;
}

int sh(const std::string& command) {
    int status = std::system(command.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string sh_out(const std::string& command) {
    std::string result;
    FILE* pipe = popen(command.c_str(), "r");
    if (!pipe)
        return result;
    char buf[4096];
    std::size_t n;
    while ((n = fread(buf, 1, sizeof buf, pipe)) > 0)
        result.append(buf, n);
    pclose(pipe);
    return result;
}

std::string unique_name(const std::string& prefix) {
    static std::atomic<int> counter{0};
    return prefix + std::to_string(getpid()) + "x" + std::to_string(counter++);
}

Netns::Netns() : name_(unique_name("wgdn")) {
    original_ = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (sh("ip netns add " + name_) != 0)
        return;
    created_ = true;
    const int fd = open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC);
    entered_ = fd >= 0 && setns(fd, CLONE_NEWNET) == 0;
    if (fd >= 0)
        close(fd);
    sh("ip link set lo up");
}

Netns::~Netns() {
    if (entered_)
        setns(original_, CLONE_NEWNET);
    if (created_)
        sh("ip netns del " + name_);
    if (original_ >= 0)
        close(original_);
}

WireguardGo::WireguardGo(std::string ifname) : ifname_(std::move(ifname)) {
    pid_ = fork();
    if (pid_ == 0) {
        const int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execlp("wireguard-go", "wireguard-go", "-f", ifname_.c_str(), nullptr);
        _exit(127);
    }
    for (int i = 0; i < 500 && pid_ > 0; ++i) { // up to 5 s
        struct stat st {};
        if (stat(socket_path().c_str(), &st) == 0) {
            ready_ = true;
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

WireguardGo::~WireguardGo() {
    if (pid_ > 0) {
        kill(pid_, SIGTERM);
        int status = 0;
        waitpid(pid_, &status, 0);
    }
    unlink(socket_path().c_str()); // left behind only if it died hard
}

namespace {

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
        s.pop_back();
    return s;
}

void must(const std::string& command) {
    if (sh(command + " >/dev/null") != 0)
        throw std::runtime_error("lab setup failed: " + command);
}

std::string next_id() {
    static std::atomic<int> counter{0};
    // Interface names are global (wireguard-go's sockets share /run/wireguard)
    // and at most 15 bytes: "wgc" + 5 digits of the pid + a letter + 2 digits.
    char buf[16];
    std::snprintf(buf, sizeof buf, "%05d%c", static_cast<int>(getpid() % 100000),
                  'a' + counter++ % 26);
    return buf;
}

} // namespace

Lab::Lab(LabOptions options) : id_(next_id()) {
    try {
        server_ns = "wgd-srv-" + id_;
        server_iface = "wgs" + id_;
        char tmpl[] = "/tmp/wgd-state-XXXXXX";
        if (!mkdtemp(tmpl))
            throw std::runtime_error("mkdtemp failed");
        state_dir = tmpl;

        must("ip netns add " + server_ns);
        server_wg_pid_ = make_wireguard(server_ns, server_iface);
        std::string server_key = trim(sh_out("wg genkey"));
        server_privkey_ = server_key;
        pools_ = options.pools;
        server_pubkey = trim(sh_out("echo " + server_key + " | wg pubkey"));
        must("ip -n " + server_ns + " link set " + server_iface + " addrgenmode none");
        must("ip netns exec " + server_ns + " sh -c 'wg set " + server_iface +
             " private-key /dev/stdin listen-port 51820 <<EOF\n" + server_key + "\nEOF'");

        for (int i = 0; i < options.clients; i++) {
            LabClient c;
            std::string n = std::to_string(i);
            c.ns = "wgd-cli-" + id_ + n;
            c.iface = "wgc" + id_ + n;
            char ll[32];
            std::snprintf(ll, sizeof ll, "fe80::%x", 0x1234 + i);
            c.lladdr = ll;
            c.privkey = trim(sh_out("wg genkey"));
            c.pubkey = trim(sh_out("echo " + c.privkey + " | wg pubkey"));
            must("ip netns add " + c.ns);
            std::string vs = "vs" + id_ + n, vc = "vc" + id_ + n;
            must("ip link add " + vs + " netns " + server_ns + " type veth peer name " + vc +
                 " netns " + c.ns);
            std::string net = "10.200." + n;
            must("ip -n " + server_ns + " addr add " + net + ".1/24 dev " + vs);
            must("ip -n " + server_ns + " link set " + vs + " up");
            must("ip -n " + c.ns + " addr add " + net + ".2/24 dev " + vc);
            must("ip -n " + c.ns + " link set " + vc + " up");
            must("ip -n " + c.ns + " link set lo up");
            c.wg_pid = make_wireguard(c.ns, c.iface);
            must("ip -n " + c.ns + " link set " + c.iface + " addrgenmode none");
            must("ip netns exec " + server_ns + " wg set " + server_iface + " peer " + c.pubkey +
                 " allowed-ips " + c.lladdr + "/128");
            must("ip netns exec " + c.ns + " sh -c 'wg set " + c.iface +
                 " private-key /dev/stdin peer " + server_pubkey +
                 " allowed-ips fe80::/128,0.0.0.0/0,::/0 endpoint " + net +
                 ".1:51820 persistent-keepalive 1 <<EOF\n" + c.privkey + "\nEOF'");
            if (options.client_adds_lladdr)
                must("ip -n " + c.ns + " addr add " + c.lladdr + "/128 dev " + c.iface);
            must("ip -n " + c.ns + " link set " + c.iface + " up");
            must("ip -n " + c.ns + " route add fe80::/128 dev " + c.iface);
            clients.push_back(c);
        }
        must("ip -n " + server_ns + " link set lo up");
        must("ip -n " + server_ns + " addr add fe80::/64 dev " + server_iface);
        must("ip -n " + server_ns + " link set " + server_iface + " up");
        if (options.pools) {
            must("ip -n " + server_ns + " addr add 10.77.0.1/24 dev " + server_iface);
            must("ip -n " + server_ns + " addr add 2001:db8:77::1/64 dev " + server_iface);
        }
        ok_ = true;
    } catch (...) {
        teardown();
        throw;
    }
}

Lab::~Lab() {
    teardown();
}

std::string Lab::wireguard_go_log(const std::string& iface) {
    return "/tmp/wgd-wireguard-go-" + iface + ".log";
}

pid_t Lab::make_wireguard(const std::string& ns, const std::string& iface) {
    if (lab_wireguard() == Wireguard::kernel) {
        must("ip -n " + ns + " link add " + iface + " type wireguard");
        return -1;
    }
    // Its output is kept only when it exits on its own (see teardown): a
    // wireguard-go that dies under a test must leave its reason behind.
    const std::string log = wireguard_go_log(iface);
    pid_t pid = fork();
    if (pid == 0) {
        int out = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        dup2(out, 1);
        dup2(out, 2);
        execlp("ip", "ip", "netns", "exec", ns.c_str(), "wireguard-go", "-f", iface.c_str(),
               static_cast<char*>(nullptr));
        _exit(127);
    }
    std::string sock = "/run/wireguard/" + iface + ".sock";
    if (!eventually([&] { return access(sock.c_str(), F_OK) == 0; }, 5000))
        throw std::runtime_error("wireguard-go did not start for " + iface);
    return pid;
}

void Lab::teardown() {
    for (pid_t pid : daemons_) {
        if (kill(pid, 0) == 0) {
            kill(pid, SIGTERM);
            if (!eventually([&] { return waitpid(pid, nullptr, WNOHANG) != 0; }, 3000)) {
                kill(pid, SIGKILL);
                waitpid(pid, nullptr, 0);
            }
        }
    }
    daemons_.clear();
    // A stopped server leaves its control socket file (its sandboxed
    // processes can remove no file); the lab's name is the lab's to clean.
    unlink(("/run/wg-dynamic/" + server_iface + ".sock").c_str());
    std::vector<std::pair<pid_t, std::string>> wgs;
    if (server_wg_pid_ > 0)
        wgs.emplace_back(server_wg_pid_, server_iface);
    for (auto& c : clients)
        if (c.wg_pid > 0)
            wgs.emplace_back(c.wg_pid, c.iface);
    for (auto& [pid, iface] : wgs) {
        const std::string log = wireguard_go_log(iface);
        if (waitpid(pid, nullptr, WNOHANG) != 0) {
            std::fprintf(stderr, "lab: wireguard-go of %s had exited on its own; its output: %s\n",
                         iface.c_str(), log.c_str());
            unlink(("/run/wireguard/" + iface + ".sock").c_str());
            continue;
        }
        unlink(log.c_str());
        kill(pid, SIGTERM);
        if (!eventually([&] { return waitpid(pid, nullptr, WNOHANG) != 0; }, 3000)) {
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
        }
        unlink(("/run/wireguard/" + iface + ".sock").c_str());
    }
    server_wg_pid_ = -1;
    for (auto& c : clients) {
        c.wg_pid = -1;
        sh("ip netns del " + c.ns + " 2>/dev/null");
    }
    if (!server_ns.empty())
        sh("ip netns del " + server_ns + " 2>/dev/null");
    if (!state_dir.empty())
        sh("rm -rf '" + state_dir + "'");
}

void Lab::restart_server_wireguard() {
    if (server_wg_pid_ > 0) {
        kill(server_wg_pid_, SIGTERM);
        if (!eventually([&] { return waitpid(server_wg_pid_, nullptr, WNOHANG) != 0; }, 3000)) {
            kill(server_wg_pid_, SIGKILL);
            waitpid(server_wg_pid_, nullptr, 0);
        }
        unlink(("/run/wireguard/" + server_iface + ".sock").c_str());
        server_wg_pid_ = -1;
    } else if (lab_wireguard() == Wireguard::kernel) {
        must("ip -n " + server_ns + " link del " + server_iface);
    }
    server_wg_pid_ = make_wireguard(server_ns, server_iface);
    must("ip -n " + server_ns + " link set " + server_iface + " addrgenmode none");
    must("ip netns exec " + server_ns + " sh -c 'wg set " + server_iface +
         " private-key /dev/stdin listen-port 51820 <<EOF\n" + server_privkey_ + "\nEOF'");
    for (const LabClient& c : clients)
        must("ip netns exec " + server_ns + " wg set " + server_iface + " peer " + c.pubkey +
             " allowed-ips " + c.lladdr + "/128");
    must("ip -n " + server_ns + " addr add fe80::/64 dev " + server_iface);
    must("ip -n " + server_ns + " link set " + server_iface + " up");
    if (pools_) {
        must("ip -n " + server_ns + " addr add 10.77.0.1/24 dev " + server_iface);
        must("ip -n " + server_ns + " addr add 2001:db8:77::1/64 dev " + server_iface);
    }
    // The clients' sessions died with the old interface; left alone they
    // would start new handshakes only after about 15 s. Re-adding the server
    // peer makes them handshake at their next packet.
    for (std::size_t i = 0; i < clients.size(); i++) {
        const LabClient& c = clients[i];
        must("ip netns exec " + c.ns + " wg set " + c.iface + " peer " + server_pubkey + " remove");
        std::string net = "10.200." + std::to_string(i);
        must("ip netns exec " + c.ns + " wg set " + c.iface + " peer " + server_pubkey +
             " allowed-ips fe80::/128,0.0.0.0/0,::/0 endpoint " + net +
             ".1:51820 persistent-keepalive 1");
    }
}

int Lab::in(const std::string& ns, const std::string& command) const {
    return sh("ip netns exec " + ns + " sh -c '" + command + "'");
}

std::string Lab::out(const std::string& ns, const std::string& command) const {
    return sh_out("ip netns exec " + ns + " sh -c '" + command + "'");
}

std::string Lab::server_allowed_ips() const {
    return sh_out("ip netns exec " + server_ns + " wg show " + server_iface + " allowed-ips");
}

std::string Lab::allowed_ips_of(const std::string& pubkey) const {
    std::istringstream lines(server_allowed_ips());
    std::string line;
    while (std::getline(lines, line)) {
        if (line.rfind(pubkey + "\t", 0) == 0) {
            std::istringstream words(line.substr(pubkey.size() + 1));
            std::vector<std::string> ips;
            std::string w;
            while (words >> w)
                ips.push_back(w);
            std::sort(ips.begin(), ips.end());
            std::string joined;
            for (auto& ip : ips)
                joined += (joined.empty() ? "" : " ") + ip;
            return joined;
        }
    }
    return "";
}

pid_t Lab::start(const std::string& ns, const std::string& binary,
                 const std::vector<std::string>& args, const std::string& log_path) {
    pid_t pid = fork();
    if (pid == 0) {
        int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log >= 0) {
            dup2(log, 1);
            dup2(log, 2);
        }
        std::vector<std::string> full{"ip", "netns", "exec", ns, binary};
        full.insert(full.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (auto& a : full)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        execvp("ip", argv.data());
        _exit(127);
    }
    daemons_.push_back(pid);
    return pid;
}

Exchange exchange(const std::string& ns, const std::string& iface, const std::string& lladdr,
                  const std::string& request, int source_port, int wait_ms, bool stop_at_message,
                  bool half_close) {
    int pipefd[2];
    if (pipe(pipefd) != 0)
        return {};
    pid_t pid = fork();
    if (pid == 0) {
        close(pipefd[0]);
        Exchange ex;
        auto finish = [&] {
            std::string header = std::to_string(ex.connected) + " " + std::to_string(ex.closed) +
                                 " " + std::to_string(ex.error) + "\n";
            std::string all = header + ex.reply;
            (void)!write(pipefd[1], all.data(), all.size());
            _exit(0);
        };
        int nsfd = open(("/run/netns/" + ns).c_str(), O_RDONLY);
        if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0) {
            ex.error = errno;
            finish();
        }
        unsigned scope = if_nametoindex(iface.c_str());
        int fd = socket(AF_INET6, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        // An abortive close (RST) leaves no TIME_WAIT behind, so the next
        // exchange may reuse the same source address and port at once.
        linger lg{1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        sockaddr_in6 src{};
        src.sin6_family = AF_INET6;
        src.sin6_port = htons(static_cast<std::uint16_t>(source_port));
        inet_pton(AF_INET6, lladdr.c_str(), &src.sin6_addr);
        src.sin6_scope_id = scope;
        if (bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
            ex.error = errno;
            finish();
        }
        sockaddr_in6 dst{};
        dst.sin6_family = AF_INET6;
        dst.sin6_port = htons(970);
        inet_pton(AF_INET6, "fe80::", &dst.sin6_addr);
        dst.sin6_scope_id = scope;
        if (connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0) {
            ex.error = errno;
            finish();
        }
        ex.connected = true;
        std::size_t off = 0;
        while (off < request.size()) {
            ssize_t n = send(fd, request.data() + off, request.size() - off, MSG_NOSIGNAL);
            if (n <= 0)
                break;
            off += static_cast<std::size_t>(n);
        }
        if (half_close)
            shutdown(fd, SHUT_WR);
        auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
        for (;;) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - std::chrono::steady_clock::now())
                            .count();
            if (left <= 0)
                break;
            pollfd p{fd, POLLIN, 0};
            if (poll(&p, 1, static_cast<int>(left)) <= 0)
                break;
            char buf[4096];
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n <= 0) {
                ex.closed = true;
                break;
            }
            ex.reply.append(buf, static_cast<std::size_t>(n));
            if (stop_at_message && ex.reply.find("\n\n") != std::string::npos) {
                // Give the server a moment to close, so callers can tell
                // "answered and closed" from "answered and kept open".
                pollfd q{fd, POLLIN, 0};
                if (poll(&q, 1, 200) > 0) {
                    char extra[1];
                    if (recv(fd, extra, 1, MSG_PEEK) == 0)
                        ex.closed = true;
                }
                break;
            }
        }
        finish();
    }
    close(pipefd[1]);
    std::string all;
    char buf[4096];
    ssize_t n;
    while ((n = read(pipefd[0], buf, sizeof buf)) > 0)
        all.append(buf, static_cast<std::size_t>(n));
    close(pipefd[0]);
    waitpid(pid, nullptr, 0);
    Exchange ex;
    auto nl = all.find('\n');
    if (nl == std::string::npos)
        return ex;
    std::istringstream header(all.substr(0, nl));
    header >> ex.connected >> ex.closed >> ex.error;
    ex.reply = all.substr(nl + 1);
    return ex;
}

std::string field(const std::string& message, const std::string& key) {
    std::istringstream lines(message);
    std::string line;
    while (std::getline(lines, line))
        if (line.rfind(key + "=", 0) == 0)
            return line.substr(key.size() + 1);
    return "";
}

} // namespace wgd::lab
