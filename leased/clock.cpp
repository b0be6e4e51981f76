#include "leased/clock.hpp"

#include <time.h>

#include <algorithm>

namespace wgd::leased {

std::int64_t SystemClock::wall_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec;
}

std::uint64_t SystemClock::boot_ms() {
    timespec ts{};
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000 +
           static_cast<std::uint64_t>(ts.tv_nsec) / 1000000;
}

std::chrono::milliseconds wait_until(Clock& clock, std::uint64_t due_ms) {
    const std::uint64_t now = clock.boot_ms();
    return std::chrono::milliseconds(due_ms > now ? std::min(due_ms - now, kMaxTimerWaitMs) : 0);
}

} // namespace wgd::leased
