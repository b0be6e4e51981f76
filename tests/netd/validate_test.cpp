// Order validation: each rule, one test on each side of the line.
#include "netd/validate.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <utility>
#include <vector>

using namespace wgd;
using namespace wgd::netd;

namespace {

PublicKey key(std::uint8_t n) {
    PublicKey k;
    k.bytes.fill(n);
    return k;
}
Ip4 ip4(const char* s) {
    return *parse_ip4(s);
}
Ip6 ip6(const char* s) {
    return *parse_ip6(s);
}

// Every change of an order judged in turn; the first refusal, or success.
Result<void> judge(const DeviceView& view, const Scope& scope, const LeasedSet& leased,
                   const std::vector<PeerChange>& changes) {
    OrderCheck order(view, scope, leased);
    for (const PeerChange& c : changes)
        if (auto r = order.check(c); !r)
            return r.error();
    return {};
}

class Validate : public ::testing::Test {
  protected:
    Device device;
    Pools& pools = scope.pools;
    Scope scope;
    DeviceView view;
    LeasedSet leased{view};
    // netd's read: the view refreshed from the device as it is now (the
    // leases it no longer shows dropped), then the set's own prune.
    void reread() {
        auto r = view.refresh([&](DeviceSink& sink) -> Result<void> {
            sink.start();
            for (const Peer& p : device.peers)
                sink.peer(Peer(p));
            return {};
        });
        ASSERT_TRUE(r);
        leased.prune();
    }
    void SetUp() override {
        device.peers.push_back(Peer{key(1), {{ip4("10.77.0.5"), 32}}, {{ip6("fe80::1"), 128}}});
        device.peers.push_back(Peer{key(2),
                                    {{ip4("10.77.0.6"), 32}, {ip4("10.77.1.0"), 24}},
                                    {{ip6("fe80::2"), 128}, {ip6("2001:db8:77::6"), 128}}});
        pools.v4 = {{ip4("10.77.0.0"), 16}};
        pools.v6 = {{ip6("2001:db8:77::"), 64}};
        reread();
    }
    Result<void> check(std::vector<PeerChange> changes) {
        reread();
        return judge(view, scope, leased, changes);
    }
};

} // namespace

TEST_F(Validate, EmptyBatchIsAccepted) {
    EXPECT_TRUE(check({}));
}

TEST_F(Validate, ExistingPeerIsAcceptedUnknownPeerIsRefused) {
    EXPECT_TRUE(check({PeerChange{key(1), {ip4("10.77.0.9")}, {}, {}, {}}}));
    auto r = check({PeerChange{key(3), {ip4("10.77.0.9")}, {}, {}, {}}});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ENOENT);
}

TEST_F(Validate, SamePeerTwiceInABatchIsRefused) {
    EXPECT_FALSE(check({PeerChange{key(1), {ip4("10.77.0.9")}, {}, {}, {}},
                        PeerChange{key(1), {ip4("10.77.0.10")}, {}, {}, {}}}));
    EXPECT_TRUE(check({PeerChange{key(1), {ip4("10.77.0.9")}, {}, {}, {}},
                       PeerChange{key(2), {ip4("10.77.0.10")}, {}, {}, {}}}));
}

TEST_F(Validate, AddInsideAPoolIsAcceptedOutsideIsRefused) {
    EXPECT_TRUE(
        check({PeerChange{key(1), {ip4("10.77.255.254")}, {}, {ip6("2001:db8:77::99")}, {}}}));
    EXPECT_FALSE(check({PeerChange{key(1), {ip4("10.78.0.1")}, {}, {}, {}}}));
    EXPECT_FALSE(check({PeerChange{key(1), {}, {}, {ip6("2001:db8:78::1")}, {}}}));
    pools = {};
    EXPECT_FALSE(check({PeerChange{key(1), {ip4("10.77.0.9")}, {}, {}, {}}}));
}

