// run_netd, the one entry of both netd mains: the sandbox user settled
// before the role runs, and a failed start-up precondition turned into its
// logged reason and exit status 1.
#include "common/log.hpp"
#include "netd/suite.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

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

} // namespace
} // namespace wgd::netd
