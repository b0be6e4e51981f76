// A hostile program in the server protod's seat (tests/hostile/protod_preload.cpp,
// preloaded: it runs inside protod's real sandbox, after its real filter)
// sends frames to the real leased over protod's real channel, with the real
// netd and wireguard-go behind it. DESIGN.md: a frame outside leased's table
// for protod, a malformed one or a query no valid request can produce ends
// the suite (it fails closed: no lease lost from the lease file, nothing
// granted); a query from a source that is no peer is refused; a signal to
// any other process is refused by protod's filter, which kills protod.
#include "privsep/control.hpp"
#include "privsep/messages.hpp"
#include "tests/system/suite.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iostream>

using namespace wgd;
using namespace wgd::lab;

namespace {

Ip6 v6(const std::string& s) {
    return *parse_ip6(s);
}

std::string frame(std::uint16_t type, const std::vector<std::uint8_t>& body,
                  std::uint16_t flags = 0) {
    return "frame:" + std::to_string(type) + ":" + std::to_string(flags) + ":" + hex_of(body);
}

std::vector<std::uint8_t> queries(std::vector<msg::QueryLease> qs, std::uint32_t first_conn = 1) {
    msg::QueryLeases m;
    for (auto& q : qs)
        m.items.push_back({first_conn++, q});
    return msg::encode(m);
}

// A body the decoder cannot produce from any QueryLeases: the struct checks
// what encode() never writes (invalid above 2, an address with invalid).
std::vector<std::uint8_t> raw_query(const Ip6& source, std::uint8_t has4, std::uint8_t invalid) {
    // count, connection, source, has4, ip4, has6, ip6, invalid
    std::vector<std::uint8_t> b(4 + 4 + 16 + 5 + 17 + 1, 0);
    b[0] = 1;
    b[4] = 7;
    std::memcpy(&b[8], source.bytes.data(), 16);
    b[24] = has4;
    if (has4) {
        b[25] = 10;
        b[26] = 77;
        b[28] = 9;
    }
    b[46] = invalid;
    return b;
}

struct Attack {
    std::string name;
    std::string step;
    std::string logged; // what the log must say about it
};

struct Played {
    std::string log;
    int status = -1; // wait status of the server, -1: still running
    pid_t pid = -1;
};

class HostileProtod : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!running_as_root())
            GTEST_SKIP() << "system tests need root (network namespaces, wireguard-go)";
        lab_ = std::make_unique<Lab>(LabOptions{2});
        // A lease to keep: client 0's, granted by an honest suite.
        ServerRun honest = start_server(*lab_);
        ASSERT_TRUE(wait_until_serving(*lab_)) << read_file(honest.log);
        Exchange ex = request(*lab_, 0);
        lease4_ = field(ex.reply, "ipv4");
        lease6_ = field(ex.reply, "ipv6");
        ASSERT_FALSE(lease4_.empty()) << ex.reply;
        ASSERT_FALSE(lease6_.empty()) << ex.reply;
        ASSERT_EQ(kill(honest.pid, SIGTERM), 0);
        ASSERT_NE(wait_exit(honest.pid, 10000), -1);
        allowed_before_ = allowed_ips();
        ASSERT_NE(allowed_before_.find(lease4_), std::string::npos) << allowed_before_;
        self_ = v6(lab_->clients[0].lladdr);
        other_ = v6(lab_->clients[1].lladdr);
    }
    void TearDown() override {
        if (HasFailure() && !last_.log.empty())
            std::cerr << "---- server log\n" << last_.log << "----\n";
    }

    // Starts the server with the hostile protod playing `script`; returns
    // once the server has exited, or, unless until_exit, the script is done.
    Played play(const std::string& script, const std::string& name, bool until_exit = true) {
        const std::string lib = std::string(WGD_BINARY_DIR) + "/tests/hostile_protod.so";
        EXPECT_TRUE(std::filesystem::exists(lib)) << lib;
        const std::string file = lab_->state_dir + "/hostile.script";
        if (FILE* f = std::fopen(file.c_str(), "w")) {
            std::fputs(script.c_str(), f);
            std::fclose(f);
        }
        Played p;
        const std::string log = lab_->state_dir + "/server-" + std::to_string(++runs_) + ".log";
        setenv("LD_PRELOAD", lib.c_str(), 1);
        setenv("WGD_HOSTILE_SCRIPT_FILE", file.c_str(), 1);
        p.pid = lab_->start(lab_->server_ns, binary("wg-dynamic-server"),
                            {"-f", "-v", "--state-dir", lab_->state_dir, lab_->server_iface}, log);
        unsetenv("LD_PRELOAD");
        unsetenv("WGD_HOSTILE_SCRIPT_FILE");
        eventually(
            [&] {
                int status = 0;
                if (waitpid(p.pid, &status, WNOHANG) == p.pid) {
                    p.status = status;
                    return true;
                }
                return !until_exit && read_file(log).find("hostile: done") != std::string::npos;
            },
            60000);
        p.log = read_file(log);
        last_ = p;
        std::cerr << "[ attack   ] " << name << "\n";
        return p;
    }

    // wg show's allowed IPs, one line per peer, sorted (wg lists the peers
    // in no fixed order).
    std::string allowed_ips() const {
        return sh_out("ip netns exec " + lab_->server_ns + " wg show " + lab_->server_iface +
                      " allowed-ips | sort");
    }

    // What the lease file holds (the server is down: show reads the file).
    std::string lease_file() const {
        return lab_->out(lab_->server_ns, binary("wg-dynamic-server") + " show " +
                                              lab_->server_iface + " --state-dir " +
                                              lab_->state_dir + " 2>/dev/null");
    }

    // The suite went down on its own (not as a clean stop), and took
    // nothing with it: client 0's lease is still in the lease file and in
    // its allowed IPs, nothing was granted to anyone, and leased was not
    // killed by anyone.
    void expect_failed_closed(const Played& p) {
        ASSERT_NE(p.status, -1) << "the suite is still running";
        EXPECT_FALSE(WIFEXITED(p.status) && WEXITSTATUS(p.status) == 0)
            << "the suite stopped as if asked to";
        EXPECT_EQ(p.log.find("leased killed by signal"), std::string::npos);
        const std::string file = lease_file();
        EXPECT_NE(file.find(lease4_.substr(0, lease4_.find('/'))), std::string::npos) << file;
        EXPECT_NE(file.find(lease6_.substr(0, lease6_.find('/'))), std::string::npos) << file;
        EXPECT_EQ(file.find(lab_->clients[1].pubkey), std::string::npos) << file;
        EXPECT_EQ(allowed_ips(), allowed_before_) << "something was granted";
    }

    std::unique_ptr<Lab> lab_;
    std::string lease4_, lease6_, allowed_before_;
    Ip6 self_, other_;
    Played last_;
    int runs_ = 0;
};

} // namespace