TEST_F(Validate, AddOfANonGlobalAddressIsRefusedEvenInsideAPool) {
    pools.v4.push_back({ip4("169.254.0.0"), 16});
    pools.v4.push_back({ip4("224.0.0.0"), 4});
    pools.v6.push_back({ip6("fe80::"), 10});
    pools.v6.push_back({ip6("ff00::"), 8});
    EXPECT_FALSE(check({PeerChange{key(1), {ip4("169.254.0.9")}, {}, {}, {}}}));
    EXPECT_FALSE(check({PeerChange{key(1), {ip4("224.0.0.9")}, {}, {}, {}}}));
    EXPECT_FALSE(check({PeerChange{key(1), {}, {}, {ip6("fe80::9")}, {}}}));
    EXPECT_FALSE(check({PeerChange{key(1), {}, {}, {ip6("ff02::9")}, {}}}));
    EXPECT_TRUE(check({PeerChange{key(1), {ip4("10.77.0.9")}, {}, {ip6("2001:db8:77::9")}, {}}}));
}

TEST_F(Validate, AddOfAnotherPeersAllowedIpIsRefused) {
    // exact /32 and /128 entries of peer 2
    auto r = check({PeerChange{key(1), {ip4("10.77.0.6")}, {}, {}, {}}});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EEXIST);
    EXPECT_FALSE(check({PeerChange{key(1), {}, {}, {ip6("2001:db8:77::6")}, {}}}));
    // inside peer 2's wider 10.77.1.0/24
    EXPECT_FALSE(check({PeerChange{key(1), {ip4("10.77.1.200")}, {}, {}, {}}}));
    // just outside it, and the peer's own entry: fine
    EXPECT_TRUE(check({PeerChange{key(1), {ip4("10.77.2.0")}, {}, {}, {}}}));
    EXPECT_TRUE(check({PeerChange{key(1), {ip4("10.77.0.5")}, {}, {}, {}}}));
    EXPECT_TRUE(check({PeerChange{key(2), {ip4("10.77.1.200")}, {}, {}, {}}}));
}

TEST_F(Validate, SameAddressAddedToTwoPeersInOneBatchIsRefused) {
    EXPECT_FALSE(check({PeerChange{key(1), {ip4("10.77.0.9")}, {}, {}, {}},
                        PeerChange{key(2), {ip4("10.77.0.9")}, {}, {}, {}}}));
}

TEST_F(Validate, RemovalOfLinkLocalIsRefused) {
    auto r = check({PeerChange{key(1), {}, {}, {}, {ip6("fe80::1")}}});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EPERM);
    EXPECT_NE(r.error().message.find("link-local"), std::string::npos);
}

// The reservation hijack: a static /32 or /128 of a peer is the operator's,
// and no order removes it, however it is dressed.
TEST_F(Validate, RemovalOfAStaticAllowedIpIsRefusedOfALeasedOneIsAccepted) {
    auto r = check({PeerChange{key(1), {}, {ip4("10.77.0.5")}, {}, {}}});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EPERM);
    EXPECT_FALSE(check({PeerChange{key(2), {}, {}, {}, {ip6("2001:db8:77::6")}}}));
    // 10.77.1.0/32 is not held (the /24 is): nothing to remove, nothing sent.
    auto wide =
        OrderCheck(view, scope, leased).check(PeerChange{key(2), {}, {ip4("10.77.1.0")}, {}, {}});
    ASSERT_TRUE(wide);
    EXPECT_TRUE(wide->remove4.empty());
    // Moving peer 2's static address to peer 1 in one order: both halves refused.
    EXPECT_FALSE(check({PeerChange{key(2), {}, {ip4("10.77.0.6")}, {}, {}},
                        PeerChange{key(1), {ip4("10.77.0.6")}, {}, {}, {}}}));

    reread();
    ASSERT_TRUE(leased.claim(scope, key(1), ip4("10.77.0.5"), std::nullopt));
    EXPECT_TRUE(check({PeerChange{key(1), {}, {ip4("10.77.0.5")}, {}, {}}}));
    // Claimed for peer 1 does not make it removable from another peer.
    EXPECT_FALSE(judge(view, scope, leased, {PeerChange{key(2), {}, {ip4("10.77.0.6")}, {}, {}}}));
}

TEST_F(Validate, RemovalOfAnAddressThePeerDoesNotHoldIsAcceptedAndSendsNothing) {
    reread();
    OrderCheck order(view, scope, leased);
    auto r = order.check(PeerChange{key(1), {}, {ip4("10.77.0.99")}, {}, {ip6("2001:db8:77::99")}});
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->remove4.empty());
    EXPECT_TRUE(r->remove6.empty());
}

TEST_F(Validate, AddAndRemoveOfTheSameAddressIsRefused) {
    EXPECT_FALSE(check({PeerChange{key(1), {ip4("10.77.0.5")}, {ip4("10.77.0.5")}, {}, {}}}));
}

