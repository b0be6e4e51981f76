#include "leased/pool.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <map>
#include <set>
#include <vector>

using namespace wgd;
using namespace wgd::leased;

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

std::set<std::uint32_t> drain(Pool4& pool, RandomSource& rng) {
    std::set<std::uint32_t> got;
    while (auto a = pool.allocate(rng))
        EXPECT_TRUE(got.insert(a->to_u32()).second) << "drawn twice: " << to_string(*a);
    return got;
}

} // namespace

TEST(Pool, ZeroHostAndBroadcastAreNotAllocatable) {
    Pool4 pool;
    pool.add_prefix(p4("10.0.0.0", 29));
    DeterministicRandom rng(1);
    auto got = drain(pool, rng);
    EXPECT_EQ(got.size(), 6u);
    EXPECT_FALSE(got.count(ip4("10.0.0.0").to_u32()));
    EXPECT_FALSE(got.count(ip4("10.0.0.7").to_u32()));
}

TEST(Pool, Slash31KeepsItsLastAddressButNotItsZeroHost) {
    Pool4 pool;
    pool.add_prefix(p4("10.0.0.0", 31));
    DeterministicRandom rng(1);
    auto got = drain(pool, rng);
    EXPECT_EQ(got, (std::set<std::uint32_t>{ip4("10.0.0.1").to_u32()}));
}

TEST(Pool, ExhaustedPoolAnswersUnavailable) {
    Pool4 pool;
    pool.add_prefix(p4("10.0.0.0", 30));
    DeterministicRandom rng(3);
    EXPECT_TRUE(pool.allocate(rng));
    EXPECT_TRUE(pool.allocate(rng));
    EXPECT_FALSE(pool.allocate(rng));
    EXPECT_EQ(pool.free_count(), 0u);
}

TEST(Pool, OverlappingPrefixesDoNotDoubleCount) {
    Pool4 pool;
    pool.add_prefix(p4("10.0.0.0", 24));
    pool.add_prefix(p4("10.0.0.0", 25));   // same zero host, own broadcast .127
    pool.add_prefix(p4("10.0.0.128", 25)); // zero host .128
    EXPECT_EQ(pool.free_count(), 256u - 4u);
    DeterministicRandom rng(9);
    auto got = drain(pool, rng);
    EXPECT_EQ(got.size(), 252u);
    EXPECT_FALSE(got.count(ip4("10.0.0.127").to_u32()));
    EXPECT_FALSE(got.count(ip4("10.0.0.128").to_u32()));
}

TEST(Pool, ExcludedAddressesAndPrefixesAreNeverDrawn) {
    Pool4 pool;
    pool.add_prefix(p4("10.0.0.0", 24));
    pool.exclude(p4("10.0.0.1", 32));  // own address
    pool.exclude(p4("10.0.0.64", 26)); // a /26 routed statically to a peer
    DeterministicRandom rng(5);
    auto got = drain(pool, rng);
    EXPECT_EQ(got.size(), 256u - 2u - 1u - 64u);
    for (auto a : got) {
        EXPECT_NE(a, ip4("10.0.0.1").to_u32());
        EXPECT_FALSE(p4("10.0.0.64", 26).contains(Ip4::from_u32(a)));
    }
}

TEST(Pool, RemovedPrefixStopsAllocating) {
    Pool4 pool;
    pool.add_prefix(p4("10.0.0.0", 24));
    pool.add_prefix(p4("10.1.0.0", 24));
    EXPECT_TRUE(pool.remove_prefix(p4("10.0.0.0", 24)));
    EXPECT_FALSE(pool.remove_prefix(p4("10.0.0.0", 24)));
    DeterministicRandom rng(5);
    for (auto a : drain(pool, rng))
        EXPECT_TRUE(p4("10.1.0.0", 24).contains(Ip4::from_u32(a)));
}

