// leased: the decisions of each suite, in an unprivileged, chrooted,
// seccomp-confined process that works only on the fds netd handed it.
#pragma once

#include "privsep/cli.hpp"

namespace wgd::leased {

// leased works on the fds netd placed at the numbers of
// privsep/channels.hpp (fds::server_leased, fds::client_leased): its
// channels to netd and protod and, on the server, the two lease files
// (used in turn by compaction: see lease_file.hpp).
int server_main(const Options& options);
int client_main(const Options& options);

} // namespace wgd::leased
