#include "netd/validate.hpp"

#include <algorithm>
#include <cerrno>
#include <type_traits>

namespace wgd::netd {
namespace {

std::string peer_name(const PublicKey& key) {
    return "peer " + to_base64(key);
}

const std::vector<Prefix4>& pools_of(const Scope& s, const Ip4&) {
    return s.pools.v4;
}
const std::vector<Prefix6>& pools_of(const Scope& s, const Ip6&) {
    return s.pools.v6;
}
const std::vector<Ip4>& own_of(const Scope& s, const Ip4&) {
    return s.own4;
}
const std::vector<Ip6>& own_of(const Scope& s, const Ip6&) {
    return s.own6;
}

bool is_broadcast(const Prefix4& p, const Ip4& a) {
    if (p.len >= 31)
        return false;
    std::uint32_t host_mask = p.len == 0 ? 0xffffffffu : (1u << (32 - p.len)) - 1;
    return (a.to_u32() & host_mask) == host_mask;
}
bool is_broadcast(const Prefix6&, const Ip6&) {
    return false;
}

template <class Ip>
Result<void> grantable_impl(const Scope& scope, const Ip& a) {
    if (!is_leasable(a))
        return make_error(EINVAL, to_string(a) + " is an address no host can have");
    bool inside = false;
    for (const auto& p : pools_of(scope, a)) {
        if (!p.contains(a))
            continue;
        inside = true;
        if (p.masked().addr == a)
            return make_error(EINVAL, to_string(a) + " is the zero host of pool " + to_string(p));
        if (is_broadcast(p, a))
            return make_error(EINVAL,
                              to_string(a) + " is the broadcast address of pool " + to_string(p));
    }
    if (!inside)
        return make_error(EINVAL, to_string(a) + " is outside every pool");
    const auto& own = own_of(scope, a);
    if (std::find(own.begin(), own.end(), a) != own.end())
        return make_error(EINVAL, to_string(a) + " is an address of the server itself");
    return {};
}

template <class Ip>
bool inside_a_pool(const Scope& scope, const Ip& a) {
    const auto& pools = pools_of(scope, a);
    return std::any_of(pools.begin(), pools.end(), [&](const auto& p) { return p.contains(a); });
}

bool peer_holds(const Peer& peer, const Ip4& a) {
    return std::any_of(peer.allowed4.begin(), peer.allowed4.end(),
                       [&](const Prefix4& p) { return p.len == 32 && p.addr == a; });
}
bool peer_holds(const Peer& peer, const Ip6& a) {
    return std::any_of(peer.allowed6.begin(), peer.allowed6.end(),
                       [&](const Prefix6& p) { return p.len == 128 && p.addr == a; });
}

const char* family_name(const Ip4&) {
    return "/32";
}
const char* family_name(const Ip6&) {
    return "/128";
}

} // namespace

Result<void> validate_interface(int configured_ifindex, int order_ifindex) {
    if (configured_ifindex <= 0 || order_ifindex != configured_ifindex)
        return make_error(ENODEV, "refused: order for interface index " +
                                      std::to_string(order_ifindex) + ", not the configured " +
                                      std::to_string(configured_ifindex));
    return {};
}

Result<void> validate_address_order(int configured_ifindex, int order_ifindex,
                                    const Prefix& prefix) {
    if (auto r = validate_interface(configured_ifindex, order_ifindex); !r)
        return r;
    return check_address_order(prefix);
}

Result<void> grantable(const Scope& scope, const Ip4& a) {
    return grantable_impl(scope, a);
}
Result<void> grantable(const Scope& scope, const Ip6& a) {
    return grantable_impl(scope, a);
}

// ---- LeasedSet

const LeasedSet::Entry* LeasedSet::find_removal_only(const PublicKey& key) const {
    auto it = removal_only_.find(key);
    return it == removal_only_.end() ? nullptr : &it->second;
}

bool LeasedSet::holds(const PublicKey& key, const Ip4& a) const {
    return find(key).ipv4 == a;
}

bool LeasedSet::holds(const PublicKey& key, const Ip6& a) const {
    return find(key).ipv6 == a;
}

bool LeasedSet::removal_only(const PublicKey& key, const Ip4& a) const {
    const Entry* e = find_removal_only(key);
    return e && e->ipv4 == a;
}

bool LeasedSet::removal_only(const PublicKey& key, const Ip6& a) const {
    const Entry* e = find_removal_only(key);
    return e && e->ipv6 == a;
}

Result<LeasedSet::Claimed> LeasedSet::claim(const Scope& scope, const PublicKey& key,
                                            const std::optional<Ip4>& ipv4,
                                            const std::optional<Ip6>& ipv6) {
    if (claims_closed_)
        return make_error(EPERM,
                          "claim for " + peer_name(key) +
                              " after leased's first order (claims are taken at start only)");
    const std::uint32_t at = view_.index_of(key);
    if (at == DeviceView::kNoPeer)
        return make_error(ENOENT, "claim for " + peer_name(key) + ", which is not on the device");
    const Peer* peer = &view_.peer_at(at);
    const Entry had = view_.lease_at(at);
    const Entry* had_removal = find_removal_only(key);
    // The verdict on one address: taken as the lease (false) or for its
    // removal only (true).
    auto check = [&](const auto& a, bool already) -> Result<bool> {
        const std::string what = "claim of " + to_string(a) + " for " + peer_name(key);
        if (already)
            return make_error(EDQUOT, what + ", which has a leased " + family_name(a) + " already");
        if (!peer_holds(*peer, a))
            return make_error(ENOENT, what + ", which does not hold it");
        if (inside_a_pool(scope, a)) {
            if (auto g = grantable(scope, a); !g)
                return make_error(EINVAL, "claim for " + peer_name(key) + ": " + g.error().message);
            return false;
        }
        // Outside every pool: the lease's route went while the server was
        // stopped. Only its removal is ever accepted; never a link-local
        // identity or another address no host can have, never the server's.
        if (!is_leasable(a))
            return make_error(EINVAL, what + ": an address no host can have");
        const auto& own = own_of(scope, a);
        if (std::find(own.begin(), own.end(), a) != own.end())
            return make_error(EINVAL, what + ": an address of the server itself");
        return true;
    };
    Result<bool> v4 = false, v6 = false;
    if (ipv4) {
        v4 = check(*ipv4, had.ipv4 || (had_removal && had_removal->ipv4));
        if (!v4)
            return v4.error();
    }
    if (ipv6) {
        v6 = check(*ipv6, had.ipv6 || (had_removal && had_removal->ipv6));
        if (!v6)
            return v6.error();
    }
    Claimed claimed;
    Entry lease = had;
    if (ipv4)
        (*v4 ? removal_only_[key].ipv4 : lease.ipv4) = ipv4;
    if (ipv6)
        (*v6 ? removal_only_[key].ipv6 : lease.ipv6) = ipv6;
    view_.set_lease_at(at, lease); // the peer holds both: checked above
    if (ipv4 && *v4)
        claimed.removal_only4 = ipv4;
    if (ipv6 && *v6)
        claimed.removal_only6 = ipv6;
    return claimed;
}

void LeasedSet::record(const PeerChange& applied) {
    if (auto r = removal_only_.find(applied.key); r != removal_only_.end()) {
        for (const Ip4& a : applied.remove4)
            if (r->second.ipv4 == a)
                r->second.ipv4.reset();
        for (const Ip6& a : applied.remove6)
            if (r->second.ipv6 == a)
                r->second.ipv6.reset();
        if (!r->second.ipv4 && !r->second.ipv6)
            removal_only_.erase(r);
    }
    const std::uint32_t at = view_.index_of(applied.key);
    Entry e = at == DeviceView::kNoPeer ? Entry{} : view_.lease_at(at);
    for (const Ip4& a : applied.remove4)
        if (e.ipv4 == a)
            e.ipv4.reset();
    for (const Ip6& a : applied.remove6)
        if (e.ipv6 == a)
            e.ipv6.reset();
    if (!applied.add4.empty())
        e.ipv4 = applied.add4.back();
    if (!applied.add6.empty())
        e.ipv6 = applied.add6.back();
    // False only when the view did not take the change (then no longer
    // trusted, and read again before the next order).
    (void)view_.set_lease_at(at, e);
}

void LeasedSet::prune() {
    for (auto it = removal_only_.begin(); it != removal_only_.end();) {
        Entry& e = it->second;
        const Peer* peer = view_.find(it->first);
        if (e.ipv4 && !(peer && peer_holds(*peer, *e.ipv4)))
            e.ipv4.reset();
        if (e.ipv6 && !(peer && peer_holds(*peer, *e.ipv6)))
            e.ipv6.reset();
        it = e.empty() ? removal_only_.erase(it) : std::next(it);
    }
}

// ---- OrderCheck

template <class Ip>
Result<void> OrderCheck::check_family(const PublicKey& key, const Peer& peer,
                                      const std::vector<Ip>& adds, const std::vector<Ip>& removes,
                                      std::vector<Ip>& apply_adds, std::vector<Ip>& apply_removes,
                                      const std::optional<Ip>& leased,
                                      const std::optional<Ip>& removal_only,
                                      std::set<Ip>& added_in_order) const {
    const std::string who = peer_name(key);
    bool leased_removed = false;
    for (const Ip& a : removes) {
        if (std::find(adds.begin(), adds.end(), a) != adds.end())
            return make_error(EINVAL, who + ": " + to_string(a) + " both added and removed");
        if (leased == a) {
            leased_removed = true;
            apply_removes.push_back(a);
        } else if (removal_only == a) {
            // Claimed at start outside every pool: this removal is all that
            // is ever accepted of it (an add is judged as any other add).
            if (peer_holds(peer, a))
                apply_removes.push_back(a);
        } else if (peer_holds(peer, a)) {
            return make_error(EPERM, who + ": removing " + to_string(a) +
                                         ", which wg-dynamic did not lease to this peer" +
                                         (is_leasable(a) ? ""
                                                         : " (link-local entries are never "
                                                           "removed)"));
        }
        // Not held at all: nothing to do, and nothing is sent to WireGuard.
    }
    std::size_t new_leases = 0;
    for (const Ip& a : adds) {
        if (auto g = grantable(scope_, a); !g)
            return make_error(EINVAL, who + ": adding " + g.error().message);
        if (view_.held_by_other(a, key))
            return make_error(EEXIST,
                              who + ": " + to_string(a) + " is an allowed IP of another peer");
        if (added_in_order.count(a))
            return make_error(EEXIST, to_string(a) + " added twice in one order");
        if (leased == a)
            continue; // already this peer's lease: nothing to change
        if (peer_holds(peer, a))
            continue; // the peer's static entry: stays the operator's
        new_leases++;
        apply_adds.push_back(a);
    }
    const std::size_t after = (leased && !leased_removed ? 1 : 0) + new_leases;
    if (after > 1)
        return make_error(EDQUOT, who + ": would hold " + std::to_string(after) + " leased " +
                                      family_name(adds.front()) + " addresses (at most one)");
    return {};
}

Result<PeerChange> OrderCheck::check(const PeerChange& change) {
    const std::uint32_t at = view_.index_of(change.key);
    if (at == DeviceView::kNoPeer)
        return make_error(ENOENT, "no " + peer_name(change.key) + " (peers are never created)");
    const Peer* peer = &view_.peer_at(at);
    if (seen_.count(change.key))
        return make_error(EINVAL, peer_name(change.key) + " twice in one order");
    seen_.insert(change.key);
    const LeasedSet::Entry leased = leased_.find(change.key);
    const LeasedSet::Entry* removal = leased_.find_removal_only(change.key);
    PeerChange apply{change.key, {}, {}, {}, {}};
    if (auto r =
            check_family(change.key, *peer, change.add4, change.remove4, apply.add4, apply.remove4,
                         leased.ipv4, removal ? removal->ipv4 : std::nullopt, added4_);
        !r)
        return r.error();
    if (auto r =
            check_family(change.key, *peer, change.add6, change.remove6, apply.add6, apply.remove6,
                         leased.ipv6, removal ? removal->ipv6 : std::nullopt, added6_);
        !r)
        return r.error();
    added4_.insert(change.add4.begin(), change.add4.end());
    added6_.insert(change.add6.begin(), change.add6.end());
    return apply;
}

// ---- ClientAddresses

Result<ClientAddresses::Action> ClientAddresses::check(bool add, const Prefix& prefix) const {
    const std::string text = std::visit([](auto& p) { return to_string(p); }, prefix);
    // By address, whatever its length then: 10.0.0.5/24 there at start
    // makes 10.0.0.5/32 the operator's too.
    const bool was_there = std::any_of(at_start_.begin(), at_start_.end(), [&](const Prefix& p) {
        return p.index() == prefix.index() && std::visit(
                                                  [&](const auto& q) {
                                                      using Q = std::decay_t<decltype(q)>;
                                                      return q.addr == std::get<Q>(prefix).addr;
                                                  },
                                                  p);
    });
    const bool ours = std::find(added_.begin(), added_.end(), prefix) != added_.end();
    if (add) {
        if (ours || was_there)
            return Action::nothing; // on IFACE already; one there at start stays untouched
        const auto same_family = std::count_if(added_.begin(), added_.end(), [&](const Prefix& p) {
            return p.index() == prefix.index();
        });
        if (static_cast<std::size_t>(same_family) >= kMaxPerFamily)
            return make_error(EDQUOT, "adding " + text + " beside " + std::to_string(same_family) +
                                          " added addresses of its family");
        return Action::apply;
    }
    if (ours)
        return Action::apply;
    if (was_there)
        return make_error(EPERM, "removing " + text + ", which was on the interface before " +
                                     "wg-dynamic started");
    return make_error(EPERM, "removing " + text + ", which wg-dynamic did not add");
}

void ClientAddresses::record(bool add, const Prefix& prefix) {
    auto it = std::find(added_.begin(), added_.end(), prefix);
    if (add && it == added_.end())
        added_.push_back(prefix);
    else if (!add && it != added_.end())
        added_.erase(it);
}

} // namespace wgd::netd
