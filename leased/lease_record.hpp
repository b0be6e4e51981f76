// One peer's dynamic lease as the lease file stores it: the whole state of
// that peer after a change, so that the last record of a peer is its truth.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>

#include "common/addr.hpp"

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

// The last record of each peer that holds a lease, as a restart hands them
// to the server (LeaseServer::expect_restore): looked up by key while the
// view of the peers arrives, then all visited once. Slots number the
// records, 0 .. slots() - 1, not all of them used.
class ExpectedLeases {
  public:
    virtual ~ExpectedLeases() = default;
    virtual std::size_t slots() const = 0;
    virtual std::size_t size() const = 0; // records
    // The slot of key's record, which goes to `record`; slots() when none.
    virtual std::size_t find(const PublicKey& key, LeaseRecord& record) const = 0;
    // Every record with its slot.
    virtual void for_each(const std::function<void(std::size_t, const LeaseRecord&)>& f) const = 0;
    // 0, or the errno of a read that failed: the records it would have
    // given were missing from find() and for_each().
    virtual int error() const { return 0; }
};

} // namespace wgd::leased
