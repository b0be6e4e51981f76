// What operators of real gateways and peers rely on, over real WireGuard
// (wireguard-go in namespaces): the client leaves the interface's routes as
// it found them, leases that expired while the server was stopped go back to
// the pool, wide routes are pools of usable addresses, SIGHUP, --check.
#include "tests/system/background.hpp"
#include "tests/system/change_budget.hpp"
#include "tests/system/suite.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

using namespace wgd::lab;

namespace {

// The global IPv4 and IPv6 addresses on an interface, without their length.
struct Addrs {
    std::string v4, v6;
};

Addrs addrs_on(Lab& lab, const std::string& ns, const std::string& iface) {
    Addrs a;
    std::string text = lab.out(ns, "ip -o addr show dev " + iface);
    std::smatch m;
    static const std::regex v4(R"(inet ([0-9.]+)/)"), v6(R"(inet6 ([0-9a-f:]+)/\d+ scope global)");
    if (std::regex_search(text, m, v4))
        a.v4 = m[1];
    if (std::regex_search(text, m, v6))
        a.v6 = m[1];
    return a;
}

class Deployment : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!running_as_root())
            GTEST_SKIP() << "system tests need root (network namespaces, wireguard-go)";
    }
    void TearDown() override {
        if (HasFailure() && lab_) {
            std::cerr << "---- server log\n" << read_file(server_.log) << "----\n";
            for (auto& log : client_logs_)
                std::cerr << "---- " << log << "\n" << read_file(log) << "----\n";
        }
    }
    void make_lab(int clients = 1) { lab_ = std::make_unique<Lab>(LabOptions{clients}); }
    void serve(std::vector<std::string> args = {}) {
        server_ = start_server(*lab_, args);
        ASSERT_TRUE(wait_until_serving(*lab_)) << read_file(server_.log);
    }
    void stop_server() {
        kill(server_.pid, SIGTERM);
        int status = wait_exit(server_.pid, 8000);
        ASSERT_TRUE(WIFEXITED(status)) << status;
        EXPECT_EQ(WEXITSTATUS(status), 0);
    }
    pid_t start_client(int i = 0) {
        const LabClient& c = client(i);
        std::string log = lab_->state_dir + "/client" + std::to_string(i) + "-" +
                          std::to_string(client_logs_.size()) + ".log";
        client_logs_.push_back(log);
        return lab_->start(c.ns, binary("wg-dynamic-client"), {"-f", "-v", c.iface}, log);
    }
    void stop_client(pid_t pid) {
        kill(pid, SIGTERM);
        int status = wait_exit(pid, 8000);
        ASSERT_TRUE(WIFEXITED(status)) << status;
        EXPECT_EQ(WEXITSTATUS(status), 0);
    }
    const LabClient& client(int i = 0) const {
        return lab_->clients.at(static_cast<std::size_t>(i));
    }
    Addrs client_addrs(int i = 0) { return addrs_on(*lab_, client(i).ns, client(i).iface); }
    // Waits for an IPv4 lease on client i (other than `not_this`).
    std::string wait_v4(int i = 0, const std::string& not_this = "", int timeout_ms = 10000) {
        std::string got;
        eventually(
            [&] {
                got = client_addrs(i).v4;
                return !got.empty() && got != not_this;
            },
            timeout_ms);
        return got != not_this ? got : "";
    }

    std::unique_ptr<Lab> lab_;
    ServerRun server_;
    std::vector<std::string> client_logs_;
};

// ---- the client leaves the interface's routes as it found them

