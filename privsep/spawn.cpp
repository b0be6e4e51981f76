#include "privsep/spawn.hpp"

#include "common/log.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

extern char** environ;

namespace wgd::privsep {

std::string role_argument(Role role) {
    return std::string(kRoleArgPrefix) + role_name(role);
}

std::optional<Role> parse_role_argument(std::string_view arg) {
    if (arg.substr(0, kRoleArgPrefix.size()) != kRoleArgPrefix)
        return std::nullopt;
    std::string_view name = arg.substr(kRoleArgPrefix.size());
    for (Role r : {Role::netd, Role::leased, Role::protod}) {
        if (name == role_name(r))
            return r;
    }
    return std::nullopt;
}

namespace {

// Runs in the forked child: only async-signal-safe calls, never returns.
[[noreturn]] void exec_child(pid_t parent, pid_t group, const char* exe, char* const* argv,
                             const std::vector<std::pair<int, int>>& fds, int highest_target) {
    // The parent blocks SIGCHLD/SIGTERM/SIGINT for its signalfds; a fresh
    // role starts with every signal deliverable and at its default action.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig)
        sigaction(sig, &dfl, nullptr);

    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != parent)
        _exit(127);
    if (setpgid(0, group) < 0)
        _exit(127);

    // First move every source fd above all targets, so that no dup2 below
    // overwrites a source that is still needed.
    int moved[64];
    if (fds.size() > sizeof moved / sizeof moved[0])
        _exit(127);
    for (std::size_t i = 0; i < fds.size(); ++i) {
        moved[i] = fcntl(fds[i].second, F_DUPFD_CLOEXEC, highest_target + 1);
        if (moved[i] < 0)
            _exit(127);
    }
    for (std::size_t i = 0; i < fds.size(); ++i) {
        if (dup2(moved[i], fds[i].first) < 0) // the copy is not close-on-exec
            _exit(127);
    }
    // Close everything above stderr that is not a target (the moved copies
    // are above highest_target).
    for (int fd = 3; fd <= highest_target; ++fd) {
        bool target = false;
        for (const auto& p : fds)
            target = target || p.first == fd;
        if (!target)
            close(fd);
    }
    close_range(unsigned(highest_target + 1), ~0u, 0);

    execve(exe, argv, environ);
    _exit(127);
}

} // namespace

pid_t spawn_role(const std::string& exe, const std::vector<std::string>& argv,
                 const std::vector<std::pair<int, int>>& fds, pid_t group) {
    int highest = 2;
    for (const auto& [child_fd, parent_fd] : fds) {
        if (child_fd < 2 || parent_fd < 0) { // 2: a child's stderr may be redirected
            errno = EINVAL;
            return -1;
        }
        highest = std::max(highest, child_fd);
    }
    // The child's stdin and stdout are /dev/null, never the parent's: those
    // are the operator's terminal, log file or journal stream.
    UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (!null)
        return -1;
    std::vector<std::pair<int, int>> placed{{STDIN_FILENO, null.get()},
                                            {STDOUT_FILENO, null.get()}};
    placed.insert(placed.end(), fds.begin(), fds.end());
    // Everything the child needs is built before fork: after it, only
    // async-signal-safe calls.
    std::vector<char*> cargv;
    for (const std::string& a : argv)
        cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    const pid_t parent = ::getpid();

    pid_t pid = ::fork();
    if (pid == 0)
        exec_child(parent, group, exe.c_str(), cargv.data(), placed, highest);
    // Both sides set the group, so that it is set whichever runs first.
    if (pid > 0)
        (void)::setpgid(pid, group);
    return pid;
}

SignalFd::SignalFd(std::initializer_list<int> signals) {
    sigset_t set, old;
    sigemptyset(&set);
    for (int s : signals)
        sigaddset(&set, s);
    if (::sigprocmask(SIG_BLOCK, &set, &old) < 0)
        return;
    for (int s : signals) {
        if (!sigismember(&old, s))
            signals_.push_back(s); // unblock on destruction only what we blocked
    }
    fd_.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
}