// Each frame is fatal for leased: it logs why and exits, netd stops the
// suite, and the lease file and the allowed IPs are as they were.
TEST_F(HostileProtod, EveryFrameOutsideLeasedsTableEndsTheSuiteWithNoLeaseLostAndNothingGranted) {
    const std::vector<std::uint8_t> good = queries({msg::QueryLease{self_, {}, {}, 0}});
    std::vector<std::uint8_t> cut =
        queries({msg::QueryLease{self_, {}, {}, 0}, msg::QueryLease{other_, {}, {}, 0}});
    cut.resize(cut.size() - 10);
    std::vector<msg::QueryLease> too_many(msg::kMaxItemsPerMessage + 1,
                                          msg::QueryLease{self_, {}, {}, 0});
    msg::LeaseAnswers own_answer;
    own_answer.items.push_back({1, msg::LeaseAnswer{*parse_ip4("10.77.0.9"), {}, 0, 3600, 0}});
    msg::ApplyAllowedIps order{{PeerChange{
        *key_from_base64(lab_->clients[1].pubkey), {*parse_ip4("10.77.0.9")}, {}, {}, {}}}};
    const std::string violation = "protocol violation by protod: ";
    const std::vector<Attack> attacks{
        {"a datagram shorter than a header", "raw:0100", violation + "shorter than a header"},
        {"a length field that is not the datagram's", "badlen:1:100:" + hex_of(good),
         violation + "length field does not match the datagram size"},
        {"a truncated body (two queries announced, one and a half sent)", frame(1, cut),
         "protod sent malformed queries"},
        {"an unknown type", frame(999, {}), violation + "type 999 in state 0: unknown"},
        {"an oversize frame (70,000 bytes)", "big:70000", violation + "truncated message"},
        {"leased's own answer sent back to it", frame(msg::lease_answers, msg::encode(own_answer)),
         "type 2 in state 0: unknown message type"},
        {"an order for netd (add an address to a peer)",
         frame(msg::apply_allowed_ips, msg::encode(order)),
         "type 9 in state 0: unknown message type"},
        {"netd's peers list (PeersBegin)", frame(msg::peers_begin, {}),
         "type 5 in state 0: unknown message type"},
        {"a refresh of the peers (leased's to netd)", frame(msg::refresh_peers, {}),
         "type 4 in state 0: unknown message type"},
        {"the client's exchange result", frame(msg::exchange_result, {}),
         "type 13 in state 0: unknown message type"},
        {"a query with a descriptor attached", "fd:1:1:" + hex_of(good),
         "fd attached to a message that takes none"},
        {"a descriptor the flags do not announce", "fd:1:0:" + hex_of(good),
         violation + "fd attached but fd flag not set"},
        {"a descriptor announced and not attached", frame(1, good, 1),
         violation + "fd flag set but no fd attached"},
        {"an unknown flag", frame(1, good, 2), violation + "unknown flags"},
        {"a query from a global source", frame(1, queries({{v6("2001:db8:77::5"), {}, {}, 0}})),
         "no valid request can produce"},
        {"a multicast IPv4 address for a peer",
         frame(1, queries({{self_, *parse_ip4("224.0.0.1"), {}, 0}})),
         "no valid request can produce"},
        {"loopback IPv6 for a peer", frame(1, queries({{self_, {}, v6("::1"), 0}})),
         "no valid request can produce"},
        {"an errno the protocol does not have", frame(1, raw_query(self_, 0, 3)),
         "protod sent malformed queries"},
        {"an invalid request that names an address", frame(1, raw_query(self_, 1, 1)),
         "protod sent malformed queries"},
        {"1,025 queries in one message", frame(1, queries(too_many)),
         "protod sent malformed queries"},
        {"a malformed control request", frame(msg::control_request, {0xff, 0xff, 0xff}),
         "protod sent a malformed control request"},
        {"a malformed monitor state", frame(msg::monitor_state, {1}),
         "protod sent a malformed monitor state"},
        {"100,352 queries, never reading an answer",
         "deaf" +
             frame(1, queries(std::vector<msg::QueryLease>(msg::kMaxItemsPerMessage,
                                                           msg::QueryLease{self_, {}, {}, 0})))
                 .substr(5) +
             "*98",
         "cannot send to protod"},
    };
    for (const Attack& a : attacks) {
        SCOPED_TRACE(a.name);
        Played p = play(a.step, a.name);
        EXPECT_NE(p.log.find(a.logged), std::string::npos) << "not logged: " << a.logged;
        expect_failed_closed(p);
        if (HasFailure())
            return;
    }
}