class ClientRoutes : public Deployment {
  protected:
    // An operator's routes through the client's interface, before any
    // address is on it: a prefix of the main table, a route through a
    // gateway with a metric, and wg-quick's full-tunnel default route in a
    // table of its own.
    void add_operator_routes() {
        const LabClient& c = client();
        ASSERT_EQ(lab_->in(c.ns, "ip route add 10.77.0.0/24 dev " + c.iface), 0);
        ASSERT_EQ(
            lab_->in(c.ns, "ip route add 10.99.0.0/16 via 10.77.0.1 dev " + c.iface + " metric 7"),
            0);
        ASSERT_EQ(lab_->in(c.ns, "ip route add default dev " + c.iface + " table 51820"), 0);
        routes_before_ = routes();
        ASSERT_NE(routes_before_.find("10.77.0.0/24 scope link"), std::string::npos)
            << routes_before_;
        ASSERT_NE(routes_before_.find("10.99.0.0/16 via 10.77.0.1 metric 7"), std::string::npos);
        ASSERT_NE(routes_before_.find("default table 51820"), std::string::npos);
    }
    // Every IPv4 route through the interface, in every table, one a line,
    // without the preferred source (it follows the address of the moment).
    std::string routes() {
        const LabClient& c = client();
        return lab_->out(
            c.ns, "ip -4 route show table all dev " + c.iface +
                      " | grep -v -e ^local -e ^broadcast | sed -e \"s/ src [0-9.]*//\" | sort");
    }
    void expect_routes_as_before(const char* when) { EXPECT_EQ(routes(), routes_before_) << when; }
    // The gateway answers over IPv4 from the leased address, through the tunnel.
    bool gateway_answers(const std::string& v4) {
        return lab_->in(client().ns, "ping -c 1 -W 3 -I " + v4 + " 10.77.0.1 >/dev/null") == 0;
    }
    std::string routes_before_;
};

TEST_F(ClientRoutes, StopAndRestartKeepEveryRouteInEveryTableAndTheGatewayAnswers) {
    make_lab();
    serve();
    add_operator_routes();
    pid_t cl = start_client();
    std::string v4 = wait_v4();
    ASSERT_FALSE(v4.empty());
    expect_routes_as_before("with a lease");
    EXPECT_TRUE(gateway_answers(v4));
    stop_client(cl);
    ASSERT_EQ(client_addrs().v4, "") << "the stop removed the lease's /32";
    expect_routes_as_before("after the stop (no IPv4 address left on the interface)");
    cl = start_client();
    v4 = wait_v4();
    ASSERT_FALSE(v4.empty());
    expect_routes_as_before("after the restart");
    EXPECT_TRUE(gateway_answers(v4)) << "the restarted client reaches the gateway over IPv4";
    stop_client(cl);
    expect_routes_as_before("after the second stop");
}

TEST_F(ClientRoutes, ReplacementAndExpiryKeepEveryRouteAndANewLeaseReachesTheGateway) {
    make_lab();
    serve({"--leasetime", "4"});
    add_operator_routes();
    pid_t cl = start_client();
    std::string first = wait_v4();
    ASSERT_FALSE(first.empty());

    // Replacement: the server forgets the lease and its first address
    // becomes the gateway's own, so the next renewal grants another one.
    stop_server();
    const std::string peer = client().pubkey;
    ASSERT_EQ(lab_->in(lab_->server_ns, "wg set " + lab_->server_iface + " peer " + peer +
                                            " allowed-ips " + client().lladdr + "/128"),
              0);
    ASSERT_EQ(lab_->in(lab_->server_ns,
                       "rm -f " + lab_->state_dir + "/" + lab_->server_iface + ".leases.*"),
              0);
    ASSERT_EQ(lab_->in(lab_->server_ns, "ip addr add " + first + "/32 dev " + lab_->server_iface),
              0);
    serve({"--leasetime", "4"});
    std::string second = wait_v4(0, first);
    ASSERT_FALSE(second.empty()) << "no replacement of " << first;
    EXPECT_EQ(client_addrs().v4, second) << "the old address left after the new one came";
    expect_routes_as_before("after a replacement");
    EXPECT_TRUE(gateway_answers(second));

    // Expiry: the server stops; the lease runs out on the client.
    stop_server();
    ASSERT_TRUE(eventually([&] { return client_addrs().v4.empty(); }, 10000))
        << "the lease did not expire";
    expect_routes_as_before("after the lease expired");
    serve({"--leasetime", "4"});
    std::string third = wait_v4(0, "", 20000);
    ASSERT_FALSE(third.empty());
    expect_routes_as_before("after a new lease");
    EXPECT_TRUE(gateway_answers(third)) << "a new lease after an expiry reaches the gateway";
    stop_client(cl);
    expect_routes_as_before("after the stop");
}

// ---- leases that end while the server is stopped

// A lease granted by one exchange (no client daemon renews it).
struct Granted {
    std::string v4, v6;
};
Granted grant_once(Lab& lab) {
    Exchange ex = request(lab, 0);
    return {field(ex.reply, "ipv4"), field(ex.reply, "ipv6")};
}

