// What both leased mains do first: open their event loop (epoll_create1 is
// not in the sandbox), start libsodium while it may still look for its
// random source, then enter the leased sandbox. Internal to leased.
#pragma once

#include "common/cli.hpp"
#include "common/result.hpp"
#include "privsep/loop.hpp"

namespace wgd::leased {

// The loop, or the error (one line, for the caller to log) when the process
// must not go on.
Result<privsep::Loop> enter_leased_sandbox(Side side, const Options& options);

} // namespace wgd::leased
