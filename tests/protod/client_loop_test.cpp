// The client protod loop for real: a forked child runs run_client_loop (no
// sandbox); the test plays netd (hands in a socket connecting to a fake
// server on [::1]), the fake server, and leased (receives the result).
#include "loop_harness.hpp"
#include "privsep/messages.hpp"
#include "privsep/sandbox.hpp"
#include "protod/protod.hpp"
#include "tests/privsep/recv_within.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <variant>

using namespace wgd;
using namespace wgd::protod;
using namespace wgd::protod::testing;
using namespace std::chrono_literals;

namespace {

constexpr auto kWait = 2000ms;

class ClientLoop {
  public:
    // with_seccomp: the child runs under protod's seccomp allowlist, as in the daemon.
    explicit ClientLoop(ClientLoopConfig config = {}, bool with_seccomp = false) {
        ChannelEnds leased_ends = channel_ends();
        ChannelEnds netd_ends = channel_ends();
        leased_ = privsep::Channel(std::move(leased_ends.ours));
        netd_ = privsep::Channel(std::move(netd_ends.ours));
        child_ = std::make_unique<ForkedLoop>([&] {
            leased_ = privsep::Channel();
            netd_ = privsep::Channel();
            auto loop = privsep::Loop::open(); // before the filter, as in the daemon
            if (!loop)
                return 98;
            if (with_seccomp &&
                !privsep::apply_seccomp_filter(privsep::Role::protod, Side::client).has_value())
                return 99;
            return run_client_loop(*loop, privsep::Channel(std::move(leased_ends.theirs)),
                                   privsep::Channel(std::move(netd_ends.theirs)), config);
        });
    }
    privsep::Channel& leased() { return leased_; }
    privsep::Channel& netd() { return netd_; }
    ForkedLoop& child() { return *child_; }

    // As netd does: a socket connecting to [::1]:port, handed over with the order.
    bool order_exchange(std::uint32_t id, std::uint16_t port, const msg::ExchangeRequest& request) {
        UniqueFd sock = connect_to_loopback(port, true);
        return sock && netd_.send(msg::exchange_request, id, msg::encode(request), sock.get());
    }

    std::optional<std::pair<std::uint32_t, msg::ExchangeResult>> result() {
        auto r = wgd::privsep::testing::recv_within(leased_, static_cast<int>(kWait.count()));
        auto* m = std::get_if<privsep::Message>(&r);
        if (m == nullptr || m->type != msg::exchange_result)
            return std::nullopt;
        auto decoded = msg::decode_exchange_result(m->body);
        if (!decoded)
            return std::nullopt;
        return std::make_pair(m->id, *decoded);
    }

  private:
    privsep::Channel leased_;
    privsep::Channel netd_;
    std::unique_ptr<ForkedLoop> child_;
};

UniqueFd accept_one(int listener) {
    pollfd p{listener, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(kWait.count())) != 1)
        return UniqueFd();
    return UniqueFd(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
}

msg::ExchangeRequest any_of_both() {
    return msg::ExchangeRequest{parse_ip4("0.0.0.0").value(), parse_ip6("::").value()};
}

} // namespace

TEST(ClientLoop, RequestIsSentAndTheParsedAnswerGoesToLeased) {
    std::uint16_t port = 0;
    UniqueFd server = listen_on_loopback(port);
    ClientLoop loop;
    ASSERT_TRUE(loop.order_exchange(42, port, any_of_both()));

    UniqueFd conn = accept_one(server.get());
    ASSERT_TRUE(conn);
    ReadResult request = read_until(conn.get(), kWait, has_message);
    EXPECT_EQ(request.bytes, "request_ip=1\nipv4=0.0.0.0/32\nipv6=::/128\n\n");
    ASSERT_TRUE(send_all(conn.get(), "request_ip=1\nipv4=10.77.0.5/32\nipv6=2001:db8:77::9/128\n"
                                     "leasestart=1764201600\nleasetime=3600\nerrno=0\n\n"));

    auto result = loop.result();
    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(result->first, 42u);
    const msg::ExchangeResult& r = result->second;
    EXPECT_TRUE(r.answered) << r.error;
    EXPECT_EQ(r.ipv4, (Prefix4{parse_ip4("10.77.0.5").value(), 32}));
    EXPECT_EQ(r.ipv6, (Prefix6{parse_ip6("2001:db8:77::9").value(), 128}));
    EXPECT_EQ(r.leasestart, 1764201600u);
    EXPECT_EQ(r.leasetime, 3600u);
    // protod closes the socket once the exchange is over.
    EXPECT_TRUE(read_until(conn.get(), kWait, never).closed);
}

TEST(ClientLoop, RefusedConnectIsReportedToLeased) {
    std::uint16_t port = 0;
    { UniqueFd gone = listen_on_loopback(port); } // a port nobody listens on any more
    ClientLoop loop;
    ASSERT_TRUE(loop.order_exchange(5, port, any_of_both()));
    auto result = loop.result();
    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(result->first, 5u);
    EXPECT_FALSE(result->second.answered);
    EXPECT_EQ(result->second.error, "connect: Connection refused");
}

TEST(ClientLoop, SilentServerTimesOut) {
    std::uint16_t port = 0;
    UniqueFd server = listen_on_loopback(port);
    ClientLoopConfig config;
    config.answer_timeout = 200ms;
    ClientLoop loop(config);
    ASSERT_TRUE(loop.order_exchange(6, port, any_of_both()));
    UniqueFd conn = accept_one(server.get());
    auto result = loop.result();
    ASSERT_TRUE(result.has_value());
    EXPECT_FALSE(result->second.answered);
    EXPECT_EQ(result->second.error, "timeout waiting for the answer");
}