TEST_F(Validate, ABadChangeIsRefusedWholeAndTheOthersOfItsOrderStand) {
    reread();
    OrderCheck order(view, scope, leased);
    // Its good half (an IPv4 grant) goes with its bad half (a link-local removal).
    auto bad = order.check(PeerChange{key(2), {ip4("10.77.0.7")}, {}, {}, {ip6("fe80::2")}});
    ASSERT_FALSE(bad);
    // The address it would have added is free for the next change.
    auto good = order.check(PeerChange{key(1), {ip4("10.77.0.7")}, {}, {}, {}});
    ASSERT_TRUE(good) << good.error().message;
    EXPECT_EQ(good->add4, std::vector<Ip4>{ip4("10.77.0.7")});
}

TEST_F(Validate, AddOfAZeroHostBroadcastOrOwnAddressIsRefused) {
    pools.v4.push_back({ip4("10.80.0.0"), 24});
    pools.v4.push_back({ip4("10.81.0.0"), 31});
    scope.own4 = {ip4("10.77.0.1")};
    scope.own6 = {ip6("2001:db8:77::1")};
    for (const char* a : {"10.77.0.0", "10.77.255.255", "10.80.0.0", "10.80.0.255", "10.77.0.1"})
        EXPECT_FALSE(check({PeerChange{key(1), {ip4(a)}, {}, {}, {}}})) << a;
    for (const char* a : {"2001:db8:77::", "2001:db8:77::1"})
        EXPECT_FALSE(check({PeerChange{key(1), {}, {}, {ip6(a)}, {}}})) << a;
    // A /31 has no broadcast; IPv6 has none; the host next to them is fine.
    EXPECT_TRUE(check({PeerChange{key(1), {ip4("10.81.0.1")}, {}, {}, {}}}));
    EXPECT_TRUE(check({PeerChange{key(1), {ip4("10.80.0.254")}, {}, {ip6("2001:db8:77::2")}, {}}}));
}

TEST_F(Validate, AddOfAnAddressNoHostCanHaveIsRefusedInsideAWidePool) {
    pools.v4 = {{ip4("0.0.0.0"), 0}};
    pools.v6 = {{ip6("::"), 0}};
    for (const char* a : {"0.1.2.3", "127.0.0.2", "169.254.1.1", "224.1.1.1", "240.0.0.1"})
        EXPECT_FALSE(check({PeerChange{key(1), {ip4(a)}, {}, {}, {}}})) << a;
    for (const char* a : {"::", "::1", "::ffff:10.0.0.1", "fe80::7", "ff02::1"})
        EXPECT_FALSE(check({PeerChange{key(1), {}, {}, {ip6(a)}, {}}})) << a;
    EXPECT_TRUE(check({PeerChange{key(1), {ip4("198.51.100.7")}, {}, {ip6("2001:db8:9::7")}, {}}}));
}

TEST_F(Validate, APeerHoldsAtMostOneLeasedAddressOfEachFamily) {
    auto two = check({PeerChange{key(1), {ip4("10.77.0.9"), ip4("10.77.0.10")}, {}, {}, {}}});
    ASSERT_FALSE(two);
    EXPECT_EQ(two.error().code, EDQUOT);
    EXPECT_FALSE(
        check({PeerChange{key(1), {}, {}, {ip6("2001:db8:77::9"), ip6("2001:db8:77::a")}, {}}}));

    reread();
    OrderCheck first(view, scope, leased);
    auto grant = first.check(PeerChange{key(1), {ip4("10.77.0.9")}, {}, {}, {}});
    ASSERT_TRUE(grant);
    ASSERT_TRUE(view.record(*grant)); // as netd records what WireGuard applied
    leased.record(*grant);
    // A second one beside it: refused; in place of it: fine; again the same: fine.
    auto second = judge(view, scope, leased, {PeerChange{key(1), {ip4("10.77.0.10")}, {}, {}, {}}});
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().code, EDQUOT);
    EXPECT_TRUE(judge(view, scope, leased,
                      {PeerChange{key(1), {ip4("10.77.0.10")}, {ip4("10.77.0.9")}, {}, {}}}));
    EXPECT_TRUE(judge(view, scope, leased, {PeerChange{key(1), {ip4("10.77.0.9")}, {}, {}, {}}}));
    // The other family is counted apart.
    EXPECT_TRUE(
        judge(view, scope, leased, {PeerChange{key(1), {}, {}, {ip6("2001:db8:77::9")}, {}}}));
}

