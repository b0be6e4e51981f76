// An operator changing a peer's allowed IPs by hand while the server grants
// and releases addresses of that same peer: nothing the operator added may
// be lost. Runs on wireguard-go and, inside make check-kernel's guests, on
// kernel WireGuard, whose kernels before 6.16 have no operation that
// removes a single allowed IP.
#include "common/addr.hpp"
#include "netd/wireguard.hpp"
#include "tests/system/change_budget.hpp"
#include "tests/system/suite.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <set>
#include <sstream>

using namespace wgd::lab;

namespace {

class OperatorChanges : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!running_as_root())
            GTEST_SKIP() << "system tests need root (network namespaces, WireGuard)";
    }
    void TearDown() override {
        if (HasFailure() && lab_)
            std::cerr << "---- server log\n" << read_file(run_.log) << "----\n";
    }
    std::unique_ptr<Lab> lab_;
    ServerRun run_;
};

// A client that alternates, on one connection, a request for IPv4 only and
// one for IPv6 only: every answer grants one family and releases the other,
// so every request adds an allowed IP to the peer and removes one. Runs in
// a child process inside the client's namespace until `stop` is readable;
// writes a byte on `progress` (non-blocking) for each answer and reports
// "answers errors" on `report` at the end.
pid_t start_storm(const LabClient& c, int stop, int progress, int report) {
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    long answers = 0, errors = 0;
    auto finish = [&] {
        std::string line = std::to_string(answers) + " " + std::to_string(errors) + "\n";
        (void)!write(report, line.data(), line.size());
        _exit(0);
    };
    int nsfd = open(("/run/netns/" + c.ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0) {
        errors++;
        finish();
    }
    unsigned scope = if_nametoindex(c.iface.c_str());
    const char* requests[] = {"request_ip=1\nipv4=0.0.0.0/32\n\n", "request_ip=1\nipv6=::/128\n\n"};
    int fd = -1;
    for (long i = 0;; i++) {
        pollfd p{stop, POLLIN, 0};
        if (poll(&p, 1, 0) > 0)
            break;
        if (fd < 0) {
            fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
            int one = 1;
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            linger lg{1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            timeval tv{10, 0}; // SO_SNDTIMEO bounds connect() too
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
            sockaddr_in6 src{}, dst{};
            src.sin6_family = dst.sin6_family = AF_INET6;
            src.sin6_port = dst.sin6_port = htons(970);
            src.sin6_scope_id = dst.sin6_scope_id = scope;
            inet_pton(AF_INET6, c.lladdr.c_str(), &src.sin6_addr);
            inet_pton(AF_INET6, "fe80::", &dst.sin6_addr);
            if (bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0 ||
                connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0) {
                errors++;
                close(fd);
                fd = -1;
                usleep(10'000);
                continue;
            }
        }
        const std::string request = requests[i % 2];
        std::string reply;
        bool ok = send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
                  static_cast<ssize_t>(request.size());
        while (ok && reply.find("\n\n") == std::string::npos) {
            char buf[1024];
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            ok = n > 0;
            if (ok)
                reply.append(buf, static_cast<std::size_t>(n));
        }
        if (ok && field(reply, "errno") == "0") {
            answers++;
            (void)!write(progress, "a", 1);
        } else
            errors++;
        if (!ok) { // the server closed it (idle timeout): a new connection
            close(fd);
            fd = -1;
        }
    }
    finish();
    return 0; // not reached: finish() exits
}

std::set<std::string> words_of(const std::string& s) {
    std::set<std::string> out;
    std::istringstream in(s);
    for (std::string w; in >> w;)
        out.insert(w);
    return out;
}

} // namespace

// The operator adds allowed IPs to the peer one at a time without touching
// the others, as `wg set ... allowed-ips +X` does with wireguard-tools 1.0.20250521
// and later. Debian 12's wg cannot (set and addconf both replace a peer's
// whole list), so the operator here is the suite's own backend code making
// update-only, add-only changes from a process inside the server's
// namespace, through the UAPI socket or generic netlink as the server does.
TEST_F(OperatorChanges, AllowedIpsAddedByHandDuringAGrantAndReleaseStormAreAllKept) {
    UnlimitedChangeBudget unlimited; // the storm is the point
    lab_ = std::make_unique<Lab>(LabOptions{1});
    run_ = start_server(*lab_);
    ASSERT_TRUE(wait_until_serving(*lab_)) << read_file(run_.log);
    const LabClient& c = lab_->clients[0];

    int stop[2], report[2], progress[2];
    ASSERT_EQ(pipe(stop), 0);
    ASSERT_EQ(pipe(report), 0);
    ASSERT_EQ(pipe2(progress, O_NONBLOCK), 0);
    pid_t storm = start_storm(c, stop[0], progress[1], report[1]);
    ASSERT_GT(storm, 0);
    close(report[1]);
    close(progress[1]);

    constexpr int kAdditions = 60;
    std::set<std::string> added;
    std::vector<wgd::PeerChange> changes;
    for (int k = 0; k < kAdditions; k++) {
        // Outside every pool, so that the server sees static configuration.
        wgd::PeerChange change{*wgd::key_from_base64(c.pubkey), {}, {}, {}, {}};
        if (k % 2 == 0) {
            change.add4.push_back(wgd::Ip4{{192, 168, 50, static_cast<std::uint8_t>(k + 1)}});
            added.insert(wgd::to_string(change.add4[0]) + "/32");
        } else {
            change.add6.push_back(*wgd::parse_ip6("2001:db8:50::" + std::to_string(k + 1)));
            added.insert(wgd::to_string(change.add6[0]) + "/128");
        }
        changes.push_back(change);
    }
    pid_t operator_pid = fork();
    if (operator_pid == 0) {
        int nsfd = open(("/run/netns/" + lab_->server_ns).c_str(), O_RDONLY | O_CLOEXEC);
        if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0)
            _exit(2);
        auto backend = wgd::netd::open_backend(lab_->server_iface);
        if (!backend)
            _exit(3);
        // One addition after each answer of the storm: the two interleave
        // however fast or slow the machine is.
        for (const auto& change : changes) {
            pollfd p{progress[0], POLLIN, 0};
            char answer;
            if (poll(&p, 1, 20'000) != 1 || read(progress[0], &answer, 1) != 1)
                _exit(5);
            if (!(*backend)->apply(std::span(&change, 1)))
                _exit(4);
        }
        _exit(0);
    }
    ASSERT_GT(operator_pid, 0);
    int operator_status = 0;
    waitpid(operator_pid, &operator_status, 0);
    (void)!write(stop[1], "x", 1);
    std::string line;
    char buf[64];
    ssize_t n;
    while ((n = read(report[0], buf, sizeof buf)) > 0)
        line.append(buf, static_cast<std::size_t>(n));
    waitpid(storm, nullptr, 0);
    close(stop[0]);
    close(stop[1]);
    close(report[0]);
    close(progress[0]);
    long answers = 0, errors = 0;
    std::istringstream(line) >> answers >> errors;
    EXPECT_TRUE(WIFEXITED(operator_status) && WEXITSTATUS(operator_status) == 0)
        << "the operator's changes failed: " << operator_status;
    EXPECT_EQ(errors, 0) << "storm answers " << answers;
    // Each addition followed an answer of the storm.
    EXPECT_GE(answers, kAdditions);

    std::set<std::string> have = words_of(lab_->allowed_ips_of(c.pubkey));
    std::vector<std::string> lost;
    for (const auto& ip : added)
        if (!have.count(ip))
            lost.push_back(ip);
    EXPECT_TRUE(lost.empty()) << lost.size() << " of " << added.size()
                              << " allowed IPs added by hand were lost, e.g. " << lost.front()
                              << "; storm answers " << answers
                              << "; the peer has now: " << lab_->allowed_ips_of(c.pubkey);
    EXPECT_TRUE(have.count(c.lladdr + "/128"));
    // The device holds this one peer, nothing left over by the server.
    std::string peers = lab_->out(lab_->server_ns, "wg show " + lab_->server_iface + " peers");
    EXPECT_EQ(words_of(peers), std::set<std::string>{c.pubkey}) << peers;

    // Afterwards the server still leases as usual and the hand-made
    // allowed IPs are left alone by a grant of both families.
    Exchange both = request(*lab_, 0);
    ASSERT_EQ(field(both.reply, "errno"), "0") << both.reply;
    std::set<std::string> want = added;
    want.insert(c.lladdr + "/128");
    want.insert(field(both.reply, "ipv4"));
    want.insert(field(both.reply, "ipv6"));
    EXPECT_EQ(words_of(lab_->allowed_ips_of(c.pubkey)), want);
}
