// Operating a running server over its control socket: live and offline
// `show`, `monitor --json`, `revoke` and `show --metrics`, against the real
// suite serving real wireguard-go peers.
#include "privsep/control.hpp"
#include "tests/system/suite.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <iostream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

using namespace wgd;
using namespace wgd::lab;

namespace {

struct Ran {
    int status = -1;
    std::string out, err;
};

class Operate : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!running_as_root())
            GTEST_SKIP() << "system tests need root (network namespaces, wireguard-go)";
    }
    void TearDown() override {
        if (monitor_pid_ > 0) {
            kill(monitor_pid_, SIGTERM);
            wait_exit(monitor_pid_, 2000);
        }
        if (HasFailure() && lab_)
            std::cerr << "---- server log\n" << read_file(run_.log) << "----\n";
    }
    void start(int clients, std::vector<std::string> args = {}) {
        if (!lab_)
            lab_ = std::make_unique<Lab>(LabOptions{clients});
        args_ = args;
        run_ = start_server(*lab_, args);
        ASSERT_TRUE(wait_until_serving(*lab_)) << read_file(run_.log);
    }
    void stop() {
        kill(run_.pid, SIGTERM);
        ASSERT_EQ(wait_exit(run_.pid, 5000), 0);
    }
    // wg-dynamic-server with these arguments, from the host (the control
    // socket is a file, not in any network namespace).
    Ran cli(const std::string& args) {
        Ran r;
        const std::string out = lab_->state_dir + "/cli.out", err = lab_->state_dir + "/cli.err";
        r.status = sh(binary("wg-dynamic-server") + " " + args + " >" + out + " 2>" + err);
        r.out = read_file(out);
        r.err = read_file(err);
        return r;
    }
    void start_monitor(const std::string& path) {
        monitor_pid_ = fork();
        if (monitor_pid_ == 0) {
            std::string bin = binary("wg-dynamic-server");
            if (!freopen(path.c_str(), "w", stdout))
                _exit(127);
            execl(bin.c_str(), bin.c_str(), "monitor", lab_->server_iface.c_str(), "--json",
                  static_cast<char*>(nullptr));
            _exit(127);
        }
        // Connected once the server counts it: a monitor has no output
        // before the first event, so wait until the socket shows a client.
        ASSERT_TRUE(eventually([&] {
            return sh("ss -xH state connected | grep -q '" +
                      control::socket_path(lab_->server_iface) + "'") == 0;
        }));
    }
    std::string ipv4_of(const Exchange& ex) { return field(ex.reply, "ipv4"); }

    std::unique_ptr<Lab> lab_;
    ServerRun run_;
    std::vector<std::string> args_;
    pid_t monitor_pid_ = -1;
};

std::string host(const std::string& prefix) {
    return prefix.substr(0, prefix.find('/'));
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        out.push_back(line);
    return out;
}

// The value of `"name":` in a one-line JSON object of monitor --json.
std::string json_field(const std::string& line, const std::string& name) {
    std::smatch m;
    std::regex re("\"" + name + "\":(\"[^\"]*\"|[^,}]*)");
    if (!std::regex_search(line, m, re))
        return "";
    std::string v = m[1];
    return v.size() >= 2 && v.front() == '"' ? v.substr(1, v.size() - 2) : v;
}

// Prometheus text format, parsed back: every sample's family has HELP and
// TYPE lines before it, names carry the wg_dynamic_ prefix, values are numbers.
std::map<std::string, double> parse_metrics(const std::string& text) {
    std::map<std::string, double> samples;
    std::set<std::string> helped, typed;
    const std::regex sample(R"(^(wg_dynamic_[a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$)");
    for (const std::string& line : lines_of(text)) {
        std::smatch m;
        if (line.rfind("# HELP ", 0) == 0) {
            helped.insert(line.substr(7, line.find(' ', 7) - 7));
        } else if (line.rfind("# TYPE ", 0) == 0) {
            std::string rest = line.substr(7);
            std::string name = rest.substr(0, rest.find(' '));
            std::string type = rest.substr(rest.find(' ') + 1);
            EXPECT_TRUE(type == "counter" || type == "gauge") << line;
            EXPECT_TRUE(helped.count(name)) << "TYPE before HELP: " << line;
            typed.insert(name);
        } else if (std::regex_match(line, m, sample)) {
            EXPECT_TRUE(typed.count(m[1])) << "no TYPE for " << line;
            samples[std::string(m[1]) + std::string(m[2])] = std::stod(m[3]);
        } else {
            ADD_FAILURE() << "not Prometheus text format: " << line;
        }
    }
    return samples;
}

} // namespace