TEST_F(Validate, AddOfThePeersOwnStaticEntryChangesNothingAndNeverMakesItLeased) {
    reread();
    OrderCheck order(view, scope, leased);
    auto r = order.check(PeerChange{key(2), {}, {}, {ip6("2001:db8:77::6")}, {}});
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->add6.empty());
    leased.record(*r);
    EXPECT_TRUE(leased.find(key(2)).empty());
    EXPECT_FALSE(
        judge(view, scope, leased, {PeerChange{key(2), {}, {}, {}, {ip6("2001:db8:77::6")}}}));
}

TEST_F(Validate, ClaimsTakeOnlyWhatTheDeviceShowsOnThatPeerOncePerFamily) {
    reread();
    EXPECT_FALSE(leased.claim(scope, key(3), ip4("10.77.0.5"), std::nullopt));
    EXPECT_FALSE(leased.claim(scope, key(1), ip4("10.77.0.6"), std::nullopt)); // peer 2's
    EXPECT_FALSE(leased.claim(scope, key(2), ip4("10.77.1.0"), std::nullopt)); // a /24
    EXPECT_FALSE(leased.claim(scope, key(1), std::nullopt, ip6("fe80::1")));
    EXPECT_EQ(leased.size(), 0u);
    ASSERT_TRUE(leased.claim(scope, key(2), ip4("10.77.0.6"), ip6("2001:db8:77::6")));
    auto again = leased.claim(scope, key(2), ip4("10.77.0.6"), std::nullopt);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, EDQUOT);
    EXPECT_TRUE(leased.holds(key(2), ip4("10.77.0.6")));
    EXPECT_TRUE(leased.holds(key(2), ip6("2001:db8:77::6")));
}

TEST_F(Validate, PruneDropsLeasesTheDeviceNoLongerShows) {
    ASSERT_TRUE(leased.claim(scope, key(2), ip4("10.77.0.6"), ip6("2001:db8:77::6")));
    device.peers[1].allowed4 = {};
    reread();
    EXPECT_FALSE(leased.holds(key(2), ip4("10.77.0.6")));
    EXPECT_TRUE(leased.holds(key(2), ip6("2001:db8:77::6")));
    device.peers.pop_back();
    reread();
    EXPECT_EQ(leased.size(), 0u);
}

// A lease of the file whose route went while the server was stopped: outside
// every pool at start, still on its peer. Claimed then, it is removable from
// that peer and from nowhere else, once, and is never a lease.
TEST_F(Validate, ClaimOutsideEveryPoolAtStartIsTakenForItsRemovalOnly) {
    device.peers[0].allowed4.push_back({ip4("10.78.0.9"), 32});
    device.peers[0].allowed6.push_back({ip6("2001:db8:78::9"), 128});
    reread();
    auto claimed = leased.claim(scope, key(1), ip4("10.78.0.9"), ip6("2001:db8:78::9"));
    ASSERT_TRUE(claimed) << claimed.error().message;
    EXPECT_EQ(claimed->removal_only4, ip4("10.78.0.9"));
    EXPECT_EQ(claimed->removal_only6, ip6("2001:db8:78::9"));
    EXPECT_TRUE(leased.removal_only(key(1), ip4("10.78.0.9")));
    EXPECT_TRUE(leased.removal_only(key(1), ip6("2001:db8:78::9")));
    EXPECT_FALSE(leased.holds(key(1), ip4("10.78.0.9")));
    EXPECT_TRUE(leased.find(key(1)).empty()) << "no lease";

    // Its removal is accepted and sent.
    auto removal =
        OrderCheck(view, scope, leased)
            .check(PeerChange{key(1), {}, {ip4("10.78.0.9")}, {}, {ip6("2001:db8:78::9")}});
    ASSERT_TRUE(removal) << removal.error().message;
    EXPECT_EQ(removal->remove4, std::vector<Ip4>{ip4("10.78.0.9")});
    EXPECT_EQ(removal->remove6, std::vector<Ip6>{ip6("2001:db8:78::9")});
    // It is never added or granted again while outside every pool, to this
    // peer or another.
    auto add = judge(view, scope, leased, {PeerChange{key(1), {ip4("10.78.0.9")}, {}, {}, {}}});
    ASSERT_FALSE(add);
    EXPECT_EQ(add.error().code, EINVAL);
    EXPECT_FALSE(
        judge(view, scope, leased, {PeerChange{key(2), {}, {}, {ip6("2001:db8:78::9")}, {}}}));
    // It is no lease: a new lease of its family beside it, or in its place, is fine.
    EXPECT_TRUE(judge(view, scope, leased, {PeerChange{key(1), {ip4("10.77.0.9")}, {}, {}, {}}}));
    EXPECT_TRUE(judge(view, scope, leased,
                      {PeerChange{key(1), {ip4("10.77.0.9")}, {ip4("10.78.0.9")}, {}, {}}}));

    // Once removed, it is out of the set: the same removal again is refused.
    leased.record(*removal);
    EXPECT_FALSE(leased.removal_only(key(1), ip4("10.78.0.9")));
    EXPECT_FALSE(leased.removal_only(key(1), ip6("2001:db8:78::9")));
    auto again = judge(view, scope, leased, {PeerChange{key(1), {}, {ip4("10.78.0.9")}, {}, {}}});
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, EPERM);
}

