// One test per rule of SPEC "Address allocation", with the deterministic
// random source and a fake clock.
#include "leased/lease_file.hpp"
#include "leased/server.hpp"
#include "tests/leased/server_helpers.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>

#include <limits>

#include <algorithm>
#include <map>
#include <set>

using namespace wgd;
using namespace wgd::leased;
using namespace wgd::leased::fixtures;

namespace {

Prefix4 p4(const char* text, int len) {
    return Prefix4{*parse_ip4(text), static_cast<std::uint8_t>(len)};
}
Prefix6 p6(const char* text, int len) {
    return Prefix6{*parse_ip6(text), static_cast<std::uint8_t>(len)};
}
Ip4 ip4(const char* text) {
    return *parse_ip4(text);
}
Ip6 ip6(const char* text) {
    return *parse_ip6(text);
}

Want ask4(const char* a) {
    Want w;
    w.v4 = Want::Kind::Specific;
    w.ipv4 = ip4(a);
    return w;
}
Want no_key() {
    Want w;
    w.no_address_key = true;
    return w;
}

constexpr std::uint32_t kLeasetime = 3600;
// No budget of changes: these rules are probed with as many grants and
// releases as they need (the budget has its own tests, budget_test.cpp).
constexpr ChangeRate kNoBudget{1, 0};

class ServerTest : public ::testing::Test {
  protected:
    DeterministicRandom rng{42};
    FakeClock clock{1764201600, 1000000};
    LeaseServer server{rng, clock, kLeasetime, kNoBudget};

    void SetUp() override {
        server.add_prefix(p4("10.0.0.0", 24));
        server.add_prefix(p6("2001:db8::", 64));
        server.set_own_addresses({ip4("10.0.0.1")}, {ip6("2001:db8::1"), ip6("fe80::")});
    }
    // plan + commit, as the caller does after netd and the lease file succeeded.
    Plan grant(int n, const Want& w) {
        auto plan = server.plan(key(n), w);
        EXPECT_TRUE(plan);
        if (!plan)
            return {};
        if (!plan->unchanged) { // an unchanged plan is not pending: nothing to commit
            EXPECT_TRUE(server.commit(*plan));
        }
        return *plan;
    }
};

} // namespace

TEST_F(ServerTest, AnyAddressIsDrawnFromThePoolAndAddedToAllowedIps) {
    set_peers(server, {peer(1)});
    auto plan = grant(1, both());
    ASSERT_TRUE(plan.ipv4 && plan.ipv6);
    EXPECT_TRUE(p4("10.0.0.0", 24).contains(*plan.ipv4));
    EXPECT_TRUE(p6("2001:db8::", 64).contains(*plan.ipv6));
    EXPECT_EQ(plan.error, kErrnoSuccess);
    EXPECT_EQ(plan.leasestart, 1764201600);
    EXPECT_EQ(plan.leasetime, kLeasetime);
    EXPECT_EQ(plan.changes.add4, (std::vector<Ip4>{*plan.ipv4}));
    EXPECT_EQ(plan.changes.add6, (std::vector<Ip6>{*plan.ipv6}));
    EXPECT_TRUE(plan.changes.remove4.empty() && plan.changes.remove6.empty());
    EXPECT_EQ(plan.record,
              (LeaseRecord{key(1), plan.ipv4, plan.ipv6, 1764201600, 1764201600 + 3600}));
}

// SPEC "Response": a family for which the server has no pool at all is left
// out of a grant of the other family, errno 0; errno 3 means a pool exists
// and could not serve, or nothing at all could be granted.
TEST_F(ServerTest, FamilyWithoutAnyPoolIsLeftOutOfAGrantWithoutAnError) {
    server.remove_prefix(p6("2001:db8::", 64));
    set_peers(server, {peer(1), peer(2)});
    auto both_named = grant(1, both());
    EXPECT_TRUE(both_named.ipv4);
    EXPECT_FALSE(both_named.ipv6);
    EXPECT_EQ(both_named.error, kErrnoSuccess);
    Want renew = both();
    renew.v4 = Want::Kind::Specific;
    renew.ipv4 = *both_named.ipv4;
    auto renewed = grant(1, renew);
    EXPECT_EQ(renewed.ipv4, both_named.ipv4);
    EXPECT_EQ(renewed.error, kErrnoSuccess) << "every renewal of a single-stack peer";
    Want v6_only;
    v6_only.v6 = Want::Kind::Any;
    auto nothing = server.plan(key(2), v6_only);
    ASSERT_TRUE(nothing);
    EXPECT_FALSE(nothing->ipv4 || nothing->ipv6);
    EXPECT_EQ(nothing->error, kErrnoUnavailable) << "nothing granted at all";
}

TEST_F(ServerTest, ExhaustedPoolOfAFamilyIsStillErrnoThree) {
    server.set_own_addresses({ip4("10.0.0.1")}, {ip6("2001:db8::1"), ip6("fe80::")});
    server.remove_prefix(p6("2001:db8::", 64));
    server.add_prefix(p6("2001:db8:1::", 127)); // ::0 is the zero host, ::1 is free
    set_peers(server, {peer(1), peer(2)});
    auto first = grant(1, both());
    EXPECT_EQ(first.error, kErrnoSuccess);
    auto second = grant(2, both());
    EXPECT_TRUE(second.ipv4);
    EXPECT_FALSE(second.ipv6);
    EXPECT_EQ(second.error, kErrnoUnavailable) << "the IPv6 pool exists and is exhausted";
}

TEST_F(ServerTest, OwnAddressesAreNeverGranted) {
    LeaseServer small(rng, clock, kLeasetime, kNoBudget);
    small.add_prefix(p4("10.0.0.0", 30)); // .1 and .2 usable, .1 is ours
    small.set_own_addresses({ip4("10.0.0.1")}, {});
    std::vector<PeerFacts> peers{peer(1), peer(2)};
    set_peers(small, peers);
    auto a = small.plan(key(1), any4());
    ASSERT_TRUE(a && a->ipv4);
    EXPECT_EQ(*a->ipv4, ip4("10.0.0.2"));
    small.commit(*a);
    auto b = small.plan(key(2), any4());
    EXPECT_FALSE(b->ipv4);
    EXPECT_EQ(b->error, kErrnoUnavailable);
}

TEST_F(ServerTest, RequestedAddressAssignedToThisPeerIsGranted) {
    set_peers(server, {peer(1)});
    auto first = grant(1, any4());
    auto again = grant(1, ask4(to_string(*first.ipv4).c_str()));
    EXPECT_EQ(again.ipv4, first.ipv4);
    EXPECT_TRUE(again.changes.empty()) << "already in allowed IPs";
}

TEST_F(ServerTest, RequestedAddressNotAssignedToThisPeerIsNotGrantedAndARandomOneIs) {
    LeaseServer small(rng, clock, kLeasetime, kNoBudget);
    small.add_prefix(p4("10.0.0.0", 30)); // exactly .1 and .2
    set_peers(small, {peer(1)});
    for (int i = 0; i < 20; i++) { // whatever the draw, never the requested one
        auto plan = small.plan(key(1), ask4("10.0.0.2"));
        ASSERT_TRUE(plan && plan->ipv4);
        EXPECT_EQ(*plan->ipv4, ip4("10.0.0.1"));
        small.abort(*plan);
    }
}

