// A WireGuard peer and its allowed IPs, and a change to them: the one
// vocabulary of netd (which reads and changes the device), leased (which
// decides) and the messages between them (privsep/messages.hpp).
#pragma once

#include "common/addr.hpp"

#include <vector>

namespace wgd {

// The full WireGuard view of one peer, as netd reports it. The link-local
// /128 in allowed6 is its identity; other allowed IPs that are not our
// leases are static configuration (a /32 or /128 inside a pool is that
// peer's reservation).
struct PeerFacts {
    PublicKey key;
    std::vector<Prefix4> allowed4;
    std::vector<Prefix6> allowed6;
    friend bool operator==(const PeerFacts&, const PeerFacts&) = default;
};

// Changes to one existing peer's allowed IPs: /32 and /128 entries only.
struct PeerChange {
    PublicKey key;
    std::vector<Ip4> add4, remove4;
    std::vector<Ip6> add6, remove6;
    bool empty() const {
        return add4.empty() && remove4.empty() && add6.empty() && remove6.empty();
    }
    // The change that undoes this one.
    PeerChange inverse() const { return {key, remove4, add4, remove6, add6}; }
    friend bool operator==(const PeerChange&, const PeerChange&) = default;
};

} // namespace wgd
