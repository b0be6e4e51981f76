// The server protod's connection rules, one test per rule, on the
// pure ConnectionTable with a clock the tests move by hand.
#include "protod/connections.hpp"

#include <gtest/gtest.h>

#include <netinet/in.h>

#include <cstring>

#include <string>
#include <string_view>
#include <variant>

using namespace wgd;
using namespace wgd::protod;
using namespace std::chrono_literals;

namespace {

const TimePoint t0 = TimePoint() + 1000h;

Ip4 ip4(const char* text) {
    return parse_ip4(text).value();
}
Ip6 ip6(const char* text) {
    return parse_ip6(text).value();
}

std::span<const std::uint8_t> bytes(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

proto::Response parsed_response(std::string_view wire) {
    auto result = proto::parse_response(wire);
    if (auto* error = std::get_if<proto::ParseError>(&result))
        ADD_FAILURE() << "response does not parse: " << error->detail << "\n" << wire;
    return std::holds_alternative<proto::Response>(result) ? std::get<proto::Response>(result)
                                                           : proto::Response{};
}

msg::LeaseAnswer granted(const char* v4, std::uint64_t start = 1764201600) {
    msg::LeaseAnswer a;
    a.ipv4 = ip4(v4);
    a.leasestart = start;
    a.leasetime = 3600;
    return a;
}

constexpr std::string_view kAnyRequest = "request_ip=1\nipv4=0.0.0.0/32\n\n";

// An invalid request goes to leased as a query naming no address with its
// errno; leased's answer (the source is a peer) lets the error out.
std::string error_after_verdict(ConnectionTable& table, ConnId id,
                                const std::optional<msg::QueryLease>& query, int errnum) {
    EXPECT_TRUE(query);
    if (!query)
        return {};
    EXPECT_EQ(query->invalid, errnum);
    EXPECT_FALSE(query->ipv4 || query->ipv6);
    EXPECT_TRUE(table.pending_output(id).empty()) << "nothing before leased's verdict";
    EXPECT_EQ(table.read_space(id), 0u);
    EXPECT_TRUE(table.answered(id, msg::LeaseAnswer{}, t0));
    return std::string(table.pending_output(id));
}

} // namespace

TEST(Connections, AtMost1024AreOpenAndTheNextIsRefused) {
    ConnectionTable table;
    for (int i = 0; i < 1024; ++i)
        ASSERT_TRUE(table.open(ip6("fe80::1"), t0).has_value()) << "connection " << i;
    EXPECT_FALSE(table.open(ip6("fe80::1"), t0).has_value());
    EXPECT_EQ(table.size(), 1024u);
}

TEST(Connections, ClosedConnectionFreesItsSlot) {
    ConnectionTable table(Limits{2, 10s, 10s});
    auto a = table.open(ip6("fe80::1"), t0);
    ASSERT_TRUE(table.open(ip6("fe80::2"), t0));
    ASSERT_FALSE(table.open(ip6("fe80::3"), t0));
    table.close(*a);
    EXPECT_TRUE(table.open(ip6("fe80::3"), t0).has_value());
}

TEST(Connections, IdsAreUniqueAmongLiveConnections) {
    ConnectionTable table(Limits{3, 10s, 10s});
    auto a = table.open(ip6("fe80::1"), t0);
    auto b = table.open(ip6("fe80::2"), t0);
    table.close(*a);
    auto c = table.open(ip6("fe80::3"), t0);
    ASSERT_TRUE(a && b && c);
    EXPECT_NE(*a, *b);
    EXPECT_NE(*c, *b);
    EXPECT_NE(*c, 0u);
}

TEST(Connections, CompleteRequestBecomesQueryWithSourceAndAddresses) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::17"), t0);
    auto query = table.received(id, bytes("request_ip=1\nipv4=10.0.0.5/32\nipv6=::/128\n\n"), t0);
    ASSERT_TRUE(query.has_value());
    EXPECT_EQ(query->source, ip6("fe80::17"));
    EXPECT_EQ(query->ipv4, ip4("10.0.0.5"));
    EXPECT_EQ(query->ipv6, ip6("::"));
}

