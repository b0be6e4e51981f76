// DeviceView's leases and its refresh in place: a lease stays marked while
// its peer holds its address, whatever the reads, the recorded changes and
// the positions in the peer's lists; a failed read loses no lease.
#include "netd/device_view.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

using namespace wgd;
using namespace wgd::netd;

namespace {

PublicKey key(std::uint8_t n) {
    PublicKey k;
    k.bytes.fill(0);
    k.bytes[0] = n;
    k.bytes[31] = static_cast<std::uint8_t>(n * 7);
    return k;
}
Ip4 ip4(std::uint32_t n) {
    return Ip4::from_u32(0x0a4d0000u + n);
}
Ip6 ip6(std::uint32_t n) {
    Ip6 a = *parse_ip6("2001:db8:77::");
    a.bytes[14] = static_cast<std::uint8_t>(n >> 8);
    a.bytes[15] = static_cast<std::uint8_t>(n);
    return a;
}

// A read that hands these peers over (after `before`, a start and its
// peers that a restart forgets), then answers `result`.
auto reading(std::vector<Peer> peers, Result<void> result = {}, std::vector<Peer> before = {}) {
    return [=](DeviceSink& sink) -> Result<void> {
        if (!before.empty()) {
            sink.start();
            for (const Peer& p : before)
                sink.peer(Peer(p));
        }
        sink.start();
        for (const Peer& p : peers)
            sink.peer(Peer(p));
        return result;
    };
}

Peer peer(std::uint8_t k, std::vector<std::uint32_t> hosts4, std::vector<std::uint32_t> hosts6) {
    Peer p{key(k), {}, {}};
    for (std::uint32_t n : hosts4)
        p.allowed4.push_back({ip4(n), 32});
    for (std::uint32_t n : hosts6)
        p.allowed6.push_back({ip6(n), 128});
    return p;
}

DeviceView::Lease lease(std::optional<std::uint32_t> n4, std::optional<std::uint32_t> n6) {
    DeviceView::Lease l;
    if (n4)
        l.ipv4 = ip4(*n4);
    if (n6)
        l.ipv6 = ip6(*n6);
    return l;
}

void expect_lease(const DeviceView& view, std::uint8_t k, const DeviceView::Lease& want) {
    const DeviceView::Lease got = view.lease(key(k));
    EXPECT_EQ(got.ipv4, want.ipv4) << "peer " << int(k);
    EXPECT_EQ(got.ipv6, want.ipv6) << "peer " << int(k);
}

} // namespace

TEST(DeviceViewLease, IsSetOnlyOnAPeerThatHoldsEachAddressAsAHostEntry) {
    DeviceView view(Device{0, {peer(1, {5}, {5}), peer(2, {6}, {})}});
    EXPECT_FALSE(view.set_lease(key(3), lease(5, std::nullopt))) << "no such peer";
    EXPECT_FALSE(view.set_lease(key(1), lease(6, std::nullopt))) << "peer 2's";
    EXPECT_FALSE(view.set_lease(key(2), lease(6, 6))) << "peer 2 has no IPv6";
    expect_lease(view, 2, {});
    ASSERT_TRUE(view.set_lease(key(1), lease(5, 5)));
    expect_lease(view, 1, lease(5, 5));
    EXPECT_EQ(view.lease_count(), 1u);
}

TEST(DeviceViewRefresh, KeepsEachLeaseItsPeerStillHoldsAndDropsTheOthers) {
    DeviceView view(Device{0, {peer(1, {1}, {1}), peer(2, {2}, {2}), peer(3, {3}, {3})}});
    for (std::uint8_t k = 1; k <= 3; k++)
        ASSERT_TRUE(view.set_lease(key(k), lease(k, k)));
    // Peer 1 unchanged but listed after others; peer 2 lost its IPv4 and
    // gained entries before its IPv6; peer 3 gone; peer 4 new.
    ASSERT_TRUE(
        view.refresh(reading({peer(4, {4}, {4}), peer(2, {}, {20, 21, 2}), peer(1, {1}, {1})})));
    expect_lease(view, 1, lease(1, 1));
    expect_lease(view, 2, lease(std::nullopt, 2));
    expect_lease(view, 3, {});
    expect_lease(view, 4, {});
    EXPECT_EQ(view.find(key(3)), nullptr);
    ASSERT_NE(view.find(key(4)), nullptr);
    EXPECT_EQ(view.lease_count(), 2u);
    // The indexes follow the read: peer 4's address is held, peer 3's free.
    EXPECT_TRUE(view.held_by_other(ip4(4), key(1)));
    EXPECT_FALSE(view.held_by_other(ip4(3), key(1)));
    EXPECT_TRUE(view.held_by_other(ip6(21), key(1)));
}