TEST_F(ServerTest, RequestedAddressOfAnotherPeerIsNotGranted) {
    set_peers(server, {peer(1), peer(2)});
    auto other = grant(2, any4());
    auto plan = grant(1, ask4(to_string(*other.ipv4).c_str()));
    ASSERT_TRUE(plan.ipv4);
    EXPECT_NE(*plan.ipv4, *other.ipv4);
}

TEST_F(ServerTest, RestoredLeaseCountsAsAssignedToThePeer) {
    set_peers(server, {peer(1)});
    LeaseRecord saved{key(1), ip4("10.0.0.77"), std::nullopt, 1764201000, 1764201600 + 100};
    auto restored = restore(server, {saved});
    ASSERT_EQ(restored.changes.size(), 1u);
    EXPECT_EQ(restored.changes[0].add4, (std::vector<Ip4>{*parse_ip4("10.0.0.77")}));
    auto plan = grant(1, ask4("10.0.0.77"));
    EXPECT_EQ(plan.ipv4, ip4("10.0.0.77"));
}

TEST_F(ServerTest, AnyForAFamilyAlreadyHeldGivesTheSameAddress) {
    set_peers(server, {peer(1)});
    auto first = grant(1, both());
    for (int i = 0; i < 5; i++) {
        clock.advance_ms(1000);
        auto again = grant(1, both());
        EXPECT_EQ(again.ipv4, first.ipv4);
        EXPECT_EQ(again.ipv6, first.ipv6);
        EXPECT_TRUE(again.changes.empty());
    }
}

TEST_F(ServerTest, NoAddressKeyAsksOneAddressOfEachFamilyWithAPool) {
    LeaseServer only4(rng, clock, kLeasetime);
    only4.add_prefix(p4("10.0.0.0", 24));
    set_peers(only4, {peer(1)});
    auto plan = only4.plan(key(1), no_key());
    ASSERT_TRUE(plan);
    EXPECT_TRUE(plan->ipv4);
    EXPECT_FALSE(plan->ipv6);
    EXPECT_EQ(plan->error, kErrnoSuccess) << "no IPv6 pool: IPv6 was not asked for";

    set_peers(server, {peer(1)});
    auto both_families = grant(1, no_key());
    EXPECT_TRUE(both_families.ipv4 && both_families.ipv6);
}

TEST_F(ServerTest, OnlyOneFamilyNamedReleasesTheOther) {
    set_peers(server, {peer(1)});
    auto first = grant(1, both());
    auto v4only = grant(1, any4());
    EXPECT_EQ(v4only.ipv4, first.ipv4);
    EXPECT_FALSE(v4only.ipv6);
    EXPECT_EQ(v4only.changes.remove6, (std::vector<Ip6>{*first.ipv6}));
    EXPECT_FALSE(v4only.record.ipv6);
    EXPECT_TRUE(server.pool6().is_free(*first.ipv6)) << "back in the pool";
}

TEST_F(ServerTest, FamilyAskedWithNothingAvailableIsPartialWithErrno3) {
    LeaseServer full(rng, clock, kLeasetime, kNoBudget);
    full.add_prefix(p4("10.0.0.0", 30));
    full.add_prefix(p6("2001:db8::", 64));
    set_peers(full, {peer(1), peer(2), peer(3)});
    for (int n : {1, 2}) {
        auto p = full.plan(key(n), any4());
        full.commit(*p);
    }
    auto plan = full.plan(key(3), both());
    ASSERT_TRUE(plan);
    EXPECT_FALSE(plan->ipv4);
    EXPECT_TRUE(plan->ipv6);
    EXPECT_EQ(plan->error, kErrnoUnavailable);
    EXPECT_TRUE(plan->changes.add4.empty());
}

TEST_F(ServerTest, ReservationIsGivenToItsPeerWithoutChangingAllowedIps) {
    set_peers(server, {peer(1, {p4("10.0.0.50", 32)}), peer(2)});
    auto plan = grant(1, any4());
    EXPECT_EQ(plan.ipv4, ip4("10.0.0.50"));
    EXPECT_TRUE(plan.changes.empty());
    EXPECT_FALSE(plan.record.ipv4) << "a reservation is not a lease";
    auto asked = grant(1, ask4("10.0.0.50"));
    EXPECT_EQ(asked.ipv4, ip4("10.0.0.50"));
}

TEST_F(ServerTest, ReservationIsNeverGivenToAnotherPeer) {
    LeaseServer small(rng, clock, kLeasetime, kNoBudget);
    small.add_prefix(p4("10.0.0.0", 30));
    set_peers(small, {peer(1, {p4("10.0.0.2", 32)}), peer(2)});
    auto a = small.plan(key(2), ask4("10.0.0.2"));
    ASSERT_TRUE(a && a->ipv4);
    EXPECT_EQ(*a->ipv4, ip4("10.0.0.1"));
    small.commit(*a);
    auto b = small.plan(key(3), any4());
    EXPECT_FALSE(b) << "unknown peer";
}

TEST_F(ServerTest, ReservationIsNeverRemovedOnExpiry) {
    set_peers(server, {peer(1, {p4("10.0.0.50", 32)})});
    grant(1, both());
    clock.advance_ms(kLeasetime * 1000ull + 1);
    auto expired = server.expire(clock.boot_ms());
    ASSERT_EQ(expired.changes.size(), 1u);
    EXPECT_TRUE(expired.changes[0].remove4.empty());
    EXPECT_EQ(expired.changes[0].remove6.size(), 1u);
    EXPECT_FALSE(server.pool4().is_free(ip4("10.0.0.50")));
}

TEST_F(ServerTest, AnAllowedIpOfAnyOtherPeerIsNeverGranted) {
    // Peer 2 routes a /25 statically and holds a static /32 in the other half.
    set_peers(server, {peer(1), peer(2, {p4("10.0.0.0", 25), p4("10.0.0.200", 32)})});
    for (int i = 0; i < 200; i++) {
        auto plan = server.plan(key(1), any4());
        ASSERT_TRUE(plan && plan->ipv4);
        EXPECT_FALSE(p4("10.0.0.0", 25).contains(*plan->ipv4));
        EXPECT_NE(*plan->ipv4, ip4("10.0.0.200"));
        server.abort(*plan);
    }
    auto asked = grant(1, ask4("10.0.0.200"));
    EXPECT_NE(asked.ipv4, ip4("10.0.0.200"));
}

TEST_F(ServerTest, GrantingNeverTouchesLinkLocalOrStaticAllowedIps) {
    set_peers(server, {peer(1, {p4("192.168.1.0", 24)}, {p6("2001:db8:1::", 48)})});
    auto first = grant(1, both());
    auto release = grant(1, Want{});
    for (const Ip6& a : release.changes.remove6)
        EXPECT_FALSE(a.is_link_local() || p6("2001:db8:1::", 48).contains(a));
    EXPECT_EQ(release.changes.remove4, (std::vector<Ip4>{*first.ipv4}));
    EXPECT_EQ(release.changes.remove6, (std::vector<Ip6>{*first.ipv6}));
    EXPECT_TRUE(release.changes.add4.empty() && release.changes.add6.empty());
}