TEST(Pool, WholeAddressSpacesWork) {
    Pool4 pool4;
    pool4.add_prefix(p4("0.0.0.0", 0));
    // All of IPv4 minus 0/8, 127/8, 169.254/16, 224/4 and 240/4 (the zero
    // host and the broadcast are inside them).
    EXPECT_EQ(pool4.free_count(), (std::uint64_t{1} << 32) - 2 * (std::uint64_t{1} << 24) -
                                      (std::uint64_t{1} << 16) - 2 * (std::uint64_t{1} << 28));
    Pool6 pool6;
    pool6.add_prefix(p6("::", 0));
    // All of IPv6 minus ::/96, ::ffff:0:0/96, fe80::/10 and ff00::/8.
    const u128 all6 = ~u128{0} - (u128{1} << 33) - (u128{1} << 118) - (u128{1} << 120) + 1;
    EXPECT_EQ(pool6.free_count(), all6);
    DeterministicRandom rng(11);
    auto a = pool6.allocate(rng);
    ASSERT_TRUE(a);
    EXPECT_FALSE(pool6.is_free(*a));
    EXPECT_EQ(pool6.free_count(), all6 - 1);
}

// Routes as wide as 0.0.0.0/0, 0.0.0.0/1 or ::/1 cover addresses no host
// can have: none of them is free, their neighbours are.
TEST(Pool, WideRoutesExcludeEveryAddressNoHostCanHave) {
    for (int len : {0, 1}) {
        Pool4 pool;
        pool.add_prefix(p4("0.0.0.0", len));
        for (const char* never :
             {"0.0.0.0", "0.0.0.1", "0.255.255.255", "127.0.0.0", "127.0.0.1", "127.255.255.255"})
            EXPECT_FALSE(pool.is_free(ip4(never))) << never << " in 0.0.0.0/" << len;
        for (const char* fine : {"1.0.0.0", "126.255.255.255", "10.0.0.0", "100.64.0.1"})
            EXPECT_TRUE(pool.is_free(ip4(fine))) << fine << " in 0.0.0.0/" << len;
    }
    Pool4 all;
    all.add_prefix(p4("0.0.0.0", 0));
    for (const char* never : {"169.254.0.0", "169.254.1.1", "169.254.255.255", "224.0.0.0",
                              "224.0.0.251", "239.255.255.255", "240.0.0.0", "255.255.255.255"})
        EXPECT_FALSE(all.is_free(ip4(never))) << never;
    for (const char* fine : {"128.0.0.0", "169.253.255.255", "169.255.0.0", "223.255.255.255"})
        EXPECT_TRUE(all.is_free(ip4(fine))) << fine;
    Pool4 half;
    half.add_prefix(p4("0.0.0.0", 1));
    EXPECT_EQ(half.free_count(), (std::uint64_t{1} << 31) - 2 * (std::uint64_t{1} << 24));

    Pool6 low, high;
    low.add_prefix(p6("::", 1));
    high.add_prefix(p6("8000::", 1));
    for (const char* never :
         {"::", "::1", "::2", "::ffff:ffff", "::ffff:0:0", "::ffff:10.0.0.1", "::ffff:ffff:ffff"})
        EXPECT_FALSE(low.is_free(*parse_ip6(never))) << never;
    for (const char* fine : {"::1:0:0", "::fffe:ffff:ffff", "::1:0:0:0", "2001:db8::1"})
        EXPECT_TRUE(low.is_free(*parse_ip6(fine))) << fine;
    EXPECT_EQ(low.free_count(), (u128{1} << 127) - (u128{1} << 33));
    for (const char* never : {"fe80::", "fe80::1", "febf:ffff::1", "ff00::", "ff02::1",
                              "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"})
        EXPECT_FALSE(high.is_free(*parse_ip6(never))) << never;
    for (const char* fine : {"8000::1", "fe7f:ffff::1", "fec0::1", "feff:ffff::1"})
        EXPECT_TRUE(high.is_free(*parse_ip6(fine))) << fine;
    EXPECT_EQ(high.free_count(), (u128{1} << 127) - (u128{1} << 118) - (u128{1} << 120) - 1)
        << "and its zero host 8000::";
}

TEST(Pool, EveryDrawFromAllOfIpv4AndIpv6IsLeasable) {
    Pool4 pool4;
    pool4.add_prefix(p4("0.0.0.0", 0));
    Pool6 pool6;
    pool6.add_prefix(p6("::", 0));
    pool6.add_prefix(p6("::", 1)); // overlapping wide routes count once
    DeterministicRandom rng(3);
    for (int i = 0; i < 20000; i++) {
        auto a4 = pool4.allocate(rng);
        ASSERT_TRUE(a4);
        ASSERT_TRUE(is_leasable(*a4)) << to_string(*a4);
        auto a6 = pool6.allocate(rng);
        ASSERT_TRUE(a6);
        ASSERT_TRUE(is_leasable(*a6)) << to_string(*a6);
    }
}

