// server_main and client_main as the daemon runs them: in the full sandbox
// (user nobody, empty chroot, seccomp), on the fds netd hands in (3 and 4).
// The server test runs in a network namespace of its own with two link-local
// addresses, so the real source check (link-local, port 970) is exercised.
#include "loop_harness.hpp"
#include "privsep/messages.hpp"
#include "privsep/sandbox.hpp"
#include "protod/codec.hpp"
#include "protod/protod.hpp"
#include "tests/lab/lab.hpp"
#include "tests/privsep/recv_within.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <variant>

using namespace wgd;
using namespace wgd::protod;
using namespace wgd::protod::testing;
using namespace std::chrono_literals;

namespace {

constexpr auto kWait = 3000ms;

// In the child: put `a` at fd 3 and `b` at fd 4 whatever their numbers are now.
void place_fds(int a, int b) {
    int high_a = ::fcntl(a, F_DUPFD, 20);
    int high_b = ::fcntl(b, F_DUPFD, 20);
    ::dup2(high_a, 3);
    ::dup2(high_b, 4);
    ::close(high_a);
    ::close(high_b);
}

Options daemon_options() {
    Options o;
    o.user = "nobody";
    o.verbosity = 1;
    return o;
}

// A network namespace named after the test's pid, deleted on destruction;
// sockets made inside it (Inside) stay in it after the thread returns.
class NetNs {
  public:
    NetNs() : name_("wgdprotod" + std::to_string(::getpid())) {
        ok_ = run("ip netns add " + name_) && run("ip -n " + name_ + " link set lo up") &&
              run("ip -n " + name_ + " link add d0 type veth peer name d1") &&
              run("ip -n " + name_ + " link set d0 up") &&
              run("ip -n " + name_ + " link set d1 up") &&
              run("ip -n " + name_ + " addr add fe80::1/64 dev d0 nodad") &&
              run("ip -n " + name_ + " addr add fe80::2/64 dev d0 nodad");
    }
    ~NetNs() { run("ip netns del " + name_ + " 2>/dev/null"); }
    bool ok() const { return ok_; }
    const std::string& name() const { return name_; }

    // Runs f with the calling thread in the namespace, then returns to the original one.
    template <class F>
    bool inside(F&& f) const {
        UniqueFd home(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
        UniqueFd ns(::open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC));
        if (!home || !ns || ::setns(ns.get(), CLONE_NEWNET) < 0)
            return false;
        f();
        return ::setns(home.get(), CLONE_NEWNET) == 0;
    }

  private:
    static bool run(const std::string& cmd) { return std::system(cmd.c_str()) == 0; }
    std::string name_;
    bool ok_ = false;
};

sockaddr_in6 link_local(const char* addr, std::uint16_t port, unsigned scope) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    a.sin6_scope_id = scope;
    ::inet_pton(AF_INET6, addr, &a.sin6_addr);
    return a;
}

// A client socket in the namespace: from [fe80::2%d0]:source_port to [fe80::1%d0]:port.
UniqueFd connect_link_local(std::uint16_t source_port, std::uint16_t port) {
    UniqueFd fd(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const unsigned scope = ::if_nametoindex("d0");
    sockaddr_in6 src = link_local("fe80::2", source_port, scope);
    sockaddr_in6 dst = link_local("fe80::1", port, scope);
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    const linger reset{1, 0}; // no TIME_WAIT on port 970 between tests
    ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&src), sizeof src) < 0 ||
        ::connect(fd.get(), reinterpret_cast<sockaddr*>(&dst), sizeof dst) < 0)
        return UniqueFd();
    return fd;
}

void expect_sandboxed(pid_t pid) {
    auto state = privsep::read_sandbox_state(pid);
    ASSERT_TRUE(state.has_value());
    EXPECT_EQ(state->seccomp, 2);
    EXPECT_EQ(state->no_new_privs, 1);
    EXPECT_EQ(state->uid[1], 65534u) << "not running as nobody";
    EXPECT_EQ(state->cap_eff | state->cap_prm | state->cap_bnd, 0u);
}

} // namespace

