// wg-dynamic-client end to end: the real client suite against the real
// server suite (and against a fake server), over wireguard-go.
#include "common/addr.hpp"
#include "privsep/sandbox.hpp"
#include "tests/system/suite.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <iostream>
#include <regex>

using namespace wgd;
using namespace wgd::lab;

namespace {

struct ClientAddrs {
    std::string v4, v6; // with their prefix length, as `ip addr` prints them
};

// The global addresses on a client interface.
ClientAddrs addresses_on(Lab& lab, const LabClient& c) {
    ClientAddrs a;
    std::string text = lab.out(c.ns, "ip -o addr show dev " + c.iface);
    std::smatch m;
    std::regex v4(R"(inet (\S+))"), v6(R"(inet6 (\S+) scope global)");
    if (std::regex_search(text, m, v4))
        a.v4 = m[1];
    if (std::regex_search(text, m, v6))
        a.v6 = m[1];
    return a;
}

class Client : public ::testing::Test {
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
    void start_lab(int clients, std::vector<std::string> server_args = {}) {
        lab_ = std::make_unique<Lab>(LabOptions{clients});
        server_ = start_server(*lab_, server_args);
        ASSERT_TRUE(wait_until_serving(*lab_)) << read_file(server_.log);
    }
    pid_t start_client(int i) {
        const LabClient& c = lab_->clients.at(static_cast<std::size_t>(i));
        std::string log = lab_->state_dir + "/client" + std::to_string(i) + ".log";
        client_logs_.push_back(log);
        return lab_->start(c.ns, binary("wg-dynamic-client"), {"-f", "-v", c.iface}, log);
    }
    bool has_lease(int i, int timeout_ms = 8000) {
        const LabClient& c = lab_->clients.at(static_cast<std::size_t>(i));
        return eventually(
            [&] {
                ClientAddrs a = addresses_on(*lab_, c);
                return !a.v4.empty() && !a.v6.empty();
            },
            timeout_ms);
    }
    std::unique_ptr<Lab> lab_;
    ServerRun server_;
    std::vector<std::string> client_logs_;
};

} // namespace

TEST_F(Client, ObtainsBothAddressesAsHostAddressesAndTrafficCrossesTheTunnel) {
    start_lab(1);
    start_client(0);
    ASSERT_TRUE(has_lease(0));
    const LabClient& c = lab_->clients[0];
    ClientAddrs a = addresses_on(*lab_, c);
    EXPECT_NE(a.v4.find("/32"), std::string::npos) << a.v4;
    EXPECT_NE(a.v6.find("/128"), std::string::npos) << a.v6;
    EXPECT_EQ(a.v4.rfind("10.77.0.", 0), 0u);
    EXPECT_EQ(a.v6.rfind("2001:db8:77:", 0), 0u);
    // The server granted exactly these.
    std::string allowed = lab_->allowed_ips_of(c.pubkey);
    EXPECT_NE(allowed.find(a.v4), std::string::npos) << allowed;
    EXPECT_NE(allowed.find(a.v6), std::string::npos) << allowed;
    ASSERT_EQ(lab_->in(c.ns, "ip route add 10.77.0.0/24 dev " + c.iface), 0);
    ASSERT_EQ(lab_->in(c.ns, "ip route add 2001:db8:77::/64 dev " + c.iface), 0);
    std::string v4 = a.v4.substr(0, a.v4.find('/')), v6 = a.v6.substr(0, a.v6.find('/'));
    EXPECT_EQ(lab_->in(c.ns, "ping -c 1 -W 3 -I " + v4 + " 10.77.0.1 >/dev/null"), 0);
    EXPECT_EQ(lab_->in(c.ns, "ping -6 -c 1 -W 3 -I " + v6 + " 2001:db8:77::1 >/dev/null"), 0);
}

TEST_F(Client, RenewsAndKeepsTheSameAddressesForThreeLeasetimes) {
    start_lab(1, {"--leasetime", "4"});
    start_client(0);
    ASSERT_TRUE(has_lease(0));
    const LabClient& c = lab_->clients[0];
    ClientAddrs first = addresses_on(*lab_, c);
    for (int i = 0; i < 13; i++) {
        std::this_thread::sleep_for(std::chrono::seconds(1));
        ClientAddrs now = addresses_on(*lab_, c);
        ASSERT_EQ(now.v4, first.v4) << "after " << i + 1 << " s";
        ASSERT_EQ(now.v6, first.v6) << "after " << i + 1 << " s";
        ASSERT_NE(lab_->allowed_ips_of(c.pubkey).find(first.v4), std::string::npos);
    }
}

