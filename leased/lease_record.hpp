// One peer's dynamic lease as the lease file stores it: the whole state of
// that peer after a change, so that the last record of a peer is its truth.
#pragma once

#include <cstdint>
#include <optional>

#include "privsep/addr.hpp"

namespace wgd::leased {

struct LeaseRecord {
    PublicKey peer;
    std::optional<Ip4> ipv4; // neither address: the peer holds no lease (released)
    std::optional<Ip6> ipv6;
    std::int64_t start_wall = 0;  // Unix seconds, as sent on the wire
    std::int64_t expiry_wall = 0; // wall time, because CLOCK_BOOTTIME restarts with a reboot
    bool released() const { return !ipv4 && !ipv6; }
    friend bool operator==(const LeaseRecord&, const LeaseRecord&) = default;
};

} // namespace wgd::leased
