// The one way a process of the suite gives up when it can no longer trust
// its state (a peer process broke the protocol, a channel failed): the
// reason is logged at error level, the process's stop hook runs (netd's
// closes its children's channels and waits for them, within a bound), and
// the process leaves with _exit(1). Never std::exit: destructors and atexit
// handlers would run on the state that was just found untrustworthy.
#pragma once

#include <functional>

namespace wgd {

// Logs at error level, then exit_fatally().
[[noreturn]] void fatal(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// The stop hook (at most once, even if it fails fatally itself), then _exit(1).
[[noreturn]] void exit_fatally();

// Sets the stop hook for the scope's life: set once what it stops exists.
class FatalStopHook {
  public:
    explicit FatalStopHook(std::function<void()> stop);
    ~FatalStopHook();
    FatalStopHook(const FatalStopHook&) = delete;
    FatalStopHook& operator=(const FatalStopHook&) = delete;
};

} // namespace wgd