TEST(Connections, RequestSplitOverReadsIsForwardedOnceComplete) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::17"), t0);
    EXPECT_FALSE(table.received(id, bytes("request_ip=1\nipv"), t0));
    EXPECT_FALSE(table.received(id, bytes("4=0.0.0.0/32\n"), t0 + 1s));
    auto query = table.received(id, bytes("\n"), t0 + 2s);
    ASSERT_TRUE(query.has_value());
    EXPECT_EQ(query->ipv4, ip4("0.0.0.0"));
}

TEST(Connections, IdleConnectionTimesOutAfterTenSeconds) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    EXPECT_TRUE(table.expired(t0 + 9999ms).empty());
    EXPECT_EQ(table.expired(t0 + 10s), std::vector<ConnId>{id});
    EXPECT_EQ(table.next_deadline(), t0 + 10s);
}

TEST(Connections, IdleTimeoutRestartsAfterEachAnswer) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    ASSERT_TRUE(table.received(id, bytes(kAnyRequest), t0 + 1s));
    ASSERT_TRUE(table.answered(id, granted("10.0.0.1"), t0 + 5s));
    table.wrote(id, table.pending_output(id).size(), t0 + 5s);
    EXPECT_TRUE(table.expired(t0 + 14s).empty());
    EXPECT_EQ(table.expired(t0 + 15s), std::vector<ConnId>{id});
}

TEST(Connections, NoTimeoutRunsWhileLeasedDecides) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    ASSERT_TRUE(table.received(id, bytes(kAnyRequest), t0));
    EXPECT_TRUE(table.expired(t0 + 60s).empty());
    EXPECT_FALSE(table.next_deadline().has_value());
}

TEST(Connections, RequestMustBeCompleteTenSecondsAfterItsFirstByte) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    // One byte per second keeps the connection from being idle but not from the request timeout.
    const std::string_view trickle = "request_ip=1\nipv4=0.0.0.0/32\n";
    for (int s = 0; s < 10; ++s) {
        EXPECT_TRUE(table.expired(t0 + std::chrono::seconds(s)).empty()) << "second " << s;
        table.received(id, bytes(trickle.substr(s, 1)), t0 + std::chrono::seconds(s));
    }
    EXPECT_EQ(table.expired(t0 + 10s), std::vector<ConnId>{id});
}

TEST(Connections, RequestTimeoutStartsWithTheNextRequestNotTheConnection) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    ASSERT_TRUE(table.received(id, bytes(kAnyRequest), t0));
    ASSERT_TRUE(table.answered(id, granted("10.0.0.1"), t0 + 1s));
    table.wrote(id, table.pending_output(id).size(), t0 + 1s);
    table.received(id, bytes("request_ip=1\n"), t0 + 8s);
    EXPECT_TRUE(table.expired(t0 + 17s).empty());
    EXPECT_EQ(table.expired(t0 + 18s), std::vector<ConnId>{id});
}

TEST(Connections, OneRequestInFlightStopsReading) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    EXPECT_GT(table.read_space(id), 0u);
    ASSERT_TRUE(table.received(id, bytes(kAnyRequest), t0));
    EXPECT_EQ(table.read_space(id), 0u);
    table.answered(id, granted("10.0.0.1"), t0);
    EXPECT_EQ(table.read_space(id), 0u) << "the answer is not written yet";
    table.wrote(id, table.pending_output(id).size(), t0);
    EXPECT_GT(table.read_space(id), 0u);
}

TEST(Connections, UnwrittenAnswerStopsReadingUntilItIsAllWritten) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    ASSERT_TRUE(table.received(id, bytes(kAnyRequest), t0));
    ASSERT_TRUE(table.answered(id, granted("10.0.0.1"), t0));
    const std::size_t owed = table.pending_output(id).size();
    ASSERT_GT(owed, 1u);
    table.wrote(id, owed - 1, t0);
    EXPECT_EQ(table.read_space(id), 0u);
    table.wrote(id, 1, t0);
    EXPECT_EQ(table.read_space(id), proto::max_message_bytes);
}

TEST(Connections, StalledWriteTimesOutAtTheIdleTimeout) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    ASSERT_TRUE(table.received(id, bytes(kAnyRequest), t0));
    ASSERT_TRUE(table.answered(id, granted("10.0.0.1"), t0 + 1s));
    table.wrote(id, 10, t0 + 2s); // then the peer's window stays closed
    EXPECT_EQ(table.next_deadline(), t0 + 12s);
    EXPECT_TRUE(table.expired(t0 + 12s - 1ms).empty());
    EXPECT_EQ(table.expired(t0 + 12s), std::vector<ConnId>{id});
}

