// netd: the parent of each suite and the only process with CAP_NET_ADMIN.
// It checks the preconditions of SPEC.md, opens what needs privilege (the
// listening socket, the lease files), starts leased and protod in their
// sandboxes, then sandboxes itself and serves their netlink orders.
#pragma once

#include "privsep/cli.hpp"

#include <string>
#include <vector>

namespace wgd::netd {

// args: the command line as given (without argv[0]), handed on to the
// children after their role argument. Return the process's exit status.
int server_main(const Options& options, const std::vector<std::string>& args);
int client_main(const Options& options, const std::vector<std::string>& args);

} // namespace wgd::netd
