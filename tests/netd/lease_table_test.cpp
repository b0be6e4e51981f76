// LeaseTable: the leased set's peers, in a dense deque found by hash.
#include "netd/lease_table.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <vector>

using namespace wgd;
using namespace wgd::netd;

namespace {

PublicKey key(std::uint32_t n) {
    PublicKey k;
    for (int i = 0; i < 4; i++) {
        k.bytes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(n >> (8 * i));
        k.bytes[static_cast<std::size_t>(28 + i)] = static_cast<std::uint8_t>(n >> (8 * i));
    }
    return k;
}

// Every key of the model is found with its value, and no other key is.
void expect_same(const LeaseTable<std::uint32_t>& table,
                 const std::map<std::uint32_t, std::uint32_t>& model, std::uint32_t keys) {
    ASSERT_EQ(table.size(), model.size());
    for (std::uint32_t n = 0; n < keys; n++) {
        const std::uint32_t* v = table.find(key(n));
        auto it = model.find(n);
        if (it == model.end()) {
            EXPECT_EQ(v, nullptr) << "key " << n;
        } else {
            ASSERT_NE(v, nullptr) << "key " << n;
            EXPECT_EQ(*v, it->second) << "key " << n;
        }
    }
}

} // namespace

TEST(LeaseTable, RandomAddsChangesAndErasesAgreeWithStdMap) {
    std::mt19937 rng(7);
    LeaseTable<std::uint32_t> table(0x1234);
    std::map<std::uint32_t, std::uint32_t> model;
    constexpr std::uint32_t kKeys = 3000;
    for (int op = 0; op < 60000; op++) {
        const std::uint32_t n = rng() % kKeys;
        switch (rng() % 4) {
        case 0:
        case 1:
            table[key(n)] = static_cast<std::uint32_t>(op);
            model[n] = static_cast<std::uint32_t>(op);
            break;
        case 2:
            table.erase(key(n));
            model.erase(n);
            break;
        case 3:
            if (std::uint32_t* v = table.find(key(n)))
                *v += 1, model[n] += 1;
            break;
        }
        if (op % 5000 == 0)
            expect_same(table, model, kKeys);
    }
    expect_same(table, model, kKeys);
    // erase_if: the odd values go, whatever the order of the deque.
    table.erase_if([](const PublicKey&, std::uint32_t& v) { return v % 2 == 1; });
    std::erase_if(model, [](const auto& e) { return e.second % 2 == 1; });
    expect_same(table, model, kKeys);
}

// A table kept at its fullest (12 entries in 16 slots), so that runs are
// long and wrap around the end: every erase in every order leaves each
// remaining key findable.
TEST(LeaseTable, ErasesInsideLongRunsLeaveEveryOtherKeyFindable) {
    std::mt19937 rng(11);
    for (int trial = 0; trial < 2000; trial++) {
        LeaseTable<std::uint32_t> table(rng());
        std::map<std::uint32_t, std::uint32_t> model;
        for (std::uint32_t n = 0; n < 12; n++) {
            table[key(n)] = n;
            model[n] = n;
        }
        std::vector<std::uint32_t> order{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
        std::shuffle(order.begin(), order.end(), rng);
        for (std::uint32_t n : order) {
            table.erase(key(n));
            model.erase(n);
            expect_same(table, model, 12);
            if (HasFatalFailure() || HasNonfatalFailure())
                return;
        }
    }
}
