#include "netd/daemon.hpp"

#include "common/fatal.hpp"
#include "common/log.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

namespace wgd::netd {

void detach(const std::string& ident) {
    pid_t pid = fork();
    if (pid < 0) {
        fatal("cannot detach: fork: %s", std::strerror(errno));
    }
    if (pid > 0)
        _exit(0);
    setsid();
    pid = fork();
    if (pid < 0)
        _exit(1);
    if (pid > 0)
        _exit(0);
    if (chdir("/") != 0) {
        // "/" always exists; nothing sensible to do otherwise.
    }
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
        if (devnull > 2)
            close(devnull);
    }
    // Not glibc's syslog(): when /dev/log is absent or refuses, it makes a
    // new socket at every line, which the sandbox answers with SIGSYS.
    log_set_sink(log_syslog_sink(ident));
}

LogRelay::LogRelay() : children_{{privsep::Role::leased, {}, {}}, {privsep::Role::protod, {}, {}}} {
    // Always sockets, never netd's own stderr: protod runs with
    // RLIMIT_FSIZE 0, and a write to a regular file (stderr redirected to a
    // log) would kill it with SIGXFSZ. Without them the suite does not start.
    epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) {
        fatal("log relay: epoll_create1: %s", std::strerror(errno));
    }
    for (Child& c : children_) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) {
            fatal("log relay: socketpair: %s", std::strerror(errno));
        }
        c.parent.reset(sv[0]);
        c.child.reset(sv[1]);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = c.parent.get();
        if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c.parent.get(), &ev) != 0) {
            fatal("log relay: epoll_ctl: %s", std::strerror(errno));
        }
    }
}

int LogRelay::child_stderr(privsep::Role role) const {
    for (const Child& c : children_)
        if (c.role == role)
            return c.child.get();
    return -1;
}

void LogRelay::close_child_end() {
    for (Child& c : children_)
        c.child.reset();
}

void LogRelay::forward() {
    char buf[2048];
    for (Child& c : children_) {
        const std::string prefix = std::string(privsep::role_name(c.role)) + ": ";
        for (int i = 0; i < kLinesPerRound; i++) {
            ssize_t n = recv(c.parent.get(), buf, sizeof buf, MSG_DONTWAIT);
            if (n <= 0)
                break;
            RelayedLine line =
                parse_relayed_line(std::string_view(buf, static_cast<std::size_t>(n)));
            log_line(line.level, prefix + line.text);
        }
    }
}

pid_t spawn_child(privsep::Role role, const std::vector<std::string>& args,
                  const std::vector<std::pair<int, int>>& fds, const LogRelay& relay, pid_t group) {
    std::vector<std::string> argv{std::string(log_name()), privsep::role_argument(role)};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<std::pair<int, int>> placed{{STDERR_FILENO, relay.child_stderr(role)}};
    placed.insert(placed.end(), fds.begin(), fds.end());
    return privsep::spawn_role("/proc/self/exe", argv, placed, group);
}

Result<void> check_sandbox_user(const std::string& user) {
    const passwd* pw = getpwnam(user.c_str());
    if (!pw)
        return make_error(ENOENT, "no such user '" + user + "' (--user)");
    if (pw->pw_uid == 0 || pw->pw_gid == 0)
        return make_error(EPERM, "--user " + user +
                                     " is root: the sandboxed processes must run unprivileged");
    return {};
}

void settle_sandbox_user(Options& options, std::vector<std::string>& args) {
    if (options.user_given || getpwnam(options.user.c_str()))
        return;
    WGD_LOG_WARN("user %s does not exist (make install creates it with systemd-sysusers): "
                 "the sandboxed processes run as %s, a uid other daemons may share",
                 options.user.c_str(), kFallbackUser);
    options.user = kFallbackUser;
    options.user_given = true;
    args.insert(args.begin(), {"--user", kFallbackUser});
}

Result<void> check_root() {
    if (geteuid() == 0)
        return {};
    return make_error(EPERM,
                      "must be run as root: it needs CAP_NET_ADMIN, port 970 and the WireGuard "
                      "UAPI socket, and drops everything else once started");
}

Result<UniqueFd> listen_link_local(int ifindex, const std::string& ifname) {
    UniqueFd fd(socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd)
        return make_error(errno, std::string("socket: ") + std::strerror(errno));
    int one = 1;
    setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    // fe80:: may still be tentative (duplicate address detection) right
    // after the interface came up; binding it anyway is what we want.
    setsockopt(fd.get(), IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof one);
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_port = htons(970);
    addr.sin6_scope_id = static_cast<std::uint32_t>(ifindex);
    inet_pton(AF_INET6, "fe80::", &addr.sin6_addr);
    if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
        return make_error(errno,
                          "cannot bind [fe80::%" + ifname + "]:970: " + std::strerror(errno));
    if (listen(fd.get(), 4096) != 0)
        return make_error(errno, std::string("listen: ") + std::strerror(errno));
    return fd;
}

void stop_children(privsep::Supervisor& supervisor, std::vector<privsep::Channel*> channels) {
    // netd's filter has no kill: closing their channels is how the
    // children are told to go, and their parent-death signal takes any
    // straggler down with netd.
    supervisor.expect_exits();
    for (privsep::Channel* ch : channels)
        *ch = privsep::Channel{};
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (supervisor.running() > 0 && std::chrono::steady_clock::now() < deadline) {
        pollfd p{supervisor.fd(), POLLIN, 0};
        poll(&p, 1, 50);
        supervisor.reap(); // each logged as stopped
    }
    // No kill (netd's filter has none): what is left dies with netd
    // through its parent-death signal.
    supervisor.abandon();
}

} // namespace wgd::netd