TEST_F(Deployment, LeaseThatExpiredWhileTheServerWasStoppedLeavesAllowedIpsAtStart) {
    make_lab();
    serve({"--leasetime", "2"});
    Granted g = grant_once(*lab_);
    ASSERT_FALSE(g.v4.empty());
    ASSERT_FALSE(g.v6.empty());
    const std::string peer = client().pubkey;
    ASSERT_NE(lab_->allowed_ips_of(peer).find(g.v4), std::string::npos);
    stop_server();
    // WireGuard keeps the allowed IPs while the server is away.
    EXPECT_NE(lab_->allowed_ips_of(peer).find(g.v4), std::string::npos);
    std::this_thread::sleep_for(std::chrono::milliseconds(3000)); // longer than the lease
    serve({"--leasetime", "2"});
    const std::string only_link_local = client().lladdr + "/128";
    EXPECT_TRUE(eventually([&] { return lab_->allowed_ips_of(peer) == only_link_local; }, 5000))
        << "still: " << lab_->allowed_ips_of(peer);
    // Not a reservation: the file says released, and the server stays up.
    EXPECT_TRUE(process_alive(server_.pid));
}

// A list of allowed IPs as Lab::allowed_ips_of writes it (space separated,
// sorted), without the entries `gone`.
std::string without(const std::string& ips, const std::vector<std::string>& gone) {
    std::istringstream words(ips);
    std::vector<std::string> kept;
    for (std::string w; words >> w;)
        if (std::find(gone.begin(), gone.end(), w) == gone.end())
            kept.push_back(w);
    std::sort(kept.begin(), kept.end());
    std::string out;
    for (const std::string& w : kept)
        out += (out.empty() ? "" : " ") + w;
    return out;
}

