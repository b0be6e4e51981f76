// wg-dynamic-server end to end: real wireguard-go in network namespaces,
// real TCP through the tunnel, the real three-process suite.
#include "common/addr.hpp"
#include "common/cli.hpp"
#include "privsep/sandbox.hpp"
#include "tests/system/suite.hpp"

#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <sys/wait.h>

#include <iostream>
#include <set>
#include <sstream>

using namespace wgd;
using namespace wgd::lab;

namespace {

class Server : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!running_as_root())
            GTEST_SKIP() << "system tests need root (network namespaces, wireguard-go)";
    }
    void start_lab(int clients = 1, std::vector<std::string> args = {}) {
        lab_ = std::make_unique<Lab>(LabOptions{clients});
        run_ = start_server(*lab_, args);
        ASSERT_TRUE(wait_until_serving(*lab_)) << read_file(run_.log);
    }
    void TearDown() override {
        if (HasFailure() && lab_)
            std::cerr << "---- server log\n" << read_file(run_.log) << "----\n";
    }
    Exchange ask(int client, const std::string& body = "request_ip=1\n\n") {
        return request(*lab_, client, body);
    }
    std::unique_ptr<Lab> lab_;
    ServerRun run_;
};

std::string strip_len(const std::string& v) {
    return v.substr(0, v.find('/'));
}

} // namespace

TEST_F(Server, RequestWithoutAddressGetsOneAddressOfEachPoolAndOnlyThoseAllowedIps) {
    start_lab();
    Exchange ex = ask(0);
    ASSERT_TRUE(ex.connected);
    EXPECT_EQ(field(ex.reply, "errno"), "0") << ex.reply;
    EXPECT_EQ(ex.reply.rfind("request_ip=1\n", 0), 0u) << ex.reply;
    std::string v4 = field(ex.reply, "ipv4"), v6 = field(ex.reply, "ipv6");
    ASSERT_FALSE(v4.empty());
    ASSERT_FALSE(v6.empty());
    EXPECT_TRUE((Prefix4{*parse_ip4("10.77.0.0"), 24}).contains(*parse_ip4(strip_len(v4)))) << v4;
    EXPECT_TRUE((Prefix6{*parse_ip6("2001:db8:77::"), 64}).contains(*parse_ip6(strip_len(v6))))
        << v6;
    EXPECT_NE(strip_len(v4), "10.77.0.1"); // the server's own address
    EXPECT_NE(strip_len(v4), "10.77.0.0");
    EXPECT_NE(strip_len(v4), "10.77.0.255");
    EXPECT_EQ(field(ex.reply, "leasetime"), "3600");
    EXPECT_FALSE(field(ex.reply, "leasestart").empty());

    std::set<std::string> want{lab_->clients[0].lladdr + "/128", v4, v6};
    std::set<std::string> got;
    std::istringstream words(lab_->allowed_ips_of(lab_->clients[0].pubkey));
    for (std::string w; words >> w;)
        got.insert(w);
    EXPECT_EQ(got, want);

    // Traffic from the leased IPv4 address crosses the tunnel.
    const LabClient& c = lab_->clients[0];
    ASSERT_EQ(lab_->in(c.ns, "ip addr add " + v4 + " dev " + c.iface), 0);
    ASSERT_EQ(lab_->in(c.ns, "ip route add 10.77.0.1/32 dev " + c.iface), 0);
    EXPECT_EQ(lab_->in(c.ns, "ping -c 1 -W 3 -I " + strip_len(v4) + " 10.77.0.1 >/dev/null"), 0);
}

