// Tools for robustness tests: work done in a lab namespace by a child
// process, in the background, while the test goes on; raw connections from
// a chosen link-local source.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>

namespace wgd::lab {

// A child process that entered a network namespace and runs a function;
// what the function returns is collected by wait(). The destructor kills and
// reaps a child that is still running.
class Background {
  public:
    Background(const std::string& ns, std::function<std::string()> work);
    ~Background();
    Background(const Background&) = delete;
    Background& operator=(const Background&) = delete;
    // Waits for the child and returns its result ("" if it died).
    std::string wait();

  private:
    pid_t pid_ = -1;
    int fd_ = -1;
};

// In the current namespace: a TCP socket bound to [source%iface]:port and
// connecting to [fe80::%iface]:970. Non-blocking when `nonblocking` (the
// connect is then in progress). Returns the fd, or -errno.
int connect_from(const std::string& iface, const std::string& source, int port, bool nonblocking);

// Milliseconds on the monotonic clock.
long long now_ms();

} // namespace wgd::lab