// The exclusions leave draws uniform over what remains: 100,000 draws with
// the real source from 0.0.0.0/0, counted per /4 (each bucket expects its
// share of the free addresses: 0/4 and 112/4 lose a /8, 160/4 a /16,
// 224/4 and 240/4 are empty); chi-square at the 0.001 level.
TEST(Pool, DrawsFromAWideRouteAreUniformOverTheUsableAddresses) {
    Pool4 pool;
    pool.add_prefix(p4("0.0.0.0", 0));
    const double total = static_cast<double>(pool.free_count());
    std::array<double, 16> share{};
    for (unsigned b = 0; b < 16; b++)
        share[b] = static_cast<double>(std::uint64_t{1} << 28);
    share[0] -= static_cast<double>(std::uint64_t{1} << 24);
    share[7] -= static_cast<double>(std::uint64_t{1} << 24);
    share[10] -= static_cast<double>(std::uint64_t{1} << 16);
    share[14] = share[15] = 0;
    SodiumRandom rng;
    std::array<std::uint64_t, 16> hits{};
    const int draws = 100000;
    for (int i = 0; i < draws; i++) {
        auto a = pool.allocate(rng);
        ASSERT_TRUE(a);
        ASSERT_TRUE(is_leasable(*a)) << to_string(*a);
        hits[a->bytes[0] >> 4]++;
        pool.release(*a);
    }
    EXPECT_EQ(hits[14] + hits[15], 0u);
    double chi2 = 0;
    for (unsigned b = 0; b < 14; b++) {
        const double expected = draws * share[b] / total;
        const double d = static_cast<double>(hits[b]) - expected;
        chi2 += d * d / expected;
    }
    EXPECT_LT(chi2, 34.53) << "chi-square critical value at 0.001 for 13 degrees of freedom";
}

TEST(Pool, RemovingAWideRouteTakesItsExclusionsAlong) {
    Pool4 pool;
    const auto nodes = pool.node_count();
    pool.add_prefix(p4("0.0.0.0", 0));
    pool.add_prefix(p4("10.0.0.0", 8));
    EXPECT_TRUE(pool.remove_prefix(p4("0.0.0.0", 0)));
    EXPECT_EQ(pool.free_count(), (std::uint64_t{1} << 24) - 2);
    EXPECT_FALSE(pool.is_free(ip4("127.0.0.1")));
    EXPECT_TRUE(pool.remove_prefix(p4("10.0.0.0", 8)));
    EXPECT_EQ(pool.free_count(), 0u);
    EXPECT_EQ(pool.node_count(), nodes);
}

TEST(Pool, Ipv6Slash64DrawsInsideThePrefix) {
    Pool6 pool;
    pool.add_prefix(p6("2001:db8::", 64));
    DeterministicRandom rng(2);
    for (int i = 0; i < 1000; i++) {
        auto a = pool.allocate(rng);
        ASSERT_TRUE(a);
        EXPECT_TRUE(p6("2001:db8::", 64).contains(*a));
    }
    EXPECT_EQ(pool.free_count(), (u128{1} << 64) - 1 - 1000);
}

TEST(Pool, MemoryReturnsToBaselineAfterAllReleases) {
    Pool6 pool;
    pool.add_prefix(p6("2001:db8::", 64));
    const auto nodes = pool.node_count();
    const auto bytes = pool.memory_bytes();
    DeterministicRandom rng(2);
    std::vector<Ip6> held;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 20000; i++)
            held.push_back(*pool.allocate(rng));
        for (std::size_t i = 0; i < held.size(); i += 2)
            pool.release(held[i]); // churn: release half, allocate again
        std::vector<Ip6> kept;
        for (std::size_t i = 1; i < held.size(); i += 2)
            kept.push_back(held[i]);
        held = kept;
    }
    EXPECT_GT(pool.node_count(), nodes);
    // The copies made when memory was given back still hold the same leases.
    EXPECT_EQ(pool.free_count(), (u128{1} << 64) - 1 - held.size());
    for (auto& a : held)
        ASSERT_FALSE(pool.is_free(a));
    for (std::size_t i = 0; i + 1 < held.size(); i += 2)
        pool.release(held[i]);
    EXPECT_LT(pool.memory_bytes(), 4 * 1024 * 1024u) << "most chunks given back";
    for (std::size_t i = 1; i < held.size(); i += 2)
        ASSERT_FALSE(pool.is_free(held[i]));
    for (std::size_t i = 0; i + 1 < held.size(); i += 2)
        ASSERT_TRUE(pool.is_free(held[i]));
    for (std::size_t i = 1; i < held.size(); i += 2)
        pool.release(held[i]);
    held.clear();
    for (auto& a : held)
        pool.release(a);
    EXPECT_EQ(pool.node_count(), nodes);
    EXPECT_EQ(pool.memory_bytes(), bytes);
    EXPECT_EQ(pool.free_count(), (u128{1} << 64) - 1);
}