TEST_F(Server, AddressesAreStableAcrossRenewalAndAnyAndOtherPeersAddressIsNotGranted) {
    start_lab(2);
    Exchange first = ask(0);
    std::string v4 = field(first.reply, "ipv4"), v6 = field(first.reply, "ipv6");
    ASSERT_FALSE(v4.empty()) << first.reply;

    Exchange renew = ask(0, "request_ip=1\nipv4=" + v4 + "\nipv6=" + v6 + "\n\n");
    EXPECT_EQ(field(renew.reply, "ipv4"), v4);
    EXPECT_EQ(field(renew.reply, "ipv6"), v6);
    Exchange any = ask(0, "request_ip=1\nipv4=0.0.0.0/32\nipv6=::/128\n\n");
    EXPECT_EQ(field(any.reply, "ipv4"), v4);
    EXPECT_EQ(field(any.reply, "ipv6"), v6);

    // Client 1 asks for client 0's addresses: it gets others.
    Exchange other = ask(1, "request_ip=1\nipv4=" + v4 + "\nipv6=" + v6 + "\n\n");
    EXPECT_EQ(field(other.reply, "errno"), "0") << other.reply;
    EXPECT_NE(field(other.reply, "ipv4"), v4);
    EXPECT_NE(field(other.reply, "ipv6"), v6);
    EXPECT_FALSE(field(other.reply, "ipv4").empty());
    // An address outside every pool: a random one from the pool instead.
    Exchange outside = ask(1, "request_ip=1\nipv4=192.0.2.7/32\n\n");
    std::string got = field(outside.reply, "ipv4");
    ASSERT_FALSE(got.empty()) << outside.reply;
    EXPECT_TRUE((Prefix4{*parse_ip4("10.77.0.0"), 24}).contains(*parse_ip4(strip_len(got))));
    // Naming only IPv4 released client 1's IPv6 lease.
    EXPECT_EQ(field(outside.reply, "ipv6"), "");
    EXPECT_EQ(lab_->allowed_ips_of(lab_->clients[1].pubkey).find("2001:db8:77"), std::string::npos);
}

TEST_F(Server, ConnectionFromAnotherSourcePortIsClosedWithoutAnswer) {
    start_lab();
    const LabClient& c = lab_->clients[0];
    Exchange ex = exchange(c.ns, c.iface, c.lladdr, "request_ip=1\n\n", 4970, 3000);
    EXPECT_TRUE(ex.connected);
    EXPECT_TRUE(ex.closed);
    EXPECT_EQ(ex.reply, "");
    EXPECT_EQ(lab_->allowed_ips_of(c.pubkey), c.lladdr + "/128");
}

TEST_F(Server, MalformedRequestGetsErrnoOneAndIsClosedAndTheServerGoesOn) {
    start_lab();
    Exchange bad = ask(0, "request_ip=1\nipv4=10.77.0.5/24\n\n");
    EXPECT_EQ(field(bad.reply, "errno"), "1") << bad.reply;
    EXPECT_EQ(field(bad.reply, "errmsg"), "Invalid request");
    EXPECT_TRUE(bad.closed);
    Exchange version = ask(0, "request_ip=2\n\n");
    EXPECT_EQ(field(version.reply, "errno"), "2") << version.reply;
    EXPECT_EQ(lab_->allowed_ips_of(lab_->clients[0].pubkey), lab_->clients[0].lladdr + "/128");
    Exchange good = ask(0);
    EXPECT_EQ(field(good.reply, "errno"), "0") << good.reply;
}

TEST_F(Server, LeaseNotRenewedLeavesTheAllowedIpsAndReturnsToThePool) {
    start_lab(1, {"--leasetime", "3"});
    Exchange ex = ask(0, "request_ip=1\nipv4=0.0.0.0/32\n\n");
    std::string v4 = field(ex.reply, "ipv4");
    ASSERT_FALSE(v4.empty()) << ex.reply;
    EXPECT_EQ(field(ex.reply, "leasetime"), "3");
    const LabClient& c = lab_->clients[0];
    EXPECT_NE(lab_->allowed_ips_of(c.pubkey).find(v4), std::string::npos);
    EXPECT_TRUE(eventually(
        [&] { return lab_->allowed_ips_of(c.pubkey).find(v4) == std::string::npos; }, 8000))
        << lab_->allowed_ips_of(c.pubkey);
    Exchange again = ask(0, "request_ip=1\nipv4=0.0.0.0/32\n\n");
    EXPECT_EQ(field(again.reply, "errno"), "0") << again.reply;
}