TEST(Connections, PeerPipeliningWithoutReadingHoldsAtMostOneAnswerAndOneMessage) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    // The peer sends as fast as protod reads, and reads nothing.
    std::string flood;
    while (flood.size() < 100 * proto::max_message_bytes)
        flood += kAnyRequest;
    std::size_t offset = 0, forwarded = 0;
    auto feed = [&] {
        while (std::size_t space = table.read_space(id)) {
            std::size_t n = std::min(space, flood.size() - offset);
            if (n == 0)
                break;
            if (table.received(id, bytes(std::string_view(flood).substr(offset, n)), t0))
                ++forwarded;
            offset += n;
        }
    };
    feed();
    ASSERT_EQ(forwarded, 1u);
    ASSERT_TRUE(table.answered(id, granted("10.0.0.1"), t0));
    feed();
    EXPECT_EQ(forwarded, 1u) << "nothing is forwarded while an answer is unwritten";
    EXPECT_LE(offset, proto::max_message_bytes) << "nothing is read while an answer is unwritten";
    EXPECT_LE(table.pending_output(id).size(), kMaxResponseBytes);
    // The peer reads the answer: the next buffered request goes, one only.
    auto next = table.wrote(id, table.pending_output(id).size(), t0);
    EXPECT_TRUE(next.has_value());
    EXPECT_EQ(table.read_space(id), 0u);
}

TEST(Connections, PipelinedRequestsAreForwardedOneAtATimeAndAnsweredInOrder) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    auto first = table.received(
        id, bytes("request_ip=1\nipv4=10.0.0.1/32\n\nrequest_ip=1\nipv4=10.0.0.2/32\n\n"), t0);
    ASSERT_TRUE(first.has_value());
    EXPECT_EQ(first->ipv4, ip4("10.0.0.1"));

    EXPECT_TRUE(table.answered(id, granted("10.0.0.1", 100), t0));
    std::string out(table.pending_output(id));
    auto next = table.wrote(id, out.size(), t0);
    ASSERT_TRUE(next.has_value()) << "the second goes once the first answer is written";
    EXPECT_EQ(next->ipv4, ip4("10.0.0.2"));

    EXPECT_TRUE(table.answered(id, granted("10.0.0.2", 200), t0));
    out += table.pending_output(id);
    EXPECT_FALSE(table.wrote(id, table.pending_output(id).size(), t0).has_value());

    proto::ResponseParser parser;
    parser.feed(out);
    auto r1 = parser.next();
    auto r2 = parser.next();
    ASSERT_TRUE(std::holds_alternative<proto::Response>(r1));
    ASSERT_TRUE(std::holds_alternative<proto::Response>(r2));
    EXPECT_EQ(std::get<proto::Response>(r1).leasestart, 100u);
    EXPECT_EQ(std::get<proto::Response>(r2).leasestart, 200u);
}

TEST(Connections, AnswerForClosedConnectionIsDropped) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    ASSERT_TRUE(table.received(id, bytes(kAnyRequest), t0));
    table.close(id);
    EXPECT_FALSE(table.answered(id, granted("10.0.0.1"), t0));
    EXPECT_TRUE(table.pending_output(id).empty());
}

TEST(Connections, AnswerNobodyAskedForIsDropped) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    EXPECT_FALSE(table.answered(id, granted("10.0.0.1"), t0));
    EXPECT_TRUE(table.pending_output(id).empty());
}

TEST(Connections, ModernRequestGetsModernResponse) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    ASSERT_TRUE(table.received(id, bytes(kAnyRequest), t0));
    table.answered(id, granted("10.0.0.9"), t0);
    std::string out(table.pending_output(id));
    EXPECT_EQ(out.rfind("request_ip=1\nipv4=10.0.0.9/32\n", 0), 0u) << out;
    EXPECT_EQ(parsed_response(out).dialect, proto::Dialect::modern);
}

TEST(Connections, LegacyRequestGetsLegacyResponse) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    ASSERT_TRUE(table.received(id, bytes("request_ip=1\nip=0.0.0.0/32\n\n"), t0));
    table.answered(id, granted("10.0.0.9"), t0);
    std::string out(table.pending_output(id));
    EXPECT_EQ(out.rfind("ip=10.0.0.9/32\n", 0), 0u) << out;
    EXPECT_EQ(out.find("request_ip"), std::string::npos) << out;
}

