// The state directory and lease files are opened only when they cannot have
// been planted or swapped by another user; on real files in a temporary
// directory (the tests run as root, as the server does).
#include "privsep/state_files.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

using namespace wgd;
using namespace wgd::privsep;

namespace {

struct stat regular(mode_t perm, uid_t uid = 0, nlink_t links = 1, off_t size = 0) {
    struct stat st {};
    st.st_mode = S_IFREG | perm;
    st.st_uid = uid;
    st.st_nlink = links;
    st.st_size = size;
    return st;
}

class StateFiles : public ::testing::Test {
  protected:
    void SetUp() override {
        if (geteuid() != 0)
            GTEST_SKIP() << "owner checks need root (files made here are root's)";
        char tmpl[] = "/tmp/wgd-state-files-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override {
        if (!dir_.empty())
            (void)!std::system(("rm -rf " + dir_).c_str());
    }
    std::string dir_;
};

// The check's reason, "" when it passed.
std::string reason(const Result<void>& checked) {
    return checked ? "" : checked.error().message;
}

} // namespace

TEST(StateFileChecks, RootsPrivateRegularFileWithOneLinkIsAccepted) {
    EXPECT_EQ(reason(check_lease_file(regular(0600))), "");
    EXPECT_EQ(reason(check_lease_file(regular(0644))), "");
}

TEST(StateFileChecks, EachUnsafePropertyOfALeaseFileIsNamed) {
    EXPECT_EQ(reason(check_lease_file(regular(0600, 1000))), "owned by uid 1000, not root");
    EXPECT_EQ(reason(check_lease_file(regular(0620))), "writable by group or others");
    EXPECT_EQ(reason(check_lease_file(regular(0602))), "writable by group or others");
    EXPECT_EQ(reason(check_lease_file(regular(0600, 0, 2))), "2 hard links, not one");
    struct stat fifo = regular(0600);
    fifo.st_mode = S_IFIFO | 0600;
    EXPECT_EQ(reason(check_lease_file(fifo)), "not a regular file");
    EXPECT_EQ(reason(check_lease_file(regular(0600, 0, 1, 101), 100)),
              "101 bytes, over the limit of 100");
    EXPECT_EQ(reason(check_lease_file(regular(0600, 0, 1, 100), 100)), "");
}

TEST(StateFileChecks, StateDirectoryMustBeRootsAndNotGroupOrOtherWritable) {
    struct stat st {};
    st.st_mode = S_IFDIR | 0700;
    EXPECT_EQ(reason(check_state_dir(st)), "");
    st.st_mode = S_IFDIR | 0775;
    EXPECT_EQ(reason(check_state_dir(st)), "writable by group or others");
    st.st_mode = S_IFDIR | 01777;
    EXPECT_EQ(reason(check_state_dir(st)), "writable by group or others");
    st.st_mode = S_IFDIR | 0700;
    st.st_uid = 65534;
    EXPECT_EQ(reason(check_state_dir(st)), "owned by uid 65534, not root");
}

TEST_F(StateFiles, MissingLeaseFileIsCreatedPrivateAndOpened) {
    auto dir = open_state_dir(dir_, false);
    ASSERT_TRUE(dir && *dir) << (dir ? "" : dir.error().message);
    auto f = open_lease_file(dir->get(), dir_, "wg0.leases.0", true);
    ASSERT_TRUE(f && *f) << (f ? "" : f.error().message);
    struct stat st {};
    ASSERT_EQ(stat((dir_ + "/wg0.leases.0").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    EXPECT_EQ(fcntl(f->get(), F_GETFL) & O_NONBLOCK, 0);
}

TEST_F(StateFiles, SymlinkedLeaseFileIsRefusedAndItsTargetUntouched) {
    const std::string target = dir_ + "/precious";
    ASSERT_EQ(system(("printf keep > " + target).c_str()), 0);
    ASSERT_EQ(symlink(target.c_str(), (dir_ + "/wg0.leases.0").c_str()), 0);
    auto dir = open_state_dir(dir_, false);
    ASSERT_TRUE(dir && *dir);
    auto f = open_lease_file(dir->get(), dir_, "wg0.leases.0", true);
    ASSERT_FALSE(f);
    EXPECT_EQ(f.error().message, "lease file " + dir_ + "/wg0.leases.0 refused: a symbolic link");
    struct stat st {};
    ASSERT_EQ(stat(target.c_str(), &st), 0);
    EXPECT_EQ(st.st_size, 4);
}

TEST_F(StateFiles, HardLinkedFifoAndOversizedLeaseFilesAreRefused) {
    auto dir = open_state_dir(dir_, false);
    ASSERT_TRUE(dir && *dir);
    ASSERT_EQ(system(("touch " + dir_ + "/a && ln " + dir_ + "/a " + dir_ + "/b").c_str()), 0);
    EXPECT_EQ(open_lease_file(dir->get(), dir_, "a", true).error().message,
              "lease file " + dir_ + "/a refused: 2 hard links, not one");
    ASSERT_EQ(mkfifo((dir_ + "/fifo").c_str(), 0600), 0);
    EXPECT_EQ(open_lease_file(dir->get(), dir_, "fifo", true).error().message,
              "lease file " + dir_ + "/fifo refused: not a regular file");
    ASSERT_EQ(truncate((dir_ + "/b").c_str(), 0), 0);
    ASSERT_EQ(unlink((dir_ + "/b").c_str()), 0);
    ASSERT_EQ(truncate((dir_ + "/a").c_str(), kMaxLeaseFileBytes + 1), 0); // sparse
    EXPECT_NE(open_lease_file(dir->get(), dir_, "a", false).error().message.find("over the limit"),
              std::string::npos);
}

TEST_F(StateFiles, SymlinkedOrGroupWritableStateDirectoryIsRefused) {
    ASSERT_EQ(chmod(dir_.c_str(), 0770), 0);
    EXPECT_EQ(open_state_dir(dir_, false).error().message,
              "state directory " + dir_ + " refused: writable by group or others");
    ASSERT_EQ(chmod(dir_.c_str(), 0700), 0);
    ASSERT_EQ(mkdir((dir_ + "/real").c_str(), 0700), 0);
    ASSERT_EQ(symlink((dir_ + "/real").c_str(), (dir_ + "/link").c_str()), 0);
    EXPECT_EQ(open_state_dir(dir_ + "/link", true).error().message,
              "state directory " + dir_ + "/link refused: a symbolic link or not a directory");
}

TEST_F(StateFiles, MissingLeaseFileOpenedForReadingIsNoErrorAndNoFd) {
    auto dir = open_state_dir(dir_, false);
    ASSERT_TRUE(dir && *dir);
    auto f = open_lease_file(dir->get(), dir_, "none", false);
    ASSERT_TRUE(f);
    EXPECT_FALSE(*f) << "a missing file is no error when only reading";
}