TEST_F(Client, ServerGoneAddressesExpireAndServerBackGivesALeaseAgain) {
    start_lab(1, {"--leasetime", "4"});
    start_client(0);
    ASSERT_TRUE(has_lease(0));
    const LabClient& c = lab_->clients[0];
    kill(server_.pid, SIGTERM);
    ASSERT_NE(wait_exit(server_.pid, 5000), -1);
    EXPECT_TRUE(eventually(
        [&] {
            ClientAddrs a = addresses_on(*lab_, c);
            return a.v4.empty() && a.v6.empty();
        },
        8000))
        << "the lease should expire within a leasetime of the last renewal";
    server_ = start_server(*lab_, {"--leasetime", "4"});
    // The client's backoff has grown to a few seconds by now.
    EXPECT_TRUE(has_lease(0, 20000));
}

TEST_F(Client, RestartWithinTheLeaseKeepsTheSameAddresses) {
    start_lab(1);
    pid_t client = start_client(0);
    ASSERT_TRUE(has_lease(0));
    const LabClient& c = lab_->clients[0];
    ClientAddrs before = addresses_on(*lab_, c);
    // SIGKILL: no clean-up, the addresses stay and are adopted at restart.
    kill(client, SIGKILL);
    ASSERT_NE(wait_exit(client, 3000), -1);
    start_client(0);
    std::this_thread::sleep_for(std::chrono::seconds(2));
    ClientAddrs after = addresses_on(*lab_, c);
    EXPECT_EQ(after.v4, before.v4);
    EXPECT_EQ(after.v6, before.v6);
}

TEST_F(Client, SigtermRemovesTheAddressesAndExitsZero) {
    start_lab(1);
    pid_t client = start_client(0);
    ASSERT_TRUE(has_lease(0));
    kill(client, SIGTERM);
    int status = wait_exit(client, 5000);
    ASSERT_TRUE(WIFEXITED(status)) << status;
    EXPECT_EQ(WEXITSTATUS(status), 0);
    ClientAddrs a = addresses_on(*lab_, lab_->clients[0]);
    EXPECT_EQ(a.v4, "");
    EXPECT_EQ(a.v6, "");
}

