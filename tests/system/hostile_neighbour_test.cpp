// A hostile program in leased's seat (tests/hostile/leased_preload.cpp,
// preloaded: it runs inside leased's real sandbox, after its real filter)
// sends orders to the real netd over the real channel, against a real
// wireguard-go. Each order must be refused, change by change, with nothing
// applied (wg show) and one log line naming the order and the rule.
#include "privsep/messages.hpp"
#include "tests/system/suite.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

using namespace wgd;
using namespace wgd::lab;

namespace {

PublicKey key_of(const std::string& base64) {
    return *key_from_base64(base64);
}

Ip4 v4(const char* s) {
    return *parse_ip4(s);
}
Ip6 v6(const char* s) {
    return *parse_ip6(s);
}

struct Attack {
    std::string name;
    std::string step; // TYPE:HEX[*COUNT]
};

Attack order(const std::string& name, std::vector<PeerChange> changes) {
    return {name, std::to_string(msg::apply_allowed_ips) + ":" +
                      hex_of(msg::encode(msg::ApplyAllowedIps{std::move(changes)}))};
}

class HostileNeighbour : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!running_as_root())
            GTEST_SKIP() << "system tests need root (network namespaces, wireguard-go)";
    }
    void TearDown() override {
        if (HasFailure() && lab_)
            std::cerr << "---- server log\n" << read_file(run_.log) << "----\n";
    }
    // Starts the server with the hostile leased playing `attacks`; returns
    // the log once the script is done (or the suite went down).
    std::string play(const std::vector<Attack>& attacks) {
        std::string script;
        for (const Attack& a : attacks)
            script += (script.empty() ? "" : ";") + a.step;
        const std::string lib = std::string(WGD_BINARY_DIR) + "/tests/hostile_leased.so";
        EXPECT_TRUE(std::filesystem::exists(lib)) << lib;
        setenv("LD_PRELOAD", lib.c_str(), 1);
        const std::string file = lab_->state_dir + "/hostile.script";
        {
            FILE* f = std::fopen(file.c_str(), "w");
            EXPECT_NE(f, nullptr);
            std::fputs(script.c_str(), f);
            std::fclose(f);
        }
        setenv("WGD_HOSTILE_SCRIPT_FILE", file.c_str(), 1);
        run_ = start_server(*lab_);
        unsetenv("LD_PRELOAD");
        unsetenv("WGD_HOSTILE_SCRIPT_FILE");
        eventually(
            [&] {
                std::string log = read_file(run_.log);
                return log.find("hostile: done") != std::string::npos ||
                       log.find("hostile: hanging") != std::string::npos ||
                       !process_alive(run_.pid) || log.find("netd gone") != std::string::npos;
            },
            60000);
        return read_file(run_.log);
    }
    std::unique_ptr<Lab> lab_;
    ServerRun run_;
};

} // namespace

