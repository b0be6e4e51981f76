#include "common/log.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>

namespace wgd {

namespace {

std::string g_name = "wg-dynamic";
int g_verbosity = 0;
bool g_relayed = false;

bool detect_journal() {
    struct stat st {};
    if (::fstat(STDERR_FILENO, &st) != 0)
        return false;
    return journal_stream_matches(std::getenv("JOURNAL_STREAM"), st.st_dev, st.st_ino);
}

// Decided before main: fstat is not in every sandbox's allowlist.
const bool g_journal = detect_journal();

char level_digit(LogLevel level) {
    return static_cast<char>('0' + static_cast<int>(level));
}

void write_stderr(LogLevel level, std::string_view line) {
    // One write() per line keeps lines of the three processes whole on a
    // shared stderr; no stdio buffering, which needs fstat under seccomp.
    std::string out;
    out.reserve(g_name.size() + line.size() + 5);
    if (g_relayed || g_journal)
        out.append("<").append(1, level_digit(level)).append(">");
    else
        out.append(g_name).append(": ");
    out.append(line).push_back('\n');
    (void)!::write(STDERR_FILENO, out.data(), out.size());
}

LogSink& sink() {
    static LogSink s = write_stderr;
    return s;
}

constexpr int kFacilityDaemon = 3 << 3; // LOG_DAEMON

class SyslogSocket {
  public:
    explicit SyslogSocket(const std::string& ident) : ident_(ident), pid_(::getpid()) {
        tzset(); // localtime_r reads /etc/localtime once, here, not in the sandbox
        fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd_ < 0)
            return;
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, "/dev/log", sizeof addr.sun_path - 1);
        // Connected or not, the socket stays: a send on an unconnected one
        // fails harmlessly (ENOTCONN) and the line is dropped.
        (void)::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    }
    ~SyslogSocket() {
        if (fd_ >= 0)
            ::close(fd_);
    }
    SyslogSocket(const SyslogSocket&) = delete;
    SyslogSocket& operator=(const SyslogSocket&) = delete;

    void send(LogLevel level, std::string_view line) const {
        if (fd_ < 0)
            return;
        char stamp[32] = "";
        std::time_t now = std::time(nullptr);
        std::tm tm{};
        if (::localtime_r(&now, &tm) != nullptr)
            std::strftime(stamp, sizeof stamp, "%b %e %H:%M:%S", &tm);
        char head[128];
        int n = std::snprintf(head, sizeof head,
                              "<%d>%s %s[%d]: ", kFacilityDaemon | static_cast<int>(level), stamp,
                              ident_.c_str(), static_cast<int>(pid_));
        if (n < 0)
            return;
        std::string out(head, static_cast<std::size_t>(n) < sizeof head
                                  ? static_cast<std::size_t>(n)
                                  : sizeof head - 1);
        out.append(line);
        // Never blocks and never raises a signal: a full or absent syslog
        // costs the line, nothing else.
        (void)!::send(fd_, out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    }

  private:
    std::string ident_;
    pid_t pid_;
    int fd_ = -1;
};

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
void log_set_relayed() {
    g_relayed = true;
}
bool log_stderr_is_journal() {
    return g_journal;
}

bool journal_stream_matches(const char* journal_stream, unsigned long long dev,
                            unsigned long long ino) {
    if (journal_stream == nullptr)
        return false;
    unsigned long long d = 0, i = 0;
    char end = 0;
    if (std::sscanf(journal_stream, "%llu:%llu%c", &d, &i, &end) != 2)
        return false;
    return d == dev && i == ino;
}

LogSink log_syslog_sink(const std::string& ident) {
    auto socket = std::make_shared<const SyslogSocket>(ident);
    return [socket](LogLevel level, std::string_view line) { socket->send(level, line); };
}

void log_line(LogLevel level, std::string_view line) {
    sink()(level, line);
}

RelayedLine parse_relayed_line(std::string_view datagram, std::size_t max_bytes) {
    RelayedLine out;
    while (!datagram.empty() && datagram.back() == '\n')
        datagram.remove_suffix(1);
    if (datagram.size() >= 3 && datagram[0] == '<' && datagram[2] == '>' && datagram[1] >= '0' &&
        datagram[1] <= '7') {
        const int n = datagram[1] - '0';
        out.level = n <= 3   ? LogLevel::error
                    : n == 4 ? LogLevel::warning
                    : n <= 6 ? LogLevel::info
                             : LogLevel::debug;
        datagram.remove_prefix(3);
    }
    if (datagram.size() > max_bytes)
        datagram = datagram.substr(0, max_bytes);
    out.text.reserve(datagram.size());
    for (char c : datagram) {
        const auto u = static_cast<unsigned char>(c);
        out.text.push_back(u >= 0x20 && u < 0x7f ? c : '?');
    }
    return out;
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
