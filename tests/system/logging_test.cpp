// Logging of the real server suite: the journal's priority prefixes when
// stderr is the journal, and detached mode with syslog, present or absent.
// A lease file of garbage makes leased (a child) log an error at start
// ("lease file unreadable"), and -v makes protod log debug lines, so each
// test sees lines of several levels from netd and from the children.
#include "tests/lab/lab.hpp"
#include "tests/system/suite.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

using namespace wgd;
using namespace wgd::lab;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        out.push_back(line);
    return out;
}

bool has_line(const std::vector<std::string>& lines, const std::string& start,
              const std::string& contains) {
    for (const std::string& l : lines)
        if (l.rfind(start, 0) == 0 && l.find(contains) != std::string::npos)
            return true;
    return false;
}

void read_into(int fd, std::string& out) {
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) > 0)
        out.append(buf, static_cast<std::size_t>(n));
}

class Logging : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!running_as_root())
            GTEST_SKIP() << "system tests need root (network namespaces, wireguard-go)";
        lab_ = std::make_unique<Lab>(LabOptions{1});
        // Content but no valid header: leased logs an error and starts a new file.
        std::ofstream(lab_->state_dir + "/" + lab_->server_iface + ".leases.0")
            << std::string(100, 'x');
        ASSERT_EQ(chmod((lab_->state_dir + "/" + lab_->server_iface + ".leases.0").c_str(), 0600),
                  0);
    }
    std::unique_ptr<Lab> lab_;
};

// The suite's processes in the server namespace, found from the listening
// socket (protod holds it; netd is its parent): {netd, protod}.
std::pair<pid_t, pid_t> find_suite(const Lab& lab) {
    std::string ss = lab.out(lab.server_ns, "ss -Htlnp sport = :970");
    std::smatch m;
    if (!std::regex_search(ss, m, std::regex("pid=([0-9]+)")))
        return {-1, -1};
    pid_t protod = std::atoi(m[1].str().c_str());
    std::istringstream status(read_file("/proc/" + std::to_string(protod) + "/status"));
    for (std::string line; std::getline(status, line);)
        if (line.rfind("PPid:", 0) == 0)
            return {std::atoi(line.c_str() + 5), protod};
    return {-1, protod};
}

} // namespace

// Under systemd (stderr is the journal: JOURNAL_STREAM names its device and
// inode), each line starts with its sd-daemon(3) priority, children's lines
// keep their own level, and no line repeats the program name the journal adds.
TEST_F(Logging, StderrThatIsTheJournalGetsEachLinesPriorityAndNoProgramName) {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct stat st {};
    ASSERT_EQ(fstat(sv[1], &st), 0);
    const std::string stream = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
    const std::string bin = binary("wg-dynamic-server");
    pid_t pid = fork();
    if (pid == 0) {
        dup2(sv[1], 2);
        setenv("JOURNAL_STREAM", stream.c_str(), 1);
        execlp("ip", "ip", "netns", "exec", lab_->server_ns.c_str(), bin.c_str(), "-f", "-v",
               "--state-dir", lab_->state_dir.c_str(), lab_->server_iface.c_str(),
               static_cast<char*>(nullptr));
        _exit(127);
    }
    close(sv[1]);
    std::string text;
    ASSERT_TRUE(wait_until_serving(*lab_, 0));
    EXPECT_EQ(field(request(*lab_, 0).reply, "errno"), "0");
    kill(pid, SIGTERM);
    int status = wait_exit(pid, 5000);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    read_into(sv[0], text);
    close(sv[0]);
    auto lines = lines_of(text);
    ASSERT_FALSE(lines.empty());
    for (const std::string& l : lines) {
        EXPECT_TRUE(std::regex_search(l, std::regex("^<[3467]>"))) << l;
        EXPECT_EQ(l.find("wg-dynamic-server:"), std::string::npos) << "name twice: " << l;
    }
    EXPECT_TRUE(has_line(lines, "<6>serving " + lab_->server_iface, "")) << text;
    EXPECT_TRUE(has_line(lines, "<3>leased: ", "lease file unreadable")) << text;
    EXPECT_TRUE(has_line(lines, "<6>leased: ", "serving:")) << text;
    EXPECT_TRUE(has_line(lines, "<7>protod: ", "connection")) << text;
    EXPECT_TRUE(has_line(lines, "<6>", "stopping")) << text;
    std::cout << lines.size() << " lines, e.g.:\n";
    for (std::size_t i = 0; i < lines.size() && i < 6; i++)
        std::cout << "  " << lines[i] << "\n";
}

