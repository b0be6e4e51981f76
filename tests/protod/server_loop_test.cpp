// The server protod loop for real: a forked child runs run_server_loop (no
// sandbox) on a listener on [::1]; the test plays leased on the other end of
// the channel and the clients on TCP.
#include "loop_harness.hpp"
#include "privsep/messages.hpp"
#include "privsep/sandbox.hpp"
#include "protod/codec.hpp"
#include "protod/protod.hpp"
#include "tests/privsep/recv_within.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <variant>
#include <vector>

using namespace wgd;
using namespace wgd::protod;
using namespace wgd::protod::testing;
using namespace std::chrono_literals;

namespace {

constexpr auto kWait = 2000ms;

class ServerLoop {
  public:
    // with_seccomp: the child runs under protod's seccomp allowlist, as in the daemon.
    explicit ServerLoop(ServerLoopConfig config, bool with_seccomp = false) {
        UniqueFd listener = listen_on_loopback(port_);
        ChannelEnds ends = channel_ends();
        leased_ = privsep::Channel(std::move(ends.ours));
        child_ = std::make_unique<ForkedLoop>([&] {
            leased_ = privsep::Channel();      // only the test holds leased's end
            auto loop = privsep::Loop::open(); // before the filter, as in the daemon
            if (!loop)
                return 98;
            if (with_seccomp &&
                !privsep::apply_seccomp_filter(privsep::Role::protod, Side::server).has_value())
                return 99;
            return run_server_loop(*loop, privsep::Channel(std::move(ends.theirs)),
                                   std::move(listener), config);
        });
    }
    std::uint16_t port() const { return port_; }
    privsep::Channel& leased() { return leased_; }
    ForkedLoop& child() { return *child_; }

    // The next query to leased (queries travel several to a message), or
    // nullopt after `limit`.
    struct Query {
        std::uint32_t id = 0; // the connection
        msg::QueryLease query;
    };
    std::optional<Query> to_leased(std::chrono::milliseconds limit = kWait) {
        if (pending_.empty()) {
            auto r = wgd::privsep::testing::recv_within(leased_, static_cast<int>(limit.count()));
            auto* m = std::get_if<privsep::Message>(&r);
            if (m == nullptr)
                return std::nullopt;
            EXPECT_EQ(m->type, msg::query_leases);
            auto batch = msg::decode_query_leases(m->body);
            EXPECT_TRUE(batch && !batch->items.empty()) << "malformed or empty QueryLeases";
            if (!batch)
                return std::nullopt;
            for (auto& item : batch->items)
                pending_.push_back({item.conn, item.query});
        }
        if (pending_.empty())
            return std::nullopt;
        Query q = pending_.front();
        pending_.erase(pending_.begin());
        return q;
    }
    // leased's answer to one connection, alone in its message.
    bool answer(std::uint32_t id, const msg::LeaseAnswer& a) {
        return leased_.send(msg::lease_answers, 0, msg::encode(msg::LeaseAnswers{{{id, a}}}));
    }

  private:
    std::uint16_t port_ = 0;
    privsep::Channel leased_;
    std::unique_ptr<ForkedLoop> child_;
    std::vector<Query> pending_;
};

ServerLoopConfig without_source_check() {
    ServerLoopConfig c;
    c.require_link_local_port_970 = false;
    return c;
}

proto::Response parse(const std::string& wire) {
    auto r = proto::parse_response(wire);
    if (auto* e = std::get_if<proto::ParseError>(&r))
        ADD_FAILURE() << "bad response (" << e->detail << "): " << wire;
    return std::holds_alternative<proto::Response>(r) ? std::get<proto::Response>(r)
                                                      : proto::Response{};
}

msg::LeaseAnswer answer_v4(const char* addr) {
    msg::LeaseAnswer a;
    a.ipv4 = parse_ip4(addr).value();
    a.leasestart = 1764201600;
    a.leasetime = 3600;
    return a;
}

} // namespace

TEST(ServerLoop, WithSourceCheckLoopbackPeerIsClosedWithoutAnswer) {
    ServerLoop loop{ServerLoopConfig{}};
    UniqueFd client = connect_to_loopback(loop.port());
    ASSERT_TRUE(client);
    send_all(client.get(), "request_ip=1\n\n");
    ReadResult r = read_until(client.get(), kWait, never);
    EXPECT_TRUE(r.closed);
    EXPECT_EQ(r.bytes, "");
    EXPECT_FALSE(loop.to_leased(200ms).has_value());
}

