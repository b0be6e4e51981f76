// A batch of allowed-IP changes goes to netd in one or more ApplyAllowedIps
// parts, and netd answers each part with one status per change. This maps
// those statuses back to what each change came from (a grant's plan, or
// maintenance), so that a change netd refused fails only its own grant.
// Pure: no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <set>
#include <vector>

namespace wgd::leased {

class BatchAnswers {
  public:
    // The owner of a change that is no grant (expiry, revocation, restore).
    static constexpr std::size_t kMaintenance = std::numeric_limits<std::size_t>::max();

    // One part sent: the owner of each of its changes, in order.
    void sent(std::vector<std::size_t> owners) { outstanding_.push_back(std::move(owners)); }
    // netd's answer to the oldest part not yet answered (netd answers in
    // order). False, and nothing taken, when no part is outstanding or the
    // answer does not have one status per change of that part: a netd that
    // says so is not to be believed.
    bool answered(const std::vector<std::uint16_t>& status);

    bool complete() const { return outstanding_.empty(); }
    bool plan_failed(std::size_t plan) const { return failed_plans_.count(plan) != 0; }
    std::size_t failed_plans() const { return failed_plans_.size(); }
    std::size_t failed_maintenance() const { return failed_maintenance_; }
    int first_error() const { return first_error_; } // 0: none

  private:
    std::deque<std::vector<std::size_t>> outstanding_;
    std::set<std::size_t> failed_plans_;
    std::size_t failed_maintenance_ = 0;
    int first_error_ = 0;
};

} // namespace wgd::leased