// A lease whose route was deleted while the server was stopped is outside
// every pool at the next start: it leaves its peer's allowed IPs then, each
// family on its own, while the peers' static allowed IPs (inside the pool
// that went, outside every pool, wider prefixes) stay, and nothing of it
// becomes a reservation. When the routes come back, the pools serve again.
TEST_F(Deployment, LeaseWhoseRouteWasRemovedWhileTheServerWasStoppedLeavesAllowedIpsAtStart) {
    make_lab(2);
    const LabClient &a = client(0), &b = client(1);
    const std::string& srv = lab_->server_ns;
    const std::string& iface = lab_->server_iface;
    // Peer a: statics outside every pool; peer b: a reservation in 10.77.0.0/24.
    ASSERT_EQ(lab_->in(srv, "wg set " + iface + " peer " + a.pubkey + " allowed-ips " + a.lladdr +
                                "/128,192.0.2.7/32,2001:db8:99::7/128,10.99.0.0/24"),
              0);
    ASSERT_EQ(lab_->in(srv, "wg set " + iface + " peer " + b.pubkey + " allowed-ips " + b.lladdr +
                                "/128,10.77.0.5/32"),
              0);
    // The first start waits for both tunnels' first handshakes too (slow on
    // a loaded machine); the later starts find them up.
    server_ = start_server(*lab_);
    ASSERT_TRUE(wait_until_serving(*lab_, 0, 30000)) << read_file(server_.log);
    ASSERT_TRUE(wait_until_serving(*lab_, 1, 30000)) << read_file(server_.log);
    Exchange ga = request(*lab_, 0), gb = request(*lab_, 1);
    const std::string v4a = field(ga.reply, "ipv4"), v6a = field(ga.reply, "ipv6");
    const std::string v6b = field(gb.reply, "ipv6");
    ASSERT_EQ(field(ga.reply, "errno"), "0") << ga.reply;
    ASSERT_EQ(field(gb.reply, "ipv4"), "10.77.0.5/32") << gb.reply; // the reservation
    ASSERT_FALSE(v4a.empty());
    ASSERT_FALSE(v6a.empty());
    ASSERT_FALSE(v6b.empty());
    const std::string a_before = lab_->allowed_ips_of(a.pubkey);
    const std::string b_before = lab_->allowed_ips_of(b.pubkey);
    ASSERT_NE(a_before.find(v4a), std::string::npos) << a_before;
    ASSERT_NE(b_before.find(v6b), std::string::npos) << b_before;
    // show lists the leases and, as "reserved", the peers' static host
    // addresses: an address gone from it is neither.
    auto show = [&] { return sh_out(binary("wg-dynamic-server") + " show " + iface + " 2>&1"); };

    // The IPv4 route goes while the server is stopped; the IPv6 leases stay.
    stop_server();
    ASSERT_EQ(lab_->in(srv, "ip route del 10.77.0.0/24 dev " + iface), 0);
    serve();
    const std::string a_v6_only = without(a_before, {v4a});
    EXPECT_TRUE(eventually([&] { return lab_->allowed_ips_of(a.pubkey) == a_v6_only; }, 5000))
        << "peer a: " << lab_->allowed_ips_of(a.pubkey) << ", expected " << a_v6_only;
    EXPECT_EQ(lab_->allowed_ips_of(b.pubkey), b_before) << "the reservation outside the pool now";
    std::string live = show();
    EXPECT_EQ(live.find(v4a), std::string::npos) << live;
    EXPECT_NE(live.find(v6a), std::string::npos) << live;
    EXPECT_NE(live.find(v6b), std::string::npos) << live;

    // Then the IPv6 route: the restored IPv6 leases go at the next start.
    stop_server();
    ASSERT_EQ(lab_->in(srv, "ip -6 route del 2001:db8:77::/64 dev " + iface), 0);
    serve();
    const std::string a_statics = without(a_before, {v4a, v6a});
    const std::string b_statics = without(b_before, {v6b});
    EXPECT_TRUE(eventually([&] { return lab_->allowed_ips_of(a.pubkey) == a_statics; }, 5000))
        << "peer a: " << lab_->allowed_ips_of(a.pubkey) << ", expected " << a_statics;
    EXPECT_TRUE(eventually([&] { return lab_->allowed_ips_of(b.pubkey) == b_statics; }, 5000))
        << "peer b: " << lab_->allowed_ips_of(b.pubkey) << ", expected " << b_statics;
    EXPECT_EQ(a_statics,
              without("10.99.0.0/24 192.0.2.7/32 2001:db8:99::7/128 " + a.lladdr + "/128", {}));
    EXPECT_EQ(b_statics, without("10.77.0.5/32 " + b.lladdr + "/128", {}));
    live = show();
    for (const std::string& gone : {v4a, v6a, v6b})
        EXPECT_EQ(live.find(gone), std::string::npos) << gone << " in\n" << live;
    stop_server();
    const std::string offline = sh_out(binary("wg-dynamic-server") + " show " + iface +
                                       " --state-dir " + lab_->state_dir + " 2>/dev/null");
    for (const std::string& gone : {v4a, v6a, v6b})
        EXPECT_EQ(offline.find(gone), std::string::npos) << gone << " in\n" << offline;
    // Every claim taken; each one outside the pools logged for the operator.
    const std::string log = read_file(server_.log);
    EXPECT_EQ(log.find("not taken"), std::string::npos) << log;
    for (auto [gone, key] : {std::pair{v4a, a.pubkey}, {v6a, a.pubkey}, {v6b, b.pubkey}})
        EXPECT_NE(log.find("lease claim of " + gone.substr(0, gone.find('/')) + " for peer " + key +
                           ": outside every pool, taken for its removal only"),
                  std::string::npos)
            << gone << "\n"
            << log;
    EXPECT_EQ(log.find("refused change"), std::string::npos) << log;

    // The routes come back while the server runs: both pools serve again,
    // and the reservation is b's again.
    serve();
    ASSERT_EQ(lab_->in(srv, "ip route add 10.77.0.0/24 dev " + iface), 0);
    ASSERT_EQ(lab_->in(srv, "ip -6 route add 2001:db8:77::/64 dev " + iface), 0);
    Exchange again;
    EXPECT_TRUE(eventually(
        [&] {
            again = request(*lab_, 0);
            return field(again.reply, "errno") == "0" &&
                   field(again.reply, "ipv4").rfind("10.77.0.", 0) == 0 &&
                   field(again.reply, "ipv6").rfind("2001:db8:77:", 0) == 0;
        },
        5000))
        << again.reply;
    EXPECT_EQ(lab_->allowed_ips_of(a.pubkey), without(a_statics + " " + field(again.reply, "ipv4") +
                                                          " " + field(again.reply, "ipv6"),
                                                      {}))
        << "the new leases beside a's statics";
    Exchange b_again = request(*lab_, 1, "request_ip=1\nipv4=0.0.0.0/32\n\n");
    EXPECT_EQ(field(b_again.reply, "ipv4"), "10.77.0.5/32") << b_again.reply;
    EXPECT_EQ(lab_->allowed_ips_of(b.pubkey), b_statics);
}

