// Faults: processes of the server suite killed during a load of
// grants, the lease file's disk full or read-only, WireGuard losing allowed
// IPs or restarting under the server, the interface deleted. The rule
// checked after each: every grant whose answer a client received is in the
// lease file (proven by taking the addresses out of WireGuard before the
// restart: only the lease file can bring them back) and in the allowed IPs,
// and no address is held by two peers.
//
// WGD_SOAK_SECONDS (make soak) turns the kill test into a campaign of that
// many seconds; without it, make check runs six rounds.
#include "common/addr.hpp"
#include "leased/lease_file.hpp"
#include "tests/system/background.hpp"
#include "tests/system/change_budget.hpp"
#include "tests/system/suite.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

using namespace wgd;
using namespace wgd::lab;

namespace {

const char* const kKinds[] = {
    "request_ip=1\n\n",                  // both families
    "request_ip=1\nipv4=0.0.0.0/32\n\n", // IPv4 only: releases IPv6
    "request_ip=1\nipv6=::/128\n\n",     // IPv6 only: releases IPv4
};
bool kind_has_v4(int k) {
    return k != 2;
}
bool kind_has_v6(int k) {
    return k != 1;
}

// One connection, one request, the reply ("" when none came within wait_ms).
std::string quick_exchange(const std::string& iface, const std::string& source,
                           const std::string& body, int wait_ms = 1500) {
    int fd = connect_from(iface, source, 970, false);
    if (fd < 0)
        return "";
    (void)!send(fd, body.data(), body.size(), MSG_NOSIGNAL);
    std::string reply;
    long long end = now_ms() + wait_ms;
    while (reply.find("\n\n") == std::string::npos) {
        long long left = end - now_ms();
        pollfd p{fd, POLLIN, 0};
        if (left <= 0 || poll(&p, 1, static_cast<int>(left)) <= 0)
            break;
        char buf[1024];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        reply.append(buf, static_cast<std::size_t>(n));
    }
    close(fd);
    return reply.find("\n\n") == std::string::npos ? "" : reply;
}

// What a load driver saw: the answers it received in order, and the kind of
// the one request left without an answer (the driver stops at the first).
struct DriverLog {
    struct Ack {
        int kind;
        std::string v4, v6, err;
    };
    std::vector<Ack> acks;
    int unanswered_kind = -1;
};

std::string drive(const std::string& iface, const std::string& source, int first_kind, int max_ms) {
    std::string out;
    long long end = now_ms() + max_ms;
    for (int i = first_kind; now_ms() < end; i++) {
        int kind = i % 3;
        std::string reply = quick_exchange(iface, source, kKinds[kind]);
        if (reply.empty()) {
            out += "lost " + std::to_string(kind) + "\n";
            break;
        }
        auto v = [&](const char* key) {
            std::string f = field(reply, key);
            return f.empty() ? std::string("-") : f;
        };
        out += "ack " + std::to_string(kind) + " " + v("ipv4") + " " + v("ipv6") + " " +
               v("errno") + "\n";
    }
    return out;
}

DriverLog parse_driver(const std::string& text) {
    DriverLog log;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        std::istringstream w(line);
        std::string tag;
        w >> tag;
        if (tag == "ack") {
            DriverLog::Ack a;
            w >> a.kind >> a.v4 >> a.v6 >> a.err;
            if (a.v4 == "-")
                a.v4.clear();
            if (a.v6 == "-")
                a.v6.clear();
            log.acks.push_back(a);
        } else if (tag == "lost") {
            w >> log.unanswered_kind;
        }
    }
    return log;
}

struct Held {
    std::string v4, v6;
};

