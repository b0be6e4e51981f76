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

// Peers and requests of the lease-server tests: peer n has key n and the
// link-local identity fe80::n.
namespace fixtures {

inline PublicKey key(int n) {
    PublicKey k;
    k.bytes[0] = static_cast<std::uint8_t>(n);
    k.bytes[31] = 0x5a;
    return k;
}

inline Ip6 link_local(int n) {
    Ip6 a = *parse_ip6("fe80::");
    a.bytes[15] = static_cast<std::uint8_t>(n);
    return a;
}

inline PeerFacts peer(int n, std::vector<Prefix4> extra4 = {}, std::vector<Prefix6> extra6 = {}) {
    PeerFacts f{key(n), std::move(extra4), std::move(extra6)};
    f.allowed6.push_back(Prefix6{link_local(n), 128});
    return f;
}

inline Want any4() {
    Want w;
    w.v4 = Want::Kind::Any;
    return w;
}
inline Want any6() {
    Want w;
    w.v6 = Want::Kind::Any;
    return w;
}
inline Want both() {
    Want w;
    w.v4 = w.v6 = Want::Kind::Any;
    return w;
}

} // namespace fixtures

} // namespace wgd::leased