TEST_F(ServerTest, ExpiredLeaseIsRemovedFromAllowedIpsAndReturnsToThePool) {
    set_peers(server, {peer(1), peer(2)});
    auto a = grant(1, any4());
    clock.advance_ms(10000);
    auto b = grant(2, any4());
    EXPECT_EQ(server.next_expiry(), 1000000u + kLeasetime * 1000ull);
    clock.advance_ms(kLeasetime * 1000ull - 10000);
    EXPECT_TRUE(server.expire(clock.boot_ms() - 1).records.empty());
    auto expired = server.expire(clock.boot_ms());
    ASSERT_EQ(expired.changes.size(), 1u);
    EXPECT_EQ(expired.changes[0].key, key(1));
    EXPECT_EQ(expired.changes[0].remove4, (std::vector<Ip4>{*a.ipv4}));
    EXPECT_TRUE(expired.records[0].released());
    EXPECT_TRUE(server.pool4().is_free(*a.ipv4));
    EXPECT_FALSE(server.pool4().is_free(*b.ipv4));
    EXPECT_EQ(server.next_expiry(), 1000000u + 10000 + kLeasetime * 1000ull);
}

TEST_F(ServerTest, RenewalMovesStartAndExpiry) {
    set_peers(server, {peer(1)});
    grant(1, any4());
    clock.advance_ms(1800 * 1000);
    auto renewed = grant(1, any4());
    EXPECT_EQ(renewed.leasestart, 1764201600 + 1800);
    EXPECT_EQ(server.next_expiry(), 1000000u + (1800 + kLeasetime) * 1000ull);
    clock.advance_ms(kLeasetime * 1000ull - 1);
    EXPECT_TRUE(server.expire(clock.boot_ms()).records.empty());
}

TEST_F(ServerTest, RenewalWithMoreThanHalfLeftRepeatsTheStoredExpiryAndWritesNothing) {
    set_peers(server, {peer(1)});
    auto first = grant(1, both());
    const std::uint64_t expiry = *server.next_expiry();
    clock.advance_ms(100 * 1000 + 999);
    auto renewal = server.plan(key(1), both());
    ASSERT_TRUE(renewal);
    EXPECT_TRUE(renewal->unchanged);
    EXPECT_EQ(renewal->ipv4, first.ipv4);
    EXPECT_EQ(renewal->ipv6, first.ipv6);
    EXPECT_TRUE(renewal->changes.empty());
    // What the peer is told ends where the stored lease ends (whole seconds, down).
    EXPECT_EQ(renewal->leasestart, 1764201600 + 100);
    EXPECT_EQ(renewal->leasetime, kLeasetime - 101);
    EXPECT_EQ(renewal->record, first.record) << "the stored record, unmoved";
    EXPECT_EQ(server.next_expiry(), expiry);
    // Not pending: nothing to commit, and the peer's next request is planned at once.
    EXPECT_FALSE(server.commit(*renewal));
    EXPECT_TRUE(server.plan(key(1), both()).has_value());
    EXPECT_EQ(server.next_expiry(), expiry);
}

TEST_F(ServerTest, RenewalWithHalfOrLessLeftIsWrittenAndMovesTheExpiry) {
    set_peers(server, {peer(1)});
    grant(1, both());
    clock.advance_ms(kLeasetime * 1000ull / 2);
    auto renewal = grant(1, both());
    EXPECT_FALSE(renewal.unchanged);
    EXPECT_EQ(renewal.leasestart, 1764201600 + kLeasetime / 2);
    EXPECT_EQ(renewal.leasetime, kLeasetime);
    EXPECT_EQ(renewal.record.expiry_wall, 1764201600 + kLeasetime / 2 + kLeasetime);
    EXPECT_EQ(server.next_expiry(), clock.boot_ms() + kLeasetime * 1000ull);
}

TEST_F(ServerTest, FamilyChangeIsNeverAnsweredFromTheStoredLease) {
    set_peers(server, {peer(1)});
    grant(1, both());
    clock.advance_ms(1000);
    auto v4_only = grant(1, any4());
    EXPECT_FALSE(v4_only.unchanged);
    EXPECT_EQ(v4_only.changes.remove6.size(), 1u);
    EXPECT_FALSE(v4_only.record.ipv6);
}

TEST_F(ServerTest, RestoredExpiryIsClampedToNowPlusTheLeasetime) {
    set_peers(server, {peer(1)});
    LeaseRecord far{key(1), ip4("10.0.0.77"), std::nullopt, 1764201600,
                    std::numeric_limits<std::int64_t>::max()};
    auto events = restore(server, {far});
    EXPECT_EQ(server.lease_count(), 1u);
    EXPECT_EQ(server.next_expiry(), clock.boot_ms() + kLeasetime * 1000ull);
    ASSERT_EQ(events.records.size(), 1u) << "the clamped lease is written back";
    EXPECT_EQ(events.records[0].expiry_wall, 1764201600 + kLeasetime);
    clock.advance_ms(kLeasetime * 1000ull);
    EXPECT_EQ(server.expire(clock.boot_ms()).records.size(), 1u);
}

TEST_F(ServerTest, ExpiryComesInBatches) {
    std::vector<PeerFacts> peers;
    for (int n = 1; n <= 10; n++)
        peers.push_back(peer(n));
    set_peers(server, peers);
    for (int n = 1; n <= 10; n++)
        grant(n, any4());
    clock.advance_ms(kLeasetime * 1000ull);
    EXPECT_EQ(server.expire(clock.boot_ms(), 4).records.size(), 4u);
    EXPECT_EQ(server.expire(clock.boot_ms(), 4).records.size(), 4u);
    EXPECT_EQ(server.expire(clock.boot_ms(), 4).records.size(), 2u);
    EXPECT_FALSE(server.next_expiry());
    EXPECT_EQ(server.lease_count(), 0u);
}

TEST_F(ServerTest, RemovedRouteRevokesTheLeasesInsideIt) {
    server.remove_prefix(p4("10.0.0.0", 24));
    server.add_prefix(p4("10.9.0.0", 24));
    set_peers(server, {peer(1)});
    auto a = grant(1, both());
    ASSERT_TRUE(p4("10.9.0.0", 24).contains(*a.ipv4));
    server.remove_prefix(p4("10.9.0.0", 24));
    // Peer 1's IPv4 lease is revoked; its IPv6 lease stays.
    auto live = server.live_records();
    ASSERT_EQ(live.size(), 1u);
    EXPECT_FALSE(live[0].ipv4);
    EXPECT_EQ(live[0].ipv6, a.ipv6);
}

TEST_F(ServerTest, RemovedRouteReturnsTheAllowedIpRemovals) {
    set_peers(server, {peer(1)});
    server.add_prefix(p4("10.0.0.0", 25)); // overlaps: removing it keeps the /24 leases
    auto a = grant(1, any4());
    EXPECT_TRUE(server.remove_prefix(p4("10.0.0.0", 25)).changes.empty());
    auto revoked = server.remove_prefix(p4("10.0.0.0", 24));
    ASSERT_EQ(revoked.changes.size(), 1u);
    EXPECT_EQ(revoked.changes[0].remove4, (std::vector<Ip4>{*a.ipv4}));
    EXPECT_TRUE(revoked.records[0].released());
    EXPECT_EQ(server.lease_count(), 0u);
}

TEST_F(ServerTest, NewRouteGrowsThePoolAtOnce) {
    LeaseServer empty(rng, clock, kLeasetime, kNoBudget);
    set_peers(empty, {peer(1)});
    auto none = empty.plan(key(1), any4());
    EXPECT_EQ(none->error, kErrnoUnavailable);
    empty.abort(*none);
    empty.add_prefix(p4("10.3.0.0", 16));
    auto some = empty.plan(key(1), any4());
    EXPECT_TRUE(some->ipv4);
}

