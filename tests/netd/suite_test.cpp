// run_netd, the one entry of both netd mains: the sandbox user settled
// before the role runs, and a failed start-up precondition turned into its
// logged reason and exit status 1. SuiteParent::run: the signals and the
// children's exits reach netd's handlers in the loop, whose status is netd's.
#include "common/log.hpp"
#include "netd/suite.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace wgd::netd {
namespace {

// Collects the lines logged while it lives; the default sink afterwards.
class LogCapture {
  public:
    LogCapture() {
        log_set_sink([this](LogLevel level, std::string_view line) {
            lines_.push_back((level == LogLevel::error ? "error: " : "other: ") +
                             std::string(line));
        });
    }
    ~LogCapture() { log_set_sink(nullptr); }
    const std::vector<std::string>& lines() const { return lines_; }

  private:
    std::vector<std::string> lines_;
};

TEST(RunNetd, FailedPreconditionIsLoggedAsAnErrorAndExitsOne) {
    LogCapture log;
    Options options;
    options.user = "someone";
    options.user_given = true;
    int status = run_netd(options, {"wg0"}, [](const Options&, const std::vector<std::string>&) {
        throw Failure{"no such interface 'wg0'"};
        return 0;
    });
    EXPECT_EQ(status, 1);
    EXPECT_EQ(log.lines(), std::vector<std::string>{"error: no such interface 'wg0'"});
}

TEST(RunNetd, RoleRunsWithTheSettledUserAndItsStatusIsTheExitStatus) {
    LogCapture log;
    Options options;
    options.user = "wgd-no-such-user-for-this-test";
    Options seen;
    std::vector<std::string> seen_args;
    int status = run_netd(options, {"wg0"},
                          [&](const Options& settled, const std::vector<std::string>& args) {
                              seen = settled;
                              seen_args = args;
                              return 7;
                          });
    EXPECT_EQ(status, 7);
    // A user that does not exist falls back to nobody, on the children's
    // command line too (each child resolves --user itself).
    EXPECT_EQ(seen.user, "nobody");
    EXPECT_TRUE(seen.user_given);
    EXPECT_EQ(seen_args, (std::vector<std::string>{"--user", "nobody", "wg0"}));
}

// Only so that a handler never called fails the test instead of hanging it.
void fail_after_a_long_while(SuiteParent& parent) {
    privsep::Loop& loop = parent.loop();
    loop.arm_after(loop.add_timer([&loop] { loop.stop(99); }), std::chrono::seconds(30));
}

TEST(SuiteParentRun, ASignalReachesNetdWhoseStopIsTheStatus) {
    SuiteParent parent(true);
    fail_after_a_long_while(parent);
    std::vector<int> signals;
    ASSERT_EQ(raise(SIGHUP), 0); // blocked since parent: pending on its signalfd
    int status = parent.run([&](const auto&) { ADD_FAILURE() << "no child exited"; },
                            [&](int sig) {
                                signals.push_back(sig);
                                parent.loop().stop(5);
                            });
    EXPECT_EQ(status, 5);
    EXPECT_EQ(signals, std::vector<int>{SIGHUP});
}

TEST(SuiteParentRun, AStopBeforeTheLoopRunsEndsItAtOnceWithItsStatus) {
    SuiteParent parent(true);
    fail_after_a_long_while(parent);
    parent.loop().stop(3); // as a first send that failed stops it (with 1)
    int status = parent.run([&](const auto&) { ADD_FAILURE() << "no child exited"; },
                            [&](int sig) { ADD_FAILURE() << "signal " << sig; });
    EXPECT_EQ(status, 3);
}

TEST(SuiteParentRun, AChildsExitReachesNetdWithItsRoleAndStatus) {
    LogCapture log;
    SuiteParent parent(true);
    fail_after_a_long_while(parent);
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0)
        _exit(3);
    parent.supervisor().add(child, "leased");
    std::vector<privsep::ChildExit> exits;
    int status = parent.run(
        [&](const std::vector<privsep::ChildExit>& e) {
            exits.insert(exits.end(), e.begin(), e.end());
            if (!exits.empty())
                parent.loop().stop(1);
        },
        [&](int sig) { ADD_FAILURE() << "signal " << sig; });
    EXPECT_EQ(status, 1);
    ASSERT_EQ(exits.size(), 1u);
    EXPECT_EQ(exits[0].role, "leased");
    EXPECT_TRUE(WIFEXITED(exits[0].status) && WEXITSTATUS(exits[0].status) == 3);
    EXPECT_EQ(log.lines(), std::vector<std::string>{"error: leased exited with status 3"});
}

} // namespace
} // namespace wgd::netd
