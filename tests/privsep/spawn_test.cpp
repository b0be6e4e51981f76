#include "privsep/spawn.hpp"

#include "privsep/channel.hpp"
#include "tests/privsep/child.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

using namespace wgd;
using namespace wgd::privsep;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

std::string read_all(int fd) {
    std::string out;
    char buf[256];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0)
        out.append(buf, std::size_t(n));
    return out;
}

// Whether pid is gone or a zombie (reaped or not by whoever its parent is now).
bool dead(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    if (!in)
        return true;
    std::string line;
    std::getline(in, line);
    auto close = line.rfind(')');
    return close == std::string::npos || close + 2 >= line.size() || line[close + 2] == 'Z' ||
           line[close + 2] == 'X';
}

// Waits for the supervisor's fd, then reaps; returns exits and the time it took.
std::vector<ChildExit> wait_for_exit(Supervisor& sup, std::chrono::milliseconds limit,
                                     std::chrono::milliseconds& took) {
    auto start = Clock::now();
    std::vector<ChildExit> exits;
    while (exits.empty() && Clock::now() - start < limit) {
        pollfd p{sup.fd(), POLLIN, 0};
        ::poll(&p, 1, 50);
        exits = sup.reap();
    }
    took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    return exits;
}

} // namespace

TEST(RoleArgument, EveryRoleRoundTrips) {
    for (Role r : {Role::netd, Role::leased, Role::protod}) {
        auto parsed = parse_role_argument(role_argument(r));
        ASSERT_TRUE(parsed);
        EXPECT_EQ(*parsed, r);
    }
    EXPECT_EQ(role_argument(Role::protod), "--privsep-role=protod");
}

TEST(RoleArgument, OtherArgumentsAreNotRoles) {
    EXPECT_FALSE(parse_role_argument("--privsep-role=root"));
    EXPECT_FALSE(parse_role_argument("--privsep-role="));
    EXPECT_FALSE(parse_role_argument("--privsep-role=protodx"));
    EXPECT_FALSE(parse_role_argument("-f"));
    EXPECT_FALSE(parse_role_argument("wg0"));
}

TEST(SpawnRole, ChildGetsExactlyTheGivenFdsAtTheirNumbers) {
    int out[2], extra[2], leaked[2];
    ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
    ASSERT_EQ(::pipe2(extra, O_CLOEXEC), 0);
    ASSERT_EQ(::pipe(leaked), 0); // not close-on-exec: must still not reach the child
    UniqueFd out_r(out[0]), out_w(out[1]), extra_r(extra[0]), extra_w(extra[1]);
    UniqueFd leaked_r(leaked[0]), leaked_w(leaked[1]);
    // The shell lists which of its fds 0..highest are open into fd 3 and
    // writes a mark into fd 4 (test -e is a builtin: it opens nothing).
    const int highest = std::max({out[1], extra[1], leaked[0], leaked[1]}) + 2;
    std::string script = "exec >&3; for n in $(seq 0 " + std::to_string(highest) +
                         "); do [ -e /proc/$$/fd/$n ] && printf '%s ' $n; done; echo mark >&4";
    pid_t pid = spawn_role("/bin/sh", {"sh", "-c", script}, {{3, out_w.get()}, {4, extra_w.get()}});
    ASSERT_GT(pid, 0);
    out_w.reset();
    extra_w.reset();
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    EXPECT_EQ(read_all(out_r.get()), "0 1 2 3 4 ");
    EXPECT_EQ(read_all(extra_r.get()), "mark\n");
}

TEST(SpawnRole, SwappedFdNumbersDoNotClobberEachOther) {
    // The parent's fd 50 must become the child's 51 and the reverse: a naive
    // dup2 sequence would overwrite one source before copying it.
    int a[2], b[2];
    ASSERT_EQ(::pipe2(a, O_CLOEXEC), 0);
    ASSERT_EQ(::pipe2(b, O_CLOEXEC), 0);
    ASSERT_EQ(::dup3(a[1], 50, O_CLOEXEC), 50);
    ASSERT_EQ(::dup3(b[1], 51, O_CLOEXEC), 51);
    ::close(a[1]);
    ::close(b[1]);
    UniqueFd ar(a[0]), aw(50), br(b[0]), bw(51);
    pid_t pid = spawn_role("/bin/bash", {"bash", "-c", "echo to51 >&51; echo to50 >&50"},
                           {{51, 50}, {50, 51}});
    ASSERT_GT(pid, 0);
    aw.reset();
    bw.reset();
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    EXPECT_EQ(read_all(ar.get()), "to51\n"); // parent's 50 (pipe a) is the child's 51
    EXPECT_EQ(read_all(br.get()), "to50\n");
}