// A read that fails (an error answer after its peers, a dump cut short)
// leaves every lease of every peer still there, also one the read showed
// without its address: only a read that worked may drop it.
TEST(DeviceViewRefresh, AFailedReadKeepsEveryLeaseUntilAReadThatWorks) {
    DeviceView view(Device{0, {peer(1, {1}, {1}), peer(2, {2}, {2})}});
    ASSERT_TRUE(view.set_lease(key(1), lease(1, 1)));
    ASSERT_TRUE(view.set_lease(key(2), lease(2, 2)));
    const auto failed =
        view.refresh(reading({peer(1, {}, {1}), peer(3, {3}, {})}, make_error(EIO, "cut short")));
    ASSERT_FALSE(failed);
    expect_lease(view, 1, lease(1, 1));
    expect_lease(view, 2, lease(2, 2));
    EXPECT_NE(view.find(key(2)), nullptr) << "not shown by a failed read: kept";
    EXPECT_EQ(view.find(key(3)), nullptr) << "new in a failed read: left out";
    // The address is back: the lease stays, and is marked in the peer again.
    ASSERT_TRUE(view.refresh(reading({peer(1, {1}, {1}), peer(2, {2}, {2})})));
    expect_lease(view, 1, lease(1, 1));
    ASSERT_FALSE(view.refresh(reading({peer(1, {}, {1})}, make_error(EIO, "cut short"))));
    ASSERT_TRUE(view.refresh(reading({peer(1, {}, {1}), peer(2, {2}, {2})})));
    expect_lease(view, 1, lease(std::nullopt, 1));
    expect_lease(view, 2, lease(2, 2));
}

// The kernel's dump starts over when the device changed under it: what
// came before the restart must not count.
TEST(DeviceViewRefresh, ARestartedReadCountsOnlyWhatCameAfterTheRestart) {
    DeviceView view(Device{0, {peer(1, {1}, {}), peer(2, {2}, {})}});
    ASSERT_TRUE(view.set_lease(key(1), lease(1, std::nullopt)));
    ASSERT_TRUE(view.refresh(
        reading({peer(1, {1}, {}), peer(2, {2}, {})}, {}, {peer(1, {}, {}), peer(5, {5}, {})})));
    expect_lease(view, 1, lease(1, std::nullopt));
    EXPECT_EQ(view.find(key(5)), nullptr);
    EXPECT_NE(view.find(key(2)), nullptr);
}

// A peer's lists can be long (an operator's entries): a lease far down one
// is kept as well, through recorded changes and reads that move it.
TEST(DeviceViewLease, FarDownALongListFollowsItsAddressThroughChangesAndReads) {
    std::vector<std::uint32_t> many;
    for (std::uint32_t n = 100; n < 130; n++)
        many.push_back(n);
    DeviceView view(Device{0, {peer(1, many, many), peer(2, {2}, {})}});
    ASSERT_TRUE(view.set_lease(key(1), lease(125, 3 + 100)));
    expect_lease(view, 1, lease(125, 103));
    // Entries before it removed: it moves up the list and into the peer.
    PeerChange shrink{key(1), {}, {}, {}, {}};
    for (std::uint32_t n = 100; n < 120; n++)
        shrink.remove4.push_back(ip4(n));
    ASSERT_TRUE(view.record(shrink));
    expect_lease(view, 1, lease(125, 103));
    // A read that lists it last of many again.
    std::vector<std::uint32_t> reordered{125};
    for (std::uint32_t n = 200; n < 240; n++)
        reordered.insert(reordered.begin(), n);
    ASSERT_TRUE(view.refresh(reading({peer(1, reordered, many), peer(2, {2}, {})})));
    expect_lease(view, 1, lease(125, 103));
    // Its address removed by a change: the lease goes with it.
    ASSERT_TRUE(view.record(PeerChange{key(1), {}, {ip4(125)}, {}, {}}));
    expect_lease(view, 1, lease(std::nullopt, 103));
}

// WireGuard moves an address added to a peer away from its holder: the
// holder's lease of it goes too.
TEST(DeviceViewLease, AnAddressTakenByAnotherPeerTakesItsLeaseAway) {
    DeviceView view(Device{0, {peer(1, {1}, {}), peer(2, {2, 3}, {})}});
    ASSERT_TRUE(view.set_lease(key(2), lease(3, std::nullopt)));
    ASSERT_TRUE(view.record(PeerChange{key(1), {ip4(2)}, {}, {}, {}}));
    expect_lease(view, 2, lease(3, std::nullopt)); // the other address stays leased
    ASSERT_TRUE(view.record(PeerChange{key(1), {ip4(3)}, {}, {}, {}}));
    expect_lease(view, 2, {});
    expect_lease(view, 1, {}); // moved: no lease of its new peer
}