// protod's filter allows tgkill to itself only and no kill: each attempt
// kills protod (SIGSYS) before any signal leaves, the suite fails closed,
// and leased ends by itself, not by protod's signal.
TEST_F(HostileProtod, SignalsToLeasedNetdOrAnyoneKillProtodAndReachNobody) {
    const std::vector<Attack> attacks{
        {"kill(leased, SIGKILL)", "kill:leased:9", ""},
        {"tgkill(leased, leased, SIGKILL)", "tgkill:leased:9", ""},
        {"kill(netd, 0)", "kill:netd:0", ""},
        {"tgkill(netd, netd, 0)", "tgkill:netd:0", ""},
        {"kill(1, 0)", "kill:init:0", ""},
        {"kill(-1, 0)", "kill:all:0", ""},
    };
    for (const Attack& a : attacks) {
        SCOPED_TRACE(a.name);
        Played p = play(a.step, a.name);
        const auto at = p.log.find("hostile: protod's seat, leased is ");
        ASSERT_NE(at, std::string::npos);
        const pid_t leased = std::atoi(p.log.c_str() + at + 34);
        ASSERT_GT(leased, 0) << "the hostile protod did not find leased";
        EXPECT_NE(p.log.find("hostile: " + a.step.substr(0, a.step.find(':')) + "("),
                  std::string::npos)
            << "the attempt was not made";
        EXPECT_EQ(p.log.find(" returned "), std::string::npos) << "the call returned";
        // protod died inside the call, before any signal left. netd logs
        // protod's SIGSYS when it notices protod's end first; when it
        // notices leased's first, leased (alive after the call) logged that
        // it saw protod's channel close.
        const bool sigsys = p.log.find("protod killed by signal SIGSYS (31)") != std::string::npos;
        const bool eof =
            p.log.find("leased: protod closed the channel: stopping") != std::string::npos;
        EXPECT_TRUE(sigsys || eof) << "protod did not die in the call";
        EXPECT_TRUE(eventually([&] { return !process_running(leased); }, 5000))
            << "leased outlived the suite";
        expect_failed_closed(p);
        if (HasFailure())
            return;
    }
}