TEST_F(ServerTest, AbortReturnsEverythingToThePreviousState) {
    set_peers(server, {peer(1)});
    auto first = grant(1, both());
    const auto free4 = server.pool4().free_count();
    const auto free6 = server.pool6().free_count();
    const auto expiry = server.next_expiry();
    auto plan = server.plan(key(1), any6()); // would release IPv4
    ASSERT_TRUE(plan);
    EXPECT_FALSE(server.next_expiry()) << "a pending peer does not expire";
    auto undo = server.abort(*plan);
    EXPECT_EQ(undo.add4, plan->changes.remove4);
    EXPECT_EQ(server.pool4().free_count(), free4);
    EXPECT_EQ(server.pool6().free_count(), free6);
    EXPECT_EQ(server.next_expiry(), expiry);
    EXPECT_FALSE(server.commit(*plan));
    auto again = grant(1, both());
    EXPECT_EQ(again.ipv4, first.ipv4);
    EXPECT_EQ(again.ipv6, first.ipv6);
}

TEST_F(ServerTest, AbortOfAFreshPlanFreesItsAddress) {
    set_peers(server, {peer(1)});
    const auto free4 = server.pool4().free_count();
    auto plan = server.plan(key(1), any4());
    EXPECT_EQ(server.pool4().free_count(), free4 - 1) << "held while pending";
    server.abort(*plan);
    EXPECT_EQ(server.pool4().free_count(), free4);
    EXPECT_EQ(server.lease_count(), 0u);
}

TEST_F(ServerTest, ConcurrentPlansNeverGetTheSameAddress) {
    LeaseServer small(rng, clock, kLeasetime, kNoBudget);
    small.add_prefix(p4("10.0.0.0", 30));
    set_peers(small, {peer(1), peer(2), peer(3)});
    auto a = small.plan(key(1), any4());
    auto b = small.plan(key(2), any4());
    auto c = small.plan(key(3), any4());
    ASSERT_TRUE(a->ipv4 && b->ipv4);
    EXPECT_NE(*a->ipv4, *b->ipv4);
    EXPECT_FALSE(c->ipv4);
    EXPECT_FALSE(small.plan(key(1), any4())) << "one pending plan per peer";
}

TEST_F(ServerTest, RemovedPeerLosesItsLeases) {
    set_peers(server, {peer(1), peer(2)});
    auto a = grant(1, both());
    auto events = set_peers(server, {peer(2)});
    ASSERT_EQ(events.records.size(), 1u);
    EXPECT_TRUE(events.records[0].released());
    EXPECT_TRUE(server.pool4().is_free(*a.ipv4));
    EXPECT_FALSE(server.lookup_peer(link_local(1)));
    EXPECT_FALSE(server.next_expiry());
}

TEST_F(ServerTest, PeersAreFoundByTheirLinkLocalAddress) {
    set_peers(server, {peer(1), peer(2)});
    EXPECT_EQ(server.lookup_peer(link_local(2)), key(2));
    EXPECT_FALSE(server.lookup_peer(link_local(3)));
}

TEST_F(ServerTest, LeasedAddressesInTheFactsAreNotMistakenForReservations) {
    set_peers(server, {peer(1)});
    auto a = grant(1, any4());
    set_peers(server, {peer(1, {Prefix4{*a.ipv4, 32}})}); // netd's view after the add
    auto plan = server.plan(key(1), Want{});
    EXPECT_EQ(plan->changes.remove4, (std::vector<Ip4>{*a.ipv4}));
}

TEST_F(ServerTest, LeaseMovedToAnotherPeerByTheOperatorIsDropped) {
    set_peers(server, {peer(1), peer(2)});
    auto a = grant(1, any4());
    auto events = set_peers(server, {peer(1), peer(2, {Prefix4{*a.ipv4, 32}})});
    ASSERT_EQ(events.records.size(), 1u);
    EXPECT_FALSE(events.records[0].ipv4);
    auto again = grant(1, any4());
    EXPECT_NE(again.ipv4, a.ipv4);
}

TEST_F(ServerTest, RestoreDropsExpiredLeasesAndUnknownPeers) {
    set_peers(server, {peer(1)});
    auto events = restore(
        server, {
                    {key(1), ip4("10.0.0.9"), std::nullopt, 1764200000, 1764201600}, // expired now
                    {key(7), ip4("10.0.0.8"), std::nullopt, 1764201000, 1764209999}, // no such peer
                });
    EXPECT_TRUE(events.changes.empty());
    EXPECT_EQ(events.records.size(), 2u);
    EXPECT_EQ(server.lease_count(), 0u);
}

TEST_F(ServerTest, RestoredLeaseAlreadyInAllowedIpsIsALeaseNotAReservation) {
    set_peers(server, {peer(1, {p4("10.0.0.9", 32)})}); // after a restart: looks static
    auto events =
        restore(server, {{key(1), ip4("10.0.0.9"), std::nullopt, 1764201000, 1764201700}});
    EXPECT_TRUE(events.changes.empty()) << "already there";
    EXPECT_EQ(server.next_expiry(), 1000000u + 100 * 1000);
    auto expired = server.expire(1000000u + 100 * 1000);
    ASSERT_EQ(expired.changes.size(), 1u);
    EXPECT_EQ(expired.changes[0].remove4, (std::vector<Ip4>{*parse_ip4("10.0.0.9")}));
}

TEST_F(ServerTest, WithoutALeaseFileAllowedIpsAreReservations) {
    set_peers(server, {peer(1, {p4("10.0.0.9", 32)}), peer(2)});
    restore(server, {});
    for (int i = 0; i < 100; i++) {
        auto plan = server.plan(key(2), any4());
        EXPECT_NE(plan->ipv4, ip4("10.0.0.9"));
        server.abort(*plan);
    }
}

TEST_F(ServerTest, RestoreRefusesAnAddressOfAnotherPeer) {
    set_peers(server, {peer(1), peer(2, {p4("10.0.0.9", 32)})});
    auto events =
        restore(server, {{key(1), ip4("10.0.0.9"), ip6("2001:db8::9"), 1764201000, 1764209000}});
    ASSERT_EQ(events.records.size(), 1u);
    EXPECT_FALSE(events.records[0].ipv4);
    EXPECT_EQ(events.records[0].ipv6, ip6("2001:db8::9"));
}

// The expiry index keeps an entry per renewal until it is swept: thousands of
// renewals must still expire each lease once, at its last expiry time.
TEST_F(ServerTest, ManyRenewalsExpireOnceAtTheLastExpiryTime) {
    set_peers(server, {peer(1), peer(2)});
    auto first = grant(1, both());
    grant(2, any4());
    // Each renewal comes when just under half the lease is left: each is
    // written (none is answered from the stored lease).
    for (int i = 0; i < 3000; i++) {
        clock.advance_ms(kLeasetime * 1000ull / 2 + 1);
        ASSERT_FALSE(grant(2, any4()).unchanged);
        if (i == 2999)
            clock.advance_ms(3000);
        auto renewed = grant(1, both());
        ASSERT_FALSE(renewed.unchanged);
        ASSERT_EQ(renewed.ipv4, first.ipv4);
    }
    const std::uint64_t last = clock.boot_ms() + kLeasetime * 1000ull;
    // Peer 2's lease expires first, 3 seconds earlier.
    EXPECT_EQ(server.next_expiry(), last - 3000);
    auto early = server.expire(last - 1);
    ASSERT_EQ(early.records.size(), 1u);
    EXPECT_EQ(early.records[0].peer, key(2));
    EXPECT_EQ(server.next_expiry(), last);
    auto expired = server.expire(last);
    ASSERT_EQ(expired.records.size(), 1u) << "one record, not one per renewal";
    EXPECT_EQ(expired.records[0].peer, key(1));
    EXPECT_TRUE(expired.records[0].released());
    EXPECT_EQ(server.next_expiry(), std::nullopt);
    EXPECT_TRUE(server.expire(last + 10 * kLeasetime * 1000ull).records.empty());
}