class Faults : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!running_as_root())
            GTEST_SKIP() << "system tests need root (network namespaces, wireguard-go)";
    }
    void TearDown() override {
        if (HasFailure() && lab_)
            std::cerr << "---- server log (tail)\n" << sh_out("tail -n 60 " + run_.log) << "----\n";
    }
    static int count_of(const std::string& text, const std::string& what) {
        int n = 0;
        for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
            ++n;
        return n;
    }
    // Starts the server and waits until leased serves, its restored leases
    // back in WireGuard (the restore batch goes first, then a moment).
    void start(const std::vector<std::string>& args = {}) {
        const std::string log = lab_->state_dir + "/server.log";
        int before = count_of(read_file(log), "serving:");
        run_ = start_server(*lab_, args);
        ASSERT_TRUE(wait_until_serving(*lab_)) << read_file(run_.log);
        ASSERT_TRUE(eventually([&] { return count_of(read_file(log), "serving:") > before; }))
            << read_file(run_.log);
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    // The leased addresses of every peer, from WireGuard.
    std::vector<Held> held() {
        std::vector<Held> out;
        for (const LabClient& c : lab_->clients) {
            Held h;
            std::istringstream words(lab_->allowed_ips_of(c.pubkey));
            for (std::string w; words >> w;) {
                if (w == c.lladdr + "/128")
                    continue;
                (w.find(':') == std::string::npos ? h.v4 : h.v6) = w;
            }
            out.push_back(h);
        }
        return out;
    }
    // Takes every leased address out of WireGuard, as a crash of everything
    // would: after this, only the lease file can bring them back.
    void strip_allowed_ips() {
        for (const LabClient& c : lab_->clients)
            ASSERT_EQ(lab_->in(lab_->server_ns, "wg set " + lab_->server_iface + " peer " +
                                                    c.pubkey + " allowed-ips " + c.lladdr + "/128"),
                      0);
    }
    // No address in the allowed IPs of two peers.
    void expect_no_address_twice() {
        std::map<std::string, int> seen;
        std::istringstream lines(lab_->server_allowed_ips());
        for (std::string line; std::getline(lines, line);) {
            std::istringstream w(line.substr(line.find('\t') + 1));
            for (std::string ip; w >> ip;)
                EXPECT_EQ(++seen[ip], 1) << ip << " is held by two peers";
        }
    }
    void stop_server() {
        kill(run_.pid, SIGTERM);
        wait_exit(run_.pid, 5000);
    }
    std::unique_ptr<Lab> lab_;
    ServerRun run_;
};

// Expected state of one family after a crash: what the last answer said,
// unless the one unanswered request changed it (a release, or a first
// address of a family the peer did not hold).
void expect_family(const char* family, const std::string& acked, int unanswered_kind,
                   bool kind_has_family, const std::string& now) {
    SCOPED_TRACE(std::string(family) + " acked '" + acked + "' unanswered kind " +
                 std::to_string(unanswered_kind) + " now '" + now + "'");
    if (unanswered_kind < 0 || (kind_has_family && !acked.empty())) {
        EXPECT_EQ(now, acked) << "an acknowledged lease was lost or changed";
    } else if (!kind_has_family) {
        EXPECT_TRUE(now == acked || now.empty());
    } else {
        EXPECT_TRUE(now.empty() || now.find('/') != std::string::npos);
    }
}

} // namespace

