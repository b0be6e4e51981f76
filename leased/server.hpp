// The server's lease table and its decisions (SPEC "Address allocation").
//
// Pure logic: netd's facts come in (peers and their allowed IPs, routed
// prefixes, own addresses), decisions go out as allowed-IP changes and lease
// records; the caller does the I/O. Decisions are two-phase, because an
// answer may be sent only after netd changed the allowed IPs and the lease
// file is synced:
//
//   plan = server.plan(peer, want)     addresses are held (no other plan gets them)
//   netd applies plan.changes          on failure: server.abort(plan), then undo
//   lease file: append(plan.record), sync   on failure: abort + netd applies the undo
//   server.commit(plan)                the plan becomes the lease; answer
//
// A peer has at most one plan pending; its lease does not expire meanwhile.
//
// Renewals that change nothing write nothing (lease caching, as Kea does it):
// a plan that keeps a peer's leases as they are, while more than half of the
// configured leasetime is left on them, is `unchanged`. It is answered at
// once with what the lease file already holds: leasestart now and leasetime
// the time left, so leasestart + leasetime is the stored expiry, and a client
// counting from the answer (this project's, or the prototype's, which keeps
// its own clock when leasestart is far from it) renews before that expiry.
// Such a plan is not pending: nothing is applied, written or committed.
//
// Each peer has a budget of address changes (leased/budget.hpp). A plan
// that would change the peer's addresses beyond it is `unchanged` too, and
// `over_budget`: it answers each family asked for with what the peer holds
// (its lease, with the time left on it, or its reservation) and errno 3 for
// a family it would have had to get a fresh address for; an address of a
// family not asked for stays leased until it expires or the budget allows
// its release.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <unordered_map>
#include <vector>

#include "common/addr.hpp"
#include "common/peer.hpp"
#include "leased/budget.hpp"
#include "leased/clock.hpp"
#include "leased/lease_record.hpp"
#include "leased/pool.hpp"
#include "leased/random.hpp"
#include "leased/server_index.hpp"

namespace wgd::leased {

// What a request asks for, per family.
struct Want {
    enum class Kind : std::uint8_t { NotNamed, Any, Specific };
    Kind v4 = Kind::NotNamed;
    Ip4 ipv4{}; // for Specific
    Kind v6 = Kind::NotNamed;
    Ip6 ipv6{};
    // The request named no address at all: Any for each family with a pool.
    bool no_address_key = false;
};

enum : int { kErrnoSuccess = 0, kErrnoUnavailable = 3 };

struct Plan {
    std::uint64_t id = 0;
    PublicKey peer;
    // The response.
    std::optional<Ip4> ipv4;
    std::optional<Ip6> ipv6;
    std::int64_t leasestart = 0;
    std::uint32_t leasetime = 0;
    int error = kErrnoSuccess; // kErrnoUnavailable: a family asked for was not granted
    // To do before answering, in this order. Adds never touch static allowed
    // IPs (a reservation is already there); removals are only our leases.
    PeerChange changes;
    LeaseRecord record; // the peer's lease state once committed
    // Nothing to apply or write: answer at once, do not commit or abort.
    bool unchanged = false;
    // Unchanged because the peer's budget of changes is spent; the verdict
    // tells the first such answer since its last change from the others.
    ChangeBudget::Verdict budget = ChangeBudget::Verdict::spent;
    bool over_budget() const { return budget != ChangeBudget::Verdict::spent; }
};

// Leases taken away without a request (expiry, prefix removal, peer
// removal, restore): the allowed-IP removals (or adds, for restore) and the
// records to append.
struct LeaseEvents {
    std::vector<PeerChange> changes;
    std::vector<LeaseRecord> records;
    // The leases that ended, as they were (expiry, prefix removal, peer
    // removal, an address moved to another peer, revocation): the audit
    // trail's addresses.
    std::vector<LeaseRecord> ended;
};

// One peer of the live table, for `show`.
struct PeerView {
    PublicKey key;
    std::optional<Ip6> link_local;
    std::optional<LeaseRecord> lease; // nullopt: holds no dynamic lease
    std::vector<Prefix4> statics4;    // static allowed IPs (reservations among them)
    std::vector<Prefix6> statics6;
};

class LeaseServer {
  public:
    LeaseServer(RandomSource& rng, Clock& clock, std::uint32_t leasetime_seconds,
                ChangeRate change_rate = kChangeBudget);