TEST_F(Operate, ShowAsksTheRunningServerAndFallsBackToTheLeaseFileWhenItIsGone) {
    start(1);
    Exchange ex = request(*lab_, 0);
    const std::string v4 = ipv4_of(ex), v6 = field(ex.reply, "ipv6");
    ASSERT_FALSE(v4.empty()) << ex.reply;
    const std::string& key = lab_->clients[0].pubkey;

    Ran live = cli("show " + lab_->server_iface);
    ASSERT_EQ(live.status, 0) << live.err;
    EXPECT_NE(live.out.find("interface: " + lab_->server_iface + " (running)"), std::string::npos)
        << live.out;
    // 10.77.0.0/24 without .0, .255 and the server's .1.
    EXPECT_NE(live.out.find("pool 10.77.0.0/24: size 253, leased 1, free 252"), std::string::npos)
        << live.out;
    EXPECT_NE(live.out.find("pool 2001:db8:77::/64: size 18446744073709551614, leased 1, free "
                            "18446744073709551613"),
              std::string::npos)
        << live.out;
    EXPECT_NE(live.out.find(key), std::string::npos);
    EXPECT_NE(live.out.find(lab_->clients[0].lladdr), std::string::npos);
    EXPECT_NE(live.out.find(v4), std::string::npos);
    EXPECT_NE(live.out.find(v6), std::string::npos);
    EXPECT_EQ(live.err, "");

    Ran json = cli("show " + lab_->server_iface + " --json");
    ASSERT_EQ(json.status, 0) << json.err;
    EXPECT_EQ(
        json.out.rfind("{\"interface\": \"" + lab_->server_iface + "\", \"running\": true", 0), 0u)
        << json.out;
    EXPECT_NE(json.out.find("{\"prefix\": \"10.77.0.0/24\", \"size\": 253, \"leased\": 1, "
                            "\"free\": 252}"),
              std::string::npos)
        << json.out;
    EXPECT_NE(json.out.find("\"ipv4\": \"" + v4 + "\""), std::string::npos) << json.out;

    stop();
    Ran offline = cli("show " + lab_->server_iface + " --state-dir " + lab_->state_dir);
    ASSERT_EQ(offline.status, 0) << offline.err;
    EXPECT_NE(offline.err.find("no server running on " + lab_->server_iface), std::string::npos)
        << offline.err;
    EXPECT_EQ(offline.out.find("(running)"), std::string::npos);
    EXPECT_NE(offline.out.find(key), std::string::npos) << offline.out;
    EXPECT_NE(offline.out.find(v4), std::string::npos) << offline.out;

    // Without a server, monitor, revoke and metrics have nobody to ask.
    for (const std::string& args :
         {"monitor " + lab_->server_iface, "revoke " + lab_->server_iface + " " + host(v4),
          "show " + lab_->server_iface + " --metrics"}) {
        Ran r = cli(args);
        EXPECT_EQ(r.status, 1) << args;
        EXPECT_EQ(lines_of(r.err).size(), 1u) << r.err;
        EXPECT_NE(r.err.find("no server running on " + lab_->server_iface), std::string::npos)
            << r.err;
    }
}