// ---- pools as wide as a default route

// On one connection from client 0: `rounds` times, a grant of any IPv4
// address and then a request for IPv6 only, which releases it, so that each
// round draws a fresh IPv4 address. Returns "granted distinct refused", or
// an error text.
std::string draw_many(Lab& lab, int rounds, std::vector<std::string>& addresses) {
    const LabClient& c = lab.clients.at(0);
    Background work(c.ns, [&]() -> std::string {
        int fd = connect_from(c.iface, c.lladdr, 970, false);
        if (fd < 0)
            return "connect failed";
        timeval tv{5, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        std::string pending, out;
        auto ask = [&](const std::string& req) -> std::string {
            if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size()))
                return "";
            for (;;) {
                if (auto end = pending.find("\n\n"); end != std::string::npos) {
                    std::string message = pending.substr(0, end + 2);
                    pending.erase(0, end + 2);
                    return message;
                }
                char buf[1024];
                ssize_t n = recv(fd, buf, sizeof buf, 0);
                if (n <= 0)
                    return "";
                pending.append(buf, static_cast<std::size_t>(n));
            }
        };
        for (int i = 0; i < rounds; i++) {
            std::string grant = ask("request_ip=1\nipv4=0.0.0.0/32\n\n");
            std::string release = ask("request_ip=1\nipv6=::/128\n\n");
            if (grant.empty() || release.empty())
                break;
            out += "errno=" + field(grant, "errno") + " ipv4=" + field(grant, "ipv4") + "\n";
        }
        close(fd);
        return out;
    });
    std::string result = work.wait();
    int granted = 0, refused = 0;
    std::set<std::string> distinct;
    std::smatch m;
    static const std::regex line(R"(errno=(\d+) ipv4=(\S*))");
    for (auto it = std::sregex_iterator(result.begin(), result.end(), line);
         it != std::sregex_iterator(); ++it) {
        if ((*it)[1] == "0" && !(*it)[2].str().empty()) {
            granted++;
            distinct.insert((*it)[2]);
            addresses.push_back((*it)[2]);
        } else {
            refused++;
        }
    }
    return std::to_string(granted) + " " + std::to_string(distinct.size()) + " " +
           std::to_string(refused);
}

bool in_prefix(const std::string& text, const char* net, unsigned len) {
    in_addr a{}, n{};
    if (inet_pton(AF_INET, text.c_str(), &a) != 1 || inet_pton(AF_INET, net, &n) != 1)
        return false;
    std::uint32_t mask = len == 0 ? 0 : ~std::uint32_t{0} << (32 - len);
    return (ntohl(a.s_addr) & mask) == (ntohl(n.s_addr) & mask);
}

TEST_F(Deployment, DefaultRouteIsAPoolOfUsableAddressesEveryDrawGranted) {
    UnlimitedChangeBudget unlimited; // 300 draws from one peer
    make_lab();
    // The gateway routes all of IPv4 into the tunnel; its own /24 stays.
    ASSERT_EQ(lab_->in(lab_->server_ns, "ip route add 0.0.0.0/0 dev " + lab_->server_iface), 0);
    serve();
    constexpr int kRounds = 300;
    std::vector<std::string> addresses;
    std::string summary = draw_many(*lab_, kRounds, addresses);
    EXPECT_EQ(summary, std::to_string(kRounds) + " " + std::to_string(kRounds) + " 0")
        << "granted distinct refused; with the addresses no host can have in the pool, about "
           "one draw in eight was refused";
    for (const std::string& a : addresses) {
        for (auto [net, len] : std::vector<std::pair<const char*, unsigned>>{{"0.0.0.0", 8},
                                                                             {"127.0.0.0", 8},
                                                                             {"169.254.0.0", 16},
                                                                             {"224.0.0.0", 4},
                                                                             {"240.0.0.0", 4}})
            EXPECT_FALSE(in_prefix(a, net, len)) << a << " is in " << net << "/" << len;
        EXPECT_NE(a, "10.77.0.1") << "the gateway's own address";
    }
    // Spread over all of IPv4, not stuck in the /24 (300 draws from 3.7e9).
    const auto outside =
        std::count_if(addresses.begin(), addresses.end(),
                      [](const std::string& a) { return !in_prefix(a, "10.77.0.0", 24); });
    EXPECT_GE(outside, kRounds - 5);
}