// A reference model: the set of free addresses of a small space, computed
// from scratch from the same facts.
TEST(Pool, AgreesWithReferenceModelOverRandomOperations) {
    for (std::uint64_t seed = 1; seed <= 300; seed++) {
        DeterministicRandom ops(seed);
        Pool4 pool;
        std::multiset<Prefix4> pools, excluded;
        std::multiset<std::uint32_t> taken;
        auto in_model = [&](std::uint32_t a) {
            bool covered = false;
            for (auto& p : pools)
                if (p.contains(Ip4::from_u32(a))) {
                    covered = true;
                    auto base = p.masked().addr.to_u32();
                    std::uint32_t bcast = base | (p.len == 0 ? ~0u : ~(~0u << (32 - p.len)));
                    if (a == base || (p.len < 31 && a == bcast))
                        return false;
                }
            for (auto& p : excluded)
                if (p.contains(Ip4::from_u32(a)))
                    return false;
            return covered && !taken.count(a);
        };
        // Space: 192.168.0.0/26, so the model can enumerate it.
        const std::uint32_t base = ip4("192.168.0.0").to_u32();
        auto random_prefix = [&] {
            unsigned len = 26 + static_cast<unsigned>(ops.uniform(7));
            auto a = Ip4::from_u32(base + static_cast<std::uint32_t>(ops.uniform(64)));
            return Prefix4{a, static_cast<std::uint8_t>(len)}.masked();
        };
        for (int step = 0; step < 200; step++) {
            switch (ops.uniform(6)) {
            case 0: {
                auto p = random_prefix();
                pool.add_prefix(p);
                pools.insert(p);
                break;
            }
            case 1: {
                auto p = random_prefix();
                bool present = pools.count(p) > 0;
                ASSERT_EQ(pool.remove_prefix(p), present);
                if (present)
                    pools.erase(pools.find(p));
                break;
            }
            case 2: {
                auto p = random_prefix();
                if (ops.uniform(2)) {
                    pool.exclude(p);
                    excluded.insert(p);
                } else if (excluded.count(p)) {
                    ASSERT_TRUE(pool.unexclude(p));
                    excluded.erase(excluded.find(p));
                }
                break;
            }
            case 3:
            case 4: {
                auto a = pool.allocate(ops);
                std::size_t free_in_model = 0;
                for (std::uint32_t i = 0; i < 64; i++)
                    free_in_model += in_model(base + i);
                if (!a) {
                    ASSERT_EQ(free_in_model, 0u) << "seed " << seed;
                } else {
                    ASSERT_TRUE(in_model(a->to_u32())) << "seed " << seed << " " << to_string(*a);
                    taken.insert(a->to_u32());
                }
                break;
            }
            case 5:
                if (!taken.empty()) {
                    auto it = taken.begin();
                    std::advance(it, static_cast<long>(ops.uniform(taken.size())));
                    pool.release(Ip4::from_u32(*it));
                    taken.erase(it);
                }
                break;
            }
            std::uint64_t model_free = 0;
            for (std::uint32_t i = 0; i < 64; i++) {
                bool f = in_model(base + i);
                model_free += f;
                ASSERT_EQ(pool.is_free(Ip4::from_u32(base + i)), f)
                    << "seed " << seed << " step " << step;
            }
            ASSERT_EQ(pool.free_count(), model_free) << "seed " << seed << " step " << step;
        }
    }
}