TEST_F(Validate, ClaimOutsideEveryPoolRefusesWhatIsNotExactlyThatPeersOwnHostAddress) {
    device.peers[0].allowed4.push_back({ip4("10.78.0.1"), 32}); // the server's own, see below
    device.peers[0].allowed4.push_back({ip4("10.79.0.0"), 24});
    device.peers[1].allowed4.push_back({ip4("10.78.0.6"), 32});
    device.peers[1].allowed6.push_back({ip6("2001:db8:78::6"), 128});
    scope.own4 = {ip4("10.78.0.1")};
    reread();
    struct Case {
        const char* what;
        int peer;
        std::optional<Ip4> v4;
        std::optional<Ip6> v6;
        int code;
    };
    for (const Case& c : std::vector<Case>{
             {"a static of another peer", 1, ip4("10.78.0.6"), std::nullopt, ENOENT},
             {"an address no peer holds", 1, ip4("10.78.0.7"), std::nullopt, ENOENT},
             {"a peer not on the device", 3, ip4("10.78.0.6"), std::nullopt, ENOENT},
             {"a host inside a wider static prefix", 1, ip4("10.79.0.0"), std::nullopt, ENOENT},
             {"the server's own address", 1, ip4("10.78.0.1"), std::nullopt, EINVAL},
             {"a link-local identity", 1, std::nullopt, ip6("fe80::1"), EINVAL},
             {"a good IPv6 beside a bad IPv4", 2, ip4("10.78.0.7"), ip6("2001:db8:78::6"), ENOENT},
         }) {
        auto r = leased.claim(scope, key(static_cast<std::uint8_t>(c.peer)), c.v4, c.v6);
        ASSERT_FALSE(r) << c.what;
        EXPECT_EQ(r.error().code, c.code) << c.what << ": " << r.error().message;
    }
    EXPECT_EQ(leased.size(), 0u);
    EXPECT_EQ(leased.find_removal_only(key(1)), nullptr);
    EXPECT_EQ(leased.find_removal_only(key(2)), nullptr);
    // Peer 2's statics outside the pools stay out of reach of any order.
    EXPECT_FALSE(judge(view, scope, leased, {PeerChange{key(2), {}, {ip4("10.78.0.6")}, {}, {}}}));
    EXPECT_FALSE(
        judge(view, scope, leased, {PeerChange{key(2), {}, {}, {}, {ip6("2001:db8:78::6")}}}));

    // One address of a family per peer, leased or for removal only.
    ASSERT_TRUE(leased.claim(scope, key(2), ip4("10.78.0.6"), std::nullopt));
    auto second = leased.claim(scope, key(2), ip4("10.77.0.6"), std::nullopt);
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().code, EDQUOT);
    EXPECT_FALSE(leased.holds(key(2), ip4("10.77.0.6")));
}

// A peer whose IPv4 lease lost its route and whose IPv6 lease did not: one
// claim takes both, each by its own rule.
TEST_F(Validate, ClaimWithOneAddressInsideAPoolAndOneOutsideTakesEachByItsRule) {
    device.peers[1].allowed4.push_back({ip4("10.78.0.6"), 32});
    reread();
    auto claimed = leased.claim(scope, key(2), ip4("10.78.0.6"), ip6("2001:db8:77::6"));
    ASSERT_TRUE(claimed) << claimed.error().message;
    EXPECT_EQ(claimed->removal_only4, ip4("10.78.0.6"));
    EXPECT_EQ(claimed->removal_only6, std::nullopt);
    EXPECT_TRUE(leased.removal_only(key(2), ip4("10.78.0.6")));
    EXPECT_TRUE(leased.holds(key(2), ip6("2001:db8:77::6")));
    EXPECT_FALSE(leased.holds(key(2), ip4("10.78.0.6")));
}

