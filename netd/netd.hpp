// netd: the parent of each suite and the only process with CAP_NET_ADMIN.
// It checks the preconditions of SPEC.md, opens what needs privilege (the
// listening socket, the lease files), starts leased and protod in their
// sandboxes, then sandboxes itself and serves their netlink orders.
#pragma once

#include "common/cli.hpp"
#include "common/peer.hpp"

#include <optional>
#include <string>
#include <vector>

namespace wgd::netd {

// args: the command line as given (without argv[0]), handed on to the
// children after their role argument. Return the process's exit status.
int server_main(const Options& options, const std::vector<std::string>& args);
int client_main(const Options& options, const std::vector<std::string>& args);

// The peers of IFACE's WireGuard device, read through either backend, for
// `show` without a running server; nullopt when the device cannot be read
// (no such device, not root).
std::optional<std::vector<PeerFacts>> read_peers(const std::string& ifname);

} // namespace wgd::netd