TEST(Connections, InvalidRequestIsAnsweredWithErrno1ThenClosed) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    auto q = table.received(id, bytes("request_ip=1\nipv4=10.0.0.1/24\n\n"), t0);
    std::string out = error_after_verdict(table, id, q, 1);
    auto response = parsed_response(out);
    EXPECT_EQ(response.errnum, 1);
    EXPECT_NE(out.find("errmsg=Invalid request\n"), std::string::npos) << out;
    EXPECT_EQ(out.rfind("request_ip=1\n", 0), 0u) << out;
    EXPECT_EQ(table.read_space(id), 0u);
    EXPECT_FALSE(table.finished(id)); // the answer is not written yet
    table.wrote(id, out.size(), t0);
    EXPECT_TRUE(table.finished(id));
}

// SPEC "Response": errors to a request in the ip= dialect are written in that
// dialect (no request_ip=1 line).
TEST(Connections, InvalidRequestInTheIpDialectIsAnsweredInThatDialect) {
    for (std::string_view bad :
         {"request_ip=1\nip=10.0.0.1/24\n\n", "request_ip=1\nip=fe80::1\n\n",
          "request_ip=1\nip=0.0.0.0\nip=0.0.0.0\n\n", "request_ip=1\nip=0.0.0.0\r\n"}) {
        ConnectionTable table;
        auto id = *table.open(ip6("fe80::1"), t0);
        std::string out = error_after_verdict(table, id, table.received(id, bytes(bad), t0), 1);
        EXPECT_EQ(out, "errno=1\nerrmsg=Invalid request\n\n") << bad;
    }
    EXPECT_EQ(dialect_of("request_ip=1\nip=10.0.0.1\nipv4=0.0.0.0\n"), proto::Dialect::modern)
        << "both dialects at once: the modern one";
    EXPECT_EQ(dialect_of("request_ip=1\n"), proto::Dialect::modern);
    EXPECT_EQ(dialect_of("request_ip=1\nxip=1\n"), proto::Dialect::modern);
}

// SPEC "Transport": a source that is not a peer gets no answer, not even to
// an invalid request: leased's refusal closes the connection without a word.
TEST(Connections, InvalidRequestWaitsForLeasedsVerdictOnTheSource) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::99"), t0);
    auto q = table.received(id, bytes("request_ip=2\n\n"), t0);
    ASSERT_TRUE(q);
    EXPECT_EQ(q->source, ip6("fe80::99"));
    EXPECT_EQ(q->invalid, 2);
    EXPECT_TRUE(table.pending_output(id).empty());
    EXPECT_EQ(table.read_space(id), 0u);
    EXPECT_FALSE(table.finished(id)) << "waits for leased";
}

TEST(Connections, UnsupportedVersionIsAnsweredWithErrno2ThenClosed) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    std::string out =
        error_after_verdict(table, id, table.received(id, bytes("request_ip=2\n\n"), t0), 2);
    EXPECT_EQ(parsed_response(out).errnum, 2);
    EXPECT_NE(out.find("errmsg=Unsupported protocol\n"), std::string::npos) << out;
    table.wrote(id, out.size(), t0);
    EXPECT_TRUE(table.finished(id));
}

TEST(Connections, InvalidPipelinedRequestIsAnsweredAfterTheGoodOne) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    std::string two = std::string(kAnyRequest) + "garbage\n\n";
    ASSERT_TRUE(table.received(id, bytes(two), t0));
    EXPECT_TRUE(table.pending_output(id).empty());
    ASSERT_TRUE(table.answered(id, granted("10.0.0.1"), t0));
    std::string out(table.pending_output(id));
    auto next = table.wrote(id, out.size(), t0);
    ASSERT_TRUE(next.has_value()) << "the invalid one goes to leased once the first is written";
    EXPECT_EQ(next->invalid, 1);
    ASSERT_TRUE(table.answered(id, msg::LeaseAnswer{}, t0));
    out += table.pending_output(id); // the error, once leased judged the source a peer
    proto::ResponseParser parser;
    parser.feed(out);
    auto r1 = parser.next();
    auto r2 = parser.next();
    ASSERT_TRUE(std::holds_alternative<proto::Response>(r1));
    ASSERT_TRUE(std::holds_alternative<proto::Response>(r2));
    EXPECT_EQ(std::get<proto::Response>(r1).errnum, 0);
    EXPECT_EQ(std::get<proto::Response>(r2).errnum, 1);
    table.wrote(id, table.pending_output(id).size(), t0);
    EXPECT_TRUE(table.finished(id));
}