// The expiry heap points at peers: the entries of peers that left (stale
// renewals included) must go with them, and newcomers (which may take their
// place in memory) expire exactly once, at their own time.
TEST_F(ServerTest, PeersThatLeftLeaveNothingToExpireForNewcomers) {
    std::vector<PeerFacts> first, second;
    for (int n = 1; n <= 50; n++)
        first.push_back(peer(n));
    for (int n = 51; n <= 100; n++)
        second.push_back(peer(n));
    set_peers(server, first);
    for (int round = 0; round < 3; round++)
        for (int n = 1; n <= 50; n++)
            grant(n, both());
    EXPECT_EQ(set_peers(server, second).records.size(), 50u);
    EXPECT_FALSE(server.next_expiry());
    EXPECT_EQ(server.lease_count(), 0u);
    clock.advance_ms(5000);
    for (int n = 51; n <= 100; n++)
        grant(n, any4());
    EXPECT_EQ(server.next_expiry(), clock.boot_ms() + kLeasetime * 1000ull);
    auto expired = server.expire(clock.boot_ms() + kLeasetime * 1000ull);
    ASSERT_EQ(expired.records.size(), 50u);
    std::set<PublicKey> keys;
    for (auto& r : expired.records)
        keys.insert(r.peer);
    EXPECT_EQ(keys.size(), 50u);
    EXPECT_EQ(*keys.begin(), key(51));
    EXPECT_EQ(*keys.rbegin(), key(100));
}

TEST_F(ServerTest, RemovedRouteRevokesItsLeasesInAddressOrder) {
    server.add_prefix(p4("10.7.0.0", 24));
    server.remove_prefix(p4("10.0.0.0", 24));
    std::vector<PeerFacts> peers;
    for (int n = 1; n <= 100; n++)
        peers.push_back(peer(n));
    set_peers(server, peers);
    for (int n = 1; n <= 100; n++)
        grant(n, any4());
    auto revoked = server.remove_prefix(p4("10.7.0.0", 24));
    ASSERT_EQ(revoked.changes.size(), 100u);
    for (std::size_t i = 1; i < revoked.changes.size(); i++)
        EXPECT_LT(revoked.changes[i - 1].remove4.at(0), revoked.changes[i].remove4.at(0));
    EXPECT_EQ(server.lease_count(), 0u);
    EXPECT_FALSE(server.next_expiry());
}

// Each leased address is found again after many grants and releases: made a
// static allowed IP of a neighbour, it is taken from exactly its holder.
TEST_F(ServerTest, EveryLeaseIsFoundByItsAddressAfterChurn) {
    server.add_prefix(p4("10.8.0.0", 22));
    const int count = 600;
    std::vector<PeerFacts> peers;
    for (int n = 0; n < count; n++) {
        peers.push_back(peer(n));
        peers.back().key.bytes[1] = static_cast<std::uint8_t>(n >> 8);
    }
    auto key_of = [&](int n) { return peers[static_cast<std::size_t>(n)].key; };
    set_peers(server, peers);
    std::vector<Plan> plans(count);
    for (int round = 0; round < 3; round++)
        for (int n = 0; n < count; n++) {
            auto plan = server.plan(key_of(n), (n + round) % 3 == 0 ? Want{} : both());
            ASSERT_TRUE(plan);
            ASSERT_TRUE(plan->unchanged || server.commit(*plan));
            plans[static_cast<std::size_t>(n)] = *plan;
        }
    std::size_t leased4 = 0;
    for (auto& p : plans)
        leased4 += p.ipv4 ? 1 : 0;
    ASSERT_EQ(server.lease_count(), 2 * leased4);
    // Peer n + 1 is given peer n's IPv4 lease as a static allowed IP.
    std::map<PublicKey, Ip4> moved;
    for (int n = 0; n + 1 < count; n += 2)
        if (auto a = plans[static_cast<std::size_t>(n)].ipv4) {
            peers[static_cast<std::size_t>(n + 1)].allowed4.push_back(Prefix4{*a, 32});
            moved[key_of(n)] = *a;
        }
    auto events = set_peers(server, peers);
    ASSERT_EQ(events.records.size(), moved.size());
    for (auto& r : events.records) {
        ASSERT_TRUE(moved.count(r.peer));
        EXPECT_FALSE(r.ipv4);
    }
    EXPECT_EQ(server.lease_count(), 2 * leased4 - moved.size());
}

TEST_F(ServerTest, PeerWithTwoLinkLocalsIsFoundByEitherUntilOneLeavesTheFacts) {
    Ip6 second = link_local(200);
    set_peers(server, {peer(1, {}, {Prefix6{second, 128}}), peer(2)});
    EXPECT_EQ(server.lookup_peer(link_local(1)), key(1));
    EXPECT_EQ(server.lookup_peer(second), key(1));
    EXPECT_EQ(server.lookup_peer(link_local(2)), key(2));
    set_peers(server, {peer(1), peer(2)});
    EXPECT_EQ(server.lookup_peer(link_local(1)), key(1));
    EXPECT_FALSE(server.lookup_peer(second));
    // A peer whose only link-local changed is found by the new one only.
    PeerFacts moved{key(2), {}, {Prefix6{link_local(77), 128}}};
    set_peers(server, {peer(1), moved});
    EXPECT_FALSE(server.lookup_peer(link_local(2)));
    EXPECT_EQ(server.lookup_peer(link_local(77)), key(2));
}

TEST_F(ServerTest, ThousandsOfPeersAreEachFoundByTheirLinkLocal) {
    std::vector<PeerFacts> peers;
    for (int n = 0; n < 3000; n++) {
        Ip6 ll = link_local(0);
        ll.bytes[13] = static_cast<std::uint8_t>(n >> 8);
        ll.bytes[14] = static_cast<std::uint8_t>(n);
        PublicKey k = key(n);
        k.bytes[1] = static_cast<std::uint8_t>(n >> 8);
        peers.push_back(PeerFacts{k, {}, {Prefix6{ll, 128}}});
    }
    set_peers(server, peers);
    peers.resize(1000); // two thirds leave
    set_peers(server, peers);
    for (int n = 0; n < 3000; n++) {
        Ip6 ll = link_local(0);
        ll.bytes[13] = static_cast<std::uint8_t>(n >> 8);
        ll.bytes[14] = static_cast<std::uint8_t>(n);
        auto found = server.lookup_peer(ll);
        if (n < 1000) {
            ASSERT_EQ(found, peers[static_cast<std::size_t>(n)].key) << n;
        } else {
            ASSERT_FALSE(found) << n;
        }
    }
}

