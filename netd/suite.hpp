// The skeleton both netd mains share around their own handlers: the
// start-up preconditions' one failure path, the daemon's detaching, the
// children's start with their descriptors at the numbers of
// privsep/channels.hpp's fds::, the relay of their stderr, their
// supervision, the signals netd answers, the loop that watches these and
// netd's own descriptors, the stop on a fatal error and the orderly stop.
// Internal.
#pragma once

#include "common/cli.hpp"
#include "common/fatal.hpp"
#include "common/fd.hpp"
#include "netd/daemon.hpp"
#include "privsep/channel.hpp"
#include "privsep/loop.hpp"
#include "privsep/sandbox.hpp"
#include "privsep/spawn.hpp"

#include <csignal>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace wgd::netd {

// A start-up precondition that does not hold: netd logs the reason at error
// level and exits 1, having started nothing or stopped what it started.
struct Failure {
    std::string reason;
};

// Settles the sandbox user, then runs `netd` with the settled options and
// the children's command line; a Failure thrown from it is logged and ends
// the process with 1, otherwise its status is returned.
int run_netd(const Options& options, const std::vector<std::string>& args,
             const std::function<int(const Options&, const std::vector<std::string>&)>& netd);

// A descriptor a child gets at `number`; netd closes its copy once both
// children have started.
struct HandedFd {
    int number;
    UniqueFd& fd;
};

// One of netd's ends of a channel to a child, and the Channel that takes it.
struct KeptEnd {
    UniqueFd& fd;
    privsep::Channel& channel;
};

// Constructed once the preconditions hold: detaches unless in the
// foreground, then opens the relay, the supervisor, the signals netd
// answers (SIGTERM, SIGINT, SIGHUP) and the loop netd runs, which the
// sandbox could not open later (throws Failure when it cannot).
class SuiteParent {
  public:
    explicit SuiteParent(bool foreground);
    SuiteParent(const SuiteParent&) = delete;
    SuiteParent& operator=(const SuiteParent&) = delete;

    // Starts leased, then protod in leased's process group, each supervised
    // under its role's name; throws Failure when one cannot start (leased
    // is stopped first if protod cannot). Then closes what the children
    // hold, wraps netd's ends in their Channels, and sets the fatal stop
    // hook that forwards the relay and stops the children by closing those
    // Channels, which must outlive this object.
    void start_children(const std::vector<std::string>& args, const std::vector<HandedFd>& leased,
                        const std::vector<HandedFd>& protod, const std::vector<KeptEnd>& kept);
    // Enters netd's sandbox; when it fails, logs why, stops the children
    // and returns false (netd then exits 1).
    bool enter_sandbox(Side side, const privsep::NetdSandbox& how = {});
    // Where netd watches its own channels and descriptors.
    privsep::Loop& loop() { return loop_; }
    // Watches the relay (forwarded as the children write, forgotten if it
    // closes), the supervisor (the relay forwarded first, so that a child's
    // last lines come before its exit; then `on_exits` with what reap()
    // logged) and the signals (`on_signal` with each one taken); runs the
    // loop, then forwards what the children still have to say and stops
    // them. Returns the loop's status, 1 if netd stopped it before it ran.
    int run(const std::function<void(const std::vector<privsep::ChildExit>&)>& on_exits,
            const std::function<void(int)>& on_signal);

    privsep::Supervisor& supervisor() { return supervisor_; }

  private:
    // Its constructor detaches: before the relay and the supervisor exist,
    // which must belong to the daemon rather than to the process that exits.
    struct Detach {
        explicit Detach(bool foreground);
    };
    void stop();

    Detach detach_;
    LogRelay relay_;
    privsep::Supervisor supervisor_;
    privsep::SignalFd signals_{SIGTERM, SIGINT, SIGHUP};
    privsep::Loop loop_;
    std::vector<privsep::Channel*> channels_;
    std::optional<FatalStopHook> stop_on_fatal_; // last: gone first
};

} // namespace wgd::netd