    // Facts from netd: the full view each time, in pieces as netd sends it
    // (begin_peers, add_peers per chunk, end_peers), so that the whole view
    // is never held at once. Peers not in the view lose their leases (records
    // only: their allowed IPs are gone). Nothing else may be called between
    // begin_peers and end_peers.
    void begin_peers();
    void add_peers(std::span<const PeerFacts> peers);
    LeaseEvents end_peers();
    // The leased addresses of a peer in the view that its allowed IPs lack
    // (wireguard-go restarted, an operator's `wg set`): the adds that put
    // them back. Empty when nothing is missing or the peer is unknown.
    PeerChange missing_leases(const PeerFacts& facts) const;
    // Keeps in `changes` only the adds of addresses that are still its
    // peer's leases; false when none is left.
    bool keep_leased(PeerChange& changes) const;
    void set_own_addresses(const std::vector<Ip4>& own4, const std::vector<Ip6>& own6);
    void add_prefix(const Prefix4& p);
    void add_prefix(const Prefix6& p);
    LeaseEvents remove_prefix(const Prefix4& p); // revokes the leases it leaves outside every pool
    LeaseEvents remove_prefix(const Prefix6& p);
    std::optional<PublicKey> lookup_peer(const Ip6& link_local) const;
    // The peer whose dynamic lease this address is.
    std::optional<PublicKey> lease_holder(const Ip4& a) const;
    std::optional<PublicKey> lease_holder(const Ip6& a) const;
    // The peer's current lease (nullopt: none, or an unknown peer) and its identity.
    std::optional<LeaseRecord> current_lease(const PublicKey& peer) const;
    std::optional<Ip6> link_local_of(const PublicKey& peer) const;
    bool plan_pending(const PublicKey& peer) const;
    // Ends the peer's lease now: its addresses leave its allowed IPs and go
    // back to the pool (changes), the release record is to be written.
    // nullopt: unknown peer, no lease, or a plan of it is pending.
    std::optional<LeaseEvents> revoke(const PublicKey& peer);
    // Every peer, for `show`.
    std::vector<PeerView> view() const;
    // Addresses the pool can lease inside p (leased ones included).
    std::uint64_t pool_size(const Prefix4& p) const { return pool4_.open_in(p); }
    u128 pool_size(const Prefix6& p) const { return pool6_.open_in(p); }

    // nullopt: unknown peer, or a plan of this peer is still pending.
    // An unchanged plan (see above) is not pending.
    std::optional<Plan> plan(const PublicKey& peer, const Want& want);
    bool commit(const Plan& plan); // false when the plan is unknown (aborted, peer gone)
    // Forgets the plan; returns the inverse of plan.changes for netd when
    // some of them were already applied.
    PeerChange abort(const Plan& plan);

    // Boot-clock milliseconds of the next expiry, O(1).
    std::optional<std::uint64_t> next_expiry() const;
    // Leases expired at now_boot_ms, at most max_leases of them per call.
    LeaseEvents expire(std::uint64_t now_boot_ms, std::size_t max_leases = SIZE_MAX);

