#include "privsep/log.hpp"

#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <string>

namespace wgd {

namespace {

std::string g_name = "wg-dynamic";
int g_verbosity = 0;

void write_stderr(LogLevel, std::string_view line) {
    // One write() per line keeps lines of the three processes whole on a
    // shared stderr; no stdio buffering, which needs fstat under seccomp.
    std::string out;
    out.reserve(g_name.size() + line.size() + 3);
    out.append(g_name).append(": ").append(line).push_back('\n');
    (void)!::write(STDERR_FILENO, out.data(), out.size());
}

LogSink& sink() {
    static LogSink s = write_stderr;
    return s;
}

} // namespace

void log_set_sink(LogSink s) {
    sink() = s ? std::move(s) : LogSink(write_stderr);
}
void log_set_name(std::string_view name) {
    g_name = name;
}
void log_set_verbosity(int v) {
    g_verbosity = v;
}
std::string_view log_name() {
    return g_name;
}
LogSink log_stderr_sink() {
    return write_stderr;
}

bool log_enabled(LogLevel level) {
    return level != LogLevel::debug || g_verbosity > 0;
}

void logf(LogLevel level, const char* fmt, ...) {
    if (!log_enabled(level))
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    std::size_t len =
        static_cast<std::size_t>(n) < sizeof buf ? static_cast<std::size_t>(n) : sizeof buf - 1;
    sink()(level, std::string_view(buf, len));
}

} // namespace wgd