TEST(Connections, PeerClosingWhileAwaitingAnswerStillGetsTheAnswer) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    ASSERT_TRUE(table.received(id, bytes(kAnyRequest), t0));
    EXPECT_FALSE(table.peer_closed_side(id));
    table.peer_closed(id);
    EXPECT_TRUE(table.peer_closed_side(id));
    EXPECT_FALSE(table.finished(id));
    ASSERT_TRUE(table.answered(id, granted("10.0.0.1"), t0));
    EXPECT_FALSE(table.finished(id));
    table.wrote(id, table.pending_output(id).size(), t0);
    EXPECT_TRUE(table.finished(id));
}

TEST(Connections, GoodConnectionStaysOpenForFurtherRequests) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    ASSERT_TRUE(table.received(id, bytes(kAnyRequest), t0));
    table.answered(id, granted("10.0.0.1"), t0);
    table.wrote(id, table.pending_output(id).size(), t0);
    EXPECT_FALSE(table.finished(id));
    EXPECT_TRUE(table.received(id, bytes(kAnyRequest), t0).has_value());
}

TEST(Connections, PartialWritesKeepTheRestPending) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    ASSERT_TRUE(table.received(id, bytes(kAnyRequest), t0));
    table.answered(id, granted("10.0.0.1"), t0);
    std::string all(table.pending_output(id));
    table.wrote(id, 5, t0);
    EXPECT_EQ(table.pending_output(id), all.substr(5));
}

TEST(ResponseFor, FailedAnswerCarriesTheSpecErrmsg) {
    msg::LeaseAnswer a;
    a.errnum = 3;
    auto r = response_for(a, proto::Dialect::modern);
    EXPECT_EQ(r.errnum, 3);
    EXPECT_EQ(r.errmsg, "Chosen IP(s) unavailable");
    EXPECT_FALSE(r.ipv4.has_value());
}

TEST(ResponseFor, PartialSuccessKeepsTheGrantedAddress) {
    msg::LeaseAnswer a = granted("10.1.2.3");
    a.errnum = 3;
    std::string wire = proto::serialize(response_for(a, proto::Dialect::modern));
    EXPECT_NE(wire.find("ipv4=10.1.2.3/32\n"), std::string::npos) << wire;
    EXPECT_NE(wire.find("errno=3\n"), std::string::npos) << wire;
}

TEST(ResponseFor, SuccessHasNoErrmsg) {
    auto r = response_for(granted("10.1.2.3"), proto::Dialect::legacy);
    EXPECT_EQ(r.errnum, 0);
    EXPECT_TRUE(r.errmsg.empty());
    EXPECT_EQ(r.dialect, proto::Dialect::legacy);
}

namespace {

sockaddr_storage peer6(const char* addr, std::uint16_t port) {
    sockaddr_storage ss{};
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    const Ip6 a = ip6(addr);
    std::memcpy(&sin6->sin6_addr, a.bytes.data(), 16);
    return ss;
}

constexpr socklen_t kLen6 = sizeof(sockaddr_in6);

} // namespace

TEST(AllowedSource, LinkLocalSourceFromPort970IsServed) {
    EXPECT_EQ(allowed_source(peer6("fe80::1234", 970), kLen6, true), ip6("fe80::1234"));
    EXPECT_EQ(allowed_source(peer6("febf::1", 970), kLen6, true),
              ip6("febf::1")); // end of fe80::/10
}

TEST(AllowedSource, SourcePortOtherThan970IsRefused) {
    EXPECT_FALSE(allowed_source(peer6("fe80::1234", 971), kLen6, true));
    EXPECT_FALSE(allowed_source(peer6("fe80::1234", 40000), kLen6, true));
}