TEST(SpawnRole, ChildStartsWithNoBlockedSignals) {
    SignalFd term({SIGTERM, SIGINT, SIGUSR1});
    int out[2];
    ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
    UniqueFd r(out[0]), w(out[1]);
    pid_t pid = spawn_role("/bin/sh", {"sh", "-c", "exec grep SigBlk /proc/self/status >&3"},
                           {{3, w.get()}});
    ASSERT_GT(pid, 0);
    w.reset();
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_EQ(read_all(r.get()), "SigBlk:\t0000000000000000\n");
}

TEST(SpawnRole, ChildDiesWithItsParent) {
    int pipefd[2];
    ASSERT_EQ(::pipe2(pipefd, O_CLOEXEC), 0);
    UniqueFd r(pipefd[0]), w(pipefd[1]);
    std::fflush(nullptr);
    pid_t middle = ::fork();
    if (middle == 0) {
        pid_t grandchild = spawn_role("/bin/sleep", {"sleep", "30"}, {});
        (void)!::write(w.get(), &grandchild, sizeof grandchild);
        ::pause();
        ::_exit(0);
    }
    w.reset();
    pid_t grandchild = 0;
    ASSERT_EQ(::read(r.get(), &grandchild, sizeof grandchild), ssize_t(sizeof grandchild));
    ASSERT_GT(grandchild, 0);
    std::this_thread::sleep_for(50ms);
    EXPECT_FALSE(dead(grandchild));
    ::kill(middle, SIGKILL);
    ::waitpid(middle, nullptr, 0);
    auto start = Clock::now();
    while (!dead(grandchild) && Clock::now() - start < 1s)
        std::this_thread::sleep_for(10ms);
    EXPECT_TRUE(dead(grandchild)) << "the role outlived its parent";
}

TEST(Supervisor, ChildKilledWithSigkillIsReportedWithinOneSecond) {
    Supervisor sup;
    pid_t pid = spawn_role("/bin/sleep", {"sleep", "30"}, {});
    ASSERT_GT(pid, 0);
    sup.add(pid, "leased");
    EXPECT_TRUE(sup.reap().empty());
    ::kill(pid, SIGKILL);
    std::chrono::milliseconds took{};
    auto exits = wait_for_exit(sup, 2s, took);
    ASSERT_EQ(exits.size(), 1u);
    EXPECT_EQ(exits[0].pid, pid);
    EXPECT_EQ(exits[0].describe(), "leased killed by signal SIGKILL (9)");
    EXPECT_LT(took, 1s);
    EXPECT_EQ(sup.running(), 0u);
}

TEST(Supervisor, ChildKilledBySeccompIsReportedAsSigsys) {
    Supervisor sup;
    std::fflush(nullptr);
    pid_t pid = ::fork();
    if (pid == 0) {
        if (!apply_seccomp_filter(Role::protod, Side::server).has_value())
            ::_exit(100);
        ::syscall(SYS_openat, AT_FDCWD, "/", O_RDONLY);
        ::_exit(0);
    }
    sup.add(pid, "protod");
    std::chrono::milliseconds took{};
    auto exits = wait_for_exit(sup, 2s, took);
    ASSERT_EQ(exits.size(), 1u);
    EXPECT_EQ(exits[0].describe(), "protod killed by signal SIGSYS (31)");
}

TEST(Supervisor, ExitStatusIsReported) {
    Supervisor sup;
    pid_t pid = spawn_role("/bin/sh", {"sh", "-c", "exit 3"}, {});
    ASSERT_GT(pid, 0);
    sup.add(pid, "netd");
    std::chrono::milliseconds took{};
    auto exits = wait_for_exit(sup, 2s, took);
    ASSERT_EQ(exits.size(), 1u);
    EXPECT_EQ(exits[0].describe(), "netd exited with status 3");
}