TEST_F(Operate, MonitorSeesGrantRenewalReleaseExpiryAndRevocationInOrder) {
    start(1, {"--leasetime", "2"});
    const std::string monitor_out = lab_->state_dir + "/monitor.json";
    start_monitor(monitor_out);

    Exchange grant = request(*lab_, 0);
    const std::string v4 = ipv4_of(grant), v6 = field(grant.reply, "ipv6");
    ASSERT_FALSE(v4.empty()) << grant.reply;
    Exchange renew = request(*lab_, 0, "request_ip=1\nipv4=" + v4 + "\nipv6=" + v6 + "\n\n");
    ASSERT_EQ(ipv4_of(renew), v4) << renew.reply;
    // Naming IPv4 alone releases the IPv6 lease (and renews the IPv4 one).
    Exchange only4 = request(*lab_, 0, "request_ip=1\nipv4=" + v4 + "\n\n");
    ASSERT_EQ(ipv4_of(only4), v4) << only4.reply;
    ASSERT_TRUE(eventually(
        [&] {
            return lab_->allowed_ips_of(lab_->clients[0].pubkey) ==
                   lab_->clients[0].lladdr + "/128";
        },
        6000))
        << "the lease did not expire";
    Exchange again = request(*lab_, 0, "request_ip=1\nipv4=0.0.0.0/32\n\n");
    const std::string v4b = ipv4_of(again);
    ASSERT_FALSE(v4b.empty()) << again.reply;
    Ran revoked = cli("revoke " + lab_->server_iface + " " + lab_->clients[0].pubkey);
    ASSERT_EQ(revoked.status, 0) << revoked.err;

    const std::vector<std::string> want{"grant",  "renew", "release", "renew",
                                        "expire", "grant", "revoke"};
    std::vector<std::string> lines;
    ASSERT_TRUE(eventually([&] {
        lines = lines_of(read_file(monitor_out));
        return lines.size() >= want.size();
    })) << read_file(monitor_out);
    ASSERT_EQ(lines.size(), want.size()) << read_file(monitor_out);
    for (std::size_t i = 0; i < want.size(); i++) {
        EXPECT_EQ(json_field(lines[i], "event"), want[i]) << lines[i];
        EXPECT_EQ(json_field(lines[i], "peer"), lab_->clients[0].pubkey) << lines[i];
        EXPECT_EQ(json_field(lines[i], "link_local"), lab_->clients[0].lladdr) << lines[i];
        EXPECT_EQ(json_field(lines[i], "errno"), "0") << lines[i];
    }
    EXPECT_EQ(json_field(lines[0], "ipv4"), v4);
    EXPECT_EQ(json_field(lines[0], "ipv6"), v6);
    EXPECT_EQ(json_field(lines[0], "leasetime"), "2");
    EXPECT_EQ(json_field(lines[2], "ipv4"), "null");
    EXPECT_EQ(json_field(lines[2], "ipv6"), v6) << "the released address";
    EXPECT_EQ(json_field(lines[4], "ipv4"), v4);
    EXPECT_EQ(json_field(lines[6], "ipv4"), v4b);
    // The audit trail says the same at info: the log holds each of them.
    const std::string log = read_file(run_.log);
    EXPECT_NE(log.find("grant peer=" + lab_->clients[0].pubkey + " link-local=" +
                       lab_->clients[0].lladdr + " ipv4=" + v4 + " ipv6=" + v6 + " leasetime=2"),
              std::string::npos)
        << log;
    EXPECT_NE(log.find("expire peer=" + lab_->clients[0].pubkey), std::string::npos);
    EXPECT_NE(log.find("revoke peer=" + lab_->clients[0].pubkey), std::string::npos);
    EXPECT_EQ(log.find("renew peer="), std::string::npos) << "renewals are logged at debug";
}

TEST_F(Operate, RevokeEndsTheLeaseNowAndItStaysEndedAcrossARestart) {
    start(1);
    const LabClient& c = lab_->clients[0];
    Exchange ex = request(*lab_, 0);
    const std::string v4 = ipv4_of(ex), v6 = field(ex.reply, "ipv6");
    ASSERT_FALSE(v4.empty()) << ex.reply;
    ASSERT_NE(lab_->allowed_ips_of(c.pubkey).find(v4), std::string::npos);

    Ran unknown = cli("revoke " + lab_->server_iface + " 10.77.0.250");
    EXPECT_EQ(unknown.status, 1);
    EXPECT_EQ(unknown.err, "wg-dynamic-server: no lease of 10.77.0.250\n");

    Ran r = cli("revoke " + lab_->server_iface + " " + host(v4));
    ASSERT_EQ(r.status, 0) << r.err;
    // Answered after the change: WireGuard no longer routes the addresses.
    EXPECT_EQ(lab_->allowed_ips_of(c.pubkey), c.lladdr + "/128");

    stop();
    start(1);
    EXPECT_EQ(lab_->allowed_ips_of(c.pubkey), c.lladdr + "/128") << "the revocation was lost";
    Ran show = cli("show " + lab_->server_iface);
    EXPECT_EQ(show.out.find(v4), std::string::npos) << show.out;
    EXPECT_NE(show.out.find("leased 0"), std::string::npos) << show.out;

    // The peer renews what it held: it gets new addresses.
    Exchange renew = request(*lab_, 0, "request_ip=1\nipv4=" + v4 + "\nipv6=" + v6 + "\n\n");
    EXPECT_EQ(field(renew.reply, "errno"), "0") << renew.reply;
    EXPECT_FALSE(ipv4_of(renew).empty());
    EXPECT_NE(ipv4_of(renew), v4);
    EXPECT_NE(field(renew.reply, "ipv6"), v6);
}