// 100,000 draws with the real source from a pool with holes; chi-square
// over its free addresses at the 0.001 level.
TEST(Pool, DrawsAreUniformOverFreeAddressesWithSodium) {
    Pool4 pool;
    pool.add_prefix(p4("10.0.0.0", 24));
    pool.add_prefix(p4("10.0.2.0", 25)); // a pool with a gap between prefixes
    pool.exclude(p4("10.0.0.32", 27));
    pool.exclude(p4("10.0.0.77", 32));
    DeterministicRandom fill(1);
    std::vector<Ip4> held;
    for (int i = 0; i < 50; i++)
        held.push_back(*pool.allocate(fill)); // leases make holes too
    const auto free_addresses = pool.free_count();
    ASSERT_GT(free_addresses, 200u);

    SodiumRandom rng;
    std::map<std::uint32_t, std::uint64_t> hits;
    const int draws = 100000;
    for (int i = 0; i < draws; i++) {
        auto a = pool.allocate(rng);
        ASSERT_TRUE(a);
        hits[a->to_u32()]++;
        pool.release(*a);
    }
    EXPECT_EQ(hits.size(), free_addresses) << "every free address is reachable";
    const double expected = static_cast<double>(draws) / static_cast<double>(free_addresses);
    double chi2 = 0;
    for (auto& [addr, n] : hits)
        chi2 +=
            (static_cast<double>(n) - expected) * (static_cast<double>(n) - expected) / expected;
    // Critical value at p = 0.001 for k-1 degrees of freedom (Wilson-Hilferty).
    const double k = static_cast<double>(free_addresses) - 1, z = 3.090;
    const double critical = k * std::pow(1 - 2 / (9 * k) + z * std::sqrt(2 / (9 * k)), 3);
    EXPECT_LT(chi2, critical);
}

// rank(a) counts the open addresses below a, select(r) is the open address
// of rank r: both must follow address order, whether the trie answers from
// its few sorted runs or (with many marks) by walking.
TEST(PoolTrie, RankAndSelectFollowAddressOrderWithFewAndManyMarks) {
    using Trie = detail::CountingTrie<std::uint32_t, std::uint64_t, 32>;
    const std::uint32_t base = ip4("192.168.0.0").to_u32();
    for (std::uint64_t seed = 1; seed <= 60; seed++) {
        DeterministicRandom ops(seed);
        Trie trie;
        std::multiset<std::pair<int, std::pair<std::uint32_t, unsigned>>> marks;
        for (int step = 0; step < 150; step++) {
            const unsigned len = 26 + static_cast<unsigned>(ops.uniform(7));
            const std::uint32_t a =
                (base + static_cast<std::uint32_t>(ops.uniform(64))) & (~0u << (32 - len));
            const int kind = static_cast<int>(ops.uniform(4));
            const auto mark = (kind & 1) ? Trie::Mark::Block : Trie::Mark::Pool;
            if (kind < 2) {
                trie.add(mark, a, len);
                marks.insert({kind & 1, {a, len}});
            } else {
                auto it = marks.find({kind & 1, {a, len}});
                ASSERT_EQ(trie.remove(mark, a, len), it != marks.end());
                if (it != marks.end())
                    marks.erase(it);
            }
            std::uint64_t open_below = 0;
            for (std::uint32_t x = base - 4; x < base + 68; x++) {
                ASSERT_EQ(trie.rank(x), open_below) << "seed " << seed << " step " << step;
                if (trie.is_free(x)) {
                    ASSERT_EQ(trie.select(open_below), std::optional<std::uint32_t>(x))
                        << "seed " << seed << " step " << step;
                    open_below++;
                }
            }
            ASSERT_EQ(trie.free_count(), open_below);
            ASSERT_FALSE(trie.select(open_below));
        }
    }
}

TEST(Pool, LeaseUnderALaterExclusionIsCountedOnceAndReturnsWithIt) {
    Pool4 pool;
    pool.add_prefix(p4("10.0.0.0", 29)); // 6 free
    ASSERT_TRUE(pool.take(ip4("10.0.0.3")));
    EXPECT_EQ(pool.free_count(), 5u);
    pool.exclude(p4("10.0.0.0", 30)); // covers .1 .2 .3 (and the zero host)
    EXPECT_EQ(pool.free_count(), 3u);
    pool.release(ip4("10.0.0.3"));
    EXPECT_EQ(pool.free_count(), 3u) << "still excluded";
    EXPECT_TRUE(pool.unexclude(p4("10.0.0.0", 30)));
    EXPECT_EQ(pool.free_count(), 6u);
    EXPECT_TRUE(pool.is_free(ip4("10.0.0.3")));

    ASSERT_TRUE(pool.take(ip4("10.0.0.3")));
    pool.exclude(p4("10.0.0.3", 32));
    EXPECT_TRUE(pool.unexclude(p4("10.0.0.3", 32)));
    EXPECT_EQ(pool.free_count(), 5u) << "the lease is back in force";
    EXPECT_FALSE(pool.is_free(ip4("10.0.0.3")));
    DeterministicRandom rng(4);
    auto got = drain(pool, rng);
    EXPECT_EQ(got.size(), 5u);
    EXPECT_FALSE(got.count(ip4("10.0.0.3").to_u32()));
}