TEST(Supervisor, StopAllTerminatesPoliteChildrenAndKillsDefiantOnes) {
    Supervisor sup;
    pid_t polite = spawn_role("/bin/sleep", {"sleep", "30"}, {});
    pid_t defiant =
        spawn_role("/bin/sh", {"sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"}, {});
    ASSERT_GT(polite, 0);
    ASSERT_GT(defiant, 0);
    sup.add(polite, "protod");
    sup.add(defiant, "leased");
    std::this_thread::sleep_for(100ms); // let the shell install its trap
    auto start = Clock::now();
    auto exits = sup.stop_all(300ms);
    auto took = Clock::now() - start;
    ASSERT_EQ(exits.size(), 2u);
    EXPECT_EQ(sup.running(), 0u);
    for (const ChildExit& e : exits) {
        if (e.pid == polite)
            EXPECT_EQ(e.describe(), "protod killed by signal SIGTERM (15)");
        else
            EXPECT_EQ(e.describe(), "leased killed by signal SIGKILL (9)");
    }
    EXPECT_GE(took, 300ms);
    EXPECT_LT(took, 1s);
}

TEST(Supervisor, SiblingsStopWithinOneSecondAfterOneDies) {
    Supervisor sup;
    pid_t a = spawn_role("/bin/sleep", {"sleep", "30"}, {});
    pid_t b = spawn_role("/bin/sleep", {"sleep", "30"}, {});
    sup.add(a, "protod");
    sup.add(b, "leased");
    auto start = Clock::now();
    ::kill(a, SIGKILL);
    std::chrono::milliseconds took{};
    auto exits = wait_for_exit(sup, 2s, took);
    ASSERT_EQ(exits.size(), 1u);
    auto rest = sup.stop_all();
    ASSERT_EQ(rest.size(), 1u);
    EXPECT_EQ(rest[0].pid, b);
    EXPECT_LT(Clock::now() - start, 1s);
}

TEST(SignalFd, BlockedSignalIsReadFromTheFd) {
    SignalFd sigs({SIGTERM, SIGINT});
    ASSERT_TRUE(sigs.valid());
    EXPECT_FALSE(sigs.take());
    ::kill(::getpid(), SIGTERM);
    pollfd p{sigs.fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 1000), 1);
    auto sig = sigs.take();
    ASSERT_TRUE(sig);
    EXPECT_EQ(*sig, SIGTERM);
    ::kill(::getpid(), SIGINT);
    sig = sigs.take();
    ASSERT_TRUE(sig);
    EXPECT_EQ(*sig, SIGINT);
}

TEST(Supervisor, WorksInsideTheNetdSandbox) {
    if (::geteuid() != 0)
        GTEST_SKIP() << "needs root (netd keeps capabilities of root)";
    int status = wgd::privsep::testing::wait_status_of([] {
        Supervisor sup;
        // netd may signal nobody: the first child ends itself.
        pid_t a = spawn_role("/bin/sh", {"sh", "-c", "sleep 0.2; kill -9 $$"}, {});
        pid_t b = spawn_role("/bin/sleep", {"sleep", "30"}, {});
        if (a < 0 || b < 0)
            return 10;
        sup.add(a, "protod");
        sup.add(b, "leased");
        SignalFd term({SIGTERM, SIGINT});
        if (!enter_netd_sandbox(Side::server).has_value())
            return 11;
        std::chrono::milliseconds took{};
        auto exits = wait_for_exit(sup, 2s, took);
        if (exits.size() != 1 || exits[0].describe() != "protod killed by signal SIGKILL (9)")
            return 12;
        ::raise(SIGTERM); // as from the service manager
        pollfd p{term.fd(), POLLIN, 0};
        if (::poll(&p, 1, 1000) != 1 || term.take() != SIGTERM)
            return 13;
        // The other child is left to its parent-death signal, never waited for.
        if (sup.running() != 1)
            return 14;
        sup.abandon();
        return sup.running() == 0 ? 0 : 15;
    });
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << wgd::privsep::testing::describe_status(status);
}

TEST(SpawnRole, ChildStderrCanBeRedirected) {
    int out[2];
    ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
    UniqueFd r(out[0]), w(out[1]);
    pid_t pid = spawn_role("/bin/sh", {"sh", "-c", "echo to-stderr >&2"}, {{2, w.get()}});
    ASSERT_GT(pid, 0);
    w.reset();
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_EQ(read_all(r.get()), "to-stderr\n");
}

TEST(SpawnRole, StdinAndStdoutCannotBeTargets) {
    int fd = ::dup(1);
    UniqueFd keep(fd);
    errno = 0;
    EXPECT_EQ(spawn_role("/bin/true", {"true"}, {{1, fd}}), -1);
    EXPECT_EQ(errno, EINVAL);
}
