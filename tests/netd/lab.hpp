// The test lab for netd: a network namespace entered by this thread (so the
// test body, its sockets and the commands it runs live there), and
// wireguard-go processes inside it. Everything is removed on scope exit,
// also when an assertion fails.
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

namespace wgd::netd::testlab {

inline bool is_root() {
    return ::geteuid() == 0;
}

// A name no parallel run uses: prefix + pid + a per-process counter.
inline std::string unique_name(const std::string& prefix) {
    static int counter = 0;
    return prefix + std::to_string(::getpid()) + "x" + std::to_string(counter++);
}

// Runs a shell command (in the current namespace); its exit status.
inline int sh(const std::string& command) {
    const int status = std::system(command.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class Netns {
  public:
    Netns() : name_(unique_name("wgdn")) {
        original_ = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        if (sh("ip netns add " + name_) != 0)
            return;
        created_ = true;
        const int fd = ::open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC);
        entered_ = fd >= 0 && ::setns(fd, CLONE_NEWNET) == 0;
        if (fd >= 0)
            ::close(fd);
        sh("ip link set lo up");
    }
    Netns(const Netns&) = delete;
    Netns& operator=(const Netns&) = delete;
    ~Netns() {
        if (entered_)
            ::setns(original_, CLONE_NEWNET);
        if (created_)
            sh("ip netns del " + name_);
        if (original_ >= 0)
            ::close(original_);
    }
    bool ok() const { return entered_; }
    const std::string& name() const { return name_; }

  private:
    std::string name_;
    int original_ = -1;
    bool created_ = false;
    bool entered_ = false;
};

// wireguard-go -f IFNAME, started in the calling thread's namespace.
class WireguardGo {
  public:
    explicit WireguardGo(std::string ifname) : ifname_(std::move(ifname)) {
        pid_ = ::fork();
        if (pid_ == 0) {
            const int devnull = ::open("/dev/null", O_WRONLY);
            ::dup2(devnull, 1);
            ::dup2(devnull, 2);
            ::execlp("wireguard-go", "wireguard-go", "-f", ifname_.c_str(), nullptr);
            ::_exit(127);
        }
        for (int i = 0; i < 500 && pid_ > 0; ++i) { // up to 5 s
            struct stat st {};
            if (::stat(socket_path().c_str(), &st) == 0) {
                ready_ = true;
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
    WireguardGo(const WireguardGo&) = delete;
    WireguardGo& operator=(const WireguardGo&) = delete;
    ~WireguardGo() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            int status = 0;
            ::waitpid(pid_, &status, 0);
        }
        ::unlink(socket_path().c_str()); // left behind only if it died hard
    }
    bool ok() const { return ready_; }
    const std::string& ifname() const { return ifname_; }
    std::string socket_path() const { return "/var/run/wireguard/" + ifname_ + ".sock"; }

  private:
    std::string ifname_;
    pid_t pid_ = -1;
    bool ready_ = false;
};

} // namespace wgd::netd::testlab

#define WGD_REQUIRE_ROOT()                                                                         \
    do {                                                                                           \
        if (!::wgd::netd::testlab::is_root())                                                      \
            GTEST_SKIP() << "needs root (network namespaces, rtnetlink, wireguard-go)";            \
    } while (0)
