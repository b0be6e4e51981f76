// Floods and slow clients against the real server suite in a lab.
//
// The server talks only to port 970 of a peer's link-local address, so one
// address holds at most one connection. To open 2,000 at once, peer 0 gets
// fe80::1:0/116 in its allowed IPs on the server (WireGuard then lets those
// sources through) and the 2,000 addresses on its interface (nodad).
//
// Fairness, as protod does it (protod/server.cpp): each poll round accepts at
// most 64 connections, then serves every connection that is ready (at most
// four reads each) and up to 256 answers of leased, so neither a peer
// reconnecting in a tight loop nor a flood of connects can starve the peers
// already connected. When all 1,024 slots are taken, the connection quiet the
// longest (at least 250 ms, owing nothing, awaiting no answer) is closed
// to make room, so silent connections cannot lock the other peers out until
// the 10 s idle timeout.
#include "common/addr.hpp"
#include "leased/budget.hpp"
#include "leased/lease_file.hpp"
#include "tests/system/background.hpp"
#include "tests/system/suite.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

using namespace wgd;
using namespace wgd::lab;

namespace {

constexpr int kFlood = 2000;

std::string flood_source(int i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "fe80::1:%x", i + 1); // inside fe80::1:0/116
    return buf;
}

class Floods : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!running_as_root())
            GTEST_SKIP() << "system tests need root (network namespaces, wireguard-go)";
        lab_ = std::make_unique<Lab>(LabOptions{2});
        const LabClient& c = lab_->clients[0];
        ASSERT_EQ(lab_->in(lab_->server_ns, "wg set " + lab_->server_iface + " peer " + c.pubkey +
                                                " allowed-ips " + c.lladdr + "/128,fe80::1:0/116"),
                  0);
    }
    // Puts `count` flood sources on peer 0's interface, then starts the server.
    void add_sources_and_start(int count) {
        const LabClient& c = lab_->clients[0];
        // wireguard-go dies of a netlink storm (its event socket overflows)
        // when 2,000 addresses arrive at once: add them with the link down,
        // 100 at a time with pauses. Down also removes its link-local
        // identity and route: put them back.
        std::string batch = lab_->state_dir + "/addrs.batch";
        auto run_batch = [&](const std::string& text) {
            std::ofstream(batch) << text;
            return sh("ip -n " + c.ns + " -batch " + batch);
        };
        if (count > 100) {
            ASSERT_EQ(run_batch("link set " + c.iface + " down\n"), 0);
        }
        for (int first = 0; first < count; first += 100) {
            std::string text;
            for (int i = first; i < std::min(first + 100, count); i++)
                text += "addr add " + flood_source(i) + "/128 dev " + c.iface + " nodad\n";
            ASSERT_EQ(run_batch(text), 0);
            std::this_thread::sleep_for(std::chrono::milliseconds(30));
        }
        ASSERT_EQ(run_batch("addr replace " + c.lladdr + "/128 dev " + c.iface +
                            " nodad\nlink set " + c.iface + " up\nroute replace fe80::/128 dev " +
                            c.iface + "\n"),
                  0);
        ASSERT_GE(
            std::atoi(
                lab_->out(c.ns, "ip -6 addr show dev " + c.iface + " | grep -c inet6").c_str()),
            count + 1);
        ASSERT_EQ(sh("ip -n " + c.ns + " link show " + c.iface + " >/dev/null 2>&1"), 0)
            << "the client's wireguard-go died";
        run_ = start_server(*lab_);
        ASSERT_TRUE(wait_until_serving(*lab_, 1)) << read_file(run_.log);
        ASSERT_TRUE(wait_until_serving(*lab_, 0)) << "peer 0's tunnel does not work";
    }
    void TearDown() override {
        if (HasFailure() && lab_)
            std::cerr << "---- server log (tail)\n" << sh_out("tail -n 40 " + run_.log) << "----\n";
    }

    // Good requests from peer 1 every `period_ms` until `until_ms` (now_ms
    // clock): the slowest answer in ms, and how many were not a grant.
    struct GoodPeer {
        long long slowest_ms = 0;
        int failures = 0;
        int served = 0;
    };
    GoodPeer serve_good_peer_until(long long until_ms, int period_ms = 250,
                                   const std::function<void()>& each_round = {}) {
        GoodPeer g;
        while (now_ms() < until_ms) {
            if (each_round)
                each_round();
            long long start = now_ms();
            Exchange ex = request(*lab_, 1);
            long long took = now_ms() - start;
            g.slowest_ms = std::max(g.slowest_ms, took);
            if (field(ex.reply, "errno") == "0")
                ++g.served;
            else
                ++g.failures;
            std::this_thread::sleep_for(std::chrono::milliseconds(period_ms));
        }
        return g;
    }
    bool server_alive() { return waitpid(run_.pid, nullptr, WNOHANG) == 0; }

    std::unique_ptr<Lab> lab_;
    ServerRun run_;
};

