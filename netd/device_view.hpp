// netd's copy of the WireGuard device between two reads: the peers sorted by
// key, and who holds each global /32 and /128 allowed IP. It is kept up to
// date with the changes netd itself applies, so that validating an order
// costs O(changes x log peers) instead of indexing every peer per order
// (that rebuild was most of netd's CPU per grant at 10,000 peers).
#pragma once

#include "netd/host_index.hpp"
#include "netd/wireguard.hpp"

#include <cstdint>
#include <utility>
#include <vector>

namespace wgd::netd {

// This process's key for the views' address indexes: random, drawn once.
std::uint64_t address_hash_key();

class DeviceView {
  public:
    DeviceView() = default;
    explicit DeviceView(Device device);

    const Peers& peers() const { return peers_; } // sorted by key
    const Peer* find(const PublicKey& key) const; // nullptr: no such peer
    // True when a peer other than `key` has an allowed IP covering a (adding
    // a to `key` would take it away from that peer in WireGuard).
    bool held_by_other(const Ip4& a, const PublicKey& key) const;
    bool held_by_other(const Ip6& a, const PublicKey& key) const;
    // Records a change WireGuard accepted; false when the peer is unknown
    // (the view is then no longer a faithful copy). An address added is
    // taken from the peer that held it, as WireGuard does.
    bool record(const PeerChange& change);

    // What the index costs (slots of both families), for the benchmarks.
    std::size_t index_bytes() const { return hosts4_.memory_bytes() + hosts6_.memory_bytes(); }

  private:
    static constexpr std::uint32_t kNoPeer = 0xffffffffu;
    std::uint32_t position(const PublicKey& key) const; // in peers_, or kNoPeer
    template <class Ip, class Prefix>
    static bool held_by_other(const Ip& a, const PublicKey& key, const Peers& peers,
                              const HostIndex<Ip>& hosts,
                              const std::vector<std::pair<Prefix, std::uint32_t>>& wide);
    // Both host indexes from the peers, sized for what they hold plus `spare`.
    void reindex(std::size_t spare = 0);

    Peers peers_;
    // Global host entries only: link-local ones can never meet an order,
    // which adds global unicast addresses only.
    HostIndex<Ip4> hosts4_{address_hash_key()}; // index into peers_
    HostIndex<Ip6> hosts6_{address_hash_key()};
    std::vector<std::pair<Prefix4, std::uint32_t>> wide4_; // shorter prefixes (few)
    std::vector<std::pair<Prefix6, std::uint32_t>> wide6_;
};

} // namespace wgd::netd