TEST(ServerLoop, RequestIsForwardedToLeasedAndItsAnswerWritten) {
    ServerLoop loop{without_source_check()};
    UniqueFd client = connect_to_loopback(loop.port());
    ASSERT_TRUE(send_all(client.get(), "request_ip=1\nipv4=0.0.0.0/32\n\n"));

    auto m = loop.to_leased();
    ASSERT_TRUE(m.has_value());
    const msg::QueryLease* query = &m->query;
    EXPECT_EQ(query->source, parse_ip6("::1").value());
    EXPECT_EQ(query->ipv4, parse_ip4("0.0.0.0").value());
    EXPECT_FALSE(query->ipv6.has_value());

    ASSERT_TRUE(loop.answer(m->id, answer_v4("10.9.8.7")));
    ReadResult r = read_until(client.get(), kWait, has_message);
    proto::Response response = parse(r.bytes);
    EXPECT_EQ(response.ipv4, parse_ip4("10.9.8.7").value());
    EXPECT_EQ(response.leasetime, 3600u);
    EXPECT_EQ(response.errnum, 0);
    EXPECT_FALSE(r.closed); // a good request leaves the connection open
}

TEST(ServerLoop, AnswersToSeveralConnectionsInOneMessageReachEachClient) {
    ServerLoop loop{without_source_check()};
    UniqueFd a = connect_to_loopback(loop.port());
    ASSERT_TRUE(send_all(a.get(), "request_ip=1\nipv4=0.0.0.0/32\n\n"));
    auto from_a = loop.to_leased();
    UniqueFd b = connect_to_loopback(loop.port());
    ASSERT_TRUE(send_all(b.get(), "request_ip=1\nipv4=0.0.0.0/32\n\n"));
    auto from_b = loop.to_leased();
    ASSERT_TRUE(from_a && from_b);
    ASSERT_NE(from_a->id, from_b->id);
    msg::LeaseAnswers both{
        {{from_b->id, answer_v4("10.0.0.2")}, {from_a->id, answer_v4("10.0.0.1")}}};
    ASSERT_TRUE(loop.leased().send(msg::lease_answers, 0, msg::encode(both)));
    EXPECT_EQ(parse(read_until(a.get(), kWait, has_message).bytes).ipv4, parse_ip4("10.0.0.1"));
    EXPECT_EQ(parse(read_until(b.get(), kWait, has_message).bytes).ipv4, parse_ip4("10.0.0.2"));
}

TEST(ServerLoop, SecondRequestOnTheSameConnectionIsServedAfterTheFirst) {
    ServerLoop loop{without_source_check()};
    UniqueFd client = connect_to_loopback(loop.port());
    ASSERT_TRUE(send_all(client.get(), "request_ip=1\nipv4=10.0.0.1/32\n\n"
                                       "request_ip=1\nip=10.0.0.2/32\n\n"));
    auto first = loop.to_leased();
    ASSERT_TRUE(first.has_value());
    EXPECT_FALSE(loop.to_leased(200ms).has_value()) << "second request forwarded too early";
    ASSERT_TRUE(loop.answer(first->id, answer_v4("10.0.0.1")));
    auto second = loop.to_leased();
    ASSERT_TRUE(second.has_value());
    EXPECT_EQ(second->id, first->id);
    EXPECT_EQ(second->query.ipv4, parse_ip4("10.0.0.2").value());
    ASSERT_TRUE(loop.answer(second->id, answer_v4("10.0.0.2")));

    ReadResult r = read_until(client.get(), kWait, [](const std::string& b) {
        return b.find("\n\n") != std::string::npos && b.find("\n\n") != b.rfind("\n\n");
    });
    const auto split = r.bytes.find("\n\n") + 2;
    EXPECT_EQ(parse(r.bytes.substr(0, split)).dialect, proto::Dialect::modern);
    proto::Response legacy = parse(r.bytes.substr(split));
    EXPECT_EQ(legacy.dialect, proto::Dialect::legacy);
    EXPECT_EQ(legacy.ipv4, parse_ip4("10.0.0.2").value());
}