TEST_F(Faults, SigkillOfEachProcessDuringGrantsLosesNoAcknowledgedLease) {
    UnlimitedChangeBudget unlimited; // every request may grant and release
    lab_ = std::make_unique<Lab>(LabOptions{3});
    start();
    const char* soak = std::getenv("WGD_SOAK_SECONDS");
    const long long campaign_end = soak ? now_ms() + std::atoll(soak) * 1000 : 0;
    std::mt19937 rng(static_cast<unsigned>(getpid()));
    std::vector<Held> known(lab_->clients.size());
    int rounds = 0, faults = 0, leases_checked = 0, acks_total = 0, lost = 0;
    std::map<std::string, int> kills_by_process;
    for (int round = 0; soak ? now_ms() < campaign_end : round < 6; round++) {
        SCOPED_TRACE("round " + std::to_string(round));
        std::vector<std::unique_ptr<Background>> drivers;
        for (std::size_t i = 0; i < lab_->clients.size(); i++) {
            const LabClient& c = lab_->clients[i];
            std::string iface = c.iface, source = c.lladdr;
            int first = static_cast<int>((round + i) % 3);
            drivers.push_back(std::make_unique<Background>(
                c.ns, [=] { return drive(iface, source, first, 6000); }));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200 + rng() % 1000));
        // The victim: netd (the parent) or one of its two children.
        auto children = children_of(run_.pid);
        ASSERT_EQ(children.size(), 2u) << read_file(run_.log);
        int which = round % 3;
        pid_t victim = which == 0 ? run_.pid : children[static_cast<std::size_t>(which - 1)];
        std::string cmdline = read_file("/proc/" + std::to_string(victim) + "/cmdline");
        std::string name = which == 0                                    ? "netd"
                           : cmdline.find("leased") != std::string::npos ? "leased"
                           : cmdline.find("protod") != std::string::npos ? "protod"
                                                                         : "child";
        ASSERT_EQ(kill(victim, SIGKILL), 0);
        ++faults;
        ++kills_by_process[name];
        // The suite goes down, all of it.
        int status = wait_exit(run_.pid, 3000);
        ASSERT_NE(status, -1) << "the suite did not go down after SIGKILL of " << name;
        for (pid_t child : children)
            ASSERT_TRUE(eventually([&] { return !process_alive(child); }, 3000))
                << "a child outlived SIGKILL of " << name;
        std::vector<DriverLog> logs;
        for (auto& d : drivers)
            logs.push_back(parse_driver(d->wait()));
        strip_allowed_ips();
        start();
        auto now = held();
        for (std::size_t i = 0; i < logs.size(); i++) {
            SCOPED_TRACE("peer " + std::to_string(i));
            const DriverLog& log = logs[i];
            Held acked = known[i];
            for (const auto& a : log.acks) {
                EXPECT_EQ(a.err, "0");
                acked = {a.v4, a.v6};
                EXPECT_EQ(!a.v4.empty(), kind_has_v4(a.kind));
                EXPECT_EQ(!a.v6.empty(), kind_has_v6(a.kind));
            }
            acks_total += static_cast<int>(log.acks.size());
            int k = log.unanswered_kind;
            const bool had_failure = HasFailure();
            expect_family("ipv4", acked.v4, k, k >= 0 && kind_has_v4(k), now[i].v4);
            expect_family("ipv6", acked.v6, k, k >= 0 && kind_has_v6(k), now[i].v6);
            if (!had_failure && HasFailure())
                ++lost;
            leases_checked += !acked.v4.empty() + !acked.v6.empty();
            // The restarted server agrees: a renewal returns the same.
            std::string body = "request_ip=1\n";
            if (!now[i].v4.empty())
                body += "ipv4=" + now[i].v4 + "\n";
            if (!now[i].v6.empty())
                body += "ipv6=" + now[i].v6 + "\n";
            if (body != "request_ip=1\n") {
                Exchange renew = request(*lab_, static_cast<int>(i), body + "\n");
                EXPECT_EQ(field(renew.reply, "ipv4"), now[i].v4) << renew.reply;
                EXPECT_EQ(field(renew.reply, "ipv6"), now[i].v6) << renew.reply;
            }
            known[i] = now[i];
        }
        expect_no_address_twice();
        ++rounds;
        if (HasFatalFailure())
            return;
    }
    std::cout << "kill campaign: " << rounds << " rounds, " << faults << " SIGKILLs (";
    for (auto& [n, count] : kills_by_process)
        std::cout << n << ": " << count << " ";
    std::cout << "), " << acks_total << " answers received, " << leases_checked
              << " acknowledged addresses checked after restarts, " << lost << " lost\n";
    EXPECT_EQ(lost, 0);
}

