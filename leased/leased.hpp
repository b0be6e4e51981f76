// leased: the decisions of each suite, in an unprivileged, chrooted,
// seccomp-confined process that works only on the fds netd handed it.
#pragma once

#include "privsep/cli.hpp"

namespace wgd::leased {

// fd conventions (set by netd when it spawns leased):
//   server: 3 = channel to netd, 4 = channel to protod, 5 and 6 = the two
//           lease files (STATE_DIR/IFACE.leases.0 and .1, used in turn by
//           compaction: see lease_file.hpp)
//   client: 3 = channel to netd, 4 = channel to protod
inline constexpr int kNetdFd = 3, kProtodFd = 4, kLeaseFileFd = 5, kLeaseFileNextFd = 6;

int server_main(const Options& options);
int client_main(const Options& options);

} // namespace wgd::leased
