// A peer's budget of address changes.
//
// A request that changes a peer's addresses (a fresh address, a family
// released, one family traded for the other) costs a WireGuard change in
// netd, a record in the lease file and its fdatasync; a peer alternating
// `ipv4=`-only and `ipv6=`-only requests on one connection asks for one such
// change per round trip. Each peer may make kChangeBudget.burst changes at
// once, then one every kChangeBudget.interval_s; a request beyond that is
// answered from the lease the peer holds, with no change at all (see
// LeaseServer::plan). Renewals that keep the addresses are not charged:
// those that write are bounded by the leasetime already (at most one per
// half of it), the others write nothing.
//
// The state is one 8-byte value per peer of the device, kept with the peer
// and gone with it, so no source can make it grow.
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string_view>

namespace wgd::leased {

struct ChangeRate {
    std::uint32_t burst;      // changes at once, from a full budget; at least 1
    std::uint32_t interval_s; // then one per interval
};

// A client changes its addresses when it starts, when its configuration
// changes, or after its lease ran out: a few times a day. Four at once
// cover a start, a family added and a restart in quick succession; one per
// 15 s is far above any legitimate need, and holds a peer that asks at full
// speed (thousands a second) to 4 records a minute.
inline constexpr ChangeRate kChangeBudget{4, 15};
static_assert(kChangeBudget.burst >= 1);

// The environment variable WGD_CHANGE_BUDGET=BURST/INTERVAL (seconds) sets
// another rate; an interval of 0 is no limit. It is for tests whose subject
// is something else than the budget (a storm of grants and releases against
// an operator's changes, crash consistency): the daemon's users have no
// reason to set it. nullopt: not of that form, a burst of 0, or a burst
// times the interval beyond 2^30 s (ChangeBudget counts in 32 bits).
inline std::optional<ChangeRate> parse_change_rate(std::string_view text) {
    const std::size_t slash = text.find('/');
    if (slash == std::string_view::npos)
        return std::nullopt;
    ChangeRate r{};
    const char* b = text.data();
    const char* end = text.data() + text.size();
    auto [burst_end, e1] = std::from_chars(b, b + slash, r.burst);
    auto [interval_end, e2] = std::from_chars(b + slash + 1, end, r.interval_s);
    if (e1 != std::errc() || burst_end != b + slash || e2 != std::errc() || interval_end != end ||
        slash == 0 || slash + 1 == text.size() || r.burst == 0 ||
        std::uint64_t{r.burst} * r.interval_s > (std::uint64_t{1} << 30))
        return std::nullopt;
    return r;
}

// GCRA (the virtual-scheduling form of a token bucket): one boot-clock time
// at which the budget is full again, instead of a count and a refill time.
class ChangeBudget {
  public:
    enum class Verdict : std::uint8_t {
        spent,         // the change may go ahead
        refused_first, // refused; the first refusal since the last change
        refused,       // refused again
    };
    // Spends one change at now_s (boot clock, seconds) if the budget has one.
    // A refusal spends nothing.
    Verdict spend(std::uint64_t now_s, ChangeRate rate = kChangeBudget) {
        const std::uint64_t full = full_at_s_ > now_s ? full_at_s_ : now_s;
        if (full - now_s > std::uint64_t{rate.interval_s} * (rate.burst - 1)) {
            const bool first = !refused_;
            refused_ = true;
            return first ? Verdict::refused_first : Verdict::refused;
        }
        // The boot clock does not reach 2^32 s (136 years) in one boot.
        full_at_s_ = static_cast<std::uint32_t>(full + rate.interval_s);
        refused_ = false;
        return Verdict::spent;
    }
    // Seconds until the next change is allowed (0: now).
    std::uint64_t wait_s(std::uint64_t now_s, ChangeRate rate = kChangeBudget) const {
        const std::uint64_t limit = std::uint64_t{rate.interval_s} * (rate.burst - 1);
        return full_at_s_ > now_s + limit ? full_at_s_ - now_s - limit : 0;
    }

  private:
    std::uint32_t full_at_s_ = 0;
    bool refused_ = false;
};

} // namespace wgd::leased