// Queries that the table admits but that name no peer are refused one by
// one, a flood of them included, and leased keeps serving; a real peer's
// flood gets its own lease again and nothing else.
TEST_F(HostileProtod, QueriesFromNoPeerAreRefusedAndAFloodGrantsNothingNew) {
    std::vector<msg::QueryLease> strangers, peer;
    for (std::uint32_t i = 0; i < msg::kMaxItemsPerMessage; i++) {
        Ip6 s = v6("fe80::1:0");
        s.bytes[14] = std::uint8_t(i >> 8);
        s.bytes[15] = std::uint8_t(i);
        strangers.push_back({s, {}, {}, 0});
        peer.push_back({self_, {}, {}, 0});
    }
    const std::string lease4 = lease4_.substr(0, lease4_.find('/'));
    // (name, step, answers, granted, refused); -1: not checked.
    struct Expect {
        std::string name, step;
        long answers, granted, refused;
    };
    const std::vector<Expect> steps{
        {"a link-local source that is no peer", frame(1, queries({{v6("fe80::dead"), {}, {}, 0}})),
         0, 0, 1},
        {"an invalid request from a source that is no peer",
         frame(1, queries({{v6("fe80::beef"), {}, {}, 1}})), 0, 0, 1},
        {"100,352 queries from 1,024 sources that are no peer",
         frame(1, queries(strangers)) + "*98", 0, 0, 98 * 1024},
        {"a peer asks for addresses it does not hold, outside every pool",
         frame(1, queries({{self_, *parse_ip4("10.99.0.1"), v6("2001:db8:99::1"), 0}})), 1, 1, 0},
        {"100,352 queries from a peer", frame(1, queries(peer)) + "*98", 98 * 1024, 98 * 1024, 0},
    };
    std::string script;
    for (const Expect& e : steps)
        script += e.step + ";quiet:2500;";
    Played p = play(script, "refused queries and floods", false);
    for (std::size_t at = p.log.find("hostile: step"); at != std::string::npos;
         at = p.log.find("hostile: step", at + 1))
        std::cerr << "[ report   ] " << p.log.substr(at, p.log.find('\n', at) - at) << "\n";
    ASSERT_EQ(p.status, -1) << "the suite went down";
    ASSERT_NE(p.log.find("hostile: done"), std::string::npos);
    const auto at = p.log.find("hostile: protod's seat, leased is ");
    ASSERT_NE(at, std::string::npos);
    const pid_t leased = std::atoi(p.log.c_str() + at + 34);
    EXPECT_TRUE(process_running(leased));
    const std::string status = read_file("/proc/" + std::to_string(leased) + "/status");
    const auto hwm = status.find("VmHWM:");
    ASSERT_NE(hwm, std::string::npos);
    std::cerr << "[ measured ] leased " << status.substr(hwm, status.find('\n', hwm) - hwm)
              << " after the floods\n";

    // Step k's totals are on the report of the step (2k - 1) plus its wait (2k).
    auto report = [&](int k) {
        const std::string tag = "hostile: step " + std::to_string(k) + " (";
        auto pos = p.log.find(tag);
        EXPECT_NE(pos, std::string::npos) << tag;
        return pos == std::string::npos ? std::string()
                                        : p.log.substr(pos, p.log.find('\n', pos) - pos);
    };
    auto number = [](const std::string& line, const std::string& key) {
        auto pos = line.find(" " + key + " ");
        return pos == std::string::npos ? -1L : std::atol(line.c_str() + pos + key.size() + 2);
    };
    for (std::size_t i = 0; i < steps.size(); i++) {
        SCOPED_TRACE(steps[i].name);
        const std::string a = report(int(2 * i + 1)), b = report(int(2 * i + 2));
        EXPECT_EQ(number(a, "answers") + number(b, "answers"), steps[i].answers) << a << "\n" << b;
        EXPECT_EQ(number(a, "granted") + number(b, "granted"), steps[i].granted) << a << "\n" << b;
        EXPECT_EQ(number(a, "refused") + number(b, "refused"), steps[i].refused) << a << "\n" << b;
        // Whatever a peer was given is the lease it holds.
        for (const std::string& line : {a, b}) {
            if (auto v = line.find(" v4 "); v != std::string::npos) {
                EXPECT_EQ(line.substr(v + 4, line.find(' ', v + 4) - v - 4), lease4) << line;
            }
        }
    }
    EXPECT_NE(p.log.find("source is not a peer's link-local address"), std::string::npos);

    ASSERT_EQ(kill(p.pid, SIGTERM), 0);
    int st = wait_exit(p.pid, 10000);
    ASSERT_NE(st, -1);
    last_.log = read_file(lab_->state_dir + "/server-" + std::to_string(runs_) + ".log");
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "status " << st;
    EXPECT_EQ(allowed_ips(), allowed_before_) << "something was granted";
    const std::string file = lease_file();
    EXPECT_NE(file.find(lease4), std::string::npos) << file;
    EXPECT_EQ(file.find(lab_->clients[1].pubkey), std::string::npos) << file;
}