TEST_F(Operate, MetricsCountAKnownSequenceExactly) {
    start(2);
    Ran before = cli("show " + lab_->server_iface + " --metrics");
    ASSERT_EQ(before.status, 0) << before.err;
    auto m0 = parse_metrics(before.out);
    const std::string i = "interface=\"" + lab_->server_iface + "\"";

    Exchange a = request(*lab_, 0);                                      // grant
    request(*lab_, 0, "request_ip=1\nipv4=" + ipv4_of(a) + "\n\n");      // release (v6) + renewal
    Exchange b = request(*lab_, 1, "request_ip=1\nipv4=0.0.0.0/32\n\n"); // grant
    ASSERT_FALSE(ipv4_of(b).empty()) << b.reply;
    request(*lab_, 1, "request_ip=1\nipv4=10.0.0.1/24\n\n"); // errno 1
    request(*lab_, 1, "request_ip=9\n\n");                   // errno 2
    ASSERT_EQ(cli("revoke " + lab_->server_iface + " " + lab_->clients[1].pubkey).status, 0);

    Ran after = cli("show " + lab_->server_iface + " --metrics");
    ASSERT_EQ(after.status, 0) << after.err;
    auto m = parse_metrics(after.out);
    EXPECT_EQ(m["wg_dynamic_grants_total{" + i + "}"], 2);
    EXPECT_EQ(m["wg_dynamic_renewals_total{" + i + "}"], 1);
    EXPECT_EQ(m["wg_dynamic_releases_total{" + i + "}"], 1);
    EXPECT_EQ(m["wg_dynamic_expiries_total{" + i + "}"], 0);
    EXPECT_EQ(m["wg_dynamic_revocations_total{" + i + "}"], 1);
    EXPECT_EQ(m["wg_dynamic_refusals_total{" + i + ",errno=\"1\"}"],
              m0["wg_dynamic_refusals_total{" + i + ",errno=\"1\"}"] + 1);
    EXPECT_EQ(m["wg_dynamic_refusals_total{" + i + ",errno=\"2\"}"], 1);
    EXPECT_EQ(m["wg_dynamic_refusals_total{" + i + ",errno=\"3\"}"], 0);
    EXPECT_EQ(m["wg_dynamic_peers{" + i + "}"], 2);
    EXPECT_EQ(m["wg_dynamic_leases{" + i + "}"], 1);
    EXPECT_EQ(m["wg_dynamic_pool_size{" + i + ",prefix=\"10.77.0.0/24\"}"], 253);
    EXPECT_EQ(m["wg_dynamic_pool_leased{" + i + ",prefix=\"10.77.0.0/24\"}"], 1);
    EXPECT_EQ(m["wg_dynamic_pool_free{" + i + ",prefix=\"10.77.0.0/24\"}"], 252);
    EXPECT_EQ(m["wg_dynamic_pool_leased{" + i + ",prefix=\"2001:db8:77::/64\"}"], 0);
    if (sh("command -v promtool >/dev/null") == 0) {
        EXPECT_EQ(sh("promtool check metrics < " + lab_->state_dir + "/cli.out"), 0);
    }
}

TEST_F(Operate, ASecondServerOfTheSameInterfaceIsRefusedAndTheSocketIsRootsAlone) {
    start(1);
    const std::string path = control::socket_path(lab_->server_iface);
    EXPECT_EQ(sh_out("stat -c '%a %U %F' " + path), "600 root socket\n");
    EXPECT_EQ(sh_out("stat -c '%a %U' " + std::string(control::kRunDir)), "700 root\n");
    const std::string log2 = lab_->state_dir + "/second.log";
    pid_t second =
        lab_->start(lab_->server_ns, binary("wg-dynamic-server"),
                    {"-f", "--state-dir", lab_->state_dir + "/second", lab_->server_iface}, log2);
    EXPECT_EQ(wait_exit(second, 5000), 1 << 8) << read_file(log2);
    // Refused by whichever it meets first: port 970 taken, or the live
    // control socket.
    const std::string second_log = read_file(log2);
    EXPECT_TRUE(second_log.find("another wg-dynamic-server serves " + lab_->server_iface) !=
                    std::string::npos ||
                second_log.find(":970: Address already in use") != std::string::npos)
        << second_log;
    // The first one still answers.
    EXPECT_EQ(cli("show " + lab_->server_iface).status, 0);
}