// Peers leaving with plans pending, among many stale renewal entries: their
// wind-down pushes and sweeps expiry entries while the others leave too
// (under ASan: no entry may point at a peer already gone).
TEST_F(ServerTest, PeersLeavingWithPlansPendingAmidStaleRenewalsLeaveNoExpiry) {
    server.add_prefix(p4("10.8.0.0", 20));
    std::vector<PeerFacts> peers;
    for (int n = 0; n < 1000; n++) {
        peers.push_back(peer(n));
        peers.back().key.bytes[1] = static_cast<std::uint8_t>(n >> 8);
    }
    set_peers(server, peers);
    // Each round renews with just under half the lease left: every renewal
    // is written and leaves a stale expiry entry behind.
    for (int round = 0; round < 3; round++) {
        for (auto& f : peers) {
            auto plan = server.plan(f.key, any4());
            ASSERT_TRUE(plan && server.commit(*plan));
        }
        clock.advance_ms(kLeasetime * 1000ull / 2 + 1);
    }
    for (auto& f : peers) {
        auto plan = server.plan(f.key, any4());
        ASSERT_TRUE(plan && !plan->unchanged); // left pending
    }
    PeerFacts newcomer = peer(1);
    newcomer.key.bytes[2] = 9; // not one of those leaving
    auto events = set_peers(server, {newcomer});
    EXPECT_EQ(events.records.size(), 1000u);
    EXPECT_EQ(server.lease_count(), 0u);
    EXPECT_FALSE(server.next_expiry());
    auto late = server.plan(newcomer.key, any4());
    ASSERT_TRUE(late && late->ipv4 && server.commit(*late));
    auto expired = server.expire(clock.boot_ms() + kLeasetime * 1000ull);
    ASSERT_EQ(expired.records.size(), 1u);
    EXPECT_EQ(expired.records[0].peer, newcomer.key);
}

// expect_restore(): the replayed leases seen in allowed IPs come back as
// leases without being reservations in between, and without any change.
TEST_F(ServerTest, ExpectedLeaseSeenInAllowedIpsIsRestoredWithoutAChange) {
    const std::vector<LeaseRecord> records{
        {key(1), ip4("10.0.0.9"), ip6("2001:db8::9"), 1764201000, 1764201700}};
    server.expect_restore(records);
    set_peers(server, {peer(1, {p4("10.0.0.9", 32)}, {p6("2001:db8::9", 128)}), peer(2)});
    auto events = server.restore_expected();
    EXPECT_TRUE(events.changes.empty()) << "already there";
    EXPECT_EQ(server.lease_count(), 2u);
    // A lease, not a reservation: it expires and leaves the allowed IPs.
    auto expired = server.expire(1000000u + 100 * 1000);
    ASSERT_EQ(expired.changes.size(), 1u);
    EXPECT_EQ(expired.changes[0].remove4, (std::vector<Ip4>{*parse_ip4("10.0.0.9")}));
    EXPECT_EQ(expired.changes[0].remove6, (std::vector<Ip6>{*parse_ip6("2001:db8::9")}));
}

TEST_F(ServerTest, ExpectedLeaseNotInAllowedIpsIsAddedBack) {
    const std::vector<LeaseRecord> records{
        {key(1), ip4("10.0.0.9"), std::nullopt, 1764201000, 1764201700}};
    server.expect_restore(records);
    set_peers(server, {peer(1)});
    auto events = server.restore_expected();
    ASSERT_EQ(events.changes.size(), 1u);
    EXPECT_EQ(events.changes[0].add4, (std::vector<Ip4>{*parse_ip4("10.0.0.9")}));
}

// A lease that expired while the server was stopped leaves the allowed IPs
// that WireGuard kept, is released on file, and its address goes back to the
// pool for anyone: it never becomes a reservation.
TEST_F(ServerTest, ExpiredExpectedLeaseInAllowedIpsIsRemovedAndReturnsToThePool) {
    const std::vector<LeaseRecord> records{
        {key(1), ip4("10.0.0.9"), std::nullopt, 1764200000, 1764201600}}; // expired now
    server.expect_restore(records);
    set_peers(server, {peer(1, {p4("10.0.0.9", 32)}), peer(2)});
    auto events = server.restore_expected();
    EXPECT_EQ(server.lease_count(), 0u);
    ASSERT_EQ(events.changes.size(), 1u);
    EXPECT_EQ(events.changes[0].key, key(1));
    EXPECT_EQ(events.changes[0].remove4, (std::vector<Ip4>{*parse_ip4("10.0.0.9")}));
    EXPECT_TRUE(events.changes[0].add4.empty());
    ASSERT_EQ(events.records.size(), 1u);
    EXPECT_TRUE(events.records[0].released());
    EXPECT_TRUE(server.pool4().is_free(ip4("10.0.0.9")));
    bool drawn = false;
    for (int i = 0; i < 2000 && !drawn; i++) {
        auto plan = server.plan(key(2), any4());
        ASSERT_TRUE(plan);
        drawn = plan->ipv4 == ip4("10.0.0.9");
        server.abort(*plan);
    }
    EXPECT_TRUE(drawn) << "10.0.0.9 is back in the pool for every peer";
}

// Without the head start of expect_restore() the view took the expired
// lease for a static allowed IP: restore() undoes that too.
TEST_F(ServerTest, ExpiredLeaseRestoredAfterTheViewIsRemovedNotReserved) {
    set_peers(server, {peer(1, {p4("10.0.0.9", 32)}), peer(2)});
    EXPECT_FALSE(server.pool4().is_free(ip4("10.0.0.9")));
    auto events =
        restore(server, {{key(1), ip4("10.0.0.9"), std::nullopt, 1764200000, 1764201600}});
    ASSERT_EQ(events.changes.size(), 1u);
    EXPECT_EQ(events.changes[0].remove4, (std::vector<Ip4>{*parse_ip4("10.0.0.9")}));
    EXPECT_TRUE(server.pool4().is_free(ip4("10.0.0.9")));
}

// A lease whose route vanished while the server was stopped is outside
// every pool: removed from the allowed IPs, not kept as a reservation.
TEST_F(ServerTest, ExpectedLeaseOutsideEveryPoolIsRemovedFromAllowedIps) {
    const std::vector<LeaseRecord> records{
        {key(1), ip4("10.9.0.9"), std::nullopt, 1764201000, 1764209000}}; // not expired
    server.expect_restore(records);
    set_peers(server, {peer(1, {p4("10.9.0.9", 32)})});
    auto events = server.restore_expected();
    EXPECT_EQ(server.lease_count(), 0u);
    ASSERT_EQ(events.changes.size(), 1u);
    EXPECT_EQ(events.changes[0].remove4, (std::vector<Ip4>{*parse_ip4("10.9.0.9")}));
    ASSERT_EQ(events.records.size(), 1u);
    EXPECT_TRUE(events.records[0].released());
}