// The client's protod reads the server's answer, so it may choose the grant
// of the exchange in flight within the rules leased checks (its residual
// power); outside them, and for any exchange not in flight, nothing is
// added to the interface.
namespace {

class HostileClientProtod : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!running_as_root())
            GTEST_SKIP() << "system tests need root (network namespaces, wireguard-go)";
        lab_ = std::make_unique<Lab>(LabOptions{1});
        server_ = start_server(*lab_);
        ASSERT_TRUE(wait_until_serving(*lab_)) << read_file(server_.log);
        addresses_before_ = addresses();
    }
    void TearDown() override {
        if (HasFailure() && !log_.empty())
            std::cerr << "---- client log\n" << log_ << "----\n";
    }
    // The client's global addresses.
    std::string addresses() const {
        const LabClient& c = lab_->clients[0];
        return sh_out("ip -n " + c.ns + " -o addr show dev " + c.iface +
                      " scope global | awk '{print $4}' | sort");
    }
    // Starts the client with the hostile protod playing `script`; returns
    // its pid once the script is done or the client has exited (status).
    pid_t play(const std::string& script, int& status) {
        const std::string lib = std::string(WGD_BINARY_DIR) + "/tests/hostile_protod.so";
        const std::string file = lab_->state_dir + "/hostile-client.script";
        if (FILE* f = std::fopen(file.c_str(), "w")) {
            std::fputs(script.c_str(), f);
            std::fclose(f);
        }
        const LabClient& c = lab_->clients[0];
        const std::string log = lab_->state_dir + "/client-" + std::to_string(++runs_) + ".log";
        setenv("LD_PRELOAD", lib.c_str(), 1);
        setenv("WGD_HOSTILE_SCRIPT_FILE", file.c_str(), 1);
        pid_t pid = lab_->start(c.ns, binary("wg-dynamic-client"), {"-f", "-v", c.iface}, log);
        unsetenv("LD_PRELOAD");
        unsetenv("WGD_HOSTILE_SCRIPT_FILE");
        status = -1;
        eventually(
            [&] {
                if (waitpid(pid, &status, WNOHANG) == pid)
                    return true;
                status = -1;
                return read_file(log).find("hostile: done") != std::string::npos;
            },
            60000);
        log_ = read_file(log);
        return pid;
    }
    msg::ExchangeResult grant(const char* v4, std::uint8_t len) const {
        msg::ExchangeResult r;
        r.answered = true;
        r.ipv4 = Prefix4{*parse_ip4(v4), len};
        r.leasestart = std::uint64_t(std::time(nullptr));
        r.leasetime = 3600;
        return r;
    }
    std::unique_ptr<Lab> lab_;
    ServerRun server_;
    std::string addresses_before_, log_;
    int runs_ = 0;
};

} // namespace

