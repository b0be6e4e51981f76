// One logging call for the whole suite. Where the lines go (stderr with -f,
// syslog when detached, the parent's relay inside a sandbox) is decided
// once per process by log_set_sink() and log_set_relayed(); callers only say
// what happened.
//
// Formats of a line:
// - stderr: "NAME: text". When stderr is the journal (JOURNAL_STREAM names
//   its device and inode, as systemd sets it), "<N>text" instead: the
//   priority prefix of sd-daemon(3), and no name, which the journal adds.
// - relayed (a child of netd): "<N>text", parsed by netd's relay, which
//   names the child from the socket it came on and logs it at level N.
// - syslog: an RFC 3164 datagram on a socket connected to /dev/log before
//   the sandbox; when syslog is absent or stops, lines are dropped, and
//   nothing is created or connected again (netd's filter would forbid it).
#pragma once

#include <functional>
#include <optional>
#include <string>
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
// This process is a child whose stderr is netd's relay: "<N>text" lines.
void log_set_relayed();
// Whether stderr is the journal (decided once, at start).
bool log_stderr_is_journal();
// JOURNAL_STREAM's "DEVICE:INODE" against stderr's fstat: pure, for tests.
bool journal_stream_matches(const char* journal_stream, unsigned long long dev,
                            unsigned long long ino);
// A sink to syslog under `ident` (facility daemon), its socket connected now.
LogSink log_syslog_sink(const std::string& ident);
// Writes a line at `level` to the sink as it is (no verbosity check: for
// lines a child already decided to log).
void log_line(LogLevel level, std::string_view line);

// A line a child sent to netd's relay: its level from a "<N>" prefix (info
// without one), and its text with every byte that is not printable ASCII
// replaced by '?' (a compromised child cannot forge lines, colours or
// terminal controls), at most max_bytes long.
struct RelayedLine {
    LogLevel level = LogLevel::info;
    std::string text;
};
RelayedLine parse_relayed_line(std::string_view datagram, std::size_t max_bytes = 1024);

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