    // After a restart, once the view (end_peers) and the prefixes are known: the
    // replayed records come back unless expired, of an unknown peer, outside
    // the pools or an allowed IP of another peer. changes are the adds of
    // the leases restored and the removals of those that did not come back
    // but are still in their peer's allowed IPs (never reservations).
    LeaseEvents restore_expected(); // the records expect_restore() kept
    // Before the first view after a start, the records to restore:
    // their addresses in the peers' allowed IPs (WireGuard kept them) are
    // then known as leases to restore, not taken for reservations that
    // restoring would undo one pool mark at a time (at 65,536 peers that
    // churn made a restart take seconds). Addresses not brought back are
    // removed, as without this call. The records are kept, not copied.
    void expect_restore(std::vector<LeaseRecord> records);
    // The same, from the lease file's replay left in the file (ReplayIndex):
    // restored in the order of its slots, not of the keys.
    void expect_restore(std::unique_ptr<ExpectedLeases> expected);
    // After restore_expected(): 0, or the errno of a record it could not
    // read (ExpectedLeases::error()): the restore is then incomplete.
    int restore_error() const { return restore_error_; }
    // One record per peer holding a lease: the live set, for compaction.
    std::vector<LeaseRecord> live_records() const;
    // The same records one by one, copied nowhere.
    void for_each_live_record(const std::function<void(const LeaseRecord&)>& f) const;

    std::size_t lease_count() const { return leases4_.size() + leases6_.size(); }
    std::size_t lease_count4() const { return leases4_.size(); }
    std::size_t lease_count6() const { return leases6_.size(); }
    std::size_t peer_count() const { return peers_.size(); }
    const Pool4& pool4() const { return pool4_; }
    const Pool6& pool6() const { return pool6_; }

  private:
    template <class Ip>
    struct PeerFamily {
        std::optional<Ip> lease;
        bool lease_in_allowed = false;
    };
    // What most peers lack: static allowed IPs, a second link-local. Kept
    // out of line, so that a peer is 88 bytes (a million of them).
    struct PeerExtras {
        std::vector<Prefix4> statics4; // sorted
        std::vector<Prefix6> statics6; // sorted
        std::vector<Ip6> more_link_locals;
        bool empty() const {
            return statics4.empty() && statics6.empty() && more_link_locals.empty();
        }
    };
    struct Peer {
        PeerFamily<Ip4> f4;
        PeerFamily<Ip6> f6;
        Ip6 link_local{}; // its identity; :: (not a link-local address) when it has none
        std::unique_ptr<PeerExtras> extras;
        std::int64_t start_wall = 0;
        std::int64_t expiry_wall = 0;
        std::uint64_t expiry_ms = 0;
        std::uint64_t pending = 0; // id of its pending plan
        ChangeBudget budget;
    };
    template <class Ip>
    struct FamilyPlan {
        std::optional<Ip> grant;
        std::optional<Ip> lease_after; // the dynamic lease once committed
        bool fresh = false;            // lease_after was allocated by this plan
        bool asked = false;
    };
    struct Pending {
        PublicKey peer;
        FamilyPlan<Ip4> p4;
        FamilyPlan<Ip6> p6;
        std::int64_t start_wall = 0;
        std::int64_t expiry_wall = 0;
        std::uint64_t expiry_ms = 0;
    };

    struct KeyHash {
        // Public keys are uniformly random curve points: any 8 bytes hash them.
        // noexcept and cheap: the map does not store the hash in each node.
        std::size_t operator()(const PublicKey& k) const noexcept {
            std::size_t h = 0;
            for (int i = 0; i < 8; i++)
                h = (h << 8) | k.bytes[static_cast<std::size_t>(i)];
            return h ^ k.bytes[31];
        }
    };
    // Elements of peers_ stay in place until erased: the lease indexes and
    // the expiry heap point at them.
    using PeerMap = std::unordered_map<PublicKey, Peer, KeyHash>;
    using PeerEntry = PeerMap::value_type;
    template <class Ip>
    struct LeaseOf {
        Ip operator()(const PeerEntry* e) const {
            if constexpr (std::is_same_v<Ip, Ip4>)
                return *e->second.f4.lease;
            else
                return *e->second.f6.lease;
        }
    };
    // Address -> the peer holding it as its lease: 8 bytes a slot.
    template <class Ip>
    using LeaseIndex = RefIndex<Ip, PeerEntry*, LeaseOf<Ip>>;
    struct LinkLocalOf {
        Ip6 operator()(const PeerEntry* e) const { return e->second.link_local; }
    };

