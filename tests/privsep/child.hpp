// Helpers for tests that run code in a forked child (sandboxes cannot be undone).
#pragma once

#include "tests/lab/lab.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>

namespace wgd::privsep::testing {

// Runs body() in a forked child and returns its wait status. body returns the
// exit code; the child never returns into the test framework.
template <class Body>
int wait_status_of(Body&& body) {
    std::fflush(nullptr);
    pid_t pid = ::fork();
    if (pid == 0)
        ::_exit(body());
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
    }
    return status;
}

inline bool killed_by(int status, int sig) {
    return WIFSIGNALED(status) && WTERMSIG(status) == sig;
}
inline bool exited_ok(int status) {
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

inline std::string describe_status(int status) {
    if (WIFEXITED(status))
        return "exited with " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        return "killed by signal " + std::to_string(WTERMSIG(status));
    return "status " + std::to_string(status);
}

} // namespace wgd::privsep::testing
