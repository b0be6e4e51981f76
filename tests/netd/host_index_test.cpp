// HostIndex: who holds a host address, by peer index only.
#include "netd/host_index.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <vector>

using namespace wgd;
using namespace wgd::netd;

namespace {

Ip4 addr(std::uint32_t n) {
    return Ip4::from_u32(0x0a000000u + n);
}

// The peers' host addresses, as the index asks about them.
struct Peers {
    std::vector<std::vector<Ip4>> held;
    bool operator()(std::uint32_t peer, const Ip4& a) const {
        const auto& list = held[peer];
        return std::find(list.begin(), list.end(), a) != list.end();
    }
    void give(std::uint32_t peer, const Ip4& a) { held[peer].push_back(a); }
    void take(std::uint32_t peer, const Ip4& a) {
        auto& list = held[peer];
        list.erase(std::find(list.begin(), list.end(), a));
    }
};

} // namespace

TEST(HostIndex, EmptyFindsNothingAndErasesNothing) {
    HostIndex<Ip4> index;
    Peers peers{{{addr(1)}}};
    EXPECT_EQ(index.find(addr(1), peers), HostIndex<Ip4>::kNone);
    EXPECT_FALSE(index.erase(addr(1), 0, peers));
    EXPECT_FALSE(index.has_room(1)); // never reset: the caller sizes it first
}

TEST(HostIndex, FindsEachAddressUnderItsPeerAndNothingElse) {
    Peers peers{std::vector<std::vector<Ip4>>(50)};
    HostIndex<Ip4> index;
    index.reset(150);
    for (std::uint32_t n = 0; n < 150; n++) {
        peers.give(n % 50, addr(n));
        ASSERT_TRUE(index.assign(addr(n), n % 50, peers));
    }
    EXPECT_EQ(index.size(), 150u);
    for (std::uint32_t n = 0; n < 150; n++)
        EXPECT_EQ(index.find(addr(n), peers), n % 50) << n;
    for (std::uint32_t n = 150; n < 400; n++)
        EXPECT_EQ(index.find(addr(n), peers), HostIndex<Ip4>::kNone) << n;
}

TEST(HostIndex, EraseLeavesATombstoneThatLookupsGoPastAndAssignReuses) {
    // A table so small that runs are long: entries after an erased one must
    // still be found.
    Peers peers{std::vector<std::vector<Ip4>>(12)};
    HostIndex<Ip4> index;
    index.reset(12);
    for (std::uint32_t n = 0; n < 12; n++) {
        peers.give(n, addr(n));
        ASSERT_TRUE(index.assign(addr(n), n, peers));
    }
    for (std::uint32_t n = 0; n < 12; n += 2) {
        EXPECT_TRUE(index.erase(addr(n), n, peers));
        peers.take(n, addr(n));
    }
    EXPECT_EQ(index.size(), 6u);
    EXPECT_EQ(index.tombstones(), 6u);
    for (std::uint32_t n = 0; n < 12; n++)
        EXPECT_EQ(index.find(addr(n), peers), n % 2 ? n : HostIndex<Ip4>::kNone) << n;
    // Given back: into a tombstone on its way, not a fresh slot.
    peers.give(0, addr(0));
    ASSERT_TRUE(index.assign(addr(0), 0, peers));
    EXPECT_EQ(index.tombstones(), 5u);
    EXPECT_EQ(index.find(addr(0), peers), 0u);
}

TEST(HostIndex, EraseOnlyForgetsTheAddressOfThePeerNamed) {
    Peers peers{{{addr(1)}, {addr(2)}}};
    HostIndex<Ip4> index;
    index.reset(2);
    ASSERT_TRUE(index.assign(addr(1), 0, peers));
    ASSERT_TRUE(index.assign(addr(2), 1, peers));
    EXPECT_FALSE(index.erase(addr(1), 1, peers));
    EXPECT_EQ(index.find(addr(1), peers), 0u);
    EXPECT_FALSE(index.erase(addr(3), 0, peers));
    EXPECT_EQ(index.size(), 2u);
}

TEST(HostIndex, AssignOfAnIndexedAddressReplacesItsPeer) {
    Peers peers{{{addr(1)}, {}}};
    HostIndex<Ip4> index;
    index.reset(2);
    ASSERT_TRUE(index.assign(addr(1), 0, peers));
    peers.give(1, addr(1));
    ASSERT_TRUE(index.assign(addr(1), 1, peers));
    EXPECT_EQ(index.size(), 1u);
    EXPECT_EQ(index.find(addr(1), peers), 1u);
}