// ---- protocol details (SPEC "Response")

TEST_F(Deployment, FamilyWithoutAnyPoolIsLeftOutOfTheGrantWithErrnoZero) {
    make_lab();
    ASSERT_EQ(lab_->in(lab_->server_ns, "ip addr del 2001:db8:77::1/64 dev " + lab_->server_iface),
              0);
    serve();
    for (int i = 0; i < 2; i++) { // the grant, then a renewal naming both again
        Exchange ex = request(*lab_, 0, "request_ip=1\nipv4=0.0.0.0/32\nipv6=::/128\n\n");
        EXPECT_EQ(field(ex.reply, "errno"), "0") << ex.reply;
        EXPECT_NE(field(ex.reply, "ipv4"), "") << ex.reply;
        EXPECT_EQ(field(ex.reply, "ipv6"), "") << ex.reply;
        EXPECT_EQ(field(ex.reply, "errmsg"), "") << ex.reply;
    }
}

TEST_F(Deployment, ErrorsToARequestInTheIpDialectAreWrittenInThatDialect) {
    make_lab();
    serve();
    Exchange bad = request(*lab_, 0, "request_ip=1\nip=10.77.0.5/24\n\n");
    EXPECT_TRUE(bad.closed);
    EXPECT_EQ(bad.reply, "errno=1\nerrmsg=Invalid request\n\n");
    Exchange modern = request(*lab_, 0, "request_ip=1\nipv4=10.77.0.5/24\n\n");
    EXPECT_EQ(modern.reply, "request_ip=1\nerrno=1\nerrmsg=Invalid request\n\n");
}

// WireGuard drops what a peer sends from outside its allowed IPs, so a
// source that is not a peer can only be local to the gateway: a link-local
// address of its own interface, port 970, delivered by the kernel.
TEST_F(Deployment, ASourceThatIsNotAPeerGetsNoAnswerEvenToAnInvalidRequest) {
    make_lab();
    serve();
    ASSERT_EQ(
        lab_->in(lab_->server_ns, "ip addr add fe80::5/128 dev " + lab_->server_iface + " nodad"),
        0);
    for (const char* body : {"request_ip=1\nipv4=10.77.0.5/24\n\n", "request_ip=9\n\n",
                             "GET / HTTP/1.1\r\n\r\n", "request_ip=1\n\n"}) {
        Exchange ex = exchange(lab_->server_ns, lab_->server_iface, "fe80::5", body);
        EXPECT_TRUE(ex.connected) << ex.error;
        EXPECT_TRUE(ex.closed) << body;
        EXPECT_EQ(ex.reply, "") << body;
    }
    // The peer still gets its error.
    Exchange peer = request(*lab_, 0, "request_ip=9\n\n");
    EXPECT_EQ(field(peer.reply, "errno"), "2") << peer.reply;
}

// ---- signals and stops

TEST_F(Deployment, SighupNeverStopsTheServerItRereadsAndLogsOneStatusLine) {
    make_lab();
    serve();
    Granted g = grant_once(*lab_);
    ASSERT_FALSE(g.v4.empty());
    // A peer and a pool the server has not heard of yet.
    ASSERT_EQ(lab_->in(lab_->server_ns, "wg set " + lab_->server_iface +
                                            " peer $(wg genkey | wg pubkey)"
                                            " allowed-ips fe80::4321/128"),
              0);
    ASSERT_EQ(kill(server_.pid, SIGHUP), 0);
    EXPECT_TRUE(eventually(
        [&] {
            return read_file(server_.log)
                       .find("status: 2 peers, pools 10.77.0.0/24 "
                             "2001:db8:77::/64, 2 leases (1 IPv4, 1 IPv6)") != std::string::npos;
        },
        5000))
        << read_file(server_.log);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_TRUE(process_alive(server_.pid));
    Granted again = grant_once(*lab_);
    EXPECT_EQ(again.v4, g.v4) << "nothing lost";
    EXPECT_EQ(again.v6, g.v6);
    stop_server();
}

