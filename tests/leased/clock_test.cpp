// wait_until: how long leased's loop timers wait for a moment of the boot
// clock, with a fake clock.
#include "leased/clock.hpp"

#include <cstdint>

#include <gtest/gtest.h>

using namespace wgd::leased;
using namespace std::chrono_literals;

TEST(WaitUntil, AMomentWithinTheCapIsWaitedForExactly) {
    FakeClock clock(1'700'000'000, 5'000);
    EXPECT_EQ(wait_until(clock, 5'300), 300ms);
    EXPECT_EQ(wait_until(clock, 5'000 + kMaxTimerWaitMs),
              std::chrono::milliseconds(kMaxTimerWaitMs));
}

// The loop's steady clock stops during a suspend: a lease that ends in an
// hour is looked at again within the cap, so a suspend cannot delay it.
TEST(WaitUntil, AFarMomentIsWaitedForAtMostTheCap) {
    FakeClock clock(1'700'000'000, 5'000);
    EXPECT_EQ(wait_until(clock, 5'000 + 3'600'000), std::chrono::milliseconds(kMaxTimerWaitMs));
    EXPECT_EQ(wait_until(clock, UINT64_MAX), std::chrono::milliseconds(kMaxTimerWaitMs));
}

TEST(WaitUntil, AMomentNowOrPassedIsNoWait) {
    FakeClock clock(1'700'000'000, 5'000);
    EXPECT_EQ(wait_until(clock, 5'000), 0ms);
    EXPECT_EQ(wait_until(clock, 1), 0ms);
    clock.advance_ms(400);
    EXPECT_EQ(wait_until(clock, 5'300), 0ms);
}