// The flood child's report: one "t established closed failed" line per
// snapshot, then "closed_at ms..." for every connection the server closed
// after it was established (ms since the start), "-1" for those never closed.
struct FloodReport {
    struct Snapshot {
        long long t;
        int established, closed, failed;
    };
    std::vector<Snapshot> snapshots;
    std::vector<long long> closed_at;
    std::string errors; // "error COUNT TEXT" lines of failed connects
};

FloodReport parse_flood(const std::string& text) {
    FloodReport r;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        std::istringstream w(line);
        std::string tag;
        w >> tag;
        if (tag == "snap") {
            FloodReport::Snapshot s{};
            w >> s.t >> s.established >> s.closed >> s.failed;
            r.snapshots.push_back(s);
        } else if (tag == "error") {
            r.errors += line + "\n";
        } else if (tag == "closed_at") {
            for (long long t; w >> t;)
                r.closed_at.push_back(t);
        }
    }
    return r;
}

std::string hold_silent_connections(const std::string& iface, int count, int hold_ms) {
    enum State { connecting, established, closed, failed };
    struct Conn {
        int fd;
        State state;
        long long closed_at;
    };
    std::vector<Conn> conns;
    std::map<int, int> errors; // errno of failed connects: count
    const long long t0 = now_ms();
    for (int i = 0; i < count; i++) {
        int fd = connect_from(iface, flood_source(i), 970, true);
        if (fd < 0)
            ++errors[-fd];
        conns.push_back({fd, fd < 0 ? failed : connecting, -1});
    }
    std::string out;
    long long next_snap = t0;
    std::vector<pollfd> pfds;
    std::vector<std::size_t> index;
    for (;;) {
        long long now = now_ms();
        if (now >= next_snap) {
            int est = 0, cl = 0, fa = 0;
            for (auto& c : conns) {
                est += c.state == established;
                cl += c.state == closed;
                fa += c.state == failed;
            }
            out += "snap " + std::to_string(now - t0) + " " + std::to_string(est) + " " +
                   std::to_string(cl) + " " + std::to_string(fa) + "\n";
            next_snap += 250;
        }
        if (now - t0 >= hold_ms)
            break;
        pfds.clear();
        index.clear();
        for (std::size_t i = 0; i < conns.size(); i++) {
            if (conns[i].state == connecting)
                pfds.push_back({conns[i].fd, POLLOUT, 0});
            else if (conns[i].state == established)
                pfds.push_back({conns[i].fd, POLLIN, 0});
            else
                continue;
            index.push_back(i);
        }
        if (pfds.empty()) {
            usleep(50'000);
            continue;
        }
        if (poll(pfds.data(), pfds.size(), 50) <= 0)
            continue;
        now = now_ms();
        for (std::size_t k = 0; k < pfds.size(); k++) {
            if (pfds[k].revents == 0)
                continue;
            Conn& c = conns[index[k]];
            if (c.state == connecting) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
                c.state = err == 0 ? established : failed;
                if (err != 0)
                    ++errors[err];
                // A connection the server accepted and closed at once may
                // show readable already: looked at in the next round.
                continue;
            }
            char b;
            ssize_t n = recv(c.fd, &b, 1, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                c.state = closed;
                c.closed_at = now - t0;
            }
        }
    }
    for (auto& [err, n] : errors)
        out += "error " + std::to_string(n) + " " + std::strerror(err) + "\n";
    out += "closed_at";
    for (auto& c : conns)
        out += " " + std::to_string(c.state == closed ? c.closed_at : -1);
    out += "\n";
    for (auto& c : conns)
        if (c.fd >= 0)
            close(c.fd);
    return out;
}

} // namespace