TEST_F(Faults, FullDiskRefusesGrantsWithAnErrorAndServiceResumesWhenSpaceIsBack) {
    UnlimitedChangeBudget unlimited; // grants are retried until the disk has room
    lab_ = std::make_unique<Lab>(LabOptions{2});
    const std::string dir = lab_->state_dir + "/tmpfs";
    ASSERT_EQ(sh("mkdir -p " + dir + " && mount -t tmpfs -o size=128k,mode=0700 tmpfs " + dir), 0);
    struct Unmount {
        std::string dir;
        ~Unmount() { sh("umount -l " + dir + " 2>/dev/null"); }
    } unmount{dir};
    run_ = start_server(*lab_, {"--state-dir", dir});
    ASSERT_TRUE(wait_until_serving(*lab_)) << read_file(run_.log);
    Exchange first = request(*lab_, 0);
    ASSERT_EQ(field(first.reply, "errno"), "0") << first.reply;
    const Held before = held()[0];

    // Fill the file system to the last page.
    sh("dd if=/dev/zero of=" + dir + "/fill bs=4k 2>/dev/null; dd if=/dev/zero of=" + dir +
       "/fill2 bs=64 2>/dev/null");
    ASSERT_NE(sh("echo x > " + dir + "/probe 2>/dev/null"), 0) << "the disk is not full";

    // Peer 1 asks again and again, each time changing its lease (a record to
    // write), until the file refuses; what was answered must be written. The
    // first 1,024 records go into the zeros the lease file wrote ahead before
    // the disk was full: it refuses after those.
    const LabClient& c = lab_->clients[1];
    std::string iface = c.iface, source = c.lladdr;
    Background asker(c.ns, [=] {
        std::string out;
        for (int i = 0; i < 1500; i++) {
            std::string reply = quick_exchange(iface, source, kKinds[1 + i % 2]);
            std::string e = field(reply, "errno");
            out += "ack " + std::to_string(1 + i % 2) + " " +
                   (field(reply, "ipv4").empty() ? "-" : field(reply, "ipv4")) + " " +
                   (field(reply, "ipv6").empty() ? "-" : field(reply, "ipv6")) + " " +
                   (e.empty() ? "none" : e) + "\n";
            if (e != "0")
                break;
        }
        return out;
    });
    DriverLog log = parse_driver(asker.wait());
    ASSERT_FALSE(log.acks.empty());
    const DriverLog::Ack refused = log.acks.back();
    ASSERT_NE(refused.err, "0") << "1,500 lease changes fit on a full disk?";
    EXPECT_EQ(refused.err, "3");
    EXPECT_EQ(refused.v4 + refused.v6, "") << "an address was granted but not written";
    EXPECT_TRUE(eventually(
        [&] { return read_file(run_.log).find("lease file: cannot write") != std::string::npos; }));
    // The refused change was taken back out of WireGuard.
    Held last_acked;
    for (std::size_t i = 0; i + 1 < log.acks.size(); i++)
        last_acked = {log.acks[i].v4, log.acks[i].v6};
    EXPECT_TRUE(eventually([&] {
        Held h = held()[1];
        return h.v4 == last_acked.v4 && h.v6 == last_acked.v6;
    })) << held()[1].v4
        << " " << held()[1].v6;
    // Peer 0's lease is untouched, and the server is still up.
    EXPECT_EQ(held()[0].v4, before.v4);
    EXPECT_EQ(waitpid(run_.pid, nullptr, WNOHANG), 0);

    // Space is back: service resumes.
    sh("rm -f " + dir + "/fill " + dir + "/fill2");
    Exchange again = request(*lab_, 1, kKinds[0]);
    ASSERT_EQ(field(again.reply, "errno"), "0") << again.reply;
    Held after_space{field(again.reply, "ipv4"), field(again.reply, "ipv6")};

    // And everything answered is in the lease file.
    stop_server();
    strip_allowed_ips();
    start({"--state-dir", dir});
    auto now = held();
    EXPECT_EQ(now[0].v4, before.v4);
    EXPECT_EQ(now[0].v6, before.v6);
    EXPECT_EQ(now[1].v4, after_space.v4);
    EXPECT_EQ(now[1].v6, after_space.v6);
    expect_no_address_twice();
    std::cout << "full disk: " << log.acks.size() - 1 << " grants written before the disk "
              << "refused, refusal answered errno " << refused.err << "\n";
}