namespace {

// Starts the server detached (no -f) in the server namespace, in a private
// /dev that holds /dev/null and, when `syslog_socket` is given, /dev/log
// bound to it; returns when the starting process has exited.
int start_detached(const Lab& lab, const std::string& tmp, const std::string& syslog_socket) {
    std::string script = "set -e; touch " + tmp + "/null; mount --bind /dev/null " + tmp +
                         "/null; mount -t tmpfs -o mode=755 none /dev; touch /dev/null; "
                         "mount --bind " +
                         tmp + "/null /dev/null; ";
    if (!syslog_socket.empty())
        script += "touch /dev/log; mount --bind " + syslog_socket + " /dev/log; ";
    script += "exec " + binary("wg-dynamic-server") + " -v --state-dir " + lab.state_dir + " " +
              lab.server_iface;
    return lab.in(lab.server_ns, script);
}

void stop_suite(pid_t netd, pid_t protod) {
    if (netd > 0)
        kill(netd, SIGTERM);
    eventually([&] { return !process_alive(netd) && !process_alive(protod); }, 5000);
}

} // namespace

// Detached with no syslog at all: nothing reaches a log, and the suite
// serves as usual (glibc's syslog() made a new socket at every line, and
// netd's sandbox killed the whole suite for it).
TEST_F(Logging, DetachedServerWithNoSyslogAtAllKeepsServing) {
    ASSERT_EQ(start_detached(*lab_, lab_->state_dir, ""), 0);
    ASSERT_TRUE(wait_until_serving(*lab_, 0));
    auto [netd, protod] = find_suite(*lab_);
    ASSERT_GT(netd, 0);
    for (int i = 0; i < 20; i++)
        EXPECT_EQ(field(request(*lab_, 0).reply, "errno"), "0");
    EXPECT_TRUE(process_alive(netd));
    EXPECT_NE(read_file("/proc/" + std::to_string(netd) + "/cmdline").find("wg-dynamic-server"),
              std::string::npos);
    stop_suite(netd, protod);
    EXPECT_FALSE(process_alive(netd));
}

// Detached with a syslog: netd's lines and each child's, at the child's own
// level (facility daemon: <27> error, <30> info, <31> debug), named by the
// socket they came on.
TEST_F(Logging, DetachedServerLogsToSyslogWithEachChildsLevel) {
    const std::string sock_path = lab_->state_dir + "/syslog.sock";
    int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(sock, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock_path.c_str());
    ASSERT_EQ(bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(start_detached(*lab_, lab_->state_dir, sock_path), 0);
    ASSERT_TRUE(wait_until_serving(*lab_, 0));
    auto [netd, protod] = find_suite(*lab_);
    ASSERT_GT(netd, 0);
    EXPECT_EQ(field(request(*lab_, 0).reply, "errno"), "0");
    std::string text;
    std::vector<std::string> lines;
    eventually(
        [&] {
            char buf[4096];
            ssize_t n;
            while ((n = recv(sock, buf, sizeof buf, MSG_DONTWAIT)) > 0)
                lines.emplace_back(buf, static_cast<std::size_t>(n));
            return has_line(lines, "<31>", "protod: connection");
        },
        3000);
    stop_suite(netd, protod);
    close(sock);
    for (auto& l : lines)
        text += l + "\n";
    const std::string ident = " wg-dynamic-server[" + std::to_string(netd) + "]: ";
    for (const std::string& l : lines)
        EXPECT_NE(l.find(ident), std::string::npos) << l;
    EXPECT_TRUE(has_line(lines, "<30>", ident + "serving " + lab_->server_iface)) << text;
    EXPECT_TRUE(has_line(lines, "<27>", ident + "leased: lease file unreadable")) << text;
    EXPECT_TRUE(has_line(lines, "<30>", ident + "leased: serving:")) << text;
    EXPECT_TRUE(has_line(lines, "<31>", ident + "protod: connection")) << text;
    std::cout << lines.size() << " datagrams, e.g.:\n";
    for (std::size_t i = 0; i < lines.size() && i < 5; i++)
        std::cout << "  " << lines[i] << "\n";
}