TEST_F(Client, InterfaceDeletedExitsZero) {
    start_lab(1);
    pid_t client = start_client(0);
    ASSERT_TRUE(has_lease(0));
    const LabClient& c = lab_->clients[0];
    ASSERT_EQ(lab_->in(c.ns, "ip link del " + c.iface), 0);
    int status = wait_exit(client, 5000);
    ASSERT_TRUE(WIFEXITED(status)) << status;
    EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(Client, TwoClientsGetDifferentAddresses) {
    start_lab(2);
    start_client(0);
    start_client(1);
    ASSERT_TRUE(has_lease(0));
    ASSERT_TRUE(has_lease(1));
    ClientAddrs a = addresses_on(*lab_, lab_->clients[0]);
    ClientAddrs b = addresses_on(*lab_, lab_->clients[1]);
    EXPECT_NE(a.v4, b.v4);
    EXPECT_NE(a.v6, b.v6);
}

TEST_F(Client, ThreeProcessesAreSandboxedAsDesigned) {
    start_lab(1);
    pid_t client = start_client(0);
    ASSERT_TRUE(has_lease(0));
    auto children = children_of(client);
    ASSERT_EQ(children.size(), 2u);
    auto parent = privsep::read_sandbox_state(client);
    ASSERT_TRUE(parent);
    EXPECT_TRUE(privsep::check_sandbox_state(privsep::Role::netd, *parent).has_value());
    EXPECT_EQ(parent->cap_eff, privsep::netd_capabilities());
    for (pid_t child : children) {
        auto s = privsep::read_sandbox_state(child);
        ASSERT_TRUE(s);
        EXPECT_EQ(s->seccomp, 2);
        EXPECT_EQ(s->no_new_privs, 1);
        EXPECT_EQ(s->cap_eff | s->cap_prm | s->cap_bnd | s->cap_amb, 0u);
        EXPECT_NE(s->uid[0], 0u);
        EXPECT_NE(s->uid[1], 0u);
    }
}

TEST_F(Client, FailedPreconditionsExitOneWithAReason) {
    lab_ = std::make_unique<Lab>(LabOptions{1, true, false}); // no fe80::X/128 on the client
    const LabClient& c = lab_->clients[0];
    auto run = [&](const std::string& iface) {
        return lab_->out(c.ns,
                         binary("wg-dynamic-client") + " -f " + iface + " 2>&1; echo exit=$?");
    };
    std::string missing = run("nosuchif0");
    EXPECT_NE(missing.find("no such interface"), std::string::npos) << missing;
    EXPECT_NE(missing.find("exit=1"), std::string::npos);
    std::string no_ll = run(c.iface);
    EXPECT_NE(no_ll.find("no link-local address"), std::string::npos) << no_ll;
    EXPECT_NE(no_ll.find("exit=1"), std::string::npos);
    ASSERT_EQ(lab_->in(c.ns, "ip addr add fe80::77/64 dev " + c.iface), 0);
    std::string not128 = run(c.iface);
    EXPECT_NE(not128.find("not a /128"), std::string::npos) << not128;
    ASSERT_EQ(lab_->in(c.ns, "ip addr add fe80::78/128 dev " + c.iface), 0);
    std::string two = run(c.iface);
    EXPECT_NE(two.find("exactly one"), std::string::npos) << two;
}

// ---- a fake server in the server namespace, answering what a test says

namespace {

// Serves `reply` (empty: reads and says nothing) to every connection on
// [fe80::%iface]:970 until killed; counts the requests it read in a pipe.
pid_t fake_server(const std::string& ns, const std::string& iface, const std::string& reply,
                  int count_fd) {
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    int nsfd = open(("/run/netns/" + ns).c_str(), O_RDONLY);
    if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0)
        _exit(2);
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof one);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(970);
    a.sin6_scope_id = if_nametoindex(iface.c_str());
    inet_pton(AF_INET6, "fe80::", &a.sin6_addr);
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 16) != 0)
        _exit(3);
    for (;;) {
        int c = accept(fd, nullptr, nullptr);
        if (c < 0)
            continue;
        std::string got;
        char buf[512];
        while (got.find("\n\n") == std::string::npos) {
            pollfd p{c, POLLIN, 0};
            if (poll(&p, 1, 3000) <= 0)
                break;
            ssize_t n = read(c, buf, sizeof buf);
            if (n <= 0)
                break;
            got.append(buf, static_cast<std::size_t>(n));
        }
        (void)!write(count_fd, "r", 1);
        if (!reply.empty())
            (void)!write(c, reply.data(), reply.size());
        else
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
        close(c);
    }
}

} // namespace

TEST_F(Client, BadAnswersFromAFakeServerApplyNothingAndTheClientRetries) {
    lab_ = std::make_unique<Lab>(LabOptions{1});
    const LabClient& c = lab_->clients[0];
    const std::vector<std::string> replies = {
        "request_ip=1\nipv4=10.77.0.0/24\nleasestart=1\nleasetime=60\nerrno=0\n\n",
        "request_ip=1\nipv6=fe80::99/128\nleasestart=1\nleasetime=60\nerrno=0\n\n",
        "request_ip=1\nipv4=224.0.0.5/32\nleasestart=1\nleasetime=60\nerrno=0\n\n",
        "\x01\x02garbage\n\n",
        "", // says nothing
    };
    for (const std::string& reply : replies) {
        SCOPED_TRACE(reply);
        int counter[2];
        ASSERT_EQ(pipe2(counter, O_NONBLOCK), 0);
        pid_t fake = fake_server(lab_->server_ns, lab_->server_iface, reply, counter[1]);
        pid_t client = start_client(0);
        int requests = 0;
        // Backoff 1 s then 2 s: at least two attempts within 5 s.
        eventually(
            [&] {
                char buf[16];
                ssize_t n;
                while ((n = read(counter[0], buf, sizeof buf)) > 0)
                    requests += static_cast<int>(n);
                return requests >= 2;
            },
            6000);
        EXPECT_GE(requests, 2) << "the client did not retry";
        ClientAddrs a = addresses_on(*lab_, c);
        EXPECT_EQ(a.v4, "");
        EXPECT_EQ(a.v6, "");
        EXPECT_TRUE(process_alive(client));
        kill(client, SIGTERM);
        EXPECT_NE(wait_exit(client, 5000), -1);
        kill(fake, SIGKILL);
        waitpid(fake, nullptr, 0);
        close(counter[0]);
        close(counter[1]);
    }
}