TEST(ClientLoop, GarbageAnswerIsAProtocolError) {
    std::uint16_t port = 0;
    UniqueFd server = listen_on_loopback(port);
    ClientLoop loop;
    ASSERT_TRUE(loop.order_exchange(7, port, any_of_both()));
    UniqueFd conn = accept_one(server.get());
    ASSERT_TRUE(conn);
    ASSERT_TRUE(send_all(conn.get(), "HTTP/1.1 200 OK\n\n"));
    auto result = loop.result();
    ASSERT_TRUE(result.has_value());
    EXPECT_FALSE(result->second.answered);
    EXPECT_EQ(result->second.error.rfind("protocol error: ", 0), 0u) << result->second.error;
}

TEST(ClientLoop, ExchangesFollowOneAnother) {
    std::uint16_t port = 0;
    UniqueFd server = listen_on_loopback(port);
    ClientLoop loop;
    for (std::uint32_t id = 1; id <= 3; ++id) {
        ASSERT_TRUE(loop.order_exchange(id, port, msg::ExchangeRequest{}));
        UniqueFd conn = accept_one(server.get());
        ASSERT_TRUE(conn);
        read_until(conn.get(), kWait, has_message);
        ASSERT_TRUE(send_all(conn.get(), "request_ip=1\nerrno=3\n\n"));
        auto result = loop.result();
        ASSERT_TRUE(result.has_value());
        EXPECT_EQ(result->first, id);
        EXPECT_TRUE(result->second.answered);
        EXPECT_EQ(result->second.errnum, 3u);
    }
}

TEST(ClientLoop, OrderWithoutASocketEndsTheLoop) {
    ClientLoop loop;
    ASSERT_TRUE(loop.netd().send(msg::exchange_request, 1, msg::encode(any_of_both())));
    EXPECT_EQ(loop.child().exit_status(kWait), 1);
}

TEST(ClientLoop, AnyMessageFromLeasedEndsTheLoop) {
    ClientLoop loop;
    ASSERT_TRUE(loop.leased().send(msg::exchange_request, 1, msg::encode(any_of_both())));
    EXPECT_EQ(loop.child().exit_status(kWait), 1);
}

TEST(ClientLoop, NetdGoingAwayEndsTheLoop) {
    ClientLoop loop;
    loop.netd() = privsep::Channel();
    EXPECT_EQ(loop.child().exit_status(kWait), 1);
}

TEST(ClientLoop, LeasedGoingAwayEndsTheLoop) {
    ClientLoop loop;
    loop.leased() = privsep::Channel();
    EXPECT_EQ(loop.child().exit_status(kWait), 1);
}

TEST(ClientLoop, EverySyscallOfTheLoopIsInProtodsClientAllowlist) {
    std::uint16_t port = 0;
    UniqueFd server = listen_on_loopback(port);
    ClientLoopConfig config;
    config.answer_timeout = 100ms;
    ClientLoop loop(config, /*with_seccomp=*/true);
    // An answered exchange, a refused one and a timed-out one.
    ASSERT_TRUE(loop.order_exchange(1, port, any_of_both()));
    UniqueFd conn = accept_one(server.get());
    ASSERT_TRUE(conn);
    read_until(conn.get(), kWait, has_message);
    ASSERT_TRUE(send_all(conn.get(), "request_ip=1\nerrno=3\n\n"));
    auto answered = loop.result();
    ASSERT_TRUE(answered.has_value());
    EXPECT_TRUE(answered->second.answered);

    std::uint16_t closed_port = 0;
    { UniqueFd gone = listen_on_loopback(closed_port); }
    ASSERT_TRUE(loop.order_exchange(2, closed_port, any_of_both()));
    auto refused = loop.result();
    ASSERT_TRUE(refused.has_value());
    EXPECT_EQ(refused->second.error, "connect: Connection refused");

    ASSERT_TRUE(loop.order_exchange(3, port, any_of_both()));
    UniqueFd silent = accept_one(server.get());
    auto timed_out = loop.result();
    ASSERT_TRUE(timed_out.has_value());
    EXPECT_EQ(timed_out->second.error, "timeout waiting for the answer");

    EXPECT_FALSE(loop.child().exit_status(0ms).has_value()) << "the loop died";
    loop.netd() = privsep::Channel();
    EXPECT_EQ(loop.child().exit_status(kWait), 1); // 1, not 128 + SIGSYS
}

TEST(ClientLoop, NewOrderSupersedesAnUnfinishedExchange) {
    std::uint16_t port = 0;
    UniqueFd server = listen_on_loopback(port);
    ClientLoop loop;
    ASSERT_TRUE(loop.order_exchange(1, port, any_of_both()));
    UniqueFd first = accept_one(server.get());
    ASSERT_TRUE(first);
    read_until(first.get(), kWait, has_message); // the first request is out; no answer comes
    ASSERT_TRUE(loop.order_exchange(2, port, any_of_both()));
    auto superseded = loop.result();
    ASSERT_TRUE(superseded.has_value());
    EXPECT_EQ(superseded->first, 1u);
    EXPECT_FALSE(superseded->second.answered);
    EXPECT_EQ(superseded->second.error, "superseded by exchange 2");

    UniqueFd second = accept_one(server.get());
    ASSERT_TRUE(second);
    read_until(second.get(), kWait, has_message);
    ASSERT_TRUE(send_all(second.get(), "request_ip=1\nerrno=3\n\n"));
    auto result = loop.result();
    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(result->first, 2u);
    EXPECT_TRUE(result->second.answered);
}
