// The client protod's exchange: the request it sends, its two
// timeouts and the typed result leased gets, on the pure Exchange.
#include "protod/exchange.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <string>
#include <string_view>

using namespace wgd;
using namespace wgd::protod;
using namespace std::chrono_literals;

namespace {

const Exchange::TimePoint t0 = Exchange::TimePoint() + 1000h;

Ip4 ip4(const char* text) {
    return parse_ip4(text).value();
}
Ip6 ip6(const char* text) {
    return parse_ip6(text).value();
}

std::span<const std::uint8_t> bytes(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

msg::ExchangeRequest any_of_both() {
    return msg::ExchangeRequest{ip4("0.0.0.0"), ip6("::")};
}

// An exchange that is connected and has sent its request.
Exchange receiving(Exchange::TimePoint connected_at = t0) {
    Exchange ex(7, any_of_both(), t0);
    ex.connected(0, connected_at);
    ex.wrote(ex.output().size());
    return ex;
}

constexpr std::string_view kGranted = "request_ip=1\n"
                                      "ipv4=192.168.47.11/32\n"
                                      "ipv6=2001:db8::17/128\n"
                                      "leasestart=1764201600\n"
                                      "leasetime=3600\n"
                                      "errno=0\n\n";

} // namespace

TEST(Exchange, SendsAModernRequestForTheWantedAddressesOnceConnected) {
    Exchange ex(1, msg::ExchangeRequest{ip4("10.0.0.7"), std::nullopt}, t0);
    EXPECT_EQ(ex.phase(), Exchange::Phase::connecting);
    EXPECT_TRUE(ex.output().empty()); // nothing goes out before the connect completes
    ex.connected(0, t0);
    EXPECT_EQ(ex.output(), "request_ip=1\nipv4=10.0.0.7/32\n\n");
}

TEST(Exchange, RequestWithoutWishesNamesNoFamily) {
    Exchange ex(1, msg::ExchangeRequest{}, t0);
    ex.connected(0, t0);
    EXPECT_EQ(ex.output(), "request_ip=1\n\n");
}

TEST(Exchange, PartialSendKeepsTheRest) {
    Exchange ex(1, any_of_both(), t0);
    ex.connected(0, t0);
    std::string all(ex.output());
    ex.wrote(4);
    EXPECT_EQ(ex.output(), all.substr(4));
    EXPECT_EQ(ex.phase(), Exchange::Phase::sending);
    ex.wrote(all.size() - 4);
    EXPECT_EQ(ex.phase(), Exchange::Phase::receiving);
}

TEST(Exchange, RefusedConnectIsReportedWithItsReason) {
    Exchange ex(1, any_of_both(), t0);
    ex.connected(ECONNREFUSED, t0);
    ASSERT_TRUE(ex.done());
    EXPECT_FALSE(ex.result()->answered);
    EXPECT_EQ(ex.result()->error, "connect: Connection refused");
}

TEST(Exchange, ConnectMustCompleteWithinTenSeconds) {
    Exchange ex(1, any_of_both(), t0);
    ex.check_timeout(t0 + 9999ms);
    EXPECT_FALSE(ex.done());
    ex.check_timeout(t0 + 10s);
    ASSERT_TRUE(ex.done());
    EXPECT_EQ(ex.result()->error, "timeout connecting to the server");
}

TEST(Exchange, AnswerMustArriveWithinTenSecondsOfTheConnect) {
    Exchange ex = receiving(t0 + 3s);
    EXPECT_EQ(ex.deadline(), t0 + 13s);
    ex.check_timeout(t0 + 12s);
    EXPECT_FALSE(ex.done());
    ex.check_timeout(t0 + 13s);
    ASSERT_TRUE(ex.done());
    EXPECT_FALSE(ex.result()->answered);
    EXPECT_EQ(ex.result()->error, "timeout waiting for the answer");
}

TEST(Exchange, ResponseBecomesAnsweredResultWithHostPrefixes) {
    Exchange ex = receiving();
    ex.received(bytes(kGranted));
    ASSERT_TRUE(ex.done());
    const msg::ExchangeResult& r = *ex.result();
    EXPECT_TRUE(r.answered);
    EXPECT_EQ(r.ipv4, (Prefix4{ip4("192.168.47.11"), 32}));
    EXPECT_EQ(r.ipv6, (Prefix6{ip6("2001:db8::17"), 128}));
    EXPECT_EQ(r.leasestart, 1764201600u);
    EXPECT_EQ(r.leasetime, 3600u);
    EXPECT_EQ(r.errnum, 0u);
}

TEST(Exchange, ResponseSplitOverReadsIsParsedWhole) {
    Exchange ex = receiving();
    ex.received(bytes(kGranted.substr(0, 20)));
    EXPECT_FALSE(ex.done());
    ex.received(bytes(kGranted.substr(20)));
    ASSERT_TRUE(ex.done());
    EXPECT_TRUE(ex.result()->answered);
}

TEST(Exchange, ServerErrorIsAnAnswerWithItsErrno) {
    Exchange ex = receiving();
    ex.received(bytes("request_ip=1\nerrno=3\nerrmsg=Chosen IP(s) unavailable\n\n"));
    ASSERT_TRUE(ex.done());
    EXPECT_TRUE(ex.result()->answered);
    EXPECT_EQ(ex.result()->errnum, 3u);
    EXPECT_FALSE(ex.result()->ipv4.has_value());
}

TEST(Exchange, LegacyResponseIsAccepted) {
    Exchange ex = receiving();
    ex.received(bytes("ip=10.0.0.2/32\nleasestart=5\nleasetime=60\nerrno=0\n\n"));
    ASSERT_TRUE(ex.done());
    EXPECT_TRUE(ex.result()->answered);
    EXPECT_EQ(ex.result()->ipv4, (Prefix4{ip4("10.0.0.2"), 32}));
}

TEST(Exchange, MalformedResponseIsAProtocolError) {
    Exchange ex = receiving();
    ex.received(bytes("request_ip=1\nipv4=10.0.0.0/24\nleasestart=1\nleasetime=1\nerrno=0\n\n"));
    ASSERT_TRUE(ex.done());
    EXPECT_FALSE(ex.result()->answered);
    EXPECT_EQ(ex.result()->error.rfind("protocol error: ", 0), 0u) << ex.result()->error;
}

TEST(Exchange, ServerClosingBeforeTheAnswerIsAFailure) {
    Exchange ex = receiving();
    ex.received(bytes("request_ip=1\n"));
    ex.peer_closed();
    ASSERT_TRUE(ex.done());
    EXPECT_FALSE(ex.result()->answered);
    EXPECT_FALSE(ex.result()->error.empty());
}

TEST(Exchange, FirstOutcomeWins) {
    Exchange ex = receiving();
    ex.received(bytes(kGranted));
    ex.check_timeout(t0 + 1h);
    ex.peer_closed();
    EXPECT_TRUE(ex.result()->answered);
}
