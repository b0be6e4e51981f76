#include "tests/system/background.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

namespace wgd::lab {

Background::Background(const std::string& ns, std::function<std::string()> work) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return;
    pid_ = fork();
    if (pid_ == 0) {
        close(fds[0]);
        std::string result;
        int nsfd = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
        if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0)
            result = "setns failed";
        else
            result = work();
        std::size_t off = 0;
        while (off < result.size()) {
            ssize_t n = write(fds[1], result.data() + off, result.size() - off);
            if (n <= 0)
                break;
            off += static_cast<std::size_t>(n);
        }
        _exit(0);
    }
    close(fds[1]);
    fd_ = fds[0];
}

Background::~Background() {
    if (pid_ > 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0)
        close(fd_);
}

std::string Background::wait() {
    std::string all;
    char buf[4096];
    ssize_t n;
    while (fd_ >= 0 && (n = read(fd_, buf, sizeof buf)) > 0)
        all.append(buf, static_cast<std::size_t>(n));
    if (pid_ > 0) {
        waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }
    return all;
}

int connect_from(const std::string& iface, const std::string& source, int port, bool nonblocking) {
    unsigned scope = if_nametoindex(iface.c_str());
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    linger lg{1, 0}; // RST on close: no TIME_WAIT, the 4-tuple is free at once
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    sockaddr_in6 src{};
    src.sin6_family = AF_INET6;
    src.sin6_port = htons(static_cast<std::uint16_t>(port));
    inet_pton(AF_INET6, source.c_str(), &src.sin6_addr);
    src.sin6_scope_id = scope;
    if (bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    sockaddr_in6 dst{};
    dst.sin6_family = AF_INET6;
    dst.sin6_port = htons(970);
    inet_pton(AF_INET6, "fe80::", &dst.sin6_addr);
    dst.sin6_scope_id = scope;
    if (connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0 &&
        !(nonblocking && errno == EINPROGRESS)) {
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

long long now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

} // namespace wgd::lab
