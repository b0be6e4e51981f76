// Fail closed: the suite's processes go down together even when netd is
// killed outright, the children hold none of netd's stdio, and netd holds no
// descriptor leaked by whoever started it.
#include "tests/system/suite.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>

using namespace wgd;
using namespace wgd::lab;

namespace {

std::string fd_target(pid_t pid, int fd) {
    std::error_code ec;
    auto target = std::filesystem::read_symlink(
        "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd), ec);
    return ec ? "" : target.string();
}

bool holds_path(pid_t pid, const std::string& path) {
    std::error_code ec;
    for (const auto& e :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
        std::error_code ec2;
        if (std::filesystem::read_symlink(e.path(), ec2).string() == path)
            return true;
    }
    return false;
}

bool stopped(pid_t pid) {
    const std::string status = read_file("/proc/" + std::to_string(pid) + "/status");
    return status.find("State:\tT") != std::string::npos;
}

class FailClosed : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!running_as_root())
            GTEST_SKIP() << "system tests need root (network namespaces, wireguard-go)";
    }
    void TearDown() override {
        if (HasFailure() && lab_)
            std::cerr << "---- server log\n" << read_file(log_) << "----\n";
    }
    std::unique_ptr<Lab> lab_;
    std::string log_;
};

} // namespace

TEST_F(FailClosed, SigkillOfNetdTakesBothChildrenDownEvenAStoppedOneAndTheyHoldNoneOfItsStdio) {
    lab_ = std::make_unique<Lab>(LabOptions{1});
    log_ = lab_->state_dir + "/server.log";
    // Started through a shell that leaves a descriptor open, as a careless
    // service wrapper would.
    const std::string leaked = lab_->state_dir + "/leaked-fd";
    ASSERT_EQ(lab_->in(lab_->server_ns, "touch " + leaked), 0);
    pid_t pid =
        lab_->start(lab_->server_ns, "/bin/sh",
                    {"-c", "exec 9<" + leaked + "; exec " + binary("wg-dynamic-server") +
                               " -f --state-dir " + lab_->state_dir + " " + lab_->server_iface},
                    log_);
    ASSERT_TRUE(wait_until_serving(*lab_)) << read_file(log_);
    auto children = children_of(pid);
    ASSERT_EQ(children.size(), 2u);

    EXPECT_FALSE(holds_path(pid, leaked)) << "netd kept a descriptor it inherited";
    for (pid_t child : children) {
        EXPECT_FALSE(holds_path(child, leaked));
        EXPECT_EQ(fd_target(child, 0), "/dev/null") << "child " << child;
        EXPECT_EQ(fd_target(child, 1), "/dev/null") << "child " << child;
    }

    // protod stopped: it would never read its channel's EOF.
    // The kernel wakes the stopped members of a group orphaned by netd's
    // exit, so the stop must have happened before that exit.
    ASSERT_EQ(kill(children[1], SIGSTOP), 0);
    ASSERT_TRUE(eventually([&] { return stopped(children[1]); }, 2000));
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    ASSERT_NE(wait_exit(pid, 2000), -1);
    for (pid_t child : children)
        EXPECT_TRUE(eventually([&] { return !process_running(child); }, 3000))
            << "child " << child << " outlived a SIGKILL of netd";
}

// A child that stops (SIGSTOP: it reads nothing, exits on nothing) cannot
// hold netd's stop: netd exits within its grace period and the stopped child
// goes with it through its parent-death signal.
TEST_F(FailClosed, ChildThatIgnoresTheStopCannotHoldNetdAndDiesWithIt) {
    lab_ = std::make_unique<Lab>(LabOptions{1});
    log_ = lab_->state_dir + "/server.log";
    ServerRun run = start_server(*lab_);
    log_ = run.log;
    ASSERT_TRUE(wait_until_serving(*lab_)) << read_file(log_);
    auto children = children_of(run.pid);
    ASSERT_EQ(children.size(), 2u);
    ASSERT_EQ(kill(children[0], SIGSTOP), 0);
    ASSERT_EQ(kill(run.pid, SIGTERM), 0);
    EXPECT_NE(wait_exit(run.pid, 4000), -1) << "netd waited for a stopped child";
    for (pid_t child : children)
        EXPECT_TRUE(eventually([&] { return !process_running(child); }, 3000)) << child;
}