// Only at start: after leased's first order no claim is taken, so a live
// order can never make a static outside the pools removable.
TEST_F(Validate, ClaimsAfterLeasedsFirstOrderAreRefusedAndTheStaticStaysUnremovable) {
    device.peers[0].allowed4.push_back({ip4("10.78.0.9"), 32});
    reread();
    auto unclaimed =
        judge(view, scope, leased, {PeerChange{key(1), {}, {ip4("10.78.0.9")}, {}, {}}});
    ASSERT_FALSE(unclaimed);
    EXPECT_EQ(unclaimed.error().code, EPERM);
    leased.close_claims();
    for (auto [v4, what] : {std::pair{ip4("10.78.0.9"), "outside every pool"},
                            std::pair{ip4("10.77.0.5"), "inside a pool"}}) {
        auto late = leased.claim(scope, key(1), v4, std::nullopt);
        ASSERT_FALSE(late) << what;
        EXPECT_EQ(late.error().code, EPERM) << what;
    }
    EXPECT_FALSE(leased.removal_only(key(1), ip4("10.78.0.9")));
    EXPECT_TRUE(leased.find(key(1)).empty());
    EXPECT_FALSE(judge(view, scope, leased, {PeerChange{key(1), {}, {ip4("10.78.0.9")}, {}, {}}}));
}

// The route comes back before the address left its peer: the address is
// still removable from that peer and, as any allowed IP of a peer, never
// granted to another.
TEST_F(Validate, AddressClaimedForRemovalWhoseRouteComesBackStaysRemovableAndNeverMoves) {
    device.peers[0].allowed4.push_back({ip4("10.78.0.9"), 32});
    reread();
    ASSERT_TRUE(leased.claim(scope, key(1), ip4("10.78.0.9"), std::nullopt));
    pools.v4.push_back({ip4("10.78.0.0"), 16});
    EXPECT_FALSE(judge(view, scope, leased, {PeerChange{key(2), {ip4("10.78.0.9")}, {}, {}, {}}}));
    auto removal =
        OrderCheck(view, scope, leased).check(PeerChange{key(1), {}, {ip4("10.78.0.9")}, {}, {}});
    ASSERT_TRUE(removal) << removal.error().message;
    EXPECT_EQ(removal->remove4, std::vector<Ip4>{ip4("10.78.0.9")});
}

TEST_F(Validate, PruneDropsAddressesClaimedForRemovalTheDeviceNoLongerShows) {
    device.peers[0].allowed4.push_back({ip4("10.78.0.9"), 32});
    reread();
    ASSERT_TRUE(leased.claim(scope, key(1), ip4("10.78.0.9"), std::nullopt));
    device.peers[0].allowed4 = {{ip4("10.77.0.5"), 32}};
    reread();
    EXPECT_FALSE(leased.removal_only(key(1), ip4("10.78.0.9")));
    EXPECT_EQ(leased.find_removal_only(key(1)), nullptr);
    // Put back by an operator later, it is theirs: no order removes it.
    device.peers[0].allowed4.push_back({ip4("10.78.0.9"), 32});
    EXPECT_FALSE(check({PeerChange{key(1), {}, {ip4("10.78.0.9")}, {}, {}}}));
}

