// leased: the decisions of each suite, in an unprivileged, chrooted,
// seccomp-confined process that works only on the fds netd handed it.
#pragma once

#include "common/cli.hpp"
#include "common/peer.hpp"
#include "common/result.hpp"

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace wgd::leased {

// leased works on the fds netd placed at the numbers of
// privsep/channels.hpp (fds::server_leased, fds::client_leased): its
// channels to netd and protod and, on the server, the two lease files
// (used in turn by compaction: see lease_file.hpp).
int server_main(const Options& options);
int client_main(const Options& options);

// `show` without a running server: the lease file of IFACE in state_dir, as
// a table or as JSON, with the WireGuard device's peers (link-local
// identities, reservations) when read_device can read them. read_device is
// called only once the lease file has been read. The text to print, or the
// error to print in its place.
Result<std::string>
show_lease_file(const std::string& state_dir, const std::string& iface, bool json,
                const std::function<std::optional<std::vector<PeerFacts>>()>& read_device);

} // namespace wgd::leased