TEST_F(Server, NewRouteGrowsThePoolAndDeletedRouteRevokesItsLeases) {
    start_lab();
    Exchange none = ask(0, "request_ip=1\nipv4=0.0.0.0/32\nipv6=::/128\n\n");
    ASSERT_FALSE(field(none.reply, "ipv4").empty()) << none.reply;
    // Remove the IPv4 pool: the lease inside is revoked.
    ASSERT_EQ(lab_->in(lab_->server_ns, "ip addr del 10.77.0.1/24 dev " + lab_->server_iface), 0);
    const LabClient& c = lab_->clients[0];
    std::string v4 = field(none.reply, "ipv4");
    EXPECT_TRUE(eventually(
        [&] { return lab_->allowed_ips_of(c.pubkey).find(v4) == std::string::npos; }, 5000));
    Exchange without = ask(0, "request_ip=1\nipv4=0.0.0.0/32\n\n");
    EXPECT_EQ(field(without.reply, "errno"), "3") << without.reply;
    EXPECT_EQ(field(without.reply, "ipv4"), "");
    // A new route over the interface is a new pool at once.
    ASSERT_EQ(lab_->in(lab_->server_ns, "ip route add 10.88.0.0/24 dev " + lab_->server_iface), 0);
    EXPECT_TRUE(eventually(
        [&] {
            Exchange ex = ask(0, "request_ip=1\nipv4=0.0.0.0/32\n\n");
            return field(ex.reply, "ipv4").rfind("10.88.0.", 0) == 0;
        },
        5000));
}

TEST_F(Server, StaticAllowedIpIsThatPeersReservationAndNeverAnothers) {
    lab_ = std::make_unique<Lab>(LabOptions{2});
    const LabClient& a = lab_->clients[0];
    // 10.77.0.0/24 with only .2 to .254 free: reserve most of it for peer a
    // except one address, so that peer b can only get that one.
    ASSERT_EQ(lab_->in(lab_->server_ns, "wg set " + lab_->server_iface + " peer " + a.pubkey +
                                            " allowed-ips " + a.lladdr + "/128,10.77.0.9/32"),
              0);
    run_ = start_server(*lab_);
    ASSERT_TRUE(wait_until_serving(*lab_));
    Exchange mine = ask(0, "request_ip=1\nipv4=10.77.0.9/32\n\n");
    EXPECT_EQ(field(mine.reply, "ipv4"), "10.77.0.9/32") << mine.reply;
    for (int i = 0; i < 20; i++) {
        Exchange other = ask(1, "request_ip=1\nipv4=10.77.0.9/32\n\n");
        ASSERT_NE(field(other.reply, "ipv4"), "10.77.0.9/32");
    }
    // The reservation is not a lease: it stays in a's allowed IPs whatever a asks.
    ask(0, "request_ip=1\nipv6=::/128\n\n");
    EXPECT_NE(lab_->allowed_ips_of(a.pubkey).find("10.77.0.9/32"), std::string::npos);
}

TEST_F(Server, RestartRestoresEveryLeaseWithTheSameAddresses) {
    start_lab(2);
    Exchange a = ask(0), b = ask(1);
    ASSERT_EQ(field(a.reply, "errno"), "0");
    ASSERT_EQ(field(b.reply, "errno"), "0");
    kill(run_.pid, SIGTERM);
    int status = wait_exit(run_.pid, 5000);
    ASSERT_TRUE(WIFEXITED(status)) << status;
    EXPECT_EQ(WEXITSTATUS(status), 0);
    // Leases stay in WireGuard while the server is away.
    EXPECT_NE(lab_->allowed_ips_of(lab_->clients[0].pubkey).find(field(a.reply, "ipv4")),
              std::string::npos);
    run_ = start_server(*lab_);
    ASSERT_TRUE(wait_until_serving(*lab_));
    for (auto [i, ex] : {std::pair{0, a}, std::pair{1, b}}) {
        Exchange renew = ask(i, "request_ip=1\nipv4=" + field(ex.reply, "ipv4") +
                                    "\nipv6=" + field(ex.reply, "ipv6") + "\n\n");
        EXPECT_EQ(field(renew.reply, "ipv4"), field(ex.reply, "ipv4"));
        EXPECT_EQ(field(renew.reply, "ipv6"), field(ex.reply, "ipv6"));
        Exchange any = ask(i);
        EXPECT_EQ(field(any.reply, "ipv4"), field(ex.reply, "ipv4"));
    }
}