TEST(ServerLoop, InvalidRequestOfAPeerGetsErrno1AndTheConnectionIsClosed) {
    ServerLoop loop{without_source_check()};
    UniqueFd client = connect_to_loopback(loop.port());
    ASSERT_TRUE(send_all(client.get(), "request_ip=1\nipv4=10.0.0.1/8\n\n"));
    auto m = loop.to_leased();
    ASSERT_TRUE(m.has_value()) << "leased judges the source first";
    EXPECT_EQ(m->query.invalid, 1);
    EXPECT_FALSE(m->query.ipv4 || m->query.ipv6);
    ASSERT_TRUE(loop.answer(m->id, msg::LeaseAnswer{}));
    ReadResult r = read_until(client.get(), kWait, never);
    EXPECT_TRUE(r.closed);
    EXPECT_EQ(parse(r.bytes).errnum, 1);
}

TEST(ServerLoop, InvalidRequestOfANonPeerIsClosedWithoutAWord) {
    ServerLoop loop{without_source_check()};
    UniqueFd client = connect_to_loopback(loop.port());
    ASSERT_TRUE(send_all(client.get(), "request_ip=7\n\n"));
    auto m = loop.to_leased();
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->query.invalid, 2);
    ASSERT_TRUE(loop.leased().send(msg::refuse_connection, m->id, {}));
    ReadResult r = read_until(client.get(), kWait, never);
    EXPECT_TRUE(r.closed);
    EXPECT_EQ(r.bytes, "");
}

TEST(ServerLoop, RefusedConnectionIsClosedSilently) {
    ServerLoop loop{without_source_check()};
    UniqueFd client = connect_to_loopback(loop.port());
    ASSERT_TRUE(send_all(client.get(), "request_ip=1\n\n"));
    auto m = loop.to_leased();
    ASSERT_TRUE(m.has_value());
    ASSERT_TRUE(loop.leased().send(msg::refuse_connection, m->id, {}));
    ReadResult r = read_until(client.get(), kWait, never);
    EXPECT_TRUE(r.closed);
    EXPECT_EQ(r.bytes, "");
}

TEST(ServerLoop, AnswerForAClosedConnectionIsDroppedAndServingGoesOn) {
    ServerLoop loop{without_source_check()};
    UniqueFd gone = connect_to_loopback(loop.port());
    ASSERT_TRUE(send_all(gone.get(), "request_ip=1\n\n"));
    auto m = loop.to_leased();
    ASSERT_TRUE(m.has_value());
    // The refusal closes the connection; a late answer for it must be ignored.
    ASSERT_TRUE(loop.leased().send(msg::refuse_connection, m->id, {}));
    ASSERT_TRUE(loop.answer(m->id, answer_v4("10.0.0.1")));

    UniqueFd client = connect_to_loopback(loop.port());
    ASSERT_TRUE(send_all(client.get(), "request_ip=1\n\n"));
    auto next = loop.to_leased();
    ASSERT_TRUE(next.has_value());
    EXPECT_NE(next->id, m->id);
    EXPECT_FALSE(loop.child().exit_status(0ms).has_value());
}

TEST(ServerLoop, IdleConnectionIsClosedAfterTheIdleTimeout) {
    ServerLoopConfig config = without_source_check();
    config.idle_timeout = 150ms;
    ServerLoop loop{config};
    UniqueFd client = connect_to_loopback(loop.port());
    const auto start = std::chrono::steady_clock::now();
    ReadResult r = read_until(client.get(), kWait, never);
    EXPECT_TRUE(r.closed);
    EXPECT_GE(std::chrono::steady_clock::now() - start, 140ms);
}

TEST(ServerLoop, SlowRequestIsCutAtTheRequestTimeout) {
    ServerLoopConfig config = without_source_check();
    config.request_timeout = 300ms;
    ServerLoop loop{config};
    UniqueFd client = connect_to_loopback(loop.port());
    const std::string request = "request_ip=1\nipv4=0.0.0.0/32\n\n";
    bool cut = false;
    for (char c : request) {
        if (!send_all(client.get(), std::string(1, c)) ||
            read_until(client.get(), 50ms, never).closed) {
            cut = true;
            break;
        }
    }
    EXPECT_TRUE(cut);
    EXPECT_FALSE(loop.to_leased(100ms).has_value());
}

TEST(ServerLoop, ConnectionsBeyondTheLimitAreClosedAtOnce) {
    ServerLoopConfig config = without_source_check();
    config.max_connections = 2;
    ServerLoop loop{config};
    UniqueFd a = connect_to_loopback(loop.port());
    UniqueFd b = connect_to_loopback(loop.port());
    ASSERT_TRUE(send_all(b.get(), "request_ip=1\n\n")); // b is surely accepted once this arrives
    ASSERT_TRUE(loop.to_leased().has_value());
    UniqueFd c = connect_to_loopback(loop.port());
    EXPECT_TRUE(read_until(c.get(), kWait, never).closed);
    EXPECT_FALSE(read_until(a.get(), 100ms, never).closed);
}

