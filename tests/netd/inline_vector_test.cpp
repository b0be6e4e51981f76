// InlineVector: the allowed-IP lists of a Peer, inside it up to N entries.
#include "netd/inline_vector.hpp"
#include "netd/wireguard.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

using namespace wgd;
using namespace wgd::netd;

namespace {

Prefix6 p6(std::uint8_t n) {
    Ip6 a = *parse_ip6("2001:db8::");
    a.bytes[15] = n;
    return {a, 128};
}

std::vector<Prefix6> sequence(std::uint8_t count) {
    std::vector<Prefix6> out;
    for (std::uint8_t i = 1; i <= count; i++)
        out.push_back(p6(i));
    return out;
}

using Small = InlineVector<Prefix6, 2>;

Small filled(std::uint8_t count) {
    Small v;
    for (std::uint8_t i = 1; i <= count; i++)
        v.push_back(p6(i));
    return v;
}

} // namespace

TEST(InlineVector, APeerIsNoBiggerThanItsKeyAndItsInlinePrefixes) {
    // 32 key + (3 x 5 = 15 <= 16 heap record, + tag) + (2 x 17 = 34, + tag)
    // + the lease marks: no padding, no vector headers.
    EXPECT_EQ(sizeof(Peer), 32u + 17u + 35u + 1u);
    EXPECT_EQ(alignof(Peer), 1u);
}

TEST(InlineVector, StaysInsideUpToItsInlineCapacity) {
    Small v = filled(2);
    EXPECT_FALSE(v.on_heap());
    EXPECT_EQ(v.to_vector(), sequence(2));
}

TEST(InlineVector, GoesToTheHeapBeyondAndKeepsOrder) {
    for (std::uint8_t n = 3; n <= 40; n++) {
        Small v = filled(n);
        EXPECT_TRUE(v.on_heap()) << int(n);
        EXPECT_GE(v.capacity(), v.size());
        EXPECT_EQ(v.to_vector(), sequence(n)) << int(n);
    }
}

TEST(InlineVector, PushingAnElementOfItselfWhileGrowingCopiesTheValue) {
    Small v = filled(2);
    v.push_back(v[0]); // the push that moves everything to the heap
    EXPECT_EQ(v.size(), 3u);
    EXPECT_EQ(v[2], p6(1));
}

TEST(InlineVector, EqualityComparesElementsWhereverTheyAre) {
    Small heap = filled(3);
    heap.erase(heap.begin() + 2, heap.end()); // back inside
    EXPECT_EQ(heap, filled(2));
    EXPECT_FALSE(heap == filled(1));
    Small other = filled(2);
    other[1] = p6(9);
    EXPECT_FALSE(heap == other);
    EXPECT_EQ(filled(5), filled(5));
    EXPECT_FALSE(filled(5) == filled(6));
}

TEST(InlineVector, EraseRemoveIfKeepsTheOthersInOrder) {
    // as apply_change removes: remove_if then erase
    for (std::uint8_t n = 1; n <= 8; n++) {
        Small v = filled(n);
        auto odd = [](const Prefix6& p) { return p.addr.bytes[15] % 2 == 1; };
        v.erase(std::remove_if(v.begin(), v.end(), odd), v.end());
        std::vector<Prefix6> want = sequence(n);
        want.erase(std::remove_if(want.begin(), want.end(), odd), want.end());
        EXPECT_EQ(v.to_vector(), want) << int(n);
        EXPECT_EQ(v.on_heap(), want.size() > 2) << int(n);
    }
}

TEST(InlineVector, EraseInTheMiddleAndAppendAgain) {
    Small v = filled(4);
    auto it = v.erase(v.begin() + 1, v.begin() + 2);
    EXPECT_EQ(*it, p6(3));
    v.push_back(p6(7));
    EXPECT_EQ(v.to_vector(), (std::vector<Prefix6>{p6(1), p6(3), p6(4), p6(7)}));
}

TEST(InlineVector, CopiesAreIndependent) {
    for (std::uint8_t n : {1, 5}) {
        Small a = filled(n);
        Small b = a;
        b.push_back(p6(99));
        b[0] = p6(98);
        EXPECT_EQ(a, filled(n));
        Small c;
        c = a;
        EXPECT_EQ(c, a);
        c = c; // self-assignment keeps it
        EXPECT_EQ(c, a);
    }
}

TEST(InlineVector, MoveTakesTheElementsAndLeavesTheSourceEmpty) {
    for (std::uint8_t n : {2, 6}) {
        Small a = filled(n);
        Small b = std::move(a);
        EXPECT_EQ(b, filled(n));
        EXPECT_TRUE(a.empty()); // NOLINT(bugprone-use-after-move): documented state
        EXPECT_FALSE(a.on_heap());
        Small c = filled(7);
        c = std::move(b);
        EXPECT_EQ(c, filled(n));
        a.push_back(p6(1)); // usable again
        EXPECT_EQ(a, filled(1));
    }
}

TEST(InlineVector, ClearReturnsInside) {
    Small v = filled(9);
    v.clear();
    EXPECT_TRUE(v.empty());
    EXPECT_FALSE(v.on_heap());
}

TEST(InlineVector, ApplyChangeOnInlineLists) {
    Allowed4 a4{{*parse_ip4("10.0.0.1"), 32}, {*parse_ip4("10.1.0.0"), 16}};
    Allowed6 a6{{*parse_ip6("fe80::1"), 128}};
    PeerChange change{{},
                      {*parse_ip4("10.0.0.2"), *parse_ip4("10.0.0.3")},
                      {*parse_ip4("10.0.0.1")},
                      {*parse_ip6("2001:db8::1"), *parse_ip6("2001:db8::2")},
                      {}};
    apply_change(change, a4, a6);
    EXPECT_EQ(a4, (Allowed4{{*parse_ip4("10.1.0.0"), 16},
                            {*parse_ip4("10.0.0.2"), 32},
                            {*parse_ip4("10.0.0.3"), 32}}));
    EXPECT_FALSE(a4.on_heap());
    EXPECT_EQ(a6, (Allowed6{{*parse_ip6("fe80::1"), 128},
                            {*parse_ip6("2001:db8::1"), 128},
                            {*parse_ip6("2001:db8::2"), 128}}));
    EXPECT_TRUE(a6.on_heap());
}