TEST_F(Server, ThreeProcessesAreSandboxedAsDesigned) {
    start_lab();
    auto children = children_of(run_.pid);
    ASSERT_EQ(children.size(), 2u);
    // protod answers (wait_until_serving) before leased may have finished
    // its set-up: give each child the time to enter its sandbox.
    for (pid_t child : children)
        EXPECT_TRUE(eventually(
            [&] {
                auto s = privsep::read_sandbox_state(child);
                return s && s->seccomp == 2;
            },
            3000))
            << child;
    auto parent = privsep::read_sandbox_state(run_.pid);
    ASSERT_TRUE(parent);
    EXPECT_TRUE(privsep::check_sandbox_state(privsep::Role::netd, *parent).has_value())
        << privsep::check_sandbox_state(privsep::Role::netd, *parent).error().message;
    EXPECT_EQ(parent->seccomp, 2);
    EXPECT_EQ(parent->no_new_privs, 1);
    EXPECT_EQ(parent->cap_eff, privsep::netd_capabilities());
    EXPECT_EQ(parent->cap_bnd, 0u);
    for (pid_t child : children) {
        auto s = privsep::read_sandbox_state(child);
        ASSERT_TRUE(s);
        EXPECT_EQ(s->seccomp, 2);
        EXPECT_EQ(s->no_new_privs, 1);
        EXPECT_EQ(s->cap_eff, 0u);
        EXPECT_EQ(s->cap_prm, 0u);
        EXPECT_EQ(s->cap_bnd, 0u);
        EXPECT_EQ(s->cap_amb, 0u);
        for (auto uid : s->uid)
            EXPECT_NE(uid, 0u);
    }
}

TEST_F(Server, KillingAChildBringsTheSuiteDownAndARestartServesAllLeases) {
    for (int victim = 0; victim < 2; victim++) {
        SCOPED_TRACE(victim);
        if (!lab_)
            start_lab();
        else {
            run_ = start_server(*lab_);
            ASSERT_TRUE(wait_until_serving(*lab_));
        }
        Exchange granted = ask(0);
        ASSERT_EQ(field(granted.reply, "errno"), "0");
        auto children = children_of(run_.pid);
        ASSERT_EQ(children.size(), 2u);
        kill(children[static_cast<std::size_t>(victim)], SIGKILL);
        int status = wait_exit(run_.pid, 1500);
        ASSERT_NE(status, -1) << "the suite did not go down within 1.5 s";
        EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
        for (pid_t child : children)
            EXPECT_TRUE(eventually([&] { return !process_alive(child); }, 1000));
        run_ = start_server(*lab_);
        ASSERT_TRUE(wait_until_serving(*lab_));
        Exchange renew = ask(0, "request_ip=1\nipv4=" + field(granted.reply, "ipv4") +
                                    "\nipv6=" + field(granted.reply, "ipv6") + "\n\n");
        EXPECT_EQ(field(renew.reply, "ipv4"), field(granted.reply, "ipv4"));
        EXPECT_EQ(field(renew.reply, "ipv6"), field(granted.reply, "ipv6"));
        kill(run_.pid, SIGTERM);
        wait_exit(run_.pid, 3000);
    }
}

TEST_F(Server, FailedPreconditionsExitOneWithAReason) {
    lab_ = std::make_unique<Lab>(LabOptions{1});
    auto run = [&](const std::string& iface) {
        return lab_->out(lab_->server_ns, binary("wg-dynamic-server") + " -f --state-dir " +
                                              lab_->state_dir + " " + iface +
                                              " 2>&1; echo exit=$?");
    };
    std::string missing = run("nosuchif0");
    EXPECT_NE(missing.find("no such interface"), std::string::npos) << missing;
    EXPECT_NE(missing.find("exit=1"), std::string::npos) << missing;
    std::string veth = run("lo");
    EXPECT_NE(veth.find("not a WireGuard interface"), std::string::npos) << veth;
    EXPECT_NE(veth.find("exit=1"), std::string::npos);
    ASSERT_EQ(lab_->in(lab_->server_ns, "ip addr del fe80::/64 dev " + lab_->server_iface), 0);
    std::string no_ll = run(lab_->server_iface);
    EXPECT_NE(no_ll.find("fe80::/64"), std::string::npos) << no_ll;
    EXPECT_NE(no_ll.find("exit=1"), std::string::npos);
}