TEST(ServerLoop, LeasedGoingAwayEndsTheLoopWithStatus1) {
    ServerLoop loop{without_source_check()};
    loop.leased() = privsep::Channel();
    EXPECT_EQ(loop.child().exit_status(kWait), 1);
}

TEST(ServerLoop, UnexpectedMessageFromLeasedEndsTheLoop) {
    ServerLoop loop{without_source_check()};
    ASSERT_TRUE(loop.leased().send(msg::exchange_result, 1, msg::encode(msg::ExchangeResult{})));
    EXPECT_EQ(loop.child().exit_status(kWait), 1);
}

TEST(ServerLoop, MalformedAnswerFromLeasedEndsTheLoop) {
    ServerLoop loop{without_source_check()};
    const std::uint8_t junk[3] = {1, 2, 3};
    ASSERT_TRUE(loop.leased().send(msg::lease_answers, 1, junk));
    EXPECT_EQ(loop.child().exit_status(kWait), 1);
}

TEST(ServerLoop, EverySyscallOfTheLoopIsInProtodsServerAllowlist) {
    ServerLoopConfig config = without_source_check();
    config.idle_timeout = 100ms;
    ServerLoop loop{config, /*with_seccomp=*/true};
    // accept, read, forward, answer, write, a refusal, an invalid request, a timeout.
    UniqueFd client = connect_to_loopback(loop.port());
    ASSERT_TRUE(send_all(client.get(), "request_ip=1\n\n"));
    auto m = loop.to_leased();
    ASSERT_TRUE(m.has_value());
    ASSERT_TRUE(loop.answer(m->id, answer_v4("10.0.0.1")));
    EXPECT_EQ(parse(read_until(client.get(), kWait, has_message).bytes).errnum, 0);

    UniqueFd refused = connect_to_loopback(loop.port());
    ASSERT_TRUE(send_all(refused.get(), "request_ip=1\n\n"));
    auto r = loop.to_leased();
    ASSERT_TRUE(r.has_value());
    ASSERT_TRUE(loop.leased().send(msg::refuse_connection, r->id, {}));
    EXPECT_TRUE(read_until(refused.get(), kWait, never).closed);

    UniqueFd invalid = connect_to_loopback(loop.port());
    ASSERT_TRUE(send_all(invalid.get(), "bad\n\n"));
    auto verdict = loop.to_leased();
    ASSERT_TRUE(verdict.has_value());
    ASSERT_TRUE(loop.answer(verdict->id, msg::LeaseAnswer{}));
    EXPECT_EQ(parse(read_until(invalid.get(), kWait, never).bytes).errnum, 1);

    EXPECT_TRUE(read_until(client.get(), kWait, never).closed); // idle timeout
    EXPECT_FALSE(loop.child().exit_status(0ms).has_value()) << "the loop died";
    loop.leased() = privsep::Channel();
    EXPECT_EQ(loop.child().exit_status(kWait), 1); // 1, not 128 + SIGSYS
}

TEST(ServerLoop, ServesTheFull1024ConnectionsAtOnceAndClosesThe1025th) {
    ServerLoop loop{without_source_check()};
    std::vector<UniqueFd> clients;
    for (int i = 0; i < 1024; ++i) {
        clients.push_back(connect_to_loopback(loop.port()));
        ASSERT_TRUE(clients.back()) << "connection " << i;
        ASSERT_TRUE(send_all(clients.back().get(), "request_ip=1\n\n"));
    }
    // Every request reaches leased, each under its own id, before any is answered.
    std::set<std::uint32_t> ids;
    std::vector<std::uint32_t> order;
    for (int i = 0; i < 1024; ++i) {
        auto m = loop.to_leased();
        ASSERT_TRUE(m.has_value()) << "only " << i << " requests arrived";
        ids.insert(m->id);
        order.push_back(m->id);
    }
    EXPECT_EQ(ids.size(), 1024u);
    UniqueFd extra = connect_to_loopback(loop.port());
    EXPECT_TRUE(read_until(extra.get(), kWait, never).closed);

    for (std::uint32_t id : order)
        ASSERT_TRUE(loop.answer(id, answer_v4("10.0.0.1")));
    for (auto& c : clients)
        ASSERT_EQ(parse(read_until(c.get(), kWait, has_message).bytes).errnum, 0);
}