// Only the IPv4 route went: the IPv6 lease comes back as it was, the IPv4
// address leaves the allowed IPs and the record keeps only the IPv6 lease.
// When the route comes back, the address is free for anyone and the peer
// gets a fresh IPv4 lease, never a reservation of its old address.
TEST_F(ServerTest, ExpectedLeaseWithOneFamilyOutsideEveryPoolKeepsTheOtherAndServesAgain) {
    const std::vector<LeaseRecord> records{
        {key(1), ip4("10.9.0.9"), ip6("2001:db8::9"), 1764201000, 1764209000}}; // not expired
    server.expect_restore(records);
    set_peers(server, {peer(1, {p4("10.9.0.9", 32)}, {p6("2001:db8::9", 128)}), peer(2)});
    auto events = server.restore_expected();
    ASSERT_EQ(events.changes.size(), 1u);
    EXPECT_EQ(events.changes[0].remove4, (std::vector<Ip4>{*parse_ip4("10.9.0.9")}));
    EXPECT_TRUE(events.changes[0].add4.empty());
    EXPECT_TRUE(events.changes[0].add6.empty() && events.changes[0].remove6.empty());
    ASSERT_EQ(events.records.size(), 1u);
    EXPECT_EQ(events.records[0].ipv4, std::nullopt);
    EXPECT_EQ(events.records[0].ipv6, ip6("2001:db8::9"));
    EXPECT_EQ(server.lease_count4(), 0u);
    EXPECT_EQ(server.lease_count6(), 1u);

    // netd removed it; the next view shows the peer without it.
    set_peers(server, {peer(1, {}, {p6("2001:db8::9", 128)}), peer(2)});
    server.add_prefix(p4("10.9.0.0", 24));
    EXPECT_TRUE(server.pool4().is_free(ip4("10.9.0.9")));
    auto again = grant(1, both());
    ASSERT_TRUE(again.ipv4);
    EXPECT_TRUE(p4("10.0.0.0", 24).contains(*again.ipv4) ||
                p4("10.9.0.0", 24).contains(*again.ipv4));
    EXPECT_EQ(again.changes.add4, (std::vector<Ip4>{*again.ipv4}));
    EXPECT_EQ(again.ipv6, ip6("2001:db8::9")) << "the IPv6 lease is kept";
    EXPECT_EQ(again.record.ipv4, again.ipv4) << "a lease, not a reservation";
}

TEST_F(ServerTest, ExpectedLeaseHeldAsAnotherPeersAllowedIpIsNotRestored) {
    const std::vector<LeaseRecord> records{
        {key(1), ip4("10.0.0.9"), std::nullopt, 1764201000, 1764209000}};
    server.expect_restore(records);
    set_peers(server, {peer(1), peer(2, {p4("10.0.0.9", 32)})});
    auto events = server.restore_expected();
    EXPECT_TRUE(events.changes.empty());
    EXPECT_EQ(server.lease_count(), 0u);
}

TEST_F(ServerTest, ExpectRestoreKeepsTheLastRecordOfAPeer) {
    server.expect_restore({{key(1), ip4("10.0.0.8"), std::nullopt, 1764201000, 1764201700},
                           {key(2), ip4("10.0.0.5"), std::nullopt, 1764201000, 1764201700},
                           {key(1), ip4("10.0.0.9"), std::nullopt, 1764201000, 1764201700}});
    set_peers(server, {peer(1), peer(2)});
    auto events = server.restore_expected();
    ASSERT_EQ(events.changes.size(), 2u);
    for (const auto& c : events.changes)
        EXPECT_EQ(c.add4,
                  (std::vector<Ip4>{*parse_ip4(c.key == key(1) ? "10.0.0.9" : "10.0.0.5")}));
}

TEST_F(ServerTest, ViewInChunksDropsOnlyPeersAbsentFromEveryChunk) {
    set_peers(server, {peer(1), peer(2), peer(3)});
    auto a = grant(1, any4());
    auto b = grant(3, any4());
    server.begin_peers();
    const std::vector<PeerFacts> first{peer(3, {Prefix4{*b.ipv4, 32}})};
    const std::vector<PeerFacts> second{peer(4)};
    server.add_peers(first);
    server.add_peers(second);
    auto events = server.end_peers();
    ASSERT_EQ(events.records.size(), 1u) << "peer 1 left, peer 2 held nothing";
    EXPECT_EQ(events.records[0].peer, key(1));
    EXPECT_TRUE(server.pool4().is_free(*a.ipv4));
    EXPECT_FALSE(server.pool4().is_free(*b.ipv4)) << "peer 3 keeps its lease";
    EXPECT_FALSE(server.lookup_peer(link_local(2)));
    EXPECT_EQ(server.lookup_peer(link_local(4)), key(4));
}

TEST_F(ServerTest, LeaseMissingFromAllowedIpsIsReportedForPuttingBack) {
    set_peers(server, {peer(1), peer(2)});
    auto a = grant(1, both());
    auto missing = server.missing_leases(peer(1, {}, {Prefix6{*a.ipv6, 128}}));
    EXPECT_EQ(missing.add4, (std::vector<Ip4>{*a.ipv4}));
    EXPECT_TRUE(missing.add6.empty()) << "the IPv6 lease is there";
    EXPECT_TRUE(server.missing_leases(peer(2)).empty()) << "no lease, nothing missing";
    EXPECT_TRUE(server.missing_leases(peer(7)).empty()) << "unknown peer";
}

TEST_F(ServerTest, PutBackKeepsOnlyAddressesThatAreStillThePeersLeases) {
    set_peers(server, {peer(1), peer(2)});
    auto a = grant(1, any4());
    auto missing = server.missing_leases(peer(1));
    ASSERT_EQ(missing.add4.size(), 1u);
    auto still = missing;
    EXPECT_TRUE(server.keep_leased(still));
    EXPECT_EQ(still.add4, missing.add4);
    // The operator put the address on peer 2: WireGuard moved it, the lease is gone.
    set_peers(server, {peer(1), peer(2, {Prefix4{*a.ipv4, 32}})});
    auto gone = missing;
    EXPECT_FALSE(server.keep_leased(gone));
    EXPECT_TRUE(gone.add4.empty());
}

TEST_F(ServerTest, RevokeRemovesTheLeaseFreesItsAddressesAndRecordsARelease) {
    set_peers(server, {peer(1), peer(2)});
    auto a = grant(1, both());
    ASSERT_TRUE(a.ipv4 && a.ipv6);
    EXPECT_EQ(server.lease_holder(*a.ipv4), key(1));
    EXPECT_EQ(server.lease_holder(*a.ipv6), key(1));
    auto revoked = server.revoke(key(1));
    ASSERT_TRUE(revoked);
    ASSERT_EQ(revoked->changes.size(), 1u);
    EXPECT_EQ(revoked->changes[0].remove4, (std::vector<Ip4>{*a.ipv4}));
    EXPECT_EQ(revoked->changes[0].remove6, (std::vector<Ip6>{*a.ipv6}));
    ASSERT_EQ(revoked->records.size(), 1u);
    EXPECT_TRUE(revoked->records[0].released());
    ASSERT_EQ(revoked->ended.size(), 1u);
    EXPECT_EQ(revoked->ended[0].ipv4, a.ipv4);
    EXPECT_EQ(server.lease_count(), 0u);
    EXPECT_FALSE(server.lease_holder(*a.ipv4));
    EXPECT_FALSE(server.current_lease(key(1)));
    EXPECT_FALSE(server.revoke(key(1))) << "nothing left to revoke";
    EXPECT_FALSE(server.next_expiry()) << "a revoked lease does not expire later";
    // Asking for the old address again gets another one: it is not the
    // peer's any more, and a free address is never granted because it was asked for.
    auto again = grant(1, ask4(to_string(*a.ipv4).c_str()));
    ASSERT_TRUE(again.ipv4);
    EXPECT_NE(*again.ipv4, *a.ipv4);
}

TEST_F(ServerTest, RevokeWaitsForAPendingPlanAndKnowsNoUnknownPeer) {
    set_peers(server, {peer(1)});
    grant(1, any4());
    // A change (IPv4 released, IPv6 granted): an unchanged renewal would be
    // answered from the stored lease without a pending plan.
    auto pending = server.plan(key(1), any6());
    ASSERT_TRUE(pending);
    EXPECT_TRUE(server.plan_pending(key(1)));
    EXPECT_FALSE(server.revoke(key(1)));
    server.commit(*pending);
    EXPECT_TRUE(server.revoke(key(1)));
    EXPECT_FALSE(server.revoke(key(9)));
}

