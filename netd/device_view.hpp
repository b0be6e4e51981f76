// netd's copy of the WireGuard device between two reads: the peers sorted by
// key, and who holds each global /32 and /128 allowed IP. It is kept up to
// date with the changes netd itself applies, so that validating an order
// costs O(changes x log peers) instead of indexing every peer per order
// (that rebuild was most of netd's CPU per grant at 10,000 peers).
//
// The view also holds which of its peers' host entries wg-dynamic leased
// (LeasedSet's leases): a mark in the peer (Peer::lease), so that a lease
// costs no second copy of its peer's key. A read refreshes the view in
// place, peer by peer, so the device is never held twice either.
#pragma once

#include "common/result.hpp"
#include "netd/host_index.hpp"
#include "netd/wireguard.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <utility>
#include <vector>

namespace wgd::netd {

// This process's key for the views' address indexes: random, drawn once.
std::uint64_t address_hash_key();

class DeviceView {
  public:
    // A peer's leased /32 and /128 (none: nothing leased of that family).
    struct Lease {
        std::optional<Ip4> ipv4;
        std::optional<Ip6> ipv6;
        bool empty() const { return !ipv4 && !ipv6; }
    };

    DeviceView() = default;
    explicit DeviceView(Device device); // without leases

    // Reads the device again (read hands its peers to the sink it is
    // given) and makes the view that device, each lease kept while its peer
    // still holds it as a host entry. Peers already in the view are updated
    // where they are; only new ones are held aside until the end. When the
    // read fails, the view holds what came of it (each peer either as before
    // or as read, new peers left out) and every lease whose peer is still
    // there, also one the failed read did not show: the caller reads again
    // before trusting the view.
    Result<void> refresh(const std::function<Result<void>(DeviceSink&)>& read);
    Result<void> refresh(WgBackend& wg);

    // The peer's leases (empty when none or no such peer).
    Lease lease(const PublicKey& key) const;
    // Sets the peer's leases; false, and nothing changed, when there is no
    // such peer or it does not hold an address as a host entry.
    bool set_lease(const PublicKey& key, const Lease& lease);
    // The same by position (index_of; kNoPeer: no such peer), for callers
    // that ask several things of one peer: a lookup is a binary search.
    static constexpr std::uint32_t kNoPeer = 0xffffffffu;
    std::uint32_t index_of(const PublicKey& key) const;
    const Peer& peer_at(std::uint32_t i) const { return peers_[i]; }
    Lease lease_at(std::uint32_t i) const;
    bool set_lease_at(std::uint32_t i, const Lease& lease);
    std::size_t lease_count() const; // peers with a lease (a scan)

    const Peers& peers() const { return peers_; } // sorted by key
    const Peer* find(const PublicKey& key) const; // nullptr: no such peer
    // True when a peer other than `key` has an allowed IP covering a (adding
    // a to `key` would take it away from that peer in WireGuard).
    bool held_by_other(const Ip4& a, const PublicKey& key) const;
    bool held_by_other(const Ip6& a, const PublicKey& key) const;
    // Records a change WireGuard accepted; false when the peer is unknown
    // (the view is then no longer a faithful copy). An address added is
    // taken from the peer that held it, as WireGuard does. A lease goes
    // with its address: one the change removes or takes away is no longer
    // marked.
    bool record(const PeerChange& change);

    // What the index costs (slots of both families), for the benchmarks.
    std::size_t index_bytes() const { return hosts4_.memory_bytes() + hosts6_.memory_bytes(); }

  private:
    // A nibble of Peer::lease: 0 nothing leased; 1..kInPeer the lease is
    // the host entry at that position minus one; kElsewhere in far_.
    static constexpr std::uint8_t kInPeer = 14;
    static constexpr std::uint8_t kElsewhere = 15;
    class Refresh;

    std::uint32_t position(const PublicKey& key) const { return index_of(key); }
    // Marks lease on peers_[i] where its lists hold it as a host entry. An
    // address they do not hold is dropped, or kept in far_ when
    // keep_missing (during a read, until its end says whether it stays).
    void mark_lease(std::uint32_t i, const Lease& lease, bool keep_missing);
    // Removes a from the peer that holds it as a host entry, if another
    // than peer (as WireGuard moves it); says whether peer still has to be
    // indexed under a.
    template <class Ip>
    bool take_over(HostIndex<Ip>& hosts, const Ip& a, std::uint32_t peer);
    void rewide(); // wide4_ and wide6_ from the peers
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
    // Leases a nibble cannot mark: at a position past kInPeer, or during a
    // read not (yet) on their peer. Few.
    std::map<PublicKey, Lease> far_;
};

} // namespace wgd::netd
