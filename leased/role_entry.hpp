// What both leased mains do first: start libsodium while it may still look
// for its random source, then enter the leased sandbox. Internal to leased.
#pragma once

#include "common/cli.hpp"

namespace wgd::leased {

// False (reason logged) when the process must not go on.
bool enter_leased_sandbox(Side side, const Options& options);

} // namespace wgd::leased