TEST(Pool, LeaseOnTheZeroHostOfANewPrefixIsNotCountedTwice) {
    Pool4 pool;
    pool.add_prefix(p4("10.0.0.0", 16));
    ASSERT_TRUE(pool.take(ip4("10.0.1.0")));
    pool.add_prefix(p4("10.0.1.0", 24)); // its zero host is the lease, its broadcast is new
    EXPECT_EQ(pool.free_count(), 65534u - 2u);
    pool.release(ip4("10.0.1.0"));
    EXPECT_EQ(pool.free_count(), 65534u - 2u) << "a zero host now";
    EXPECT_FALSE(pool.is_free(ip4("10.0.1.0")));
    EXPECT_TRUE(pool.remove_prefix(p4("10.0.1.0", 24)));
    EXPECT_EQ(pool.free_count(), 65534u);
    EXPECT_TRUE(pool.is_free(ip4("10.0.1.0")));
}

// Many marks: the open addresses are more runs than the trie keeps as an
// array, and the draw walks the trie instead; it still yields each free
// address exactly once.
TEST(Pool, DrainWithManyHolesYieldsEachFreeAddressOnce) {
    Pool4 pool;
    pool.add_prefix(p4("10.0.0.0", 24));
    for (std::uint32_t i = 4; i < 256; i += 4)
        pool.exclude(Prefix4{Ip4::from_u32(ip4("10.0.0.0").to_u32() + i), 32});
    DeterministicRandom fill(6);
    std::vector<Ip4> held;
    for (int i = 0; i < 40; i++)
        held.push_back(*pool.allocate(fill));
    const auto free_before = pool.free_count();
    EXPECT_EQ(free_before, 256u - 64u - 1u - 40u);
    DeterministicRandom rng(7);
    auto got = drain(pool, rng);
    EXPECT_EQ(got.size(), free_before);
    for (auto a : got) {
        EXPECT_NE(a % 4, 0u) << to_string(Ip4::from_u32(a));
        EXPECT_NE(a & 0xff, 255u);
    }
    for (auto& h : held)
        EXPECT_FALSE(got.count(h.to_u32()));
}

// The draw finds its place among the leases and inserts there in one
// descent: with a single free address left, wherever it sits (before every
// lease, after every lease, at a leaf boundary), that is the one drawn.
TEST(Pool, TheOnlyFreeAddressIsDrawnWhereverItSitsAmongTheLeases) {
    const std::uint32_t base = ip4("10.0.0.0").to_u32();
    for (std::uint32_t hole = 1; hole <= 254; hole++) {
        Pool4 pool;
        pool.add_prefix(p4("10.0.0.0", 24));
        for (std::uint32_t host = 1; host <= 254; host++)
            if (host != hole) {
                ASSERT_TRUE(pool.take(Ip4::from_u32(base + host)));
            }
        DeterministicRandom rng(hole);
        auto a = pool.allocate(rng);
        ASSERT_TRUE(a) << "hole " << hole;
        EXPECT_EQ(a->to_u32(), base + hole);
        EXPECT_FALSE(pool.allocate(rng));
    }
}

// The same with several prefixes, where the draw ranks leases through the
// runs of open addresses rather than one subtraction.
TEST(Pool, TheOnlyFreeAddressIsDrawnAcrossSeveralPrefixes) {
    const std::uint32_t low = ip4("10.0.0.0").to_u32(), high = ip4("10.0.8.0").to_u32();
    std::vector<std::uint32_t> usable;
    for (std::uint32_t host = 1; host <= 254; host++) {
        usable.push_back(low + host);
        usable.push_back(high + host);
    }
    for (std::uint32_t hole : usable) {
        Pool4 pool;
        pool.add_prefix(p4("10.0.0.0", 24));
        pool.add_prefix(p4("10.0.8.0", 24));
        for (std::uint32_t a : usable)
            if (a != hole) {
                ASSERT_TRUE(pool.take(Ip4::from_u32(a)));
            }
        DeterministicRandom rng(hole);
        auto got = pool.allocate(rng);
        ASSERT_TRUE(got) << to_string(Ip4::from_u32(hole));
        EXPECT_EQ(got->to_u32(), hole);
        EXPECT_FALSE(pool.allocate(rng));
    }
}