TEST_F(ServerTest, ExpiryReportsTheLeasesAsTheyWere) {
    set_peers(server, {peer(1)});
    auto a = grant(1, both());
    clock.advance_ms(std::uint64_t{kLeasetime} * 1000 + 1);
    auto expired = server.expire(clock.boot_ms());
    ASSERT_EQ(expired.ended.size(), 1u);
    EXPECT_EQ(expired.ended[0].ipv4, a.ipv4);
    EXPECT_EQ(expired.ended[0].ipv6, a.ipv6);
    EXPECT_TRUE(expired.records[0].released());
}

TEST_F(ServerTest, ViewListsEveryPeerWithIdentityLeaseAndStatics) {
    set_peers(server, {peer(1), peer(2, {p4("10.0.0.50", 32)})});
    auto a = grant(1, any4());
    auto view = server.view();
    ASSERT_EQ(view.size(), 2u);
    std::sort(view.begin(), view.end(),
              [](const PeerView& x, const PeerView& y) { return x.key < y.key; });
    EXPECT_EQ(view[0].link_local, link_local(1));
    ASSERT_TRUE(view[0].lease);
    EXPECT_EQ(view[0].lease->ipv4, a.ipv4);
    EXPECT_FALSE(view[1].lease);
    EXPECT_EQ(view[1].statics4, (std::vector<Prefix4>{p4("10.0.0.50", 32)}));
    EXPECT_EQ(server.link_local_of(key(2)), link_local(2));
}

TEST_F(ServerTest, PoolSizeCountsLeasableAddressesOfThePrefix) {
    // 10.0.0.0/24: 256 minus .0, .255 and our .1.
    EXPECT_EQ(server.pool_size(p4("10.0.0.0", 24)), 253u);
    set_peers(server, {peer(2, {p4("10.0.0.50", 32)})}); // a reservation is not leasable
    EXPECT_EQ(server.pool_size(p4("10.0.0.0", 24)), 252u);
    EXPECT_EQ(server.pool_size(p4("10.0.0.0", 25)), 125u);
    grant(2, any6());
    EXPECT_EQ(server.pool_size(p6("2001:db8::", 64)), (u128{1} << 64) - 2) << "leases count";
}

TEST_F(ServerTest, RemovedPeerAndMovedAddressReportTheLeasesThatEnded) {
    set_peers(server, {peer(1), peer(2)});
    auto a = grant(1, both());
    auto b = grant(2, any4());
    // Peer 1 leaves; peer 2's leased address becomes peer 3's static one.
    auto events = set_peers(server, {peer(2), peer(3, {Prefix4{*b.ipv4, 32}})});
    ASSERT_EQ(events.ended.size(), 2u);
    std::sort(events.ended.begin(), events.ended.end(),
              [](const LeaseRecord& x, const LeaseRecord& y) { return x.peer < y.peer; });
    EXPECT_EQ(events.ended[0].peer, key(1));
    EXPECT_EQ(events.ended[0].ipv4, a.ipv4);
    EXPECT_EQ(events.ended[0].ipv6, a.ipv6);
    EXPECT_EQ(events.ended[1].peer, key(2));
    EXPECT_EQ(events.ended[1].ipv4, b.ipv4);
}

namespace {

// A restore from the lease file's index (what leased does) against the same
// restore from the records in memory (the reference): the same leases come
// back, the same changes are asked for, the same records written.
struct RestoreOutcome {
    std::map<PublicKey, LeaseRecord> leases;
    std::map<PublicKey, PeerChange> changes;
    std::map<PublicKey, LeaseRecord> records;
};

RestoreOutcome restore_through(bool from_file, const std::vector<LeaseRecord>& history,
                               const std::vector<PeerFacts>& view) {
    DeterministicRandom rng{42};
    FakeClock clock{1764201600, 1000000};
    LeaseServer server{rng, clock, kLeasetime, kNoBudget};
    server.add_prefix(p4("10.0.0.0", 24));
    server.add_prefix(p6("2001:db8::", 64));
    std::string dir = (std::filesystem::temp_directory_path() / "wgd-restore-XXXXXX").string();
    EXPECT_NE(::mkdtemp(dir.data()), nullptr);
    auto file = [&](int i) {
        return UniqueFd(::open((dir + "/wg0.leases." + std::to_string(i)).c_str(),
                               O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    };
    {
        auto opened = LeaseFile::open(file(0), file(1), "wg0");
        EXPECT_EQ(opened->file.append(history), 0);
    }
    auto opened = LeaseFile::open(
        file(0), file(1), "wg0", from_file ? LeaseFile::Replay::index : LeaseFile::Replay::records);
    if (from_file)
        server.expect_restore(std::move(opened->index));
    else
        server.expect_restore(std::move(opened->leases));
    set_peers(server, view);
    LeaseEvents events = server.restore_expected();
    EXPECT_EQ(server.restore_error(), 0);
    std::filesystem::remove_all(dir);
    RestoreOutcome out;
    server.for_each_live_record([&](const LeaseRecord& r) { out.leases[r.peer] = r; });
    for (auto& c : events.changes)
        out.changes.emplace(c.key, c);
    for (auto& r : events.records)
        out.records[r.peer] = r;
    return out;
}

} // namespace

TEST(ServerRestore, FromTheLeaseFilesIndexRestoresWhatTheRecordsInMemoryRestore) {
    std::vector<LeaseRecord> history;
    std::vector<PeerFacts> view;
    for (int n = 1; n <= 200; n++) {
        const auto host = static_cast<std::uint8_t>(n);
        LeaseRecord r{key(n), Ip4{{10, 0, 0, host}}, std::nullopt, 1764201000, 1764203000};
        Ip6 v6 = ip6("2001:db8::");
        v6.bytes[15] = host;
        r.ipv6 = v6;
        history.push_back(r);
        if (n % 7 == 0) // expired while the server was stopped
            history.push_back({key(n), r.ipv4, r.ipv6, 1764190000, 1764195000});
        if (n % 11 == 0)
            history.push_back({key(n), std::nullopt, std::nullopt, 0, 0});
        if (n % 13 == 0)
            continue;   // a peer gone from the device
        if (n % 3 == 0) // WireGuard kept the addresses
            view.push_back(peer(n, {Prefix4{*r.ipv4, 32}}, {Prefix6{*r.ipv6, 128}}));
        else
            view.push_back(peer(n));
    }
    const RestoreOutcome reference = restore_through(false, history, view);
    const RestoreOutcome indexed = restore_through(true, history, view);
    EXPECT_FALSE(reference.leases.empty());
    EXPECT_FALSE(reference.changes.empty());
    EXPECT_FALSE(reference.records.empty());
    EXPECT_EQ(indexed.leases, reference.leases);
    EXPECT_EQ(indexed.records, reference.records);
    ASSERT_EQ(indexed.changes.size(), reference.changes.size());
    for (const auto& [peer_key, c] : reference.changes) {
        auto it = indexed.changes.find(peer_key);
        ASSERT_NE(it, indexed.changes.end());
        EXPECT_EQ(it->second.add4, c.add4);
        EXPECT_EQ(it->second.add6, c.add6);
        EXPECT_EQ(it->second.remove4, c.remove4);
        EXPECT_EQ(it->second.remove6, c.remove6);
    }
}
