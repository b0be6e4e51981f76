// The per-peer budget of address changes: the bucket alone, then as the
// server applies it to plans, with the deterministic random source and a
// fake clock.
#include "leased/budget.hpp"
#include "leased/server.hpp"
#include "tests/leased/server_helpers.hpp"

#include <gtest/gtest.h>

using namespace wgd;
using namespace wgd::leased;
using namespace wgd::leased::fixtures;

namespace {

using Verdict = ChangeBudget::Verdict;

constexpr ChangeRate kRate{4, 15};

TEST(ChangeBudget, GivesTheBurstAtOnceThenOneChangePerInterval) {
    ChangeBudget b;
    const std::uint64_t t = 1000;
    for (int i = 0; i < 4; i++)
        EXPECT_EQ(b.spend(t, kRate), Verdict::spent) << i;
    EXPECT_EQ(b.spend(t, kRate), Verdict::refused_first);
    EXPECT_EQ(b.spend(t, kRate), Verdict::refused);
    EXPECT_EQ(b.wait_s(t, kRate), 15u);
    EXPECT_EQ(b.spend(t + 14, kRate), Verdict::refused);
    EXPECT_EQ(b.wait_s(t + 14, kRate), 1u);
    EXPECT_EQ(b.spend(t + 15, kRate), Verdict::spent);
    EXPECT_EQ(b.spend(t + 15, kRate), Verdict::refused_first);
    EXPECT_EQ(b.spend(t + 29, kRate), Verdict::refused);
    EXPECT_EQ(b.spend(t + 30, kRate), Verdict::spent);
}

TEST(ChangeBudget, RefillsToTheBurstAndNoFurtherHoweverLongItRests) {
    ChangeBudget b;
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(b.spend(10, kRate), Verdict::spent);
    for (int i = 0; i < 4; i++)
        EXPECT_EQ(b.spend(100'000, kRate), Verdict::spent) << i;
    EXPECT_EQ(b.spend(100'000, kRate), Verdict::refused_first);
    EXPECT_EQ(b.wait_s(100'000, kRate), 15u);
}

TEST(ChangeBudget, IsFullAtBootTimeZeroAndARefusalSpendsNothing) {
    ChangeBudget b;
    for (int i = 0; i < 4; i++)
        EXPECT_EQ(b.spend(0, kRate), Verdict::spent);
    for (int i = 0; i < 1000; i++)
        ASSERT_NE(b.spend(0, kRate), Verdict::spent);
    // A thousand refusals did not push the next change further away.
    EXPECT_EQ(b.spend(15, kRate), Verdict::spent);
}

TEST(ChangeBudget, ABurstOfOneIsOneChangePerInterval) {
    ChangeBudget b;
    EXPECT_EQ(b.spend(50, {1, 10}), Verdict::spent);
    EXPECT_EQ(b.spend(59, {1, 10}), Verdict::refused_first);
    EXPECT_EQ(b.spend(60, {1, 10}), Verdict::spent);
}

TEST(ChangeBudget, IsEightBytesAPeer) {
    EXPECT_EQ(sizeof(ChangeBudget), 8u);
}

constexpr std::uint32_t kLeasetime = 3600;
constexpr std::int64_t kWall = 1764201600;

class ServerBudget : public ::testing::Test {
  protected:
    DeterministicRandom rng{7};
    FakeClock clock{kWall, 5'000'000};
    LeaseServer server{rng, clock, kLeasetime, kRate};

    void SetUp() override {
        server.add_prefix(Prefix4{*parse_ip4("10.0.0.0"), 24});
        server.add_prefix(Prefix6{*parse_ip6("2001:db8::"), 64});
        server.set_own_addresses({*parse_ip4("10.0.0.1")}, {*parse_ip6("fe80::")});
        set_peers(server, {peer(1), peer(2)});
    }
    // plan, and commit unless it is unchanged (as leased does once netd and
    // the lease file succeeded).
    Plan ask(int n, const Want& w) {
        auto plan = server.plan(key(n), w);
        EXPECT_TRUE(plan);
        if (!plan)
            return {};
        if (!plan->unchanged) {
            EXPECT_TRUE(server.commit(*plan));
        }
        return *plan;
    }
    // Spends peer n's whole budget on trading families; it ends holding IPv6.
    void spend_budget(int n) {
        for (std::uint32_t i = 0; i < kRate.burst; i++) {
            Plan p = ask(n, i % 2 == 0 ? any4() : any6());
            ASSERT_FALSE(p.unchanged) << i;
            ASSERT_FALSE(p.over_budget());
        }
        ASSERT_TRUE(server.current_lease(key(n))->ipv6);
        ASSERT_FALSE(server.current_lease(key(n))->ipv4);
    }
};

} // namespace

TEST_F(ServerBudget, ChangesBeyondTheBudgetAreAnsweredWithoutAnyChange) {
    ASSERT_NO_FATAL_FAILURE(spend_budget(1));
    const LeaseRecord before = *server.current_lease(key(1));
    const std::size_t leases4 = server.lease_count4();
    clock.advance_ms(2'000);
    // IPv4 only: a fresh IPv4 address and the release of IPv6, refused.
    Plan p = ask(1, any4());
    EXPECT_TRUE(p.unchanged);
    EXPECT_EQ(p.budget, Verdict::refused_first);
    EXPECT_TRUE(p.changes.empty());
    EXPECT_FALSE(p.ipv4);
    EXPECT_FALSE(p.ipv6); // not asked for: not answered, though still leased
    EXPECT_EQ(p.error, kErrnoUnavailable);
    EXPECT_EQ(p.record, before);
    EXPECT_EQ(*server.current_lease(key(1)), before);
    EXPECT_EQ(server.lease_count4(), leases4);
    EXPECT_FALSE(server.plan_pending(key(1)));
    // Again: refused, not the first time.
    EXPECT_EQ(ask(1, any4()).budget, Verdict::refused);
}

TEST_F(ServerBudget, AnOverBudgetAnswerGivesTheHeldFamilyWithTheTimeLeftOnTheStoredLease) {
    ASSERT_NO_FATAL_FAILURE(spend_budget(1));
    const LeaseRecord before = *server.current_lease(key(1));
    clock.advance_ms(2'000);
    // Both families: the held IPv6 address, and errno 3 for the fresh IPv4
    // one it would have needed.
    Plan p = ask(1, both());
    EXPECT_TRUE(p.over_budget());
    EXPECT_EQ(p.ipv6, before.ipv6);
    EXPECT_FALSE(p.ipv4);
    EXPECT_EQ(p.error, kErrnoUnavailable);
    EXPECT_EQ(p.leasestart + p.leasetime, before.expiry_wall);
    EXPECT_TRUE(p.changes.empty());
}

TEST_F(ServerBudget, AFamilyNotAskedForStaysLeasedWhileTheBudgetIsSpent) {
    for (std::uint32_t i = 0; i < kRate.burst; i++) // IPv6 taken, given away, taken again
        ASSERT_FALSE(ask(1, i % 2 == 0 ? any4() : both()).over_budget()) << i;
    ASSERT_TRUE(server.current_lease(key(1))->ipv4 && server.current_lease(key(1))->ipv6);
    const LeaseRecord before = *server.current_lease(key(1));
    Plan p = ask(1, any4()); // would release IPv6
    EXPECT_TRUE(p.over_budget());
    EXPECT_EQ(p.ipv4, before.ipv4);
    EXPECT_FALSE(p.ipv6);
    EXPECT_EQ(p.error, kErrnoSuccess);
    EXPECT_TRUE(p.changes.empty());
    EXPECT_EQ(*server.current_lease(key(1)), before);
    EXPECT_EQ(server.lease_holder(*before.ipv6), key(1));
}

TEST_F(ServerBudget, AFreshAddressRefusedOverBudgetGoesBackToThePool) {
    ASSERT_NO_FATAL_FAILURE(spend_budget(1));
    // Every IPv4 address handed out by a refused plan would be lost to the
    // pool; a /24 has 253 of them, so 1,000 refusals would exhaust it.
    for (int i = 0; i < 1000; i++)
        ASSERT_TRUE(ask(1, any4()).over_budget());
    Plan other = ask(2, any4());
    EXPECT_TRUE(other.ipv4);
    EXPECT_EQ(other.error, kErrnoSuccess);
    EXPECT_EQ(server.lease_count4(), 1u);
}

TEST_F(ServerBudget, TheBudgetRefillsAfterTheInterval) {
    ASSERT_NO_FATAL_FAILURE(spend_budget(1));
    ASSERT_TRUE(ask(1, any4()).over_budget());
    clock.advance_ms(kRate.interval_s * 1000 - 1000);
    ASSERT_TRUE(ask(1, any4()).over_budget());
    clock.advance_ms(1000);
    Plan p = ask(1, any4());
    EXPECT_FALSE(p.over_budget());
    EXPECT_FALSE(p.unchanged);
    EXPECT_TRUE(p.ipv4);
    EXPECT_FALSE(server.current_lease(key(1))->ipv6); // released now
    EXPECT_EQ(ask(1, any6()).budget, Verdict::refused_first);
}

TEST_F(ServerBudget, EachPeerHasItsOwnBudget) {
    ASSERT_NO_FATAL_FAILURE(spend_budget(1));
    ASSERT_TRUE(ask(1, any4()).over_budget());
    ASSERT_NO_FATAL_FAILURE(spend_budget(2));
}

TEST_F(ServerBudget, RenewalsThatKeepTheAddressesAreNotCharged) {
    ASSERT_NO_FATAL_FAILURE(spend_budget(1));
    // Cached renewals, then one that writes (half the lease is gone): none
    // of them is refused, and none spends what the budget gained meanwhile.
    for (int i = 0; i < 100; i++)
        ASSERT_FALSE(ask(1, any6()).over_budget());
    clock.advance_ms(kLeasetime * 1000 / 2 + 1000);
    Plan renew = ask(1, any6());
    EXPECT_FALSE(renew.over_budget());
    EXPECT_FALSE(renew.unchanged);
    EXPECT_EQ(renew.leasetime, kLeasetime);
    for (std::uint32_t i = 0; i < kRate.burst; i++)
        EXPECT_FALSE(ask(1, i % 2 == 0 ? any4() : any6()).over_budget()) << i;
}

TEST_F(ServerBudget, AnUnlimitedRateNeverRefuses) {
    LeaseServer unlimited{rng, clock, kLeasetime, ChangeRate{1, 0}};
    unlimited.add_prefix(Prefix4{*parse_ip4("10.0.0.0"), 24});
    unlimited.add_prefix(Prefix6{*parse_ip6("2001:db8::"), 64});
    set_peers(unlimited, {peer(1)});
    for (int i = 0; i < 100; i++) {
        auto p = unlimited.plan(key(1), i % 2 == 0 ? any4() : any6());
        ASSERT_TRUE(p);
        ASSERT_FALSE(p->unchanged) << i;
        ASSERT_TRUE(unlimited.commit(*p));
    }
}

TEST_F(ServerBudget, SourcesThatAreNoPeerHoldNoBudget) {
    const std::size_t peers = server.peer_count();
    for (int n = 3; n < 250; n++)
        EXPECT_FALSE(server.plan(key(n), any4()));
    EXPECT_EQ(server.peer_count(), peers);
}

TEST(ChangeRateText, IsBurstSlashSecondsWithABurstOfAtLeastOne) {
    auto r = parse_change_rate("4/15");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->burst, 4u);
    EXPECT_EQ(r->interval_s, 15u);
    auto unlimited = parse_change_rate("1/0");
    ASSERT_TRUE(unlimited);
    EXPECT_EQ(unlimited->interval_s, 0u);
    EXPECT_TRUE(parse_change_rate("1024/1048576")); // 2^30 s in all: the most it counts
    for (const char* bad : {"", "4", "/15", "4/", "0/15", "4/15s", "-1/15", "4 /15", "4/15/1",
                            "99999999999/1", "a/b", "2/1073741824"})
        EXPECT_FALSE(parse_change_rate(bad)) << bad;
}
