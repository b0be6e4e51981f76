// One logging call for the whole suite. Where the lines go (stderr with -f,
// syslog when detached, the parent's channel inside a sandbox) is decided
// once per process by log_set_sink(); callers only say what happened.
#pragma once

#include <functional>
#include <string_view>

namespace wgd {

enum class LogLevel { error = 3, warning = 4, info = 6, debug = 7 };

using LogSink = std::function<void(LogLevel, std::string_view line)>;

// Default: stderr, prefixed with the process name.
void log_set_sink(LogSink sink);
void log_set_name(std::string_view process_name);
// 0 logs info and above; each -v adds a level of detail.
void log_set_verbosity(int verbosity);
bool log_enabled(LogLevel level);
std::string_view log_name();
LogSink log_stderr_sink();

void logf(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define WGD_LOG_ERROR(...) ::wgd::logf(::wgd::LogLevel::error, __VA_ARGS__)
#define WGD_LOG_WARN(...) ::wgd::logf(::wgd::LogLevel::warning, __VA_ARGS__)
#define WGD_LOG_INFO(...) ::wgd::logf(::wgd::LogLevel::info, __VA_ARGS__)
#define WGD_LOG_DEBUG(...)                                                                         \
    do {                                                                                           \
        if (::wgd::log_enabled(::wgd::LogLevel::debug))                                            \
            ::wgd::logf(::wgd::LogLevel::debug, __VA_ARGS__);                                      \
    } while (0)

} // namespace wgd
