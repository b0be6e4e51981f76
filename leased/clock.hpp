// Time for leases behind an interface so that tests control it. Wall time
// (CLOCK_REALTIME) is what the wire and the lease file carry; decisions use
// CLOCK_BOOTTIME, which neither jumps with the wall clock nor stops during
// suspend.
#pragma once

#include <chrono>
#include <cstdint>

namespace wgd::leased {

class Clock {
  public:
    virtual ~Clock() = default;
    virtual std::int64_t wall_seconds() = 0;
    virtual std::uint64_t boot_ms() = 0;
};

class SystemClock final : public Clock {
  public:
    std::int64_t wall_seconds() override;
    std::uint64_t boot_ms() override;
};

class FakeClock final : public Clock {
  public:
    FakeClock(std::int64_t wall, std::uint64_t boot) : wall_(wall), boot_(boot) {}
    std::int64_t wall_seconds() override { return wall_; }
    std::uint64_t boot_ms() override { return boot_; }
    // Both clocks move together, as they do without a suspend or a jump.
    void advance_ms(std::uint64_t ms) {
        boot_ += ms;
        wall_ = wall_start_ + static_cast<std::int64_t>((boot_ - boot_start_) / 1000);
    }
    void set_wall(std::int64_t wall) { wall_ = wall_start_ = wall, boot_start_ = boot_; }

  private:
    std::int64_t wall_;
    std::uint64_t boot_;
    std::int64_t wall_start_ = wall_;
    std::uint64_t boot_start_ = boot_;
};

// leased's loop (privsep::Loop) times its work on the steady clock, which
// stops during a suspend, and its moments are on the boot clock: a timer
// armed for a moment waits at most kMaxTimerWaitMs, so that a moment that
// passed during a suspend is acted on at most that long after the resume.
constexpr std::uint64_t kMaxTimerWaitMs = 1000;
// How long a timer waits for `due_ms` of clock.boot_ms(): 0 once it has
// passed, never more than kMaxTimerWaitMs.
std::chrono::milliseconds wait_until(Clock& clock, std::uint64_t due_ms);

} // namespace wgd::leased
