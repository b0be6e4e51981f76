// What both leased mains do first: start libsodium while it may still look
// for its random source, then enter the leased sandbox. Internal to leased.
#pragma once

#include "common/cli.hpp"
#include "common/result.hpp"

namespace wgd::leased {

// The error (one line, for the caller to log) when the process must not go
// on.
Result<void> enter_leased_sandbox(Side side, const Options& options);

} // namespace wgd::leased
