// What both netd mains share: detaching, the relay of the children's log
// lines, spawning a role, and the supervision loop's common cases. Internal.
#pragma once

#include "common/cli.hpp"
#include "common/fd.hpp"
#include "common/result.hpp"
#include "privsep/channel.hpp"
#include "privsep/sandbox.hpp"
#include "privsep/spawn.hpp"

#include <string>
#include <utility>
#include <vector>

namespace wgd::netd {

// Double fork and setsid, stdio to /dev/null, logs to syslog from then on
// (a socket connected to /dev/log now, before any sandbox; see common/log.hpp).
// Returns only in the daemon; the original process exits 0.
void detach(const std::string& ident);

// The children's stderr: one datagram socketpair per child, whose lines
// netd logs through its own sink (stderr in the foreground, the journal's
// "<N>" prefixes when stderr is the journal, syslog when detached). Each
// line keeps the level its child gave it ("<N>text"), is named after the
// child whose socket it came on (never after what it says), has its control
// bytes replaced, and at most kLinesPerRound lines of each child are read
// per call, so a child flooding its stderr cannot hold netd's loop.
class LogRelay {
  public:
    static constexpr int kLinesPerRound = 64;
    LogRelay();
    // The fd to place at 2 in the child of `role` (leased or protod).
    int child_stderr(privsep::Role role) const;
    int fd() const { return epoll_.get(); } // readable when a child wrote
    void forward();                         // reads and logs what is pending, bounded
    void close_child_end();

  private:
    struct Child {
        privsep::Role role;
        UniqueFd parent, child;
    };
    UniqueFd epoll_;
    Child children_[2];
};

// fork + exec of this binary as `role`, with each fd given at its number in
// the child ({number, fd}: the numbers of privsep/channels.hpp's fds::) and
// stderr from the relay, in process group `group` (0: a new one; the second
// child joins the first's, see spawn_role).
pid_t spawn_child(privsep::Role role, const std::vector<std::string>& args,
                  const std::vector<std::pair<int, int>>& fds, const LogRelay& relay,
                  pid_t group = 0);

// The --user for leased and protod must exist and not be root: checked
// before anything starts, so that a typo is a one-line usage error rather
// than a child dying in its sandbox set-up.
Result<void> check_sandbox_user(const std::string& user);
// netd needs root (CAP_NET_ADMIN, port 970, the root-only UAPI socket, the
// user change of its children): without it every later check would fail
// for the wrong reason.
Result<void> check_root();

// Without --user, the default user where it exists, else nobody with a
// warning; the children get the choice on their command line, since each
// resolves --user itself before its chroot.
void settle_sandbox_user(Options& options, std::vector<std::string>& args);

// The server's listening socket on [fe80::%ifindex]:970.
Result<UniqueFd> listen_link_local(int ifindex, const std::string& ifname);

// Asks the children to stop by closing their channels and waits up to a
// second for them to go; what is left dies with netd (parent-death signal).
// Never blocks longer; used on every exit path.
void stop_children(privsep::Supervisor& supervisor, std::vector<privsep::Channel*> channels);

} // namespace wgd::netd