// Random devices, leases, changes and reads (some failing or restarted)
// against a model: leases by key, each kept while a read that worked shows
// its peer holding it, or a recorded change leaves it there.
TEST(DeviceViewLease, RandomReadsAndChangesKeepWhatAModelKeeps) {
    std::mt19937 rng(7);
    auto below = [&](std::uint32_t n) { return static_cast<std::uint32_t>(rng() % n); };
    std::map<std::uint8_t, Peer> device; // what WireGuard holds
    std::map<std::uint8_t, DeviceView::Lease> model;
    auto random_peer = [&](std::uint8_t k) {
        Peer p{key(k), {}, {}};
        const std::uint32_t n4 = below(3) == 0 ? 20 : below(4), n6 = below(4);
        for (std::uint32_t i = 0; i < n4; i++)
            p.allowed4.push_back({ip4(k * 64u + below(64)), 32});
        for (std::uint32_t i = 0; i < n6; i++)
            p.allowed6.push_back({ip6(k * 64u + below(64)), 128});
        // Duplicates as WireGuard would never list them: dropped.
        Allowed4 u4;
        for (const Prefix4& a : p.allowed4)
            if (std::find(u4.begin(), u4.end(), a) == u4.end())
                u4.push_back(a);
        Allowed6 u6;
        for (const Prefix6& a : p.allowed6)
            if (std::find(u6.begin(), u6.end(), a) == u6.end())
                u6.push_back(a);
        p.allowed4 = u4;
        p.allowed6 = u6;
        return p;
    };
    auto listed = [&] {
        std::vector<Peer> out;
        for (const auto& [k, p] : device)
            out.push_back(p);
        std::shuffle(out.begin(), out.end(), rng);
        return out;
    };
    auto holds = [&](std::uint8_t k, const DeviceView::Lease& l) {
        const auto it = device.find(k);
        if (it == device.end())
            return DeviceView::Lease{};
        DeviceView::Lease kept;
        const Peer& p = it->second;
        if (l.ipv4 && std::find(p.allowed4.begin(), p.allowed4.end(), Prefix4{*l.ipv4, 32}) !=
                          p.allowed4.end())
            kept.ipv4 = l.ipv4;
        if (l.ipv6 && std::find(p.allowed6.begin(), p.allowed6.end(), Prefix6{*l.ipv6, 128}) !=
                          p.allowed6.end())
            kept.ipv6 = l.ipv6;
        return kept;
    };
    for (std::uint8_t k = 1; k <= 30; k++)
        device[k] = random_peer(k);
    DeviceView view;
    ASSERT_TRUE(view.refresh(reading(listed())));
    // As in netd, leases are set and changes recorded only on a view that
    // shows the device as it is (read since the operator's last change).
    bool synced = true;
    for (int step = 0; step < 3000; step++) {
        const auto k = static_cast<std::uint8_t>(1 + below(40));
        switch (below(6)) {
        case 0: { // a lease set on a host entry the peer holds
            if (!synced || !device.count(k))
                break;
            const Peer& p = device[k];
            DeviceView::Lease l = model[k];
            if (!p.allowed4.empty() && below(2))
                l.ipv4 = p.allowed4[below(static_cast<std::uint32_t>(p.allowed4.size()))].addr;
            if (!p.allowed6.empty() && below(2))
                l.ipv6 = p.allowed6[below(static_cast<std::uint32_t>(p.allowed6.size()))].addr;
            ASSERT_TRUE(view.set_lease(key(k), l)) << "step " << step;
            model[k] = l;
            break;
        }
        case 1: { // a change WireGuard applied (its own addresses only)
            if (!synced || !device.count(k))
                break;
            Peer& p = device[k];
            PeerChange c{key(k), {}, {}, {}, {}};
            if (!p.allowed4.empty() && below(2))
                c.remove4.push_back(
                    p.allowed4[below(static_cast<std::uint32_t>(p.allowed4.size()))].addr);
            const Ip4 fresh = ip4(k * 64u + below(64));
            if (std::none_of(device.begin(), device.end(),
                             [&](const auto& e) {
                                 return e.first != k &&
                                        std::find(e.second.allowed4.begin(),
                                                  e.second.allowed4.end(),
                                                  Prefix4{fresh, 32}) != e.second.allowed4.end();
                             }) &&
                std::find(c.remove4.begin(), c.remove4.end(), fresh) == c.remove4.end())
                c.add4.push_back(fresh);
            ASSERT_TRUE(view.record(c));
            apply_change(c, p.allowed4, p.allowed6);
            model[k] = holds(k, model[k]);
            break;
        }
        case 2: // the operator changes, adds or removes a peer
            if (below(3) == 0)
                device.erase(k);
            else
                device[k] = random_peer(k);
            synced = false;
            break;
        case 3: { // a read that works
            ASSERT_TRUE(view.refresh(reading(listed())));
            synced = true;
            for (auto& [m, l] : model)
                l = holds(m, l);
            break;
        }
        case 4: { // a read that fails part way, or restarts
            auto peers = listed();
            if (below(2)) {
                peers.resize(peers.size() / 2);
                ASSERT_FALSE(view.refresh(reading(peers, make_error(EIO, "cut"))));
                synced = false;
            } else {
                ASSERT_TRUE(view.refresh(reading(peers, {}, listed())));
                synced = true;
                for (auto& [m, l] : model)
                    l = holds(m, l);
            }
            break;
        }
        default:
            break;
        }
        for (std::uint8_t m = 1; m <= 40; m++) {
            const DeviceView::Lease want = model.count(m) ? model[m] : DeviceView::Lease{};
            const DeviceView::Lease got = view.lease(key(m));
            ASSERT_EQ(got.ipv4, want.ipv4) << "step " << step << " peer " << int(m);
            ASSERT_EQ(got.ipv6, want.ipv6) << "step " << step << " peer " << int(m);
        }
    }
}