TEST_F(HostileClientProtod, GrantsOutsideTheRulesAndAnswersToNoExchangeAddNothing) {
    const std::string script =
        "answer:" + hex_of(msg::encode(grant("10.77.0.0", 24))) + ";wait:1500;" +
        "answer:" + hex_of(msg::encode(grant("224.0.0.5", 32))) + ";wait:1500;" +
        "frameid:13:77:" + hex_of(msg::encode(grant("10.77.0.201", 32))) + ";wait:1000";
    int status = 0;
    pid_t pid = play(script, status);
    ASSERT_EQ(status, -1) << "the client went down";
    EXPECT_NE(log_.find("rejected response: unacceptable address 10.77.0.0/24"), std::string::npos);
    EXPECT_NE(log_.find("rejected response: unacceptable address 224.0.0.5/32"), std::string::npos);
    EXPECT_NE(log_.find("ignoring a response to exchange 77"), std::string::npos);
    EXPECT_EQ(addresses(), addresses_before_) << "an address was added";
    ASSERT_EQ(kill(pid, SIGTERM), 0);
    int st = wait_exit(pid, 10000);
    EXPECT_TRUE(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0) << "status " << st;
}

TEST_F(HostileClientProtod, FramesOutsideTheClientTableAndSignalsEndTheClientWithNothingAdded) {
    const std::vector<Attack> attacks{
        {"a server query on the client's channel",
         frame(msg::query_leases, queries({{v6("fe80::1"), {}, {}, 0}})),
         "type 1 in state 0: unknown message type"},
        {"an exchange result with a descriptor",
         "fd:13:1:" + hex_of(msg::encode(grant("10.77.0.9", 32))),
         "fd attached to a message that takes none"},
        {"a malformed exchange result", frame(msg::exchange_result, {1, 2, 3}),
         "protod sent a malformed exchange result"},
        {"kill(leased, SIGKILL)", "kill:leased:9", ""},
    };
    for (const Attack& a : attacks) {
        SCOPED_TRACE(a.name);
        std::cerr << "[ attack   ] client: " << a.name << "\n";
        int status = 0;
        pid_t pid = play(a.step, status);
        // protod's "done" can come before netd has stopped its children.
        if (status == -1)
            status = wait_exit(pid, 15000);
        ASSERT_NE(status, -1) << "the client is still running";
        EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (!a.logged.empty()) {
            EXPECT_NE(log_.find(a.logged), std::string::npos) << "not logged: " << a.logged;
        } else {
            EXPECT_NE(log_.find("hostile: kill(leased"), std::string::npos) << "not attempted";
            EXPECT_EQ(log_.find(" returned "), std::string::npos) << "the call returned";
        }
        EXPECT_EQ(log_.find("leased killed by signal"), std::string::npos);
        EXPECT_EQ(addresses(), addresses_before_) << "an address was added";
        if (HasFailure())
            return;
    }
}
