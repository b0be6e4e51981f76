#include "leased/batch_answers.hpp"

namespace wgd::leased {

bool BatchAnswers::answered(const std::vector<std::uint16_t>& status) {
    if (outstanding_.empty() || outstanding_.front().size() != status.size())
        return false;
    const std::vector<std::size_t>& owners = outstanding_.front();
    for (std::size_t i = 0; i < status.size(); i++) {
        if (status[i] == 0)
            continue;
        if (first_error_ == 0)
            first_error_ = status[i];
        if (owners[i] == kMaintenance)
            failed_maintenance_++;
        else
            failed_plans_.insert(owners[i]);
    }
    outstanding_.pop_front();
    return true;
}

} // namespace wgd::leased