TEST_F(Deployment, SighupNeverStopsTheClientItRenewsAtOnce) {
    make_lab();
    serve();
    pid_t cl = start_client();
    std::string v4 = wait_v4();
    ASSERT_FALSE(v4.empty());
    const std::string log = client_logs_.back();
    auto grants = [&] {
        std::string text = read_file(log);
        std::size_t n = 0;
        for (std::size_t at = 0; (at = text.find("leased: lease ", at)) != std::string::npos; at++)
            n++;
        return n;
    };
    ASSERT_TRUE(eventually([&] { return grants() == 1; }, 3000));
    ASSERT_EQ(kill(cl, SIGHUP), 0);
    EXPECT_TRUE(eventually([&] { return grants() == 2; }, 5000)) << read_file(log);
    EXPECT_TRUE(process_alive(cl));
    EXPECT_EQ(client_addrs().v4, v4);
    stop_client(cl);
}

TEST_F(Deployment, CleanStopsLogNoChildExitAsAnError) {
    make_lab();
    serve();
    pid_t cl = start_client();
    ASSERT_FALSE(wait_v4().empty());
    stop_client(cl);
    stop_server();
    for (const std::string& log : {server_.log, client_logs_.back()}) {
        std::string text = read_file(log);
        EXPECT_EQ(text.find("exited with status"), std::string::npos) << text;
        EXPECT_EQ(text.find("is gone"), std::string::npos) << text;
        EXPECT_NE(text.find("leased stopped"), std::string::npos) << text;
    }
}

// ---- small truths

TEST_F(Deployment, RunAsAUserOtherThanRootTheDaemonsSayTheyNeedRoot) {
    make_lab();
    for (const char* daemon : {"wg-dynamic-server", "wg-dynamic-client"}) {
        const std::string& iface =
            std::string(daemon) == "wg-dynamic-server" ? lab_->server_iface : client().iface;
        const std::string& ns =
            std::string(daemon) == "wg-dynamic-server" ? lab_->server_ns : client().ns;
        std::string out = lab_->out(ns, "setpriv --reuid=nobody --regid=nogroup --clear-groups " +
                                            binary(daemon) + " -f --user nobody " + iface +
                                            " 2>&1; echo exit=$?");
        EXPECT_NE(out.find("must be run as root"), std::string::npos) << out;
        EXPECT_EQ(out.find("not a WireGuard interface"), std::string::npos) << out;
        EXPECT_NE(out.find("exit=1"), std::string::npos) << out;
        EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 2) << "one line, then exit=1: " << out;
    }
}

// ---- --check: preconditions, what would be served, nothing written

TEST_F(Deployment, ServerCheckPassesPrintsWhatWouldBeServedAndWritesNothing) {
    make_lab();
    const std::string dir = lab_->state_dir + "/not-yet";
    const std::string before = lab_->server_allowed_ips();
    std::string out = lab_->out(
        lab_->server_ns, binary("wg-dynamic-server") + " --check --user nobody --state-dir " + dir +
                             " " + lab_->server_iface + " 2>&1; echo exit=$?");
    EXPECT_NE(out.find("check passed"), std::string::npos) << out;
    EXPECT_NE(out.find("backend: uapi"), std::string::npos) << out;
    EXPECT_NE(out.find("peers: 1 with a link-local identity"), std::string::npos) << out;
    EXPECT_NE(out.find(client().pubkey + " " + client().lladdr), std::string::npos) << out;
    EXPECT_NE(out.find("pools: 10.77.0.0/24 2001:db8:77::/64"), std::string::npos) << out;
    EXPECT_NE(out.find(dir + "/" + lab_->server_iface + ".leases.0"), std::string::npos) << out;
    EXPECT_NE(out.find("exit=0"), std::string::npos) << out;
    EXPECT_NE(lab_->in(lab_->server_ns, "test -e " + dir), 0) << "no state directory made";
    EXPECT_NE(lab_->in(lab_->server_ns, "test -e /run/wg-dynamic/" + lab_->server_iface + ".sock"),
              0)
        << "no control socket made";
    EXPECT_EQ(lab_->server_allowed_ips(), before);
    EXPECT_EQ(lab_->out(lab_->server_ns, "ss -Htan \"sport = :970\""), "") << "no socket left";
    // A server can start right after (the check left nothing behind).
    serve({"--state-dir", dir});
}