TEST(AllowedSource, SourceOutsideLinkLocalIsRefused) {
    EXPECT_FALSE(allowed_source(peer6("2001:db8::1", 970), kLen6, true));
    EXPECT_FALSE(allowed_source(peer6("::1", 970), kLen6, true));
    EXPECT_FALSE(allowed_source(peer6("fec0::1", 970), kLen6, true)); // just past fe80::/10
    EXPECT_FALSE(allowed_source(peer6("::ffff:169.254.0.1", 970), kLen6, true));
}

TEST(AllowedSource, Ipv4PeerIsRefusedEvenWithoutTheCheck) {
    sockaddr_storage ss{};
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(970);
    EXPECT_FALSE(allowed_source(ss, sizeof(sockaddr_in), true));
    EXPECT_FALSE(allowed_source(ss, sizeof(sockaddr_in), false));
}

TEST(AllowedSource, WithoutTheCheckAnyIpv6SourceIsTaken) {
    EXPECT_EQ(allowed_source(peer6("::1", 51234), kLen6, false), ip6("::1"));
}

TEST(AllowedSource, TruncatedAddressIsRefused) {
    EXPECT_FALSE(allowed_source(peer6("fe80::1", 970), kLen6 - 1, true));
}

TEST(Connections, CrlfRequestIsAnsweredWithoutWaitingForAnEmptyLine) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    // With CRLF the empty line never comes; the first line is already invalid.
    auto q = table.received(id, bytes("request_ip=1\r\nipv4=0.0.0.0/32\r\n\r\n"), t0);
    EXPECT_EQ(parsed_response(error_after_verdict(table, id, q, 1)).errnum, 1);
    table.wrote(id, table.pending_output(id).size(), t0);
    EXPECT_TRUE(table.finished(id));
}

TEST(Connections, HttpRequestIsAnsweredAtItsFirstLine) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    auto q = table.received(id, bytes("GET / HTTP/1.1\r\n"), t0);
    EXPECT_EQ(parsed_response(error_after_verdict(table, id, q, 1)).errnum, 1);
}

TEST(Connections, UnknownCommandIsAnsweredWithErrno2AtItsFirstLine) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    auto q = table.received(id, bytes("request_ip=2\n"), t0);
    EXPECT_EQ(parsed_response(error_after_verdict(table, id, q, 2)).errnum, 2);
}

TEST(Connections, BadLaterLineIsAnsweredBeforeTheMessageEnds) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    EXPECT_FALSE(table.received(id, bytes("request_ip=1\n"), t0));
    EXPECT_TRUE(table.pending_output(id).empty());
    auto q = table.received(id, bytes("ipv4=10.0.0.1/24\n"), t0);
    EXPECT_EQ(parsed_response(error_after_verdict(table, id, q, 1)).errnum, 1);
}

TEST(Connections, GoodLinesOfAnIncompleteRequestWaitForItsEnd) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    EXPECT_FALSE(table.received(id, bytes("request_ip=1\nfuture_key=x\nipv6=::/128\n"), t0));
    EXPECT_TRUE(table.pending_output(id).empty());
    EXPECT_GT(table.read_space(id), 0u);
    EXPECT_TRUE(table.received(id, bytes("\n"), t0).has_value());
}

TEST(Connections, BadLineOfAPipelinedRequestIsAnsweredInItsTurn) {
    ConnectionTable table;
    auto id = *table.open(ip6("fe80::1"), t0);
    ASSERT_TRUE(table.received(id, bytes("request_ip=1\n\nGET / HTTP/1.1\r\n"), t0));
    EXPECT_TRUE(table.pending_output(id).empty()); // the first is with leased
    ASSERT_TRUE(table.answered(id, granted("10.0.0.1"), t0));
    std::string out(table.pending_output(id));
    auto next = table.wrote(id, out.size(), t0);
    ASSERT_TRUE(next.has_value()) << "the bad one goes to leased for its verdict once written";
    EXPECT_EQ(next->invalid, 1);
    ASSERT_TRUE(table.answered(id, msg::LeaseAnswer{}, t0));
    out += table.pending_output(id);
    proto::ResponseParser parser;
    parser.feed(out);
    auto r1 = parser.next();
    auto r2 = parser.next();
    ASSERT_TRUE(std::holds_alternative<proto::Response>(r1));
    ASSERT_TRUE(std::holds_alternative<proto::Response>(r2));
    EXPECT_EQ(std::get<proto::Response>(r1).errnum, 0);
    EXPECT_EQ(std::get<proto::Response>(r2).errnum, 1);
}