TEST_F(Faults, ReadOnlyStateDirectoryIsAClearFailureAndLeavesTheLeaseFileAlone) {
    lab_ = std::make_unique<Lab>(LabOptions{1});
    const std::string dir = lab_->state_dir + "/tmpfs";
    ASSERT_EQ(sh("mkdir -p " + dir + " && mount -t tmpfs -o size=128k,mode=0700 tmpfs " + dir), 0);
    struct Unmount {
        std::string dir;
        ~Unmount() { sh("umount -l " + dir + " 2>/dev/null"); }
    } unmount{dir};
    run_ = start_server(*lab_, {"--state-dir", dir});
    ASSERT_TRUE(wait_until_serving(*lab_)) << read_file(run_.log);
    Exchange granted = request(*lab_, 0);
    ASSERT_EQ(field(granted.reply, "errno"), "0");
    // While leased holds the lease file open for writing, the kernel refuses
    // to make its file system read-only (EBUSY): a running server cannot lose
    // its file that way.
    EXPECT_NE(sh("mount -o remount,ro " + dir + " 2>/dev/null"), 0);
    stop_server();
    std::string file_before = read_file(dir + "/" + lab_->server_iface + ".leases.0") +
                              read_file(dir + "/" + lab_->server_iface + ".leases.1");
    ASSERT_EQ(sh("mount -o remount,ro " + dir), 0);
    std::string out =
        lab_->out(lab_->server_ns, binary("wg-dynamic-server") + " -f --state-dir " + dir + " " +
                                       lab_->server_iface + " 2>&1; echo exit=$?");
    EXPECT_NE(out.find("exit=1"), std::string::npos) << out;
    EXPECT_NE(out.find("Read-only file system"), std::string::npos) << out;
    EXPECT_EQ(read_file(dir + "/" + lab_->server_iface + ".leases.0") +
                  read_file(dir + "/" + lab_->server_iface + ".leases.1"),
              file_before);
    // Writable again: the lease is restored from the file.
    ASSERT_EQ(sh("mount -o remount,rw " + dir), 0);
    strip_allowed_ips();
    start({"--state-dir", dir});
    EXPECT_EQ(held()[0].v4, field(granted.reply, "ipv4"));
    EXPECT_EQ(held()[0].v6, field(granted.reply, "ipv6"));
}

