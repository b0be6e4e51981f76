// For system tests whose subject is not the budget of address changes
// (leased/budget.hpp) but that need a peer to change its addresses more
// often than the budget allows: while an UnlimitedChangeBudget lives, the
// servers started get WGD_CHANGE_BUDGET=1/0 (no limit) from the environment.
#pragma once

#include <cstdlib>

namespace wgd::lab {

class UnlimitedChangeBudget {
  public:
    UnlimitedChangeBudget() { ::setenv("WGD_CHANGE_BUDGET", "1/0", 1); }
    ~UnlimitedChangeBudget() { ::unsetenv("WGD_CHANGE_BUDGET"); }
    UnlimitedChangeBudget(const UnlimitedChangeBudget&) = delete;
    UnlimitedChangeBudget& operator=(const UnlimitedChangeBudget&) = delete;
};

} // namespace wgd::lab
