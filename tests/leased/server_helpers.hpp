// Test helpers for LeaseServer: the whole view, or the whole restore, in one
// call. leased itself gets both in pieces from netd (begin_peers, add_peers,
// end_peers; expect_restore before the view, restore_expected after it).
#pragma once

#include "leased/server.hpp"

#include <utility>
#include <vector>

namespace wgd::leased {

inline LeaseEvents set_peers(LeaseServer& server, const std::vector<PeerFacts>& peers) {
    server.begin_peers();
    server.add_peers(peers);
    return server.end_peers();
}

// After the view: no record was seen as expected in it.
inline LeaseEvents restore(LeaseServer& server, std::vector<LeaseRecord> records) {
    server.expect_restore(std::move(records));
    return server.restore_expected();
}

} // namespace wgd::leased