TEST(ClientAddresses, RemovesOnlyWhatItAddedAndNeverTouchesWhatWasThere) {
    const Prefix there = Prefix4{ip4("192.0.2.7"), 24};
    ClientAddresses guard({there, Prefix6{ip6("fe80::1234"), 128}});
    const Prefix old4 = Prefix4{ip4("192.0.2.7"), 32};
    auto add_old = guard.check(true, old4);
    ASSERT_TRUE(add_old);
    EXPECT_EQ(*add_old, ClientAddresses::Action::nothing);
    auto remove_old = guard.check(false, old4);
    ASSERT_FALSE(remove_old);
    EXPECT_EQ(remove_old.error().code, EPERM);
    EXPECT_FALSE(guard.check(false, Prefix4{ip4("198.51.100.1"), 32}));

    const Prefix mine = Prefix4{ip4("198.51.100.1"), 32};
    ASSERT_EQ(*guard.check(true, mine), ClientAddresses::Action::apply);
    guard.record(true, mine);
    EXPECT_EQ(*guard.check(false, mine), ClientAddresses::Action::apply);
    // The replacement beside it, then no third.
    const Prefix next = Prefix4{ip4("198.51.100.2"), 32};
    ASSERT_EQ(*guard.check(true, next), ClientAddresses::Action::apply);
    guard.record(true, next);
    auto third = guard.check(true, Prefix4{ip4("198.51.100.3"), 32});
    ASSERT_FALSE(third);
    EXPECT_EQ(third.error().code, EDQUOT);
    EXPECT_EQ(*guard.check(true, Prefix6{ip6("2001:db8::3"), 128}), ClientAddresses::Action::apply);
    guard.record(false, mine);
    EXPECT_FALSE(guard.check(false, mine));
}

TEST(ValidateAddressOrder, OnlyHostGlobalAddressesOnTheConfiguredInterface) {
    EXPECT_TRUE(validate_address_order(7, 7, Prefix4{ip4("192.0.2.1"), 32}));
    EXPECT_TRUE(validate_address_order(7, 7, Prefix6{ip6("2001:db8::1"), 128}));
    EXPECT_EQ(validate_address_order(7, 8, Prefix4{ip4("192.0.2.1"), 32}).error().code, ENODEV);
    EXPECT_FALSE(validate_address_order(0, 0, Prefix4{ip4("192.0.2.1"), 32}));
    EXPECT_FALSE(validate_address_order(7, 7, Prefix4{ip4("192.0.2.1"), 31}));
    EXPECT_FALSE(validate_address_order(7, 7, Prefix6{ip6("2001:db8::1"), 127}));
    EXPECT_FALSE(validate_address_order(7, 7, Prefix6{ip6("fe80::1"), 128}));
    EXPECT_FALSE(validate_address_order(7, 7, Prefix4{ip4("224.0.0.1"), 32}));
    EXPECT_FALSE(validate_address_order(7, 7, Prefix6{ip6("ff02::1"), 128}));
    EXPECT_FALSE(validate_address_order(7, 7, Prefix4{ip4("127.0.0.1"), 32}));
}

TEST(ValidateInterface, OnlyTheConfiguredIndex) {
    EXPECT_TRUE(validate_interface(3, 3));
    EXPECT_FALSE(validate_interface(3, 4));
    EXPECT_FALSE(validate_interface(-1, -1));
}

// The view netd keeps between device reads must judge an order exactly as a
// view built from the device after the same changes.
TEST_F(Validate, ViewUpdatedByRecordedChangesJudgesLikeAFreshView) {
    DeviceView kept(device);
    const PeerChange grant{key(1), {ip4("10.77.0.9")}, {}, {ip6("2001:db8:77::9")}, {}};
    ASSERT_TRUE(judge(kept, scope, leased, {grant}));
    ASSERT_TRUE(kept.record(grant));
    apply_change(grant, device.peers[0].allowed4, device.peers[0].allowed6);

    // Peer 2 may no longer take what peer 1 now holds; peer 1 may keep it.
    const PeerChange steal4{key(2), {ip4("10.77.0.9")}, {}, {}, {}};
    const PeerChange steal6{key(2), {}, {}, {ip6("2001:db8:77::9")}, {}};
    for (const auto& c : {steal4, steal6}) {
        auto recorded = judge(kept, scope, leased, {c});
        auto fresh = check({c});
        ASSERT_FALSE(recorded);
        ASSERT_FALSE(fresh);
        EXPECT_EQ(recorded.error().code, EEXIST);
        EXPECT_EQ(fresh.error().code, EEXIST);
    }

    // Once peer 1 lets it go, peer 2 may have it.
    const PeerChange release{key(1), {}, {ip4("10.77.0.9")}, {}, {}};
    ASSERT_TRUE(kept.record(release));
    apply_change(release, device.peers[0].allowed4, device.peers[0].allowed6);
    EXPECT_TRUE(judge(kept, scope, leased, {steal4}));
    EXPECT_TRUE(check({steal4}));
    ASSERT_NE(kept.find(key(1)), nullptr);
    EXPECT_EQ(kept.find(key(1))->allowed4, device.peers[0].allowed4);
}

