// Order validation: each rule, one test on each side of the line.
#include "netd/validate.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>

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

class Validate : public ::testing::Test {
  protected:
    Device device;
    Pools pools;
    void SetUp() override {
        device.peers.push_back(Peer{key(1), {{ip4("10.77.0.5"), 32}}, {{ip6("fe80::1"), 128}}});
        device.peers.push_back(Peer{key(2),
                                    {{ip4("10.77.0.6"), 32}, {ip4("10.77.1.0"), 24}},
                                    {{ip6("fe80::2"), 128}, {ip6("2001:db8:77::6"), 128}}});
        pools.v4 = {{ip4("10.77.0.0"), 16}};
        pools.v6 = {{ip6("2001:db8:77::"), 64}};
    }
    Result<void> check(std::vector<PeerChange> changes) {
        return validate_peer_changes(device, pools, changes);
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

TEST_F(Validate, RemovalOfLinkLocalIsRefusedOfGlobalIsAccepted) {
    auto r = check({PeerChange{key(1), {}, {}, {}, {ip6("fe80::1")}}});
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("link-local"), std::string::npos);
    EXPECT_FALSE(check({PeerChange{key(1), {}, {ip4("169.254.3.3")}, {}, {}}}));
    EXPECT_TRUE(check({PeerChange{key(1), {}, {ip4("10.77.0.5")}, {}, {}}}));
    EXPECT_TRUE(check({PeerChange{key(2), {}, {}, {}, {ip6("2001:db8:77::6")}}}));
}

TEST_F(Validate, AddAndRemoveOfTheSameAddressIsRefused) {
    EXPECT_FALSE(check({PeerChange{key(1), {ip4("10.77.0.5")}, {ip4("10.77.0.5")}, {}, {}}}));
}

TEST_F(Validate, OneBadChangeRefusesTheWholeBatch) {
    std::vector<PeerChange> batch{PeerChange{key(1), {ip4("10.77.0.9")}, {}, {}, {}},
                                  PeerChange{key(2), {}, {}, {}, {ip6("fe80::2")}}};
    EXPECT_FALSE(check(batch));
    batch.pop_back();
    EXPECT_TRUE(check(batch));
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
    DeviceView view(device);
    const PeerChange grant{key(1), {ip4("10.77.0.9")}, {}, {ip6("2001:db8:77::9")}, {}};
    ASSERT_TRUE(validate_peer_changes(view, pools, std::vector<PeerChange>{grant}));
    ASSERT_TRUE(view.record(grant));
    apply_change(grant, device.peers[0].allowed4, device.peers[0].allowed6);

    // Peer 2 may no longer take what peer 1 now holds; peer 1 may keep it.
    const PeerChange steal4{key(2), {ip4("10.77.0.9")}, {}, {}, {}};
    const PeerChange steal6{key(2), {}, {}, {ip6("2001:db8:77::9")}, {}};
    for (const auto& c : {steal4, steal6}) {
        auto recorded = validate_peer_changes(view, pools, std::vector<PeerChange>{c});
        auto fresh = check({c});
        ASSERT_FALSE(recorded);
        ASSERT_FALSE(fresh);
        EXPECT_EQ(recorded.error().code, EEXIST);
        EXPECT_EQ(fresh.error().code, EEXIST);
    }

    // Once peer 1 lets it go, peer 2 may have it.
    const PeerChange release{key(1), {}, {ip4("10.77.0.9")}, {}, {}};
    ASSERT_TRUE(view.record(release));
    apply_change(release, device.peers[0].allowed4, device.peers[0].allowed6);
    EXPECT_TRUE(validate_peer_changes(view, pools, std::vector<PeerChange>{steal4}));
    EXPECT_TRUE(check({steal4}));
    ASSERT_NE(view.find(key(1)), nullptr);
    EXPECT_EQ(view.find(key(1))->allowed4, device.peers[0].allowed4);
}

TEST_F(Validate, ViewRefusesToRecordAChangeOfAnUnknownPeer) {
    DeviceView view(device);
    EXPECT_FALSE(view.record(PeerChange{key(9), {ip4("10.77.0.9")}, {}, {}, {}}));
    EXPECT_EQ(view.find(key(9)), nullptr);
    EXPECT_TRUE(validate_peer_changes(
        view, pools, std::vector<PeerChange>{{key(2), {ip4("10.77.0.9")}, {}, {}, {}}}));
}

TEST_F(Validate, ViewFindsEveryPeerWhateverTheOrderTheDeviceListedThem) {
    Device shuffled;
    for (int n = 200; n > 0; n -= 3)
        shuffled.peers.push_back(Peer{key(static_cast<std::uint8_t>(n)), {}, {}});
    DeviceView view(shuffled);
    for (int n = 1; n <= 200; n++) {
        const bool listed = (200 - n) % 3 == 0;
        EXPECT_EQ(view.find(key(static_cast<std::uint8_t>(n))) != nullptr, listed) << n;
    }
}

// WireGuard moves an address added to a peer away from the one that held
// it; the view does the same, so the old holder no longer blocks it.
TEST_F(Validate, ViewMovesAnAddressRecordedForAnotherPeer) {
    DeviceView view(device);
    ASSERT_TRUE(view.record(PeerChange{key(1), {ip4("10.77.0.6")}, {}, {}, {}}));
    const Peer* second = view.find(key(2));
    ASSERT_NE(second, nullptr);
    EXPECT_EQ(std::count_if(second->allowed4.begin(), second->allowed4.end(),
                            [](const Prefix4& p) { return p.addr == ip4("10.77.0.6"); }),
              0);
    EXPECT_TRUE(view.held_by_other(ip4("10.77.0.6"), key(2)));
    EXPECT_FALSE(view.held_by_other(ip4("10.77.0.6"), key(1)));
    ASSERT_TRUE(view.record(PeerChange{key(1), {}, {ip4("10.77.0.6")}, {}, {}}));
    EXPECT_FALSE(view.held_by_other(ip4("10.77.0.6"), key(2)));
}

// Many grants and releases on a view: its index fills with tombstones and
// grows, and must keep answering as a view built afresh from its peers.
TEST_F(Validate, ViewAfterThousandsOfRecordedChangesJudgesLikeAFreshView) {
    Device big;
    for (int n = 1; n <= 40; n++)
        big.peers.push_back(Peer{key(static_cast<std::uint8_t>(n)), {}, {}});
    DeviceView view(big);
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
        } else if (!view.held_by_other(a4(n), k) && !view.held_by_other(a6(n), k)) {
            c.add4.push_back(a4(n));
            c.add6.push_back(a6(n));
        }
        ASSERT_TRUE(view.record(c));
        if (step % 250 != 0)
            continue;
        const DeviceView fresh(Device{0, view.peers()});
        for (std::uint32_t m = 0; m < 200; m++)
            for (int p = 1; p <= 40; p++) {
                const PublicKey q = key(static_cast<std::uint8_t>(p));
                ASSERT_EQ(view.held_by_other(a4(m), q), fresh.held_by_other(a4(m), q))
                    << "step " << step << " address " << m << " peer " << p;
                ASSERT_EQ(view.held_by_other(a6(m), q), fresh.held_by_other(a6(m), q))
                    << "step " << step << " address " << m << " peer " << p;
            }
    }
}
