// Order validation: the security boundary between leased (untrusted, may be
// compromised) and the kernel. Pure: checks orders against netd's copy of the
// device, the pools, the server's own addresses and the set of addresses
// wg-dynamic leased. Each change of an order is judged on its own: a change
// that breaks a rule is refused whole (nothing of it applied) and never fails
// the other changes of its order.
#pragma once

#include "common/result.hpp"
#include "netd/device_view.hpp"
#include "netd/rtnl.hpp"
#include "netd/wireguard.hpp"

#include <cstddef>
#include <map>
#include <optional>
#include <set>
#include <vector>

namespace wgd::netd {

// The order names the configured interface (ENODEV otherwise).
Result<void> validate_interface(int configured_ifindex, int order_ifindex);

// An address order (client side): the configured interface, a /32 or /128
// global unicast address.
Result<void> validate_address_order(int configured_ifindex, int order_ifindex,
                                    const Prefix& prefix);

// What an order may reach on the server's IFACE: the pools (prefixes routed
// over it) and the server's own addresses there, which are never granted.
struct Scope {
    Pools pools;
    std::vector<Ip4> own4;
    std::vector<Ip6> own6;
};

// True when `a` may be given to a peer: inside a pool, not the zero host of a
// pool prefix holding it, not the broadcast of an IPv4 pool prefix shorter
// than /31 holding it, not an address no host can have (is_leasable), not
// one of the server's own. Otherwise the rule broken, for the log.
Result<void> grantable(const Scope& scope, const Ip4& a);
Result<void> grantable(const Scope& scope, const Ip6& a);

// The allowed IPs that wg-dynamic leased on IFACE, by peer: at most one /32
// and one /128 each. netd removes nothing outside this set; every other
// allowed IP on the device (link-local identities, static reservations,
// wider prefixes) is the operator's.
//
// Besides the leases, the set holds addresses claimed at start for their
// removal only: leases of the file whose route went while the server was
// stopped, so that they are outside every pool, where nothing is granted or
// restored, yet still on their peer. An order may remove such an address
// from its peer and do nothing else with it.
//
// The leases are kept in the view (DeviceView::lease), which a read
// refreshes; the set adds the rules and the addresses for removal only.
class LeasedSet {
  public:
    using Entry = DeviceView::Lease;
    explicit LeasedSet(DeviceView& view) : view_(view) {}

    Entry find(const PublicKey& key) const { return view_.lease(key); } // empty: nothing leased
    // Claimed for its removal only (nullptr: nothing of this peer).
    const Entry* find_removal_only(const PublicKey& key) const;
    bool holds(const PublicKey& key, const Ip4& a) const;
    bool holds(const PublicKey& key, const Ip6& a) const;
    bool removal_only(const PublicKey& key, const Ip4& a) const;
    bool removal_only(const PublicKey& key, const Ip6& a) const;
    std::size_t size() const { return view_.lease_count(); } // peers with a lease (a scan)

    // The addresses of a claim taken for their removal only (for the log).
    struct Claimed {
        std::optional<Ip4> removal_only4;
        std::optional<Ip6> removal_only6;
    };
    // A lease leased restored from its file, at start, before leased's
    // first order (netd's permission table admits claims only then, and
    // close_claims() ends them here too). Each address must be exactly a /32
    // or /128 that the device shows on that peer, and the peer must have no
    // address of that family in the set yet (leased or for removal only).
    // Then an address inside a pool is taken as the peer's lease when it is
    // grantable; an address outside every pool is taken for its removal only
    // when a host can have it and it is not one of the server's own. Anything
    // else is refused (the rule in the error) and changes nothing.
    Result<Claimed> claim(const Scope& scope, const PublicKey& key, const std::optional<Ip4>& ipv4,
                          const std::optional<Ip6>& ipv6);
    // From leased's first order on, every claim is refused.
    void close_claims() { claims_closed_ = true; }
    // A change WireGuard applied (as returned by OrderCheck::check).
    void record(const PeerChange& applied);
    // After a device read: an address for removal only that the device no
    // longer shows on its peer (peer removed, address gone or moved by the
    // operator) leaves the set. The view's refresh does the same for leases.
    void prune();

  private:
    DeviceView& view_;
    std::map<PublicKey, Entry> removal_only_; // few: claimed at start only
    bool claims_closed_ = false;
};

// The changes of one ApplyAllowedIps, judged one by one in order. A change
// refused (EINVAL, ENOENT, EEXIST, EPERM, EDQUOT) when it: names a peer not
// on the device (peers are never created) or a peer an earlier change of the
// order named; adds and removes the same address; adds an address that is
// not grantable, lies inside an allowed IP of another peer (WireGuard would
// move it), or that an earlier accepted change of the order adds; removes an
// address the peer holds that is not in the leased set (as its lease or for
// its removal only); would leave the peer with more than one leased /32 or
// /128 (an address held for removal only is no lease and never counts). An
// accepted change comes back as the change to apply: removals of addresses
// the peer does not hold, and adds of an address the peer already holds as a
// static entry, are dropped (no-ops, and a static entry never enters the
// leased set).
class OrderCheck {
  public:
    OrderCheck(const DeviceView& view, const Scope& scope, const LeasedSet& leased)
        : view_(view), scope_(scope), leased_(leased) {}
    Result<PeerChange> check(const PeerChange& change);

  private:
    template <class Ip>
    Result<void> check_family(const PublicKey& key, const Peer& peer, const std::vector<Ip>& adds,
                              const std::vector<Ip>& removes, std::vector<Ip>& apply_adds,
                              std::vector<Ip>& apply_removes, const std::optional<Ip>& leased,
                              const std::optional<Ip>& removal_only,
                              std::set<Ip>& added_in_order) const;

    const DeviceView& view_;
    const Scope& scope_;
    const LeasedSet& leased_;
    std::set<PublicKey> seen_;
    std::set<Ip4> added4_;
    std::set<Ip6> added6_;
};

// The client's netd: it removes only addresses it added itself, and never
// touches an address that was on IFACE before it started (an add of one is a
// no-op, a removal is refused). At most kMaxPerFamily added addresses of a
// family at a time: the lease held and its replacement, added before the old
// one is removed.
class ClientAddresses {
  public:
    static constexpr std::size_t kMaxPerFamily = 2;
    explicit ClientAddresses(std::vector<Prefix> at_start) : at_start_(std::move(at_start)) {}

    enum class Action { apply, nothing };
    // For a valid /32 or /128 global order (validate_address_order first).
    Result<Action> check(bool add, const Prefix& prefix) const;
    // The order was applied.
    void record(bool add, const Prefix& prefix);

  private:
    std::vector<Prefix> at_start_;
    std::vector<Prefix> added_;
};

} // namespace wgd::netd