TEST_F(Deployment, ServerCheckFailsWithOneLineReasonsAndWritesNothing) {
    make_lab();
    auto check = [&](const std::string& args) {
        return lab_->out(lab_->server_ns,
                         binary("wg-dynamic-server") + " --check --user nobody --state-dir " +
                             lab_->state_dir + "/never " + args + " 2>&1; echo exit=$?");
    };
    auto one_line_exit_1 = [](const std::string& out, const char* reason) {
        EXPECT_NE(out.find(reason), std::string::npos) << out;
        EXPECT_NE(out.find("exit=1"), std::string::npos) << out;
        EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 2) << out;
    };
    one_line_exit_1(check("nosuchif0"), "no such interface");
    one_line_exit_1(check("lo"), "is not a WireGuard interface");
    // A server running on the interface holds port 970: a check says so.
    serve();
    one_line_exit_1(check(lab_->server_iface), "970");
    stop_server();
    ASSERT_EQ(lab_->in(lab_->server_ns, "ip addr del fe80::/64 dev " + lab_->server_iface), 0);
    one_line_exit_1(check(lab_->server_iface), "does not carry fe80::/64");
    EXPECT_NE(lab_->in(lab_->server_ns, "test -e " + lab_->state_dir + "/never"), 0);
}

TEST_F(Deployment, FailedStartLeavesNoStateDirectoryOrLeaseFilesBehind) {
    make_lab();
    serve();
    // A second server on the same interface cannot have port 970.
    const std::string dir = lab_->state_dir + "/second";
    std::string out =
        lab_->out(lab_->server_ns, binary("wg-dynamic-server") + " -f --user nobody --state-dir " +
                                       dir + " " + lab_->server_iface + " 2>&1; echo exit=$?");
    EXPECT_NE(out.find("970"), std::string::npos) << out;
    EXPECT_NE(out.find("exit=1"), std::string::npos) << out;
    EXPECT_NE(lab_->in(lab_->server_ns, "test -e " + dir), 0) << "nothing created";
    EXPECT_TRUE(process_alive(server_.pid));
}

TEST_F(Deployment, ClientCheckPassesOrFailsAndChangesNothing) {
    make_lab();
    const LabClient& c = client();
    auto check = [&] {
        return lab_->out(c.ns, binary("wg-dynamic-client") + " --check --user nobody " + c.iface +
                                   " 2>&1; echo exit=$?");
    };
    std::string before = lab_->out(c.ns, "ip addr show dev " + c.iface);
    std::string out = check();
    EXPECT_NE(out.find("check passed"), std::string::npos) << out;
    EXPECT_NE(out.find("link-local address: " + c.lladdr), std::string::npos) << out;
    EXPECT_NE(out.find("server peer: " + lab_->server_pubkey), std::string::npos) << out;
    EXPECT_NE(out.find("would ask for: any IPv4 address, any IPv6 address"), std::string::npos)
        << out;
    EXPECT_NE(out.find("exit=0"), std::string::npos) << out;
    ASSERT_EQ(lab_->in(c.ns, "ip addr add 10.77.0.44/32 dev " + c.iface), 0);
    out = check();
    EXPECT_NE(out.find("would ask for: 10.77.0.44/32 (already on the interface)"),
              std::string::npos)
        << out;
    ASSERT_EQ(lab_->in(c.ns, "ip addr del 10.77.0.44/32 dev " + c.iface), 0);
    EXPECT_EQ(lab_->out(c.ns, "ip addr show dev " + c.iface), before) << "nothing changed";
    ASSERT_EQ(lab_->in(c.ns, "ip addr del " + c.lladdr + "/128 dev " + c.iface), 0);
    out = check();
    EXPECT_NE(out.find("no link-local address"), std::string::npos) << out;
    EXPECT_NE(out.find("exit=1"), std::string::npos) << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 2) << out;
}

} // namespace