SignalFd::~SignalFd() {
    fd_.reset();
    if (signals_.empty())
        return;
    sigset_t set;
    sigemptyset(&set);
    for (int s : signals_)
        sigaddset(&set, s);
    ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
}

std::optional<int> SignalFd::take() {
    signalfd_siginfo info;
    for (;;) {
        ssize_t n = ::read(fd_.get(), &info, sizeof info);
        if (n == ssize_t(sizeof info))
            return int(info.ssi_signo);
        if (n < 0 && errno == EINTR)
            continue;
        return std::nullopt;
    }
}

std::string ChildExit::describe() const {
    if (WIFEXITED(status))
        return role + " exited with status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        const char* abbrev = ::sigabbrev_np(sig);
        std::string name = abbrev ? std::string("SIG") + abbrev : std::string("signal");
        return role + " killed by signal " + name + " (" + std::to_string(sig) + ")";
    }
    return role + " ended with wait status " + std::to_string(status);
}

Supervisor::Supervisor() : sigchld_({SIGCHLD}) {}

Supervisor::~Supervisor() {
    abandon();
}

void Supervisor::add(pid_t pid, std::string role) {
    children_.emplace_back(pid, std::move(role));
}

std::vector<ChildExit> Supervisor::collect(bool log) {
    std::vector<ChildExit> exits;
    for (auto it = children_.begin(); it != children_.end();) {
        int status = 0;
        pid_t r = ::waitpid(it->first, &status, WNOHANG);
        if (r == it->first || (r < 0 && errno == ECHILD)) {
            ChildExit e{it->first, it->second, status};
            if (log && expecting_exits_)
                WGD_LOG_INFO("%s stopped", e.role.c_str());
            else if (log)
                WGD_LOG_ERROR("%s", e.describe().c_str());
            exits.push_back(std::move(e));
            it = children_.erase(it);
        } else {
            ++it;
        }
    }
    return exits;
}

std::vector<ChildExit> Supervisor::reap() {
    while (sigchld_.take()) {
    }
    return collect(true);
}

std::vector<ChildExit> Supervisor::stop_all(std::chrono::milliseconds grace) {
    using Clock = std::chrono::steady_clock;
    std::vector<ChildExit> exits = collect(false);
    for (const auto& c : children_)
        ::kill(c.first, SIGTERM);
    const auto deadline = Clock::now() + grace;
    for (;;) {
        for (ChildExit& e : collect(false))
            exits.push_back(std::move(e));
        if (children_.empty())
            return exits;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0)
            break;
        pollfd p{sigchld_.fd(), POLLIN, 0};
        (void)::poll(&p, 1, int(left.count()) + 1);
        while (sigchld_.take()) {
        }
    }
    for (const auto& c : children_) {
        WGD_LOG_WARN("%s did not stop on SIGTERM; killing it", c.second.c_str());
        ::kill(c.first, SIGKILL);
    }
    // Bounded too: a child that cannot be signalled (another uid) is left to
    // its parent-death signal rather than waited for forever.
    const auto kill_deadline = Clock::now() + grace;
    for (;;) {
        for (ChildExit& e : collect(false))
            exits.push_back(std::move(e));
        auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(kill_deadline - Clock::now());
        if (children_.empty() || left.count() <= 0)
            break;
        pollfd p{sigchld_.fd(), POLLIN, 0};
        (void)::poll(&p, 1, int(left.count()) + 1);
        while (sigchld_.take()) {
        }
    }
    abandon();
    return exits;
}

void Supervisor::abandon() {
    for (const auto& c : children_)
        WGD_LOG_WARN("%s is still running; its parent-death signal ends it", c.second.c_str());
    children_.clear();
}

} // namespace wgd::privsep