TEST_F(HostileNeighbour, EveryOrderOutsideTheRulesIsRefusedChangeByChangeAndNothingIsApplied) {
    lab_ = std::make_unique<Lab>(LabOptions{2});
    const LabClient& a = lab_->clients[0];
    const LabClient& b = lab_->clients[1];
    // Peer B's static reservation, inside the pool.
    ASSERT_EQ(lab_->in(lab_->server_ns, "wg set " + lab_->server_iface + " peer " + b.pubkey +
                                            " allowed-ips " + b.lladdr + "/128,10.77.0.5/32"),
              0);
    const std::string before =
        lab_->out(lab_->server_ns, "wg show " + lab_->server_iface + " allowed-ips | sort");
    const PublicKey ka = key_of(a.pubkey), kb = key_of(b.pubkey);
    PublicKey stranger = ka;
    stranger.bytes[0] ^= 0xff;
    auto add4 = [](PublicKey k, std::vector<Ip4> v) { return PeerChange{k, v, {}, {}, {}}; };
    auto add6 = [](PublicKey k, std::vector<Ip6> v) { return PeerChange{k, {}, {}, v, {}}; };

    std::vector<Attack> attacks{
        order("strip another peer's reservation", {{kb, {}, {v4("10.77.0.5")}, {}, {}}}),
        order("move a reservation to another peer", {add4(ka, {v4("10.77.0.5")})}),
        order("remove a peer's link-local identity", {{kb, {}, {}, {}, {v6(b.lladdr.c_str())}}}),
        order("two IPv4 addresses to one peer", {add4(ka, {v4("10.77.0.10"), v4("10.77.0.11")})}),
        order("two IPv6 addresses to one peer",
              {add6(ka, {v6("2001:db8:77::10"), v6("2001:db8:77::11")})}),
        order("the server's own IPv4 address", {add4(ka, {v4("10.77.0.1")})}),
        order("the server's own IPv6 address", {add6(ka, {v6("2001:db8:77::1")})}),
        order("a pool's zero host (IPv4)", {add4(ka, {v4("10.77.0.0")})}),
        order("a pool's zero host (IPv6)", {add6(ka, {v6("2001:db8:77::")})}),
        order("a pool's broadcast address", {add4(ka, {v4("10.77.0.255")})}),
        order("outside every pool", {add4(ka, {v4("10.78.0.9")})}),
        order("loopback", {add4(ka, {v4("127.0.0.1")})}),
        order("multicast IPv4", {add4(ka, {v4("224.0.0.1")})}),
        order("0.0.0.0", {add4(ka, {v4("0.0.0.0")})}),
        order("::1", {add6(ka, {v6("::1")})}),
        order("link-local IPv6", {add6(ka, {v6("fe80::99")})}),
        order("multicast IPv6", {add6(ka, {v6("ff02::1")})}),
        order("IPv4-mapped IPv6", {add6(ka, {v6("::ffff:10.77.0.9")})}),
        order("a peer not on the device", {add4(stranger, {v4("10.77.0.20")})}),
        order("the same peer twice in one order",
              {PeerChange{ka, {}, {}, {}, {}}, add4(ka, {v4("10.77.0.21")})}),
        order("add and remove the same address",
              {{ka, {v4("10.77.0.22")}, {v4("10.77.0.22")}, {}, {}}}),
        order("another peer's link-local address", {add6(ka, {v6(b.lladdr.c_str())})}),
    };
    // 105,000 adds to one peer, 15,000 to an order.
    for (int part = 0; part < 7; part++) {
        std::vector<Ip4> many;
        for (int i = 0; i < 15000; i++)
            many.push_back(Ip4::from_u32(0x0a4d0000u + 2 + static_cast<std::uint32_t>(i % 250)));
        attacks.push_back(
            order("100,000 adds, part " + std::to_string(part + 1), {add4(ka, std::move(many))}));
    }
    // A refresh storm: 1,000 refresh_peers at once.
    attacks.push_back({"refresh storm", std::to_string(msg::refresh_peers) + ":*1000"});
    std::string log = play(attacks);

    // Every order: each of its changes refused (no status 0 but the empty
    // change of "same peer twice"), and logged by netd.
    std::uint32_t id = 1000;
    for (const Attack& at : attacks) {
        ++id;
        if (at.name == "refresh storm")
            continue;
        SCOPED_TRACE(at.name);
        const std::string line = "hostile: order " + std::to_string(id) + " answered ";
        auto pos = log.find(line);
        ASSERT_NE(pos, std::string::npos) << "no answer to " << at.name;
        std::string statuses =
            log.substr(pos + line.size(), log.find('\n', pos) - pos - line.size());
        if (at.name == "the same peer twice in one order")
            EXPECT_EQ(statuses.substr(0, 2), "0,");
        else
            EXPECT_EQ(statuses.find_first_not_of("0123456789"), std::string::npos) << statuses;
        EXPECT_EQ(statuses.back() == '0' && statuses.size() == 1, false) << statuses;
        EXPECT_NE(log.find("of order " + std::to_string(id) + " from leased"), std::string::npos)
            << "netd did not log the refusal";
    }
    // The storm read the device at most a few times (once a second), not 1,000.
    auto storm = log.find("read the device ");
    ASSERT_NE(storm, std::string::npos);
    int reads = std::stoi(log.substr(storm + std::string("read the device ").size()));
    EXPECT_LE(reads, 4) << "refresh storm";
    EXPECT_NE(log.find("hostile: done"), std::string::npos);

    const std::string after =
        lab_->out(lab_->server_ns, "wg show " + lab_->server_iface + " allowed-ips | sort");
    EXPECT_EQ(after, before) << "something was applied";
}

// A leased taken over that ignores netd's EOF and every catchable signal
// (not stopped, so no orphaned-group SIGHUP reaches it either) still dies
// with netd: its parent-death signal, set after its uid change, is sent with
// netd's credentials, which keep CAP_KILL for exactly this.
TEST_F(HostileNeighbour, LeasedThatIgnoresEofAndSignalsDiesWhenNetdIsKilled) {
    lab_ = std::make_unique<Lab>(LabOptions{1});
    std::string log = play({{"hang", "hang"}});
    ASSERT_NE(log.find("hostile: hanging"), std::string::npos) << log;
    auto children = children_of(run_.pid);
    ASSERT_EQ(children.size(), 2u);
    ASSERT_EQ(kill(run_.pid, SIGKILL), 0);
    for (pid_t child : children)
        EXPECT_TRUE(eventually([&] { return !process_running(child); }, 3000))
            << "child " << child << " outlived a SIGKILL of netd";
}