TEST_F(Server, UnknownOrRootUserIsRefusedBeforeAnythingStarts) {
    lab_ = std::make_unique<Lab>(LabOptions{1});
    auto run = [&](const std::string& user) {
        return lab_->out(lab_->server_ns, binary("wg-dynamic-server") + " -f --user " + user +
                                              " --state-dir " + lab_->state_dir + " " +
                                              lab_->server_iface + " 2>&1; echo exit=$?");
    };
    std::string unknown = run("no-such-user-wgd");
    EXPECT_NE(unknown.find("no such user 'no-such-user-wgd'"), std::string::npos) << unknown;
    EXPECT_NE(unknown.find("exit=1"), std::string::npos);
    std::string root = run("root");
    EXPECT_NE(root.find("is root"), std::string::npos) << root;
    EXPECT_NE(root.find("exit=1"), std::string::npos);
}

// The uids of the two children, once both are in their sandbox.
std::set<uid_t> child_uids(pid_t parent) {
    std::set<uid_t> uids;
    eventually(
        [&] {
            uids.clear();
            auto children = children_of(parent);
            for (pid_t child : children) {
                auto s = privsep::read_sandbox_state(child);
                if (!s || s->seccomp != 2)
                    return false;
                uids.insert(std::begin(s->uid), std::end(s->uid));
            }
            return children.size() == 2;
        },
        3000);
    return uids;
}

uid_t uid_of(const std::string& user) {
    const passwd* pw = getpwnam(user.c_str());
    return pw ? pw->pw_uid : 0;
}

TEST_F(Server, SandboxUserIsWgDynamicWhereItExistsAndNobodyWithAWarningElsewhere) {
    lab_ = std::make_unique<Lab>(LabOptions{1});
    bool created = false;
    if (!getpwnam(kDefaultUser)) {
        // Missing: nobody, and the log says why.
        run_ = start_server(*lab_);
        ASSERT_TRUE(wait_until_serving(*lab_)) << read_file(run_.log);
        EXPECT_EQ(child_uids(run_.pid), std::set<uid_t>{uid_of(kFallbackUser)});
        EXPECT_NE(read_file(run_.log).find("user _wg-dynamic does not exist"), std::string::npos)
            << read_file(run_.log);
        kill(run_.pid, SIGTERM);
        ASSERT_EQ(wait_exit(run_.pid, 3000), 0);
        ASSERT_EQ(std::system("useradd --system --no-create-home --shell /usr/sbin/nologin "
                              "_wg-dynamic"),
                  0);
        created = true;
    }
    std::remove(run_.log.c_str());
    run_ = start_server(*lab_);
    bool serving = wait_until_serving(*lab_);
    std::set<uid_t> uids = child_uids(run_.pid);
    std::string log = read_file(run_.log);
    kill(run_.pid, SIGTERM);
    int status = wait_exit(run_.pid, 3000);
    uid_t own = uid_of(kDefaultUser);
    if (created) {
        EXPECT_EQ(std::system("userdel _wg-dynamic"), 0);
    }
    ASSERT_TRUE(serving) << log;
    EXPECT_EQ(uids, std::set<uid_t>{own});
    EXPECT_NE(own, uid_of(kFallbackUser));
    EXPECT_EQ(log.find("does not exist"), std::string::npos) << log;
    EXPECT_EQ(status, 0);
}

TEST_F(Server, PrototypeDialectIsAnsweredInThePrototypesDialect) {
    start_lab();
    // What the upstream prototype's client sends.
    Exchange ex = ask(0, "request_ip=1\nip=0.0.0.0/32\nip=::/128\nleasestart=0\nleasetime=0\n\n");
    ASSERT_TRUE(ex.connected);
    EXPECT_EQ(ex.reply.find("request_ip="), std::string::npos) << ex.reply;
    EXPECT_EQ(ex.reply.find("ipv4="), std::string::npos) << ex.reply;
    EXPECT_EQ(field(ex.reply, "errno"), "0") << ex.reply;
    std::size_t first = ex.reply.find("ip=");
    ASSERT_NE(first, std::string::npos) << ex.reply;
    EXPECT_NE(ex.reply.find("ip=", first + 1), std::string::npos) << "one ip= per family\n"
                                                                  << ex.reply;
    EXPECT_NE(ex.reply.find("/32\n"), std::string::npos);
    EXPECT_NE(ex.reply.find("/128\n"), std::string::npos);
    // Mixing the dialects is invalid.
    Exchange mixed = ask(0, "request_ip=1\nip=0.0.0.0/32\nipv6=::/128\n\n");
    EXPECT_EQ(field(mixed.reply, "errno"), "1") << mixed.reply;
}
