// Helpers for the loop tests: a forked child running a protod loop without
// the sandbox, sockets on ::1, bounded waits.
#pragma once

#include "common/fd.hpp"
#include "privsep/channel.hpp"

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>

namespace wgd::protod::testing {

// A child process running `body`; killed and reaped on destruction.
class ForkedLoop {
  public:
    explicit ForkedLoop(const std::function<int()>& body) {
        pid_ = ::fork();
        if (pid_ == 0)
            ::_exit(body());
    }
    ~ForkedLoop() {
        if (pid_ > 0 && !status_) {
            ::kill(pid_, SIGKILL);
            int status;
            ::waitpid(pid_, &status, 0);
        }
    }
    ForkedLoop(const ForkedLoop&) = delete;
    ForkedLoop& operator=(const ForkedLoop&) = delete;

    bool started() const { return pid_ > 0; }
    pid_t pid() const { return pid_; }
    // The exit status, or nullopt when the child is still running after `limit`.
    std::optional<int> exit_status(std::chrono::milliseconds limit) {
        const auto end = std::chrono::steady_clock::now() + limit;
        while (!status_) {
            int status = 0;
            pid_t r = ::waitpid(pid_, &status, WNOHANG);
            if (r == pid_) {
                status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                break;
            }
            if (std::chrono::steady_clock::now() >= end)
                return std::nullopt;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return status_;
    }

  private:
    pid_t pid_ = -1;
    std::optional<int> status_;
};

// Both ends of a channel. (Not a structured binding: lambdas capture these,
// which clang 14 does not allow for bindings.)
struct ChannelEnds {
    UniqueFd ours, theirs;
};
inline ChannelEnds channel_ends() {
    auto pair = privsep::make_channel_pair();
    return {std::move(pair.first), std::move(pair.second)};
}

// A TCP listener on [::1]:<ephemeral>.
inline UniqueFd listen_on_loopback(std::uint16_t& port) {
    UniqueFd fd(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_addr = in6addr_loopback;
    socklen_t len = sizeof addr;
    if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 ||
        ::listen(fd.get(), 1024) < 0 ||
        ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) < 0)
        return UniqueFd();
    port = ntohs(addr.sin6_port);
    return fd;
}

// A socket connecting to [::1]:port; non-blocking when asked (the connect may be in progress).
inline UniqueFd connect_to_loopback(std::uint16_t port, bool nonblocking = false) {
    UniqueFd fd(
        ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0));
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_addr = in6addr_loopback;
    addr.sin6_port = htons(port);
    if (!fd)
        return fd;
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 &&
        !(nonblocking && errno == EINPROGRESS))
        return UniqueFd();
    return fd;
}

inline bool send_all(int fd, const std::string& bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
        ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        done += static_cast<std::size_t>(n);
    }
    return true;
}

struct ReadResult {
    std::string bytes;
    bool closed = false; // EOF or reset seen
};

// Reads until `done(bytes)`, EOF/reset, or `limit` passes.
inline ReadResult read_until(int fd, std::chrono::milliseconds limit,
                             const std::function<bool(const std::string&)>& done) {
    ReadResult r;
    const auto end = std::chrono::steady_clock::now() + limit;
    while (!done(r.bytes)) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            end - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            break;
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0)
            break;
        char buf[4096];
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
            r.closed = true;
            break;
        }
        r.bytes.append(buf, static_cast<std::size_t>(n));
    }
    return r;
}

// A complete message has arrived (ends with an empty line).
inline bool has_message(const std::string& bytes) {
    return bytes == "\n" || bytes.find("\n\n") != std::string::npos;
}
inline bool never(const std::string&) {
    return false;
}

} // namespace wgd::protod::testing
