#include "leased/server.hpp"

#include <algorithm>
#include <functional>

namespace wgd::leased {

namespace {

template <class Ip>
typename FamilyTraits<Ip>::Prefix host(const Ip& a) {
    return {a, static_cast<std::uint8_t>(FamilyTraits<Ip>::width)};
}

template <class Ip>
void add_change(PeerChange& ch, const Ip& a) {
    if constexpr (std::is_same_v<Ip, Ip4>)
        ch.add4.push_back(a);
    else
        ch.add6.push_back(a);
}

template <class Ip>
void remove_change(PeerChange& ch, const Ip& a) {
    if constexpr (std::is_same_v<Ip, Ip4>)
        ch.remove4.push_back(a);
    else
        ch.remove6.push_back(a);
}

} // namespace

LeaseServer::LeaseServer(RandomSource& rng, Clock& clock, std::uint32_t leasetime_seconds,
                         ChangeRate change_rate)
    : rng_(rng), clock_(clock), leasetime_(leasetime_seconds), change_rate_(change_rate) {}

template <class Ip>
LeaseServer::PeerFamily<Ip>& LeaseServer::family(Peer& p) {
    if constexpr (std::is_same_v<Ip, Ip4>)
        return p.f4;
    else
        return p.f6;
}
template <class Ip>
AddressPool<Ip>& LeaseServer::pool() {
    if constexpr (std::is_same_v<Ip, Ip4>)
        return pool4_;
    else
        return pool6_;
}
template <class Ip>
LeaseServer::LeaseIndex<Ip>& LeaseServer::leases() {
    if constexpr (std::is_same_v<Ip, Ip4>)
        return leases4_;
    else
        return leases6_;
}
template <class Ip>
std::multimap<Ip, PublicKey>& LeaseServer::static_hosts() {
    if constexpr (std::is_same_v<Ip, Ip4>)
        return static_hosts4_;
    else
        return static_hosts6_;
}

namespace {
bool later(const auto& a, const auto& b) {
    return a.at > b.at;
}
} // namespace

bool LeaseServer::expiry_live(const ExpiryEntry& e) const {
    const Peer& peer = e.peer->second;
    return peer.pending == 0 && (peer.f4.lease || peer.f6.lease) && peer.expiry_ms == e.at;
}

void LeaseServer::drop_stale_expiry() const {
    while (!expiry_.empty() && !expiry_live(expiry_.front())) {
        std::pop_heap(expiry_.begin(), expiry_.end(), later<ExpiryEntry, ExpiryEntry>);
        expiry_.pop_back();
    }
}

void LeaseServer::index_expiry(PeerEntry& entry) {
    const Peer& peer = entry.second;
    if (peer.pending != 0 || !(peer.f4.lease || peer.f6.lease))
        return;
    expiry_.push_back(ExpiryEntry{peer.expiry_ms, &entry});
    std::push_heap(expiry_.begin(), expiry_.end(), later<ExpiryEntry, ExpiryEntry>);
    // Renewals leave stale entries behind: sweep them once they are as many
    // as the live ones (O(n), after at least n/2 pushes). Entries of one peer
    // that are all live (same expiry) are duplicates; expire() skips those.
    if (expiry_.size() > 2 * lease_count() + 1024) {
        std::erase_if(expiry_, [&](const ExpiryEntry& e) { return !expiry_live(e); });
        std::make_heap(expiry_.begin(), expiry_.end(), later<ExpiryEntry, ExpiryEntry>);
    }
}

void LeaseServer::unindex_expiry(const PeerEntry&) {
    // Lazy: the entry goes stale (see expiry_live) and is dropped later.
}

LeaseRecord LeaseServer::record_of(const PublicKey& key, const Peer& peer) const {
    LeaseRecord r{key, peer.f4.lease, peer.f6.lease, 0, 0};
    if (!r.released()) {
        r.start_wall = peer.start_wall;
        r.expiry_wall = peer.expiry_wall;
    }
    return r;
}

template <class Ip>
void LeaseServer::drop_lease(Peer& peer, PeerChange* changes) {
    auto& pf = family<Ip>(peer);
    if (!pf.lease)
        return;
    pool<Ip>().release(*pf.lease);
    leases<Ip>().erase(*pf.lease); // while the index can still read it
    if (changes && pf.lease_in_allowed)
        remove_change(*changes, *pf.lease);
    pf.lease.reset();
    pf.lease_in_allowed = false;
}

template <class Ip>
const std::vector<typename FamilyTraits<Ip>::Prefix>& LeaseServer::statics(const Peer& p) {
    static const std::vector<typename FamilyTraits<Ip>::Prefix> none;
    if (!p.extras)
        return none;
    if constexpr (std::is_same_v<Ip, Ip4>)
        return p.extras->statics4;
    else
        return p.extras->statics6;
}

template <class Ip>
void LeaseServer::set_statics(const PublicKey& key, Peer& peer,
                              std::vector<typename FamilyTraits<Ip>::Prefix> fresh) {
    const auto& old = statics<Ip>(peer);
    std::sort(fresh.begin(), fresh.end());
    if (fresh == old)
        return;
    constexpr unsigned W = FamilyTraits<Ip>::width;
    auto& hosts = static_hosts<Ip>();
    for (auto& s : old) {
        pool<Ip>().unexclude(s);
        if (s.len == W)
            for (auto [it, end] = hosts.equal_range(s.addr); it != end; ++it)
                if (it->second == key) {
                    hosts.erase(it);
                    break;
                }
    }
    for (auto& s : fresh) {
        pool<Ip>().exclude(s);
        if (s.len == W)
            hosts.emplace(s.addr, key);
    }
    if (!peer.extras)
        peer.extras = std::make_unique<PeerExtras>();
    if constexpr (std::is_same_v<Ip, Ip4>)
        peer.extras->statics4 = std::move(fresh);
    else
        peer.extras->statics6 = std::move(fresh);
    if (peer.extras->empty())
        peer.extras.reset();
}

void LeaseServer::add_link_local(PeerEntry& entry, const Ip6& a) {
    Peer& peer = entry.second;
    if (peer.link_local == Ip6{}) {
        peer.link_local = a;
        by_link_local_.assign(&entry);
        return;
    }
    if (!peer.extras)
        peer.extras = std::make_unique<PeerExtras>();
    peer.extras->more_link_locals.push_back(a);
    by_more_link_local_[a] = entry.first;
}

void LeaseServer::forget_link_locals(PeerEntry& entry) {
    Peer& peer = entry.second;
    if (peer.link_local != Ip6{}) {
        by_link_local_.erase(peer.link_local); // while the index can still read it
        peer.link_local = Ip6{};
    }
    if (!peer.extras)
        return;
    for (auto& ll : peer.extras->more_link_locals)
        by_more_link_local_.erase(ll);
    peer.extras->more_link_locals.clear();
    if (peer.extras->empty())
        peer.extras.reset();
}

void LeaseServer::invalidate_plan(std::uint64_t id) {
    auto it = pending_.find(id);
    if (it == pending_.end())
        return;
    if (it->second.p4.fresh)
        pool4_.release(*it->second.p4.lease_after);
    if (it->second.p6.fresh)
        pool6_.release(*it->second.p6.lease_after);
    auto peer = peers_.find(it->second.peer);
    if (peer != peers_.end()) {
        peer->second.pending = 0;
        index_expiry(*peer);
    }
    pending_.erase(it);
}

void LeaseServer::begin_peers() {
    seen_in_view_.clear();
    seen_in_view_.reserve(peers_.size());
}

void LeaseServer::add_peers(std::span<const PeerFacts> facts) {
    for (const auto& f : facts) {
        // Node-based map: the entry stays where it is until end_peers erases.
        PeerEntry& entry = *peers_.try_emplace(f.key).first;
        seen_in_view_.push_back(&entry);
        Peer& peer = entry.second;
        const Pending* pending = nullptr;
        if (peer.pending != 0)
            pending = &pending_.at(peer.pending);
        LeaseRecord expected_record;
        const LeaseRecord* expected = nullptr;
        std::uint8_t* seen = nullptr;
        if (expected_) {
            if (std::size_t i = expected_->find(f.key, expected_record); i < expected_->slots()) {
                expected = &expected_record;
                seen = &expected_seen_[i];
            }
        }

        forget_link_locals(entry);

        // Our own addresses in the facts: the lease, and what a pending plan
        // may already have had netd add.
        auto ours4 = [&](const Prefix4& p) {
            return p.len == 32 &&
                   (p.addr == peer.f4.lease || (pending && p.addr == pending->p4.lease_after));
        };
        auto ours6 = [&](const Prefix6& p) {
            return p.len == 128 &&
                   (p.addr == peer.f6.lease || (pending && p.addr == pending->p6.lease_after));
        };
        std::vector<Prefix4> statics4;
        peer.f4.lease_in_allowed = false;
        for (auto p : f.allowed4) {
            p = p.masked();
            if (ours4(p))
                peer.f4.lease_in_allowed = peer.f4.lease_in_allowed || p.addr == peer.f4.lease;
            else if (expected && p.len == 32 && p.addr == expected->ipv4)
                *seen |= seen4;
            else
                statics4.push_back(p);
        }
        std::vector<Prefix6> statics6;
        peer.f6.lease_in_allowed = false;
        for (auto p : f.allowed6) {
            p = p.masked();
            if (p.len == 128 && p.addr.is_link_local()) {
                add_link_local(entry, p.addr);
            } else if (ours6(p)) {
                peer.f6.lease_in_allowed = peer.f6.lease_in_allowed || p.addr == peer.f6.lease;
            } else if (expected && p.len == 128 && p.addr == expected->ipv6) {
                *seen |= seen6;
            } else {
                statics6.push_back(p);
            }
        }
        set_statics<Ip4>(f.key, peer, std::move(statics4));
        set_statics<Ip6>(f.key, peer, std::move(statics6));
    }
}

LeaseEvents LeaseServer::end_peers() {
    LeaseEvents events;
    // Peers gone from the view: wind each down while every peer is still in
    // place (winding down may push or sweep expiry entries, which read their
    // peers), then purge the expiry entries of all of them, then erase them.
    const std::less<const PeerEntry*> before;
    std::sort(seen_in_view_.begin(), seen_in_view_.end(), before);
    std::vector<PeerEntry*> leaving;
    for (auto& entry : peers_)
        if (!std::binary_search(seen_in_view_.begin(), seen_in_view_.end(), &entry, before))
            leaving.push_back(&entry);
    seen_in_view_ = std::vector<const PeerEntry*>(); // `= {}` would keep the capacity
    for (PeerEntry* entry : leaving) {
        Peer& peer = entry->second;
        invalidate_plan(peer.pending);
        const bool had_lease = peer.f4.lease || peer.f6.lease;
        if (had_lease)
            events.ended.push_back(record_of(entry->first, peer));
        unindex_expiry(*entry);
        drop_lease<Ip4>(peer, nullptr);
        drop_lease<Ip6>(peer, nullptr);
        set_statics<Ip4>(entry->first, peer, {});
        set_statics<Ip6>(entry->first, peer, {});
        forget_link_locals(*entry);
        if (had_lease)
            events.records.push_back(LeaseRecord{entry->first, {}, {}, 0, 0});
    }
    if (!leaving.empty()) {
        std::sort(leaving.begin(), leaving.end(), before);
        std::erase_if(expiry_, [&](const ExpiryEntry& e) {
            return std::binary_search(leaving.begin(), leaving.end(), e.peer, before);
        });
        std::make_heap(expiry_.begin(), expiry_.end(), later<ExpiryEntry, ExpiryEntry>);
        for (PeerEntry* entry : leaving) {
            const PublicKey key = entry->first; // not a reference into the erased node
            peers_.erase(key);
        }
    }

    // A leased address an operator put on another peer: WireGuard moved it,
    // so the lease is gone (static configuration wins).
    auto forget_moved = [&](auto& hosts, auto& lease_map, auto tag) {
        using Ip = decltype(tag);
        for (auto& [addr, owner] : hosts) {
            PeerEntry* holder = lease_map.find(addr);
            if (holder == nullptr || holder->first == owner)
                continue;
            Peer& peer = holder->second;
            LeaseRecord was{holder->first, std::nullopt, std::nullopt, peer.start_wall,
                            peer.expiry_wall};
            if constexpr (std::is_same_v<Ip, Ip4>)
                was.ipv4 = addr;
            else
                was.ipv6 = addr;
            events.ended.push_back(was);
            unindex_expiry(*holder);
            family<Ip>(peer).lease_in_allowed = false;
            drop_lease<Ip>(peer, nullptr);
            index_expiry(*holder);
            events.records.push_back(record_of(holder->first, peer));
        }
    };
    forget_moved(static_hosts4_, leases4_, Ip4{});
    forget_moved(static_hosts6_, leases6_, Ip6{});
    return events;
}

void LeaseServer::set_own_addresses(const std::vector<Ip4>& own4, const std::vector<Ip6>& own6) {
    for (auto& a : own4_)
        pool4_.unexclude(host(a));
    for (auto& a : own6_)
        pool6_.unexclude(host(a));
    own4_ = own4;
    own6_ = own6;
    for (auto& a : own4_)
        pool4_.exclude(host(a));
    for (auto& a : own6_)
        pool6_.exclude(host(a));
}

void LeaseServer::add_prefix(const Prefix4& p) {
    pool4_.add_prefix(p.masked());
}
void LeaseServer::add_prefix(const Prefix6& p) {
    pool6_.add_prefix(p.masked());
}
LeaseEvents LeaseServer::remove_prefix(const Prefix4& p) {
    return remove_prefix_of<Ip4>(p.masked());
}
LeaseEvents LeaseServer::remove_prefix(const Prefix6& p) {
    return remove_prefix_of<Ip6>(p.masked());
}

template <class Ip>
LeaseEvents LeaseServer::remove_prefix_of(const typename FamilyTraits<Ip>::Prefix& p) {
    LeaseEvents events;
    if (!pool<Ip>().remove_prefix(p))
        return events;
    // Plans holding an address that left the pools cannot be committed.
    std::vector<std::uint64_t> stale;
    for (auto& entry : pending_) {
        const Pending& pending = entry.second;
        const FamilyPlan<Ip>* fp;
        if constexpr (std::is_same_v<Ip, Ip4>)
            fp = &pending.p4;
        else
            fp = &pending.p6;
        if (fp->lease_after && !pool<Ip>().in_pool(*fp->lease_after))
            stale.push_back(entry.first);
    }
    for (auto id : stale)
        invalidate_plan(id);

    // The index has no order: one pass over the leases (a prefix removal
    // is rare), then the revocations in address order.
    std::vector<std::pair<Ip, PeerEntry*>> revoked;
    leases<Ip>().for_each([&](PeerEntry* e) {
        const Ip a = *family<Ip>(e->second).lease;
        if (p.contains(a) && !pool<Ip>().in_pool(a))
            revoked.emplace_back(a, e);
    });
    std::sort(revoked.begin(), revoked.end(),
              [](const auto& x, const auto& y) { return x.first < y.first; });
    for (auto& [addr, entry] : revoked) {
        const PublicKey& key = entry->first;
        Peer& peer = entry->second;
        invalidate_plan(peer.pending);
        LeaseRecord was = record_of(key, peer);
        if constexpr (std::is_same_v<Ip, Ip4>)
            was.ipv6.reset();
        else
            was.ipv4.reset();
        events.ended.push_back(was);
        PeerChange changes{key, {}, {}, {}, {}};
        unindex_expiry(*entry);
        drop_lease<Ip>(peer, &changes);
        index_expiry(*entry);
        if (!changes.empty())
            events.changes.push_back(std::move(changes));
        events.records.push_back(record_of(key, peer));
    }
    return events;
}

std::optional<PublicKey> LeaseServer::lookup_peer(const Ip6& link_local) const {
    if (const PeerEntry* e = by_link_local_.find(link_local))
        return e->first;
    auto it = by_more_link_local_.find(link_local);
    if (it == by_more_link_local_.end())
        return std::nullopt;
    return it->second;
}

template <class Ip>
LeaseServer::FamilyPlan<Ip> LeaseServer::plan_family(Peer& peer, Want::Kind kind,
                                                     const Ip& requested, PeerChange& changes) {
    constexpr unsigned W = FamilyTraits<Ip>::width;
    auto& pf = family<Ip>(peer);
    FamilyPlan<Ip> fp;
    if (kind == Want::Kind::NotNamed) {
        if (pf.lease && pf.lease_in_allowed)
            remove_change(changes, *pf.lease);
        return fp;
    }
    fp.asked = true;
    // A reservation: this peer's static host address inside a pool.
    const auto& own_statics = statics<Ip>(peer);
    auto reserved = [&](const Ip& a) {
        return std::binary_search(own_statics.begin(), own_statics.end(), host(a)) &&
               pool<Ip>().in_pool(a);
    };
    std::optional<Ip> reservation;
    for (auto& s : own_statics)
        if (s.len == W && pool<Ip>().in_pool(s.addr)) {
            reservation = s.addr;
            break;
        }

    if (kind == Want::Kind::Specific && pf.lease && requested == *pf.lease) {
        fp.grant = fp.lease_after = pf.lease;
    } else if (kind == Want::Kind::Specific && reserved(requested)) {
        fp.grant = requested;
    } else if (reservation) {
        fp.grant = reservation; // static configuration wins over a dynamic lease
    } else if (pf.lease) {
        fp.grant = fp.lease_after = pf.lease; // stable across reconnects
    } else {
        // "Granted iff it is already this peer's": not even by chance.
        const bool hide = kind == Want::Kind::Specific && pool<Ip>().is_free(requested);
        if (hide)
            pool<Ip>().exclude(host(requested));
        if (auto a = pool<Ip>().allocate(rng_)) {
            fp.grant = fp.lease_after = a;
            fp.fresh = true;
        }
        if (hide)
            pool<Ip>().unexclude(host(requested));
    }

    if (fp.lease_after && (fp.fresh || !pf.lease_in_allowed))
        add_change(changes, *fp.lease_after);
    if (pf.lease && fp.lease_after != pf.lease && pf.lease_in_allowed)
        remove_change(changes, *pf.lease);
    return fp;
}

// An over-budget answer for one family: what the plan granted, unless that
// was a fresh address, or the peer's lease that is not in its allowed IPs
// (putting it back is a change) or ends within the second.
template <class Ip>
std::optional<Ip> LeaseServer::held_grant(const Peer& peer, const FamilyPlan<Ip>& fp,
                                          std::uint64_t left_ms) const {
    const PeerFamily<Ip>& pf = [&]() -> const PeerFamily<Ip>& {
        if constexpr (std::is_same_v<Ip, Ip4>)
            return peer.f4;
        else
            return peer.f6;
    }();
    if (!fp.grant || fp.fresh)
        return std::nullopt;
    if (fp.grant == pf.lease && (!pf.lease_in_allowed || left_ms < 1000))
        return std::nullopt;
    return fp.grant;
}

std::optional<Plan> LeaseServer::plan(const PublicKey& key, const Want& want) {
    auto it = peers_.find(key);
    if (it == peers_.end() || it->second.pending != 0)
        return std::nullopt;
    Peer& peer = it->second;
    Want w = want;
    if (w.no_address_key) {
        w.v4 = pool4_.has_prefixes() ? Want::Kind::Any : Want::Kind::NotNamed;
        w.v6 = pool6_.has_prefixes() ? Want::Kind::Any : Want::Kind::NotNamed;
    }
    Plan plan;
    plan.id = next_plan_id_++;
    plan.peer = key;
    plan.changes.key = key;
    Pending pending;
    pending.peer = key;
    pending.p4 = plan_family<Ip4>(peer, w.v4, w.ipv4, plan.changes);
    pending.p6 = plan_family<Ip6>(peer, w.v6, w.ipv6, plan.changes);

    plan.ipv4 = pending.p4.grant;
    plan.ipv6 = pending.p6.grant;
    // A family without any pool is left out of a grant of the other one
    // (single-stack networks renew without an error); errno 3 is for a pool
    // that could not serve, or for a request that got nothing at all.
    const bool granted = plan.ipv4 || plan.ipv6;
    const bool short4 =
        pending.p4.asked && !pending.p4.grant && (pool4_.has_prefixes() || !granted);
    const bool short6 =
        pending.p6.asked && !pending.p6.grant && (pool6_.has_prefixes() || !granted);
    plan.error = short4 || short6 ? kErrnoUnavailable : kErrnoSuccess;
    plan.leasestart = clock_.wall_seconds();
    plan.leasetime = leasetime_;

    const std::uint64_t now_boot = clock_.boot_ms();
    const bool has_lease = peer.f4.lease || peer.f6.lease;
    const std::uint64_t left_ms = peer.expiry_ms > now_boot ? peer.expiry_ms - now_boot : 0;
    const bool new_addresses =
        pending.p4.lease_after != peer.f4.lease || pending.p6.lease_after != peer.f6.lease;
    if (new_addresses) {
        plan.budget = peer.budget.spend(now_boot / 1000, change_rate_);
        if (plan.over_budget()) {
            // Answered from what the peer holds; what this plan allocated
            // goes back to the pool untouched.
            if (pending.p4.fresh)
                pool4_.release(*pending.p4.lease_after);
            if (pending.p6.fresh)
                pool6_.release(*pending.p6.lease_after);
            plan.ipv4 = held_grant(peer, pending.p4, left_ms);
            plan.ipv6 = held_grant(peer, pending.p6, left_ms);
            const bool held = plan.ipv4 || plan.ipv6;
            const bool refused4 =
                pending.p4.asked && !plan.ipv4 && (pool4_.has_prefixes() || !held);
            const bool refused6 =
                pending.p6.asked && !plan.ipv6 && (pool6_.has_prefixes() || !held);
            plan.error = refused4 || refused6 ? kErrnoUnavailable : kErrnoSuccess;
            // The time left on the stored lease when one is answered, as a
            // cached renewal has it; a reservation alone is not leased.
            const bool lease_answered = (plan.ipv4 && plan.ipv4 == peer.f4.lease) ||
                                        (plan.ipv6 && plan.ipv6 == peer.f6.lease);
            if (lease_answered)
                plan.leasetime =
                    static_cast<std::uint32_t>(std::min<std::uint64_t>(left_ms / 1000, leasetime_));
            plan.unchanged = true;
            plan.record = record_of(key, peer);
            plan.changes = {};
            return plan;
        }
    }

    // Lease caching: the same leases, already in the allowed IPs, with more
    // than half the leasetime left (or no lease at all: nothing to store).
    const bool same = !new_addresses && plan.changes.empty();
    if (same) {
        if (!has_lease || (left_ms > std::uint64_t{leasetime_} * 1000 / 2 && left_ms >= 1000)) {
            plan.unchanged = true;
            if (has_lease) // whole seconds, rounded down: never past the stored expiry
                plan.leasetime =
                    static_cast<std::uint32_t>(std::min<std::uint64_t>(left_ms / 1000, leasetime_));
            plan.record = record_of(key, peer);
            plan.changes = {};
            return plan;
        }
    }
    pending.start_wall = plan.leasestart;
    pending.expiry_wall = plan.leasestart + leasetime_;
    pending.expiry_ms = now_boot + std::uint64_t{leasetime_} * 1000;
    plan.record = LeaseRecord{key, pending.p4.lease_after, pending.p6.lease_after, 0, 0};
    if (!plan.record.released()) {
        plan.record.start_wall = pending.start_wall;
        plan.record.expiry_wall = pending.expiry_wall;
    }

    unindex_expiry(*it); // a peer with a plan pending does not expire
    peer.pending = plan.id;
    pending_.emplace(plan.id, pending);
    return plan;
}

bool LeaseServer::commit(const Plan& plan) {
    auto it = pending_.find(plan.id);
    if (it == pending_.end())
        return false;
    const Pending& pd = it->second;
    PeerEntry& entry = *peers_.find(pd.peer); // end_peers drops the plans of peers it erases
    Peer& peer = entry.second;
    auto apply = [&](auto& pf, const auto& fp, auto& lease_map, auto& family_pool) {
        if (pf.lease && pf.lease != fp.lease_after) {
            family_pool.release(*pf.lease);
            lease_map.erase(*pf.lease);
        }
        if (fp.lease_after) {
            pf.lease = fp.lease_after;
            lease_map.assign(&entry); // indexed under the lease it now reads
            pf.lease_in_allowed = true;
        } else {
            pf.lease.reset();
            pf.lease_in_allowed = false;
        }
    };
    apply(peer.f4, pd.p4, leases4_, pool4_);
    apply(peer.f6, pd.p6, leases6_, pool6_);
    peer.start_wall = pd.start_wall;
    peer.expiry_wall = pd.expiry_wall;
    peer.expiry_ms = pd.expiry_ms;
    peer.pending = 0;
    index_expiry(entry);
    pending_.erase(it);
    return true;
}

PeerChange LeaseServer::abort(const Plan& plan) {
    invalidate_plan(plan.id);
    return plan.changes.inverse();
}

std::optional<std::uint64_t> LeaseServer::next_expiry() const {
    drop_stale_expiry();
    if (expiry_.empty())
        return std::nullopt;
    return expiry_.front().at;
}

LeaseEvents LeaseServer::expire(std::uint64_t now_boot_ms, std::size_t max_leases) {
    LeaseEvents events;
    for (std::size_t n = 0; n < max_leases; n++) {
        drop_stale_expiry();
        if (expiry_.empty() || expiry_.front().at > now_boot_ms)
            break;
        PeerEntry& entry = *expiry_.front().peer;
        std::pop_heap(expiry_.begin(), expiry_.end(), later<ExpiryEntry, ExpiryEntry>);
        expiry_.pop_back();
        const PublicKey& key = entry.first;
        Peer& peer = entry.second;
        events.ended.push_back(record_of(key, peer));
        PeerChange changes{key, {}, {}, {}, {}};
        drop_lease<Ip4>(peer, &changes);
        drop_lease<Ip6>(peer, &changes);
        if (!changes.empty())
            events.changes.push_back(std::move(changes));
        events.records.push_back(record_of(key, peer));
    }
    return events;
}

std::optional<LeaseEvents> LeaseServer::revoke(const PublicKey& key) {
    auto it = peers_.find(key);
    if (it == peers_.end() || it->second.pending != 0)
        return std::nullopt;
    Peer& peer = it->second;
    if (!peer.f4.lease && !peer.f6.lease)
        return std::nullopt;
    LeaseEvents events;
    events.ended.push_back(record_of(key, peer));
    PeerChange changes{key, {}, {}, {}, {}};
    unindex_expiry(*it);
    drop_lease<Ip4>(peer, &changes);
    drop_lease<Ip6>(peer, &changes);
    if (!changes.empty())
        events.changes.push_back(std::move(changes));
    events.records.push_back(record_of(key, peer));
    return events;
}

std::optional<PublicKey> LeaseServer::lease_holder(const Ip4& a) const {
    if (const PeerEntry* e = leases4_.find(a))
        return e->first;
    return std::nullopt;
}

std::optional<PublicKey> LeaseServer::lease_holder(const Ip6& a) const {
    if (const PeerEntry* e = leases6_.find(a))
        return e->first;
    return std::nullopt;
}

std::optional<LeaseRecord> LeaseServer::current_lease(const PublicKey& key) const {
    auto it = peers_.find(key);
    if (it == peers_.end() || (!it->second.f4.lease && !it->second.f6.lease))
        return std::nullopt;
    return record_of(key, it->second);
}

std::optional<Ip6> LeaseServer::link_local_of(const PublicKey& key) const {
    auto it = peers_.find(key);
    if (it == peers_.end() || !it->second.link_local.is_link_local())
        return std::nullopt;
    return it->second.link_local;
}

bool LeaseServer::plan_pending(const PublicKey& key) const {
    auto it = peers_.find(key);
    return it != peers_.end() && it->second.pending != 0;
}

std::vector<PeerView> LeaseServer::view() const {
    std::vector<PeerView> out;
    out.reserve(peers_.size());
    for (const auto& [key, peer] : peers_) {
        PeerView v{key, std::nullopt, std::nullopt, {}, {}};
        if (peer.link_local.is_link_local())
            v.link_local = peer.link_local;
        if (peer.f4.lease || peer.f6.lease)
            v.lease = record_of(key, peer);
        if (peer.extras) {
            v.statics4 = peer.extras->statics4;
            v.statics6 = peer.extras->statics6;
        }
        out.push_back(std::move(v));
    }
    return out;
}

template <class Ip>
bool LeaseServer::restore_family(PeerEntry& entry, const Ip& a, bool seen_in_allowed,
                                 PeerChange& changes) {
    const PublicKey& key = entry.first;
    Peer& peer = entry.second;
    if (!pool<Ip>().in_pool(a))
        return false;
    auto& hosts = static_hosts<Ip>();
    for (auto [it, end] = hosts.equal_range(a); it != end; ++it)
        if (it->second != key)
            return false; // an allowed IP of another peer
    auto& pf = family<Ip>(peer);
    if (seen_in_allowed) { // see expect_restore()
        if (!pool<Ip>().take(a))
            return false;
        pf.lease_in_allowed = true;
        pf.lease = a;
        leases<Ip>().assign(&entry);
        return true;
    }
    auto shown = statics<Ip>(peer);
    auto found = std::find(shown.begin(), shown.end(), host(a));
    if (found != shown.end()) {
        // What the facts showed as static is our restored lease.
        shown.erase(found);
        set_statics<Ip>(key, peer, shown);
        if (!pool<Ip>().take(a)) {
            shown.push_back(host(a));
            set_statics<Ip>(key, peer, shown);
            return false;
        }
        pf.lease_in_allowed = true;
    } else {
        if (!pool<Ip>().take(a))
            return false;
        pf.lease_in_allowed = false;
        add_change(changes, a);
    }
    pf.lease = a;
    leases<Ip>().assign(&entry);
    return true;
}

LeaseEvents LeaseServer::restore_expected() {
    // Grown once to their final size: at 100,000 leases doublings would be
    // leased's peak of memory, next to the records still held.
    LeaseEvents events;
    if (!expected_)
        return events;
    const std::size_t expected = expected_->size();
    leases4_.reserve(leases4_.size() + expected);
    leases6_.reserve(leases6_.size() + expected);
    expiry_.reserve(expiry_.size() + expected);
    const std::int64_t now_wall = clock_.wall_seconds();
    const std::uint64_t now_boot = clock_.boot_ms();
    expected_->for_each([&](std::size_t i, const LeaseRecord& r) {
        restore_one(r, expected_seen_[i], now_wall, now_boot, events);
        drop_if_unrestored(r, expected_seen_[i], events);
    });
    restore_error_ = expected_->error();
    expected_.reset();
    // Freed, not only emptied (`= {}` would keep the capacity).
    expected_seen_ = std::vector<std::uint8_t>();
    return events;
}

void LeaseServer::restore_one(const LeaseRecord& r, std::uint8_t& seen, std::int64_t now_wall,
                              std::uint64_t now_boot, LeaseEvents& events) {
    if (r.released())
        return;
    auto it = peers_.find(r.peer);
    if (it == peers_.end() || r.expiry_wall <= now_wall) {
        events.records.push_back(LeaseRecord{r.peer, {}, {}, 0, 0});
        return;
    }
    if (it->second.pending != 0 || it->second.f4.lease || it->second.f6.lease)
        return; // already live: the table is newer than the file
    Peer& peer = it->second;
    PeerChange changes{r.peer, {}, {}, {}, {}};
    if (r.ipv4) {
        const bool in_allowed = seen & seen4;
        if (restore_family<Ip4>(*it, *r.ipv4, in_allowed, changes) && in_allowed)
            seen &= ~seen4;
    }
    if (r.ipv6) {
        const bool in_allowed = seen & seen6;
        if (restore_family<Ip6>(*it, *r.ipv6, in_allowed, changes) && in_allowed)
            seen &= ~seen6;
    }
    // No record pins an address for longer than a lease granted now would.
    const std::int64_t left = std::min<std::int64_t>(r.expiry_wall - now_wall, leasetime_);
    peer.start_wall = std::min(r.start_wall, now_wall);
    peer.expiry_wall = now_wall + left;
    peer.expiry_ms = now_boot + static_cast<std::uint64_t>(left) * 1000;
    index_expiry(*it);
    if (!changes.empty())
        events.changes.push_back(std::move(changes));
    if (record_of(r.peer, peer) != r)
        events.records.push_back(record_of(r.peer, peer));
}

// A lease of the file that did not come back (it expired while the server
// was stopped, its route is gone, its peer holds another lease) leaves the
// peer's allowed IPs: WireGuard kept it there, not the operator, and left
// there it would turn into a reservation that nobody made. Without
// expect_restore() the view took it for a static allowed IP: it stops being
// one. seen: it was in the peer's allowed IPs when the view came.
template <class Ip>
void LeaseServer::drop_unrestored(Peer& peer, const PublicKey& key, const Ip& a, bool seen,
                                  PeerChange& changes) {
    if (family<Ip>(peer).lease == a)
        return;
    auto shown = statics<Ip>(peer);
    if (auto found = std::find(shown.begin(), shown.end(), host(a)); found != shown.end()) {
        shown.erase(found);
        set_statics<Ip>(key, peer, std::move(shown));
    } else if (!seen) {
        return;
    }
    remove_change(changes, a);
}

void LeaseServer::drop_if_unrestored(const LeaseRecord& e, std::uint8_t seen, LeaseEvents& events) {
    if (e.released())
        return;
    auto it = peers_.find(e.peer);
    if (it == peers_.end() || it->second.pending != 0)
        return;
    PeerChange changes{e.peer, {}, {}, {}, {}};
    if (e.ipv4)
        drop_unrestored<Ip4>(it->second, e.peer, *e.ipv4, seen & seen4, changes);
    if (e.ipv6)
        drop_unrestored<Ip6>(it->second, e.peer, *e.ipv6, seen & seen6, changes);
    if (!changes.empty())
        events.changes.push_back(std::move(changes));
}

namespace {

// expect_restore() from records in memory: sorted by peer, one per peer.
class SortedLeases final : public ExpectedLeases {
  public:
    explicit SortedLeases(std::vector<LeaseRecord> records) : records_(std::move(records)) {}
    std::size_t slots() const override { return records_.size(); }
    std::size_t size() const override { return records_.size(); }
    std::size_t find(const PublicKey& key, LeaseRecord& record) const override {
        auto it =
            std::lower_bound(records_.begin(), records_.end(), key,
                             [](const LeaseRecord& r, const PublicKey& k) { return r.peer < k; });
        if (it == records_.end() || it->peer != key)
            return records_.size();
        record = *it;
        return static_cast<std::size_t>(it - records_.begin());
    }
    void for_each(const std::function<void(std::size_t, const LeaseRecord&)>& f) const override {
        for (std::size_t i = 0; i < records_.size(); i++)
            f(i, records_[i]);
    }