    template <class Ip>
    static const std::vector<typename FamilyTraits<Ip>::Prefix>& statics(const Peer& p);
    void add_link_local(PeerEntry& entry, const Ip6& a);
    void forget_link_locals(PeerEntry& entry);

    template <class Ip>
    PeerFamily<Ip>& family(Peer& p);
    template <class Ip>
    AddressPool<Ip>& pool();
    template <class Ip>
    LeaseIndex<Ip>& leases();
    template <class Ip>
    std::multimap<Ip, PublicKey>& static_hosts();

    template <class Ip>
    FamilyPlan<Ip> plan_family(Peer& peer, Want::Kind kind, const Ip& requested,
                               PeerChange& changes);
    template <class Ip>
    void drop_lease(Peer& peer, PeerChange* changes);
    template <class Ip>
    void set_statics(const PublicKey& key, Peer& peer,
                     std::vector<typename FamilyTraits<Ip>::Prefix> fresh);
    template <class Ip>
    LeaseEvents remove_prefix_of(const typename FamilyTraits<Ip>::Prefix& p);
    template <class Ip>
    bool restore_family(PeerEntry& entry, const Ip& a, bool seen_in_allowed, PeerChange& changes);
    void invalidate_plan(std::uint64_t id);
    void index_expiry(PeerEntry& entry);
    void unindex_expiry(const PeerEntry& entry);
    LeaseRecord record_of(const PublicKey& key, const Peer& peer) const;
    template <class Ip>
    std::optional<Ip> held_grant(const Peer& peer, const FamilyPlan<Ip>& fp,
                                 std::uint64_t left_ms) const;

    RandomSource& rng_;
    Clock& clock_;
    std::uint32_t leasetime_;
    ChangeRate change_rate_;
    Pool4 pool4_;
    Pool6 pool6_;
    PeerMap peers_;
    RefIndex<Ip6, PeerEntry*, LinkLocalOf> by_link_local_; // Peer::link_local
    std::map<Ip6, PublicKey> by_more_link_local_;          // PeerExtras::more_link_locals
    LeaseIndex<Ip4> leases4_;
    LeaseIndex<Ip6> leases6_;
    std::multimap<Ip4, PublicKey> static_hosts4_; // static /32 allowed IPs
    std::multimap<Ip6, PublicKey> static_hosts6_;
    std::vector<Ip4> own4_;
    std::vector<Ip6> own6_;
    // Expiry: a binary min-heap with lazy deletion (16 bytes an entry, no
    // node per lease). An entry is live while its peer still holds a lease,
    // has no plan pending and expires at `at`; stale ones are dropped when
    // they reach the top, or all at once when they outnumber the leases.
    // Entries of a peer are purged when the peer is erased.
    struct ExpiryEntry {
        std::uint64_t at;
        PeerEntry* peer;
    };
    bool expiry_live(const ExpiryEntry& e) const;
    void drop_stale_expiry() const;
    mutable std::vector<ExpiryEntry> expiry_;
    std::unordered_map<std::uint64_t, Pending> pending_;
    // expect_restore(): the replayed records, one per peer, and by slot
    // whether the view showed their addresses in the peer's allowed IPs.
    // Freed by restore_expected().
    enum ExpectedSeen : std::uint8_t { seen4 = 1, seen6 = 2 };
    std::unique_ptr<ExpectedLeases> expected_;
    std::vector<std::uint8_t> expected_seen_;
    int restore_error_ = 0;
    void drop_if_unrestored(const LeaseRecord& e, std::uint8_t seen, LeaseEvents& events);
    template <class Ip>
    void drop_unrestored(Peer& peer, const PublicKey& key, const Ip& a, bool seen,
                         PeerChange& changes);
    void restore_one(const LeaseRecord& r, std::uint8_t& seen, std::int64_t now_wall,
                     std::uint64_t now_boot, LeaseEvents& events);
    // begin_peers() .. end_peers(): the peers the view showed so far.
    std::vector<const PeerEntry*> seen_in_view_;
    std::uint64_t next_plan_id_ = 1;
};

} // namespace wgd::leased
