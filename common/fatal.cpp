#include "common/fatal.hpp"

#include "common/log.hpp"

#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <utility>

namespace wgd {

namespace {

std::function<void()>& stop_hook() {
    static std::function<void()> hook;
    return hook;
}

} // namespace

void exit_fatally() {
    // Moved out first: a hook that fails fatally itself does not run again.
    std::function<void()> hook = std::exchange(stop_hook(), nullptr);
    if (hook)
        hook();
    ::_exit(1);
}

void fatal(const char* fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log_line(LogLevel::error, line);
    exit_fatally();
}

FatalStopHook::FatalStopHook(std::function<void()> stop) {
    stop_hook() = std::move(stop);
}

FatalStopHook::~FatalStopHook() {
    stop_hook() = nullptr;
}

} // namespace wgd
