// The permission tables of the channels that netd receives on: for each
// message type, who may send it, in which state, with what limits. Declared
// once here; netd's dispatch enforces them (a message outside its table is
// fatal for the suite) and the tests read them.
#pragma once

#include "privsep/channel.hpp"

#include <cstdint>

namespace wgd::privsep::tables {

// Server: leased -> netd. Claims come only before the first order, so a
// leased taken over later cannot make a static allowed IP its own.
enum ServerNetdState : std::uint32_t { restoring = 0, serving = 1 };
// A refresh makes netd read the whole device (about 20 MB of UAPI text at
// 65,536 peers): acted
// on at most once a second, whatever leased sends; quicker ones are answered
// together after the next read.
inline constexpr std::uint32_t kRefreshIntervalMs = 1000;
const Acceptance& server_netd_from_leased();

// Client: leased -> netd.
const Acceptance& client_netd_from_leased();

} // namespace wgd::privsep::tables