  private:
    std::vector<LeaseRecord> records_;
};

} // namespace

void LeaseServer::expect_restore(std::vector<LeaseRecord> records) {
    std::erase_if(records, [](const LeaseRecord& r) { return r.released(); });
    // One per peer, the last one given (as a replay's last state wins).
    std::stable_sort(records.begin(), records.end(),
                     [](const LeaseRecord& a, const LeaseRecord& b) { return a.peer < b.peer; });
    auto last =
        std::unique(records.rbegin(), records.rend(),
                    [](const LeaseRecord& a, const LeaseRecord& b) { return a.peer == b.peer; });
    records.erase(records.begin(), last.base());
    expect_restore(std::make_unique<SortedLeases>(std::move(records)));
}

void LeaseServer::expect_restore(std::unique_ptr<ExpectedLeases> expected) {
    expected_ = std::move(expected);
    expected_seen_.assign(expected_ ? expected_->slots() : 0, 0);
    restore_error_ = 0;
}

PeerChange LeaseServer::missing_leases(const PeerFacts& facts) const {
    PeerChange c{facts.key, {}, {}, {}, {}};
    auto it = peers_.find(facts.key);
    if (it == peers_.end())
        return c;
    const Peer& peer = it->second;
    if (auto a = peer.f4.lease; a && std::none_of(facts.allowed4.begin(), facts.allowed4.end(),
                                                  [&](const Prefix4& p) { return p == host(*a); }))
        c.add4.push_back(*a);
    if (auto a = peer.f6.lease; a && std::none_of(facts.allowed6.begin(), facts.allowed6.end(),
                                                  [&](const Prefix6& p) { return p == host(*a); }))
        c.add6.push_back(*a);
    return c;
}

bool LeaseServer::keep_leased(PeerChange& changes) const {
    auto not_leased = [&](const auto& index) {
        return [&](const auto& a) {
            const PeerEntry* holder = index.find(a);
            return holder == nullptr || holder->first != changes.key;
        };
    };
    std::erase_if(changes.add4, not_leased(leases4_));
    std::erase_if(changes.add6, not_leased(leases6_));
    return !changes.add4.empty() || !changes.add6.empty();
}

std::vector<LeaseRecord> LeaseServer::live_records() const {
    // Counted first: the snapshot is held through a whole compaction, and
    // grown by doubling it would take up to twice its size, three times
    // while it grows.
    std::size_t count = 0;
    for (auto& [key, peer] : peers_)
        count += peer.f4.lease || peer.f6.lease;
    std::vector<LeaseRecord> out;
    out.reserve(count);
    for_each_live_record([&](const LeaseRecord& r) { out.push_back(r); });
    return out;
}

void LeaseServer::for_each_live_record(const std::function<void(const LeaseRecord&)>& f) const {
    for (auto& [key, peer] : peers_)
        if (peer.f4.lease || peer.f6.lease)
            f(record_of(key, peer));
}

} // namespace wgd::leased