TEST_F(Validate, ViewRefusesToRecordAChangeOfAnUnknownPeer) {
    DeviceView kept(device);
    EXPECT_FALSE(kept.record(PeerChange{key(9), {ip4("10.77.0.9")}, {}, {}, {}}));
    EXPECT_EQ(kept.find(key(9)), nullptr);
    EXPECT_TRUE(judge(kept, scope, leased, {PeerChange{key(2), {ip4("10.77.0.9")}, {}, {}, {}}}));
}

TEST_F(Validate, ViewFindsEveryPeerWhateverTheOrderTheDeviceListedThem) {
    Device shuffled;
    for (int n = 200; n > 0; n -= 3)
        shuffled.peers.push_back(Peer{key(static_cast<std::uint8_t>(n)), {}, {}});
    DeviceView kept(shuffled);
    for (int n = 1; n <= 200; n++) {
        const bool listed = (200 - n) % 3 == 0;
        EXPECT_EQ(kept.find(key(static_cast<std::uint8_t>(n))) != nullptr, listed) << n;
    }
}

// WireGuard moves an address added to a peer away from the one that held
// it; the kept does the same, so the old holder no longer blocks it.
TEST_F(Validate, ViewMovesAnAddressRecordedForAnotherPeer) {
    DeviceView kept(device);
    ASSERT_TRUE(kept.record(PeerChange{key(1), {ip4("10.77.0.6")}, {}, {}, {}}));
    const Peer* second = kept.find(key(2));
    ASSERT_NE(second, nullptr);
    EXPECT_EQ(std::count_if(second->allowed4.begin(), second->allowed4.end(),
                            [](const Prefix4& p) { return p.addr == ip4("10.77.0.6"); }),
              0);
    EXPECT_TRUE(kept.held_by_other(ip4("10.77.0.6"), key(2)));
    EXPECT_FALSE(kept.held_by_other(ip4("10.77.0.6"), key(1)));
    ASSERT_TRUE(kept.record(PeerChange{key(1), {}, {ip4("10.77.0.6")}, {}, {}}));
    EXPECT_FALSE(kept.held_by_other(ip4("10.77.0.6"), key(2)));
}

// Many grants and releases on a kept: its index fills with tombstones and
// grows, and must keep answering as a kept built afresh from its peers.
TEST_F(Validate, ViewAfterThousandsOfRecordedChangesJudgesLikeAFreshView) {
    Device big;
    for (int n = 1; n <= 40; n++)
        big.peers.push_back(Peer{key(static_cast<std::uint8_t>(n)), {}, {}});
    DeviceView kept(big);
    std::uint32_t seed = 1;
    auto random = [&seed](std::uint32_t below) {
        seed = seed * 1103515245u + 12345u;
        return (seed >> 8) % below;
    };
    auto a4 = [](std::uint32_t n) { return Ip4::from_u32(0x0a4d0000u + n); };
    auto a6 = [](std::uint32_t n) {
        Ip6 a = *parse_ip6("2001:db8:77::");
        a.bytes[15] = static_cast<std::uint8_t>(n);
        return a;
    };
    for (int step = 0; step < 5000; step++) {
        const PublicKey k = key(static_cast<std::uint8_t>(1 + random(40)));
        const std::uint32_t n = random(200);
        PeerChange c{k, {}, {}, {}, {}};
        if (random(3) == 0) {
            c.remove4.push_back(a4(n));
            c.remove6.push_back(a6(n));
        } else if (!kept.held_by_other(a4(n), k) && !kept.held_by_other(a6(n), k)) {
            c.add4.push_back(a4(n));
            c.add6.push_back(a6(n));
        }
        ASSERT_TRUE(kept.record(c));
        if (step % 250 != 0)
            continue;
        const DeviceView fresh(Device{0, kept.peers()});
        for (std::uint32_t m = 0; m < 200; m++)
            for (int p = 1; p <= 40; p++) {
                const PublicKey q = key(static_cast<std::uint8_t>(p));
                ASSERT_EQ(kept.held_by_other(a4(m), q), fresh.held_by_other(a4(m), q))
                    << "step " << step << " address " << m << " peer " << p;
                ASSERT_EQ(kept.held_by_other(a6(m), q), fresh.held_by_other(a6(m), q))
                    << "step " << step << " address " << m << " peer " << p;
            }
    }
}