// Draws alone fill the pool: leaves and inner nodes split under the draws'
// own inserts, and every free address comes out exactly once, then all of
// them go back.
TEST(Pool, DrawsAloneFillAPoolThroughManySplitsAndGiveEverythingBack) {
    for (bool two : {false, true}) { // one run of free addresses; two, a hole between
        Pool4 pool;
        pool.add_prefix(p4("10.0.0.0", 19));
        if (two)
            pool.exclude(p4("10.0.8.0", 24));
        const auto nodes = pool.node_count();
        const std::uint64_t free_before = pool.free_count();
        DeterministicRandom rng(11);
        auto got = drain(pool, rng);
        EXPECT_EQ(got.size(), free_before);
        EXPECT_EQ(free_before, two ? 8190u - 256u : 8190u);
        for (auto a : got) {
            EXPECT_TRUE(p4("10.0.0.0", 19).contains(Ip4::from_u32(a)));
            EXPECT_FALSE(two && p4("10.0.8.0", 24).contains(Ip4::from_u32(a)));
        }
        EXPECT_GT(pool.node_count(), nodes + 32) << "a deep tree of leases";
        for (auto a : got)
            pool.release(Ip4::from_u32(a));
        EXPECT_EQ(pool.free_count(), free_before);
        EXPECT_EQ(pool.node_count(), nodes);
    }
}

// IPv6 leases are kept as 64-bit keys while they share one /64; a draw or a
// take in another /64 switches to full keys without losing or inventing any.
TEST(Pool, Ipv6LeasesInSeveral64sAreAllKeptAcrossTheSwitchToFullKeys) {
    Pool6 pool;
    pool.add_prefix(p6("2001:db8::", 120));
    pool.add_prefix(p6("2001:db8:0:1::", 120));
    ASSERT_EQ(pool.free_count(), 510u);
    const auto nodes = pool.node_count();
    std::vector<Ip6> held;
    auto first = *parse_ip6("2001:db8::1");
    for (int i = 0; i < 100; i++) { // all in the first /64
        Ip6 a = first;
        a.bytes[15] = static_cast<std::uint8_t>(1 + i);
        ASSERT_TRUE(pool.take(a));
        held.push_back(a);
    }
    DeterministicRandom rng(12);
    while (auto a = pool.allocate(rng)) {
        EXPECT_TRUE(p6("2001:db8::", 120).contains(*a) || p6("2001:db8:0:1::", 120).contains(*a));
        held.push_back(*a);
    }
    EXPECT_EQ(held.size(), 510u);
    std::set<Ip6> distinct(held.begin(), held.end());
    EXPECT_EQ(distinct.size(), 510u);
    for (auto& a : held)
        EXPECT_FALSE(pool.is_free(a));
    for (std::size_t i = 0; i < held.size(); i += 2)
        pool.release(held[i]);
    EXPECT_EQ(pool.free_count(), 255u);
    for (std::size_t i = 0; i < held.size(); i++)
        EXPECT_EQ(pool.is_free(held[i]), i % 2 == 0);
    std::size_t free_in_first = 0;
    for (std::size_t i = 0; i < held.size(); i += 2)
        free_in_first += p6("2001:db8::", 120).contains(held[i]) ? 1 : 0;
    EXPECT_TRUE(pool.remove_prefix(p6("2001:db8:0:1::", 120))); // revokes the second /64
    EXPECT_EQ(pool.free_count(), free_in_first);
    for (std::size_t i = 1; i < held.size(); i += 2)
        pool.release(held[i]);
    EXPECT_EQ(pool.free_count(), 255u);
    Pool6 fresh;
    fresh.add_prefix(p6("2001:db8::", 120));
    EXPECT_EQ(pool.node_count(), fresh.node_count()) << "every lease node freed";
    EXPECT_GT(nodes, fresh.node_count());
}
