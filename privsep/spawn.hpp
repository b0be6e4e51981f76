// Starting the processes of the suite and watching them.
//
// The parent (netd, still root) starts each role by fork + execve of its own
// binary ("/proc/self/exe"), so each child gets a fresh address space. The
// role is argv[1], "--privsep-role=<name>" (role_argument()); main() looks
// for it before any other option parsing (parse_role_argument()). The
// channels and other fds a child needs are placed at the fixed numbers the
// caller gives (for the suite's children, privsep/channels.hpp's fds::);
// every other fd above 2 is closed, and the signal mask and dispositions
// are reset.
#pragma once

#include "common/fd.hpp"
#include "privsep/sandbox.hpp"

#include <sys/types.h>

#include <chrono>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wgd::privsep {

inline constexpr std::string_view kRoleArgPrefix = "--privsep-role=";
std::string role_argument(Role role); // "--privsep-role=protod"
// The role named by an argv element, or nullopt when it is not a role argument.
std::optional<Role> parse_role_argument(std::string_view arg);

// fork + execve(exe, argv). fds: {child fd number (>= 2; 2 replaces the
// child's stderr), parent fd}; the parent's fds stay open in the parent. The
// child's fds 0 and 1 are /dev/null. The child goes into process group `group`
// (0: a new group it leads), outside the caller's: when the caller dies, the
// group is orphaned and the kernel sends SIGHUP and SIGCONT to its members if
// one of them is stopped, so a stopped child dies with its parent (a running
// one sees its channel's EOF). Returns the child's pid, or -1 (errno set).
// Between fork and execve the child sets PR_SET_PDEATHSIG(SIGKILL), which
// holds until the child's uid change (enter_sandbox sets it again after it),
// and checks that its parent is still the caller. Must be called from a single-threaded parent (the
// death signal follows the forking thread).
pid_t spawn_role(const std::string& exe, const std::vector<std::string>& argv,
                 const std::vector<std::pair<int, int>>& fds, pid_t group = 0);

// Signals as an fd for a poll loop: blocks the signals given and reads them
// through a signalfd. The mask is restored on destruction.
class SignalFd {
  public:
    explicit SignalFd(std::initializer_list<int> signals);
    ~SignalFd();
    SignalFd(const SignalFd&) = delete;
    SignalFd& operator=(const SignalFd&) = delete;

    bool valid() const { return fd_.valid(); }
    int fd() const { return fd_.get(); }
    // The next pending signal number, or nullopt when none is pending.
    // (Do not put SIGCHLD in a SignalFd of your own: Supervisor has one.)
    std::optional<int> take();

  private:
    UniqueFd fd_;
    std::vector<int> signals_;
};

struct ChildExit {
    pid_t pid = 0;
    std::string role;
    int status = 0; // as from waitpid
    // "protod exited with status 1", "leased killed by signal SIGSYS (31)"
    std::string describe() const;
};

// Watches the children. Construct it BEFORE spawning (it blocks SIGCHLD so
// no exit is missed), add() each child, poll fd() for POLLIN and call reap()
// when it is readable. Any exit is a failure of the suite: the owner logs
// it, calls stop_all() and exits non-zero. On SIGTERM/SIGINT (SignalFd) the
// owner calls stop_all() and exits 0.
class Supervisor {
  public:
    Supervisor();
    Supervisor(const Supervisor&) = delete;
    Supervisor& operator=(const Supervisor&) = delete;
    ~Supervisor(); // abandons the children still running (never signals)

    void add(pid_t pid, std::string role);
    int fd() const { return sigchld_.fd(); }
    // Collects the children that have exited, logging each as an error,
    // or once expect_exits() was called as the stop it is (info).
    std::vector<ChildExit> reap();
    // The owner is stopping the suite: the exits that follow are expected.
    void expect_exits() { expecting_exits_ = true; }
    // SIGTERM to each child still running, wait up to `grace`, then SIGKILL
    // and wait up to `grace` again; a child still there is abandoned. Returns
    // how each ended. Not for a process whose filter forbids kill (netd).
    std::vector<ChildExit> stop_all(std::chrono::milliseconds grace = std::chrono::seconds(1));
    // Forgets the children still running without signalling them: their
    // parent-death signal ends them when this process exits.
    void abandon();
    std::size_t running() const { return children_.size(); }

  private:
    std::vector<ChildExit> collect(bool log);
    SignalFd sigchld_;
    std::vector<std::pair<pid_t, std::string>> children_;
    bool expecting_exits_ = false;
};

} // namespace wgd::privsep