TEST_F(Floods, TwoThousandSilentConnectionsAreCappedDroppedWhenIdleAndAGoodPeerIsServedThroughout) {
    ASSERT_NO_FATAL_FAILURE(add_sources_and_start(kFlood));
    const std::string iface = lab_->clients[0].iface;
    const long long start = now_ms();
    Background flood(lab_->clients[0].ns,
                     [&] { return hold_silent_connections(iface, kFlood, 22'000); });
    // Once the flood's connections are in (within a second here), a good
    // peer is served within a second; in the first 250 ms of a full table
    // no silent connection is yet quiet enough to give way.
    std::this_thread::sleep_for(std::chrono::milliseconds(1000));
    // The server side: protod's open sockets, sampled while the flood holds.
    pid_t protod = -1;
    for (pid_t child : children_of(run_.pid))
        if (read_file("/proc/" + std::to_string(child) + "/cmdline").find("protod") !=
            std::string::npos)
            protod = child;
    ASSERT_GT(protod, 0);
    int most_sockets = 0;
    auto count_sockets = [&] {
        int n = std::atoi(
            sh_out("ls -l /proc/" + std::to_string(protod) + "/fd | grep -c socket:").c_str());
        most_sockets = std::max(most_sockets, n);
    };
    GoodPeer good = serve_good_peer_until(start + 13'000, 250, count_sockets);
    FloodReport report = parse_flood(flood.wait());
    ASSERT_FALSE(report.snapshots.empty());
    ASSERT_EQ(report.closed_at.size(), static_cast<std::size_t>(kFlood));

    // The server never holds more than its limit, and it does hold that many.
    int peak = 0, at_3s = -1, closed_at_3s = -1;
    for (auto& s : report.snapshots) {
        if (s.t >= 2000)
            peak = std::max(peak, s.established);
        if (at_3s < 0 && s.t >= 5000) {
            at_3s = s.established;
            closed_at_3s = s.closed;
        }
    }
    EXPECT_EQ(report.snapshots.back().failed, 0) << report.errors;
    // The client also counts connections still in the listen backlog, not
    // yet accepted and closed; by 5 s there are none.
    // 1,024 connections, the listener, the control socket's listener, the
    // channel to leased, the log.
    EXPECT_LE(most_sockets, 1024 + 4) << "protod held more than its limit";
    EXPECT_LE(at_3s, 1024);
    EXPECT_GE(at_3s, 1024 - 40) << "the server should fill its 1,024 slots";
    EXPECT_GE(closed_at_3s, kFlood - 1024) << "the rest are closed";
    // Idle ones are dropped after the 10 s timeout, not before (but for the
    // few evicted to make room for the good peer), and all are gone by the
    // end: 2,000 SYNs at once overflow the listen queue, so some connect
    // only on the SYN's retransmission (1 s, then 3 s later, ...) and time
    // out up to about 17 s in; the client holds them 22 s.
    int closed_early = 0, closed_by_timeout = 0, evicted = 0, never = 0;
    for (long long t : report.closed_at) {
        if (t < 0)
            ++never;
        else if (t < 2000)
            ++closed_early;
        else if (t >= 9000 && t <= 13'000)
            ++closed_by_timeout;
        else
            ++evicted;
    }
    EXPECT_EQ(never, 0);
    // Evicted: silent connections closed to make room for newer ones (the
    // good peer's, or flood connections accepted 250 ms or more later).
    EXPECT_GE(closed_by_timeout, 1024 - evicted - 20);
    // A good peer is served within a second throughout.
    // Attempts come every 250 ms plus the socket count (a listing of 1,000
    // descriptors, slow on a loaded machine): at least 10 over the 12 s.
    EXPECT_EQ(good.failures, 0);
    EXPECT_GE(good.served, 10);
    EXPECT_LE(good.slowest_ms, 1000);
    EXPECT_TRUE(server_alive());
    std::cout << "flood: " << kFlood << " connections; protod's sockets at most " << most_sockets
              << ", client-side peak " << peak << ", closed at once " << closed_early
              << ", dropped at idle timeout " << closed_by_timeout << ", evicted to make room "
              << evicted << "; good peer served " << good.served << " times, slowest "
              << good.slowest_ms << " ms\n";
}

TEST_F(Floods, SlowSenderIsCutAtTheRequestTimeoutAndTightReconnectsDoNotStarveOthers) {
    ASSERT_NO_FATAL_FAILURE(add_sources_and_start(2));
    const LabClient& c = lab_->clients[0];
    const std::string iface = c.iface, self = c.lladdr;
    // One byte a second of a request that would be valid: cut at 10 s.
    Background slow(c.ns, [&] {
        int fd = connect_from(iface, flood_source(1), 970, false);
        if (fd < 0)
            return std::string("connect failed");
        const std::string body = "request_ip=1\ncomment=" + std::string(40, 'a') + "\n\n";
        long long t0 = now_ms();
        for (std::size_t i = 0; i < body.size(); i++) {
            if (send(fd, &body[i], 1, MSG_NOSIGNAL) != 1)
                break;
            pollfd p{fd, POLLIN, 0};
            if (poll(&p, 1, 1000) > 0) {
                char b[64];
                ssize_t n = recv(fd, b, sizeof b, 0);
                close(fd);
                return "closed " + std::to_string(now_ms() - t0) + " " + std::to_string(n);
            }
        }
        close(fd);
        return std::string("never closed");
    });
    // A peer reconnecting in a tight loop, half with a request, half silent.
    Background loop(c.ns, [&] {
        long long end = now_ms() + 11'000;
        int connects = 0, answers = 0;
        while (now_ms() < end) {
            int fd = connect_from(iface, self, 970, false);
            if (fd < 0)
                continue;
            ++connects;
            if (connects % 2 == 0) {
                const char req[] = "request_ip=1\n\n";
                (void)!send(fd, req, sizeof req - 1, MSG_NOSIGNAL);
                if (connects % 4 == 0) {
                    pollfd p{fd, POLLIN, 0};
                    char b[512];
                    if (poll(&p, 1, 1000) > 0 && recv(fd, b, sizeof b, 0) > 0)
                        ++answers;
                }
            }
            close(fd); // RST: the same source is free again at once
        }
        return std::to_string(connects) + " " + std::to_string(answers);
    });
    GoodPeer good = serve_good_peer_until(now_ms() + 12'000, 200);
    std::istringstream loop_result(loop.wait());
    int connects = 0, answers = 0;
    loop_result >> connects >> answers;
    std::string slow_result = slow.wait();
    std::istringstream s(slow_result);
    std::string what;
    long long cut_ms = -1;
    int read_bytes = -2;
    s >> what >> cut_ms >> read_bytes;
    EXPECT_EQ(what, "closed") << slow_result;
    EXPECT_GE(cut_ms, 9000) << slow_result;
    EXPECT_LE(cut_ms, 12'000) << slow_result;
    EXPECT_LE(read_bytes, 0) << "a cut request gets no answer";
    EXPECT_GE(connects, 200) << "the loop was not tight";
    EXPECT_GE(answers, 1);
    EXPECT_EQ(good.failures, 0);
    EXPECT_LE(good.slowest_ms, 1000);
    EXPECT_TRUE(server_alive());
    std::cout << "slow sender cut after " << cut_ms << " ms; tight loop: " << connects
              << " connections (" << answers << " answers read); good peer served " << good.served
              << " times, slowest " << good.slowest_ms << " ms\n";
}

namespace {

// protod's resident memory in kB, from /proc/PID/status.
long rss_kb(pid_t pid) {
    std::istringstream status(read_file("/proc/" + std::to_string(pid) + "/status"));
    for (std::string line; std::getline(status, line);)
        if (line.rfind("VmRSS:", 0) == 0)
            return std::atol(line.c_str() + 6);
    return -1;
}

pid_t child_named(pid_t parent, const std::string& role) {
    for (pid_t child : children_of(parent))
        if (read_file("/proc/" + std::to_string(child) + "/cmdline").find(role) !=
            std::string::npos)
            return child;
    return -1;
}

// A counter of /proc/PID/io ("syscw": write system calls, pwrite included).
long long proc_io(pid_t pid, const std::string& key) {
    std::istringstream io(read_file("/proc/" + std::to_string(pid) + "/io"));
    for (std::string line; std::getline(io, line);)
        if (line.rfind(key + ":", 0) == 0)
            return std::atoll(line.c_str() + key.size() + 1);
    return -1;
}

class Bounded : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!running_as_root())
            GTEST_SKIP() << "system tests need root (network namespaces, wireguard-go)";
        lab_ = std::make_unique<Lab>(LabOptions{peers()});
    }
    virtual int peers() const { return 2; }
    void TearDown() override {
        if (HasFailure() && lab_ && !run_.log.empty())
            std::cerr << "---- server log (tail)\n" << sh_out("tail -n 40 " + run_.log) << "----\n";
    }
    void start() {
        run_ = start_server(*lab_);
        ASSERT_TRUE(wait_until_serving(*lab_, 0)) << read_file(run_.log);
        ASSERT_TRUE(wait_until_serving(*lab_, 1));
    }
    std::unique_ptr<Lab> lab_;
    ServerRun run_;
};

class BoundedThreePeers : public Bounded {
  protected:
    int peers() const override { return 3; }
};

} // namespace

// A peer that pipelines requests and never reads is read only until its
// first answer stalls: protod holds at most one request and one answer for
// it (kMaxConnectionBytes, under 48 KB), its resident memory does not grow,
// and the stalled connection is closed at the 10 s idle timeout although
// the peer still has requests to send. Another peer is served throughout.
TEST_F(Bounded, PeerPipeliningWithoutReadingIsNotReadAndIsClosedAtTheIdleTimeout) {
    ASSERT_NO_FATAL_FAILURE(start());
    const pid_t protod = child_named(run_.pid, "protod");
    ASSERT_GT(protod, 0);
    const long rss_before = rss_kb(protod);
    const LabClient& c = lab_->clients[0];
    const std::string iface = c.iface, self = c.lladdr;
    constexpr int kRequests = 100'000;
    Background flood(c.ns, [&] {
        int fd = connect_from(iface, self, 970, false);
        if (fd < 0)
            return std::string("connect failed");
        const std::string one = "request_ip=1\n\n";
        std::string chunk;
        for (int i = 0; i < 1000; i++)
            chunk += one;
        long long sent_bytes = 0;
        const long long total = static_cast<long long>(kRequests) * one.size();
        long long last_progress = now_ms();
        const long long t0 = now_ms();
        // Send until all is sent or nothing moves for 2 s; never read.
        while (sent_bytes < total && now_ms() - last_progress < 2000) {
            const std::size_t off = static_cast<std::size_t>(sent_bytes % chunk.size());
            const std::size_t len = std::min<long long>(chunk.size() - off, total - sent_bytes);
            ssize_t n = send(fd, chunk.data() + off, len, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                sent_bytes += n;
                last_progress = now_ms();
                continue;
            }
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
                break;
            pollfd p{fd, POLLOUT, 0};
            poll(&p, 1, 100);
        }
        const long long stalled_at = now_ms() - t0;
        // Then wait, still not reading, for the server to close.
        long long closed_at = -1;
        while (now_ms() - t0 < 25'000) {
            pollfd p{fd, POLLRDHUP, 0};
            if (poll(&p, 1, 100) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
                closed_at = now_ms() - t0;
                break;
            }
        }
        close(fd);
        return std::to_string(sent_bytes / static_cast<long long>(one.size())) + " " +
               std::to_string(stalled_at) + " " + std::to_string(closed_at);
    });
    long rss_peak = rss_before;
    struct {
        long long slowest_ms = 0;
        int served = 0, failures = 0;
    } good;
    const long long until = now_ms() + 14'000;
    while (now_ms() < until) {
        rss_peak = std::max(rss_peak, rss_kb(protod));
        long long start = now_ms();
        Exchange ex = request(*lab_, 1);
        good.slowest_ms = std::max(good.slowest_ms, now_ms() - start);
        (field(ex.reply, "errno") == "0" ? good.served : good.failures)++;
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    std::istringstream result(flood.wait());
    long long requests_sent = -1, stalled_at = -1, closed_at = -1;
    result >> requests_sent >> stalled_at >> closed_at;
    EXPECT_LE(rss_peak - rss_before, 1024) << "protod grew by more than 1 MB";
    EXPECT_GE(closed_at, 0) << "the stalled connection was never closed";
    // The idle timeout runs from the last byte protod read or wrote, which
    // is about when the sender stalled (it then waited 2 s to notice).
    EXPECT_GE(closed_at - (stalled_at - 2000), 9000);
    EXPECT_LE(closed_at - (stalled_at - 2000), 13'000);
    // Loosely: a shared machine under load answers in well under a second.
    EXPECT_EQ(good.failures, 0);
    EXPECT_GE(good.served, 20);
    EXPECT_LE(good.slowest_ms, 2000);
    EXPECT_TRUE(process_alive(run_.pid));
    std::cout << "pipelined " << requests_sent << " of " << kRequests
              << " requests before the socket stalled at " << stalled_at
              << " ms; closed by the server at " << closed_at << " ms; protod RSS " << rss_before
              << " kB before, " << rss_peak << " kB at most; good peer served " << good.served
              << " times, slowest " << good.slowest_ms << " ms\n";
}

// Renewals that change nothing (the same addresses, more than half the lease
// left) are answered from the stored lease: leased makes no write system
// call and the lease files do not change, while every answer ends the lease
// where the file does.
TEST_F(Bounded, RenewalStormWritesNothingAndEveryAnswerEndsWhereTheStoredLeaseEnds) {
    ASSERT_NO_FATAL_FAILURE(start());
    const pid_t leased = child_named(run_.pid, "leased");
    ASSERT_GT(leased, 0);
    Exchange first = request(*lab_, 1);
    ASSERT_EQ(field(first.reply, "errno"), "0") << first.reply;
    const long long end = std::atoll(field(first.reply, "leasestart").c_str()) +
                          std::atoll(field(first.reply, "leasetime").c_str());
    auto files = [&] { return sh_out("stat -c '%n %s %Y.%y' " + lab_->state_dir + "/*.leases.*"); };
    const std::string files_before = files();
    const long long writes_before = proc_io(leased, "syscw");
    ASSERT_GE(writes_before, 0);
    const LabClient& c = lab_->clients[1];
    const std::string iface = c.iface, self = c.lladdr, ipv4 = field(first.reply, "ipv4");
    constexpr int kRenewals = 3000;
    Background storm(c.ns, [&] {
        int fd = connect_from(iface, self, 970, false);
        if (fd < 0)
            return std::string("connect failed");
        const std::string req = "request_ip=1\nipv4=" + ipv4 + "\nipv6=::/128\n\n";
        int ok = 0, off_end = 0;
        std::string buf;
        const long long t0 = now_ms();
        for (int i = 0; i < kRenewals; i++) {
            if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size()))
                break;
            std::size_t at;
            while ((at = buf.find("\n\n")) == std::string::npos) {
                char b[512];
                ssize_t n = recv(fd, b, sizeof b, 0);
                if (n <= 0)
                    return "connection lost after " + std::to_string(ok);
                buf.append(b, static_cast<std::size_t>(n));
            }
            std::string reply = buf.substr(0, at + 2);
            buf.erase(0, at + 2);
            if (field(reply, "errno") == "0" && field(reply, "ipv4") == ipv4)
                ++ok;
            long long e = std::atoll(field(reply, "leasestart").c_str()) +
                          std::atoll(field(reply, "leasetime").c_str());
            if (e < end - 1 || e > end)
                ++off_end;
        }
        const long long took = now_ms() - t0;
        close(fd);
        return std::to_string(ok) + " " + std::to_string(off_end) + " " + std::to_string(took);
    });
    std::istringstream result(storm.wait());
    int ok = -1, off_end = -1;
    long long took = -1;
    result >> ok >> off_end >> took;
    EXPECT_EQ(ok, kRenewals);
    EXPECT_EQ(off_end, 0) << "an answer's leasestart + leasetime left the stored expiry";
    EXPECT_EQ(proc_io(leased, "syscw"), writes_before) << "leased wrote during the storm";
    EXPECT_EQ(files(), files_before);
    std::cout << kRenewals << " renewals on one connection in " << took << " ms ("
              << (took > 0 ? kRenewals * 1000 / took : 0)
              << "/s), leased's write calls before and after: " << writes_before << "\n";
}

namespace {

// The records of `peer` in both lease files (header, then 76-byte records;
// zeros past the last are space ahead). A compaction keeps at least 128
// records in one of the two files, so an unbounded writer cannot hide there.
int lease_records(const std::string& dir, const std::string& iface, const PublicKey& peer,
                  int* all = nullptr) {
    int mine = 0, total = 0;
    for (const char* n : {".leases.0", ".leases.1"}) {
        const std::string f = read_file(dir + "/" + iface + n);
        for (std::size_t at = leased::kLeaseHeaderSize; at + leased::kLeaseRecordSize <= f.size();
             at += leased::kLeaseRecordSize) {
            if (f[at] != 1)
                continue;
            ++total;
            mine += std::memcmp(f.data() + at + 4, peer.bytes.data(), peer.bytes.size()) == 0;
        }
    }
    if (all)
        *all = total;
    return mine;
}

} // namespace

// A peer that trades one family for the other at full speed (`ipv4=`-only,
// then `ipv6=`-only, on one connection: each answer would release one
// address and lease another) gets its budget of address changes and then
// answers from what it holds: its lease-file records stay within the burst
// plus one per interval, the server logs one line about it, and two other
// peers get their grants (one of them a family change) in good time.
TEST_F(BoundedThreePeers,
       PeerTradingFamiliesAtFullSpeedIsHeldToItsBudgetOfChangesAndOthersAreServed) {
    ASSERT_NO_FATAL_FAILURE(start());
    ASSERT_TRUE(wait_until_serving(*lab_, 2));
    const LabClient& h = lab_->clients[0];
    const std::optional<PublicKey> hostile = key_from_base64(h.pubkey);
    ASSERT_TRUE(hostile);
    const std::string iface = h.iface, self = h.lladdr;
    constexpr long long kFloodMs = 6000;
    const long long t0 = now_ms();
    Background flood(h.ns, [&] {
        int fd = connect_from(iface, self, 970, false);
        if (fd < 0)
            return std::string("connect failed");
        const std::string req[2] = {"request_ip=1\nipv4=0.0.0.0/32\n\n",
                                    "request_ip=1\nipv6=::/128\n\n"};
        int answers = 0, granted = 0, refused = 0;
        std::string buf;
        while (now_ms() - t0 < kFloodMs) {
            const std::string& r = req[answers % 2];
            if (send(fd, r.data(), r.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(r.size()))
                break;
            std::size_t at;
            while ((at = buf.find("\n\n")) == std::string::npos) {
                char b[512];
                ssize_t n = recv(fd, b, sizeof b, 0);
                if (n <= 0) {
                    close(fd);
                    return "lost " + std::to_string(answers);
                }
                buf.append(b, static_cast<std::size_t>(n));
            }
            const std::string e = field(buf.substr(0, at + 2), "errno");
            buf.erase(0, at + 2);
            ++answers;
            if (e == "0")
                ++granted;
            else if (e == "3")
                ++refused;
        }
        close(fd);
        return std::to_string(answers) + " " + std::to_string(granted) + " " +
               std::to_string(refused);
    });
    // The two other peers: a grant of both families, renewals, and peer 2
    // trades its IPv6 address away and takes a new one half-way.
    struct Good {
        int served = 0, failures = 0;
        long long slowest_ms = 0;
        std::string first;
    } good[2];
    for (int round = 0; now_ms() - t0 < kFloodMs; round++) {
        for (int i = 0; i < 2; i++) {
            const bool v4_only = i == 1 && round == 10;
            const long long start = now_ms();
            Exchange ex = request(
                *lab_, i + 1, v4_only ? "request_ip=1\nipv4=0.0.0.0/32\n\n" : "request_ip=1\n\n");
            good[i].slowest_ms = std::max(good[i].slowest_ms, now_ms() - start);
            const bool ok = field(ex.reply, "errno") == "0" && !field(ex.reply, "ipv4").empty() &&
                            (v4_only || !field(ex.reply, "ipv6").empty());
            (ok ? good[i].served : good[i].failures)++;
            if (round == 0)
                good[i].first = ex.reply;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(150));
    }
    std::istringstream result(flood.wait());
    const long long elapsed_s = (now_ms() - t0 + 999) / 1000;
    int answers = -1, granted = -1, refused = -1;
    result >> answers >> granted >> refused;
    int all = 0;
    const int records = lease_records(lab_->state_dir, lab_->server_iface, *hostile, &all);
    const long long bound =
        leased::kChangeBudget.burst + elapsed_s / leased::kChangeBudget.interval_s + 1;
    const std::string log = read_file(run_.log);
    std::size_t lines = 0;
    for (std::size_t at = 0; (at = log.find("over its budget", at)) != std::string::npos; at++)
        ++lines;

    EXPECT_GE(answers, 200) << "the peer was not answered at speed";
    EXPECT_EQ(granted + refused, answers);
    EXPECT_LE(records, bound) << "the peer changed its lease beyond its budget";
    EXPECT_GE(records, 1);
    EXPECT_EQ(lines, 1u) << "not one log line for a run of over-budget requests";
    for (int i = 0; i < 2; i++) {
        EXPECT_EQ(good[i].failures, 0) << "peer " << i + 1 << ", first answer: " << good[i].first;
        EXPECT_GE(good[i].served, 5);
        EXPECT_LE(good[i].slowest_ms, 2000); // loosely: a shared machine
    }
    EXPECT_TRUE(process_alive(run_.pid));
    std::cout << "trading families for " << kFloodMs << " ms: " << answers << " answers ("
              << granted << " errno 0, " << refused << " errno 3), " << records
              << " lease records of that peer (" << all << " in all, bound " << bound
              << "); other peers served " << good[0].served << " and " << good[1].served
              << " times, slowest " << std::max(good[0].slowest_ms, good[1].slowest_ms) << " ms\n";
}

namespace {

// Starts the server on a prepared state directory and expects it to refuse:
// exit status 1 and exactly one line on stderr, containing `reason`.
void expect_refused(Lab& lab, const std::string& reason) {
    // An explicit user: no warning about the default one before the reason.
    ServerRun run = start_server(lab, {"--user", "nobody"});
    int status = wait_exit(run.pid, 10'000);
    ASSERT_NE(status, -1) << "the server did not stop";
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;
    std::string log = read_file(run.log);
    EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << log;
    EXPECT_NE(log.find(reason), std::string::npos) << log;
    std::cout << "refused: " << log;
    std::remove(run.log.c_str());
}

} // namespace

TEST_F(Bounded, SymlinkedGroupWritableAndSparseTenGigabyteLeaseFilesAreRefusedInOneLine) {
    const std::string d = lab_->state_dir, f = d + "/" + lab_->server_iface + ".leases.0";
    // A symlink to a root-owned file: refused, and the file is not truncated.
    ASSERT_EQ(sh("printf precious > " + d + "/target && ln -s " + d + "/target " + f), 0);
    ASSERT_NO_FATAL_FAILURE(expect_refused(*lab_, "refused: a symbolic link"));
    EXPECT_EQ(read_file(d + "/target"), "precious");
    // Group-writable.
    ASSERT_EQ(sh("rm " + f + " && install -m 0660 /dev/null " + f), 0);
    ASSERT_NO_FATAL_FAILURE(expect_refused(*lab_, "refused: writable by group or others"));
    // 10 GB, sparse: over the limit leased could ever write.
    ASSERT_EQ(sh("rm " + f + " && truncate -s 10G " + f + " && chmod 0600 " + f), 0);
    ASSERT_NO_FATAL_FAILURE(expect_refused(*lab_, "refused: 10737418240 bytes, over the limit"));
    ASSERT_EQ(sh("rm " + f), 0);
}
