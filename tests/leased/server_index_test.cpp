// RefIndex, the lease table's address -> owner index: lookups, replacement,
// growth, backward-shift erase, against std::map under random operations.
#include "leased/server_index.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <random>

using namespace wgd;
using namespace wgd::leased;

namespace {

struct Owner {
    std::uint32_t key;
};
struct KeyOfOwner {
    std::uint32_t operator()(const Owner* o) const { return o->key; }
};
struct MixedHash {
    std::uint64_t operator()(std::uint32_t k) const { return mix64(k); }
};
// Every key in a handful of homes: long runs that wrap around the table end.
struct ClashingHash {
    std::uint64_t operator()(std::uint32_t k) const { return (k % 3) * 5 + 13; }
};

template <class Hash>
using Index = RefIndex<std::uint32_t, Owner*, KeyOfOwner, Hash>;

// Owners at fixed addresses, as the index requires.
struct Owners {
    std::deque<Owner> all;
    Owner* make(std::uint32_t key) { return &all.emplace_back(Owner{key}); }
};

TEST(RefIndex, FindsTheOwnerAssignedUnderItsKey) {
    Owners owners;
    Index<MixedHash> index;
    Owner* a = owners.make(7);
    Owner* b = owners.make(9);
    index.assign(a);
    index.assign(b);
    EXPECT_EQ(index.find(7), a);
    EXPECT_EQ(index.find(9), b);
    EXPECT_EQ(index.size(), 2u);
}

TEST(RefIndex, AbsentKeyIsNotFoundInEmptyOrFilledTable) {
    Owners owners;
    Index<MixedHash> index;
    EXPECT_EQ(index.find(1), nullptr);
    EXPECT_FALSE(index.erase(1));
    index.assign(owners.make(2));
    EXPECT_EQ(index.find(1), nullptr);
    EXPECT_FALSE(index.erase(1));
    EXPECT_EQ(index.size(), 1u);
}

TEST(RefIndex, AssignUnderATakenKeyReplacesTheOwner) {
    Owners owners;
    Index<MixedHash> index;
    Owner* first = owners.make(5);
    Owner* second = owners.make(5);
    index.assign(first);
    index.assign(second);
    EXPECT_EQ(index.find(5), second);
    EXPECT_EQ(index.size(), 1u);
}

TEST(RefIndex, GrowsKeepingEveryEntryAndStaysAtMostSeventyPercentFull) {
    Owners owners;
    Index<MixedHash> index;
    for (std::uint32_t k = 0; k < 100000; k++) {
        index.assign(owners.make(k * 2654435761u));
        ASSERT_LE(index.size() * 10, index.capacity() * 7);
    }
    EXPECT_EQ(index.size(), 100000u);
    for (std::uint32_t k = 0; k < 100000; k++)
        ASSERT_NE(index.find(k * 2654435761u), nullptr) << k;
    EXPECT_EQ(index.find(1), nullptr);
}

TEST(RefIndex, EraseInAClashingRunKeepsTheRestFindable) {
    Owners owners;
    Index<ClashingHash> index;
    for (std::uint32_t k = 0; k < 11; k++) // 11 keys in 3 homes of a 16-slot table
        index.assign(owners.make(k));
    ASSERT_EQ(index.capacity(), 16u);
    for (std::uint32_t gone : {0u, 4u, 8u, 1u}) {
        ASSERT_TRUE(index.erase(gone));
        EXPECT_EQ(index.find(gone), nullptr);
        EXPECT_FALSE(index.erase(gone));
    }
    for (std::uint32_t k : {2u, 3u, 5u, 6u, 7u, 9u, 10u})
        EXPECT_NE(index.find(k), nullptr) << k;
    EXPECT_EQ(index.size(), 7u);
}

TEST(RefIndex, ShrinksAfterMostEntriesLeaveAndFreesItsMemoryWhenEmpty) {
    Owners owners;
    Index<MixedHash> index;
    for (std::uint32_t k = 0; k < 10000; k++)
        index.assign(owners.make(k));
    const std::size_t full_capacity = index.capacity();
    for (std::uint32_t k = 0; k < 9900; k++)
        ASSERT_TRUE(index.erase(k));
    EXPECT_LT(index.capacity(), full_capacity / 8);
    for (std::uint32_t k = 9900; k < 10000; k++)
        ASSERT_NE(index.find(k), nullptr) << k;
    for (std::uint32_t k = 9900; k < 10000; k++)
        ASSERT_TRUE(index.erase(k));
    EXPECT_EQ(index.memory_bytes(), 0u);
    EXPECT_TRUE(index.empty());
}

TEST(RefIndex, ForEachVisitsEveryOwnerOnce) {
    Owners owners;
    Index<MixedHash> index;
    std::map<std::uint32_t, int> seen;
    for (std::uint32_t k = 0; k < 1000; k++)
        index.assign(owners.make(k * 3));
    index.for_each([&](const Owner* o) { seen[o->key]++; });
    ASSERT_EQ(seen.size(), 1000u);
    for (auto& [k, n] : seen) {
        EXPECT_EQ(k % 3, 0u);
        EXPECT_EQ(n, 1);
    }
}

// Random assigns (new keys and replacements) and erases (present and absent
// keys) agree with std::map on every lookup, with a good hash and with one
// that puts every key in three homes.
template <class Hash>
void agrees_with_map(std::uint32_t key_range, int operations) {
    std::mt19937 rng(42);
    Owners owners;
    Index<Hash> index;
    std::map<std::uint32_t, Owner*> reference;
    for (int i = 0; i < operations; i++) {
        const std::uint32_t k = rng() % key_range;
        if (rng() % 3 != 0) {
            Owner* o = owners.make(k);
            index.assign(o);
            reference[k] = o;
        } else {
            ASSERT_EQ(index.erase(k), reference.erase(k) == 1) << "op " << i;
        }
        ASSERT_EQ(index.size(), reference.size()) << "op " << i;
        const std::uint32_t probe = rng() % key_range;
        auto it = reference.find(probe);
        ASSERT_EQ(index.find(probe), it == reference.end() ? nullptr : it->second) << "op " << i;
    }
    for (std::uint32_t k = 0; k < key_range; k++) {
        auto it = reference.find(k);
        ASSERT_EQ(index.find(k), it == reference.end() ? nullptr : it->second) << k;
    }
}

TEST(RefIndex, RandomOperationsAgreeWithStdMap) {
    agrees_with_map<MixedHash>(5000, 200000);
}

TEST(RefIndex, RandomOperationsAgreeWithStdMapWhenKeysClash) {
    agrees_with_map<ClashingHash>(300, 20000);
}

} // namespace