TEST(ServerMain, ServesLinkLocalPort970AndRefusesOtherPortsInsideTheSandbox) {
    if (!wgd::lab::running_as_root())
        GTEST_SKIP() << "needs root (network namespace, sandbox, port 970)";
    NetNs ns;
    ASSERT_TRUE(ns.ok()) << "cannot build namespace " << ns.name();

    std::uint16_t port = 0;
    UniqueFd listener, good, other_port;
    ChannelEnds leased_ends = channel_ends();
    privsep::Channel leased(std::move(leased_ends.ours));

    // The listener on [::]:<ephemeral> inside the namespace (netd binds [fe80::%IFACE]:970).
    ASSERT_TRUE(ns.inside([&] {
        listener.reset(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in6 any{};
        any.sin6_family = AF_INET6;
        socklen_t len = sizeof any;
        if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&any), sizeof any) == 0 &&
            ::listen(listener.get(), 16) == 0 &&
            ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&any), &len) == 0)
            port = ntohs(any.sin6_port);
        else
            listener.reset();
    }));
    ASSERT_TRUE(listener);

    ForkedLoop protod([&] {
        leased = privsep::Channel();
        place_fds(leased_ends.theirs.get(), listener.get());
        return server_main(daemon_options());
    });
    leased_ends.theirs.reset();
    listener.reset();

    ASSERT_TRUE(ns.inside([&] {
        other_port = connect_link_local(971, port);
        good = connect_link_local(970, port);
    }));
    ASSERT_TRUE(good && other_port);

    ASSERT_TRUE(send_all(other_port.get(), "request_ip=1\n\n"));
    ReadResult refused = read_until(other_port.get(), kWait, never);
    EXPECT_TRUE(refused.closed);
    EXPECT_EQ(refused.bytes, "");

    ASSERT_TRUE(send_all(good.get(), "request_ip=1\nipv6=::/128\n\n"));
    auto r = wgd::privsep::testing::recv_within(leased, static_cast<int>(kWait.count()));
    auto* m = std::get_if<privsep::Message>(&r);
    ASSERT_NE(m, nullptr) << "no QueryLeases from the sandboxed protod";
    auto queries = msg::decode_query_leases(m->body);
    ASSERT_TRUE(queries && queries->items.size() == 1u);
    const auto& [conn, query] = queries->items[0];
    EXPECT_EQ(query.source, parse_ip6("fe80::2").value());

    // Checked from outside, as the system tests do.
    expect_sandboxed(protod.pid());

    msg::LeaseAnswer answer;
    answer.ipv6 = parse_ip6("2001:db8:77::5").value();
    answer.leasestart = 1;
    answer.leasetime = 60;
    ASSERT_TRUE(
        leased.send(msg::lease_answers, 0, msg::encode(msg::LeaseAnswers{{{conn, answer}}})));
    ReadResult reply = read_until(good.get(), kWait, has_message);
    auto parsed = proto::parse_response(reply.bytes);
    ASSERT_TRUE(std::holds_alternative<proto::Response>(parsed)) << reply.bytes;
    EXPECT_EQ(std::get<proto::Response>(parsed).ipv6, answer.ipv6);

    EXPECT_FALSE(protod.exit_status(0ms).has_value()) << "protod died in its sandbox";
    leased = privsep::Channel();
    EXPECT_EQ(protod.exit_status(kWait), 1);
}

TEST(ClientMain, RunsAnExchangeInsideTheSandbox) {
    if (!wgd::lab::running_as_root())
        GTEST_SKIP() << "needs root (sandbox)";
    std::uint16_t port = 0;
    UniqueFd server = listen_on_loopback(port);
    ChannelEnds leased_ends = channel_ends();
    ChannelEnds netd_ends = channel_ends();
    privsep::Channel leased(std::move(leased_ends.ours));
    privsep::Channel netd(std::move(netd_ends.ours));
    ForkedLoop protod([&] {
        leased = privsep::Channel();
        netd = privsep::Channel();
        place_fds(leased_ends.theirs.get(), netd_ends.theirs.get());
        return client_main(daemon_options());
    });
    leased_ends.theirs.reset();
    netd_ends.theirs.reset();

    UniqueFd sock = connect_to_loopback(port, true);
    ASSERT_TRUE(
        netd.send(msg::exchange_request, 9, msg::encode(msg::ExchangeRequest{}), sock.get()));
    sock.reset();
    pollfd p{server.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, static_cast<int>(kWait.count())), 1);
    UniqueFd conn(::accept4(server.get(), nullptr, nullptr, SOCK_CLOEXEC));
    EXPECT_EQ(read_until(conn.get(), kWait, has_message).bytes, "request_ip=1\n\n");
    ASSERT_TRUE(send_all(conn.get(), "request_ip=1\nipv4=10.77.0.3/32\nleasestart=1\n"
                                     "leasetime=60\nerrno=0\n\n"));
    auto r = wgd::privsep::testing::recv_within(leased, static_cast<int>(kWait.count()));
    auto* m = std::get_if<privsep::Message>(&r);
    ASSERT_NE(m, nullptr) << "no ExchangeResult from the sandboxed protod";
    EXPECT_EQ(m->id, 9u);
    auto result = msg::decode_exchange_result(m->body);
    ASSERT_TRUE(result.has_value());
    EXPECT_TRUE(result->answered) << result->error;
    EXPECT_EQ(result->ipv4, (Prefix4{parse_ip4("10.77.0.3").value(), 32}));

    expect_sandboxed(protod.pid());
    EXPECT_FALSE(protod.exit_status(0ms).has_value()) << "protod died in its sandbox";
    netd = privsep::Channel();
    EXPECT_EQ(protod.exit_status(kWait), 1);
}