// A lease file of a newer format is not this server's to read or to
// overwrite: leased refuses it at start and says why, the suite stops with
// status 1, and the file is left as it was.
TEST_F(Faults, LeaseFileOfANewerFormatStopsTheServerWithTheReasonAndIsLeftAlone) {
    lab_ = std::make_unique<Lab>(LabOptions{1});
    const std::string file = lab_->state_dir + "/" + lab_->server_iface + ".leases.0";
    // The header of lease_file.hpp with format version 2 and a valid CRC.
    std::string header(leased::kLeaseHeaderSize, '\0');
    auto put = [&](std::size_t at, std::uint64_t v, int bytes) {
        for (int i = 0; i < bytes; i++)
            header[at + static_cast<std::size_t>(i)] = static_cast<char>(v >> (8 * i));
    };
    header.replace(0, 8, "WGDLEASE");
    put(8, 2, 4);
    put(12, leased::kLeaseRecordSize, 4);
    put(16, 1, 8);
    header.replace(24, lab_->server_iface.size(), lab_->server_iface);
    put(60, leased::crc32c(reinterpret_cast<const std::uint8_t*>(header.data()), 60), 4);
    {
        std::ofstream out(file, std::ios::binary);
        out << header;
    }
    ASSERT_EQ(read_file(file), header);

    run_ = start_server(*lab_, {"--user", "nobody"});
    const int status = wait_exit(run_.pid, 10'000);
    ASSERT_NE(status, -1) << "the server did not stop";
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;
    const std::string log = read_file(run_.log);
    EXPECT_NE(log.find("lease file refused: lease file: written by format version 2, this server "
                       "reads version 1 (refusing to overwrite it)"),
              std::string::npos)
        << log;
    EXPECT_EQ(read_file(file), header) << "the file of the newer format was written to";
}

TEST_F(Faults, AllowedIpsLostOrUapiGoneAreReportedAndReconciledFromTheLeaseTable) {
    lab_ = std::make_unique<Lab>(LabOptions{2});
    start();
    Exchange a = request(*lab_, 0), b = request(*lab_, 1);
    ASSERT_EQ(field(a.reply, "errno"), "0");
    ASSERT_EQ(field(b.reply, "errno"), "0");
    auto leased = held();
    // The UAPI socket goes away: grants fail with an error, reported.
    const std::string sock = "/run/wireguard/" + lab_->server_iface + ".sock";
    ASSERT_EQ(rename(sock.c_str(), (sock + ".away").c_str()), 0);
    Exchange during = request(*lab_, 0, kKinds[2]);
    EXPECT_EQ(field(during.reply, "errno"), "3") << during.reply;
    EXPECT_EQ(field(during.reply, "ipv4") + field(during.reply, "ipv6"), "") << during.reply;
    EXPECT_NE(read_file(run_.log).find("cannot read WireGuard device"), std::string::npos);
    ASSERT_EQ(rename((sock + ".away").c_str(), sock.c_str()), 0);
    // It returns with the peers' leased allowed IPs gone (a restarted
    // wireguard-go, peers re-added from the operator's configuration).
    strip_allowed_ips();
    long long t0 = now_ms();
    EXPECT_TRUE(eventually(
        [&] {
            auto h = held();
            return h[0].v4 == leased[0].v4 && h[0].v6 == leased[0].v6 && h[1].v4 == leased[1].v4 &&
                   h[1].v6 == leased[1].v6;
        },
        15'000))
        << lab_->server_allowed_ips();
    long long took = now_ms() - t0;
    EXPECT_NE(read_file(run_.log).find("lost leased allowed IPs"), std::string::npos);
    Exchange renew =
        request(*lab_, 0, "request_ip=1\nipv4=" + leased[0].v4 + "\nipv6=" + leased[0].v6 + "\n\n");
    EXPECT_EQ(field(renew.reply, "ipv4"), leased[0].v4) << renew.reply;
    expect_no_address_twice();
    std::cout << "allowed IPs reconciled " << took << " ms after they were lost\n";
}

TEST_F(Faults, WireguardGoRestartedDeletesTheInterfaceTheServerStopsCleanlyAndRestoresOnRestart) {
    lab_ = std::make_unique<Lab>(LabOptions{2});
    start();
    Exchange a = request(*lab_, 0), b = request(*lab_, 1);
    ASSERT_EQ(field(a.reply, "errno"), "0");
    ASSERT_EQ(field(b.reply, "errno"), "0");
    auto leased = held();
    // wireguard-go stopped: its interface goes away under the server.
    lab_->restart_server_wireguard();
    int status = wait_exit(run_.pid, 5000);
    ASSERT_NE(status, -1) << "the server did not stop when its interface was deleted";
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    std::string log = read_file(run_.log);
    EXPECT_NE(log.find("was deleted; stopping"), std::string::npos) << log;
    // The new wireguard-go has the peers without leased addresses; the
    // restarted server puts them back from its lease file.
    EXPECT_EQ(held()[0].v4, "");
    start();
    auto now = held();
    for (std::size_t i = 0; i < 2; i++) {
        EXPECT_EQ(now[i].v4, leased[i].v4);
        EXPECT_EQ(now[i].v6, leased[i].v6);
    }
    Exchange renew = request(*lab_, 1);
    EXPECT_EQ(field(renew.reply, "ipv4"), leased[1].v4) << renew.reply;
    expect_no_address_twice();
}