TEST(HostIndex, RefusesToFillOverThreeQuartersAndGrowsByReset) {
    Peers peers{std::vector<std::vector<Ip4>>(1000)}; // peer n holds addr(n)
    HostIndex<Ip4> index;
    index.reset(100);
    std::uint32_t n = 0;
    while (index.has_room(1)) {
        peers.give(n, addr(n));
        ASSERT_TRUE(index.assign(addr(n), n, peers));
        n++;
    }
    EXPECT_GE(n, 100u); // the room promised by reset
    EXPECT_LE(index.size() * 4, index.capacity() * 3);
    peers.give(n, addr(n));
    EXPECT_FALSE(index.assign(addr(n), n, peers));
    EXPECT_EQ(index.find(addr(n), peers), HostIndex<Ip4>::kNone);
    // The caller rebuilds from its peers.
    index.reset(2 * n);
    for (std::uint32_t i = 0; i <= n; i++)
        ASSERT_TRUE(index.assign(addr(i), i, peers));
    for (std::uint32_t i = 0; i <= n; i++)
        EXPECT_EQ(index.find(addr(i), peers), i) << i;
}

// Slots name peers: a peer's several addresses share its slots, and erasing
// one address must leave the others found.
TEST(HostIndex, APeersOtherAddressesStayFoundWhenOneIsErased) {
    Peers peers{std::vector<std::vector<Ip4>>(2)};
    HostIndex<Ip4> index;
    index.reset(40);
    for (std::uint32_t n = 0; n < 40; n++) {
        peers.give(n % 2, addr(n));
        ASSERT_TRUE(index.assign(addr(n), n % 2, peers));
    }
    for (std::uint32_t n = 0; n < 40; n += 4) {
        ASSERT_TRUE(index.erase(addr(n), 0, peers));
        peers.take(0, addr(n));
    }
    EXPECT_EQ(index.size(), 30u);
    for (std::uint32_t n = 0; n < 40; n++)
        EXPECT_EQ(index.find(addr(n), peers), n % 4 == 0 ? HostIndex<Ip4>::kNone : n % 2) << n;
}

// Whatever the key: netd draws one at random.
static void random_operations_agree_with_a_map(std::uint64_t key) {
    std::mt19937 rng(9);
    Peers peers{std::vector<std::vector<Ip4>>(64)};
    std::map<std::uint32_t, std::uint32_t> model; // address -> peer
    HostIndex<Ip4> index(key);
    index.reset(16);
    int rebuilds = 0;
    for (int step = 0; step < 20000; step++) {
        const std::uint32_t a = rng() % 512;
        const std::uint32_t peer = rng() % 64;
        if (rng() % 2) {
            if (auto it = model.find(a); it != model.end()) {
                ASSERT_TRUE(index.erase(addr(a), it->second, peers));
                peers.take(it->second, addr(a));
                model.erase(it);
            }
            if (!index.has_room(1)) {
                index.reset(model.size() + 1);
                for (auto [addr_n, p] : model)
                    ASSERT_TRUE(index.assign(addr(addr_n), p, peers));
                rebuilds++;
            }
            peers.give(peer, addr(a));
            ASSERT_TRUE(index.assign(addr(a), peer, peers));
            model[a] = peer;
        } else if (auto it = model.find(a); it != model.end()) {
            ASSERT_TRUE(index.erase(addr(a), it->second, peers));
            peers.take(it->second, addr(a));
            model.erase(it);
        }
        ASSERT_EQ(index.size(), model.size());
        if (step % 97 == 0)
            for (std::uint32_t b = 0; b < 512; b++) {
                auto it = model.find(b);
                ASSERT_EQ(index.find(addr(b), peers),
                          it == model.end() ? HostIndex<Ip4>::kNone : it->second)
                    << "step " << step << " address " << b;
            }
    }
    EXPECT_GT(rebuilds, 3); // tombstones filled it up again and again
}

TEST(HostIndex, RandomAssignsAndErasesAgreeWithAMapWhateverTheKey) {
    for (std::uint64_t key : {0ull, 0x243f6a8885a308d3ull, ~0ull}) {
        SCOPED_TRACE(key);
        random_operations_agree_with_a_map(key);
    }
}
