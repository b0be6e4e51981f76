// One test per rule of SPEC.md "Messages" at least, plus the codec's own
// decisions listed at the top of protod/codec.hpp.
#include "protod/codec.hpp"

#include <gtest/gtest.h>

#include <string>
#include <variant>

using namespace std::string_literals;
using namespace wgd;
using namespace wgd::proto;

namespace {

Ip4 ip4(const char* text) {
    return parse_ip4(text).value();
}
Ip6 ip6(const char* text) {
    return parse_ip6(text).value();
}

Request request_ok(std::string_view bytes) {
    auto result = parse_request(bytes);
    if (auto* error = std::get_if<ParseError>(&result))
        ADD_FAILURE() << "unexpected error: " << error->detail << " for " << bytes;
    return std::holds_alternative<Request>(result) ? std::get<Request>(result) : Request{};
}

Response response_ok(std::string_view bytes) {
    auto result = parse_response(bytes);
    if (auto* error = std::get_if<ParseError>(&result))
        ADD_FAILURE() << "unexpected error: " << error->detail << " for " << bytes;
    return std::holds_alternative<Response>(result) ? std::get<Response>(result) : Response{};
}

// errno of the parse error, 0 when it parsed.
int request_errno(std::string_view bytes) {
    auto result = parse_request(bytes);
    auto* error = std::get_if<ParseError>(&result);
    return error ? error->errnum() : 0;
}

int response_errno(std::string_view bytes) {
    auto result = parse_response(bytes);
    auto* error = std::get_if<ParseError>(&result);
    return error ? error->errnum() : 0;
}

std::string req(std::string_view body) {
    return "request_ip=1\n"s + std::string(body) + "\n";
}

std::string resp(std::string_view body) {
    return "request_ip=1\n"s + std::string(body) + "\n";
}

} // namespace

// --- SPEC's examples, verbatim ---

TEST(Codec, SpecRequestExampleParses) {
    const auto r = request_ok("request_ip=1\nipv4=192.168.47.11/32\nipv6=2001:db8::17/128\n\n");
    EXPECT_EQ(r.ipv4, ip4("192.168.47.11"));
    EXPECT_EQ(r.ipv6, ip6("2001:db8::17"));
    EXPECT_EQ(r.dialect, Dialect::modern);
}

TEST(Codec, SpecResponseExampleIsWhatTheSerialiserWrites) {
    const std::string spec = "request_ip=1\nipv4=192.168.47.11/32\nipv6=2001:db8::17/128\n"
                             "leasestart=1764201600\nleasetime=3600\nerrno=0\n\n";
    Response r;
    r.ipv4 = ip4("192.168.47.11");
    r.ipv6 = ip6("2001:db8::17");
    r.leasestart = 1764201600;
    r.leasetime = 3600;
    EXPECT_EQ(serialize(r), spec);
    const auto parsed = response_ok(spec);
    EXPECT_EQ(parsed.ipv4, r.ipv4);
    EXPECT_EQ(parsed.ipv6, r.ipv6);
    EXPECT_EQ(parsed.leasestart, 1764201600u);
    EXPECT_EQ(parsed.leasetime, 3600u);
    EXPECT_EQ(parsed.errnum, 0);
    EXPECT_EQ(parsed.errmsg, "Success");
    EXPECT_EQ(parsed.dialect, Dialect::modern);
}

TEST(Codec, SeedRequestWithNoAddressKeyAsksForEachFamily) {
    const auto r = request_ok("request_ip=1\n\n");
    EXPECT_FALSE(r.ipv4);
    EXPECT_FALSE(r.ipv6);
}

TEST(Codec, SeedResponseWithoutErrnoIsInvalid) {
    // The seed's sketch "request_ip=1\nipv4=192.168.47.11/32\n\n" predates errno; SPEC requires it.
    EXPECT_EQ(response_errno("request_ip=1\nipv4=192.168.47.11/32\n\n"), 1);
}

// --- Framing: "key=value\n" lines ended by an empty line ---

TEST(Codec, MessageIsCompleteOnlyAtTheEmptyLine) {
    RequestParser parser;
    parser.feed("request_ip=1\nipv4=192.0.2.7\n"s);
    EXPECT_TRUE(std::holds_alternative<NeedMore>(parser.next()));
    parser.feed("\n"s);
    auto result = parser.next();
    ASSERT_TRUE(std::holds_alternative<Request>(result));
    EXPECT_EQ(std::get<Request>(result).ipv4, ip4("192.0.2.7"));
    EXPECT_EQ(parser.buffered(), 0u);
}

TEST(Codec, EmptyMessageHasNoCommandAndIsInvalid) {
    EXPECT_EQ(request_errno("\n"), 1);
}

// --- Limits: line 4096 bytes with its newline, message 8192 bytes ---

namespace {
// An unknown-key line of exactly `bytes` bytes including its newline.
std::string line_of(std::size_t bytes) {
    return "x=" + std::string(bytes - 3, 'a') + "\n";
}
} // namespace

TEST(Codec, LineOf4096BytesIsAccepted) {
    EXPECT_EQ(line_of(4096).size(), 4096u);
    EXPECT_EQ(request_errno(req(line_of(4096))), 0);
}

TEST(Codec, LineOf4097BytesIsInvalid) {
    EXPECT_EQ(request_errno(req(line_of(4097))), 1);
}

TEST(Codec, LineOver4096BytesIsInvalidBeforeItsNewlineArrives) {
    RequestParser parser;
    parser.feed("request_ip=1\nx="s + std::string(4093, 'a'));
    EXPECT_TRUE(std::holds_alternative<NeedMore>(parser.next())); // 4095 bytes: still may end
    parser.feed("a"s);                                            // 4096 bytes, no newline
    auto result = parser.next();
    ASSERT_TRUE(std::holds_alternative<ParseError>(result));
    EXPECT_EQ(std::get<ParseError>(result).kind, ErrorKind::invalid_request);
}

TEST(Codec, MessageOf8192BytesIsAccepted) {
    const auto message = req(line_of(4096) + line_of(8192 - 13 - 4096 - 1));
    ASSERT_EQ(message.size(), 8192u);
    EXPECT_EQ(request_errno(message), 0);
}

TEST(Codec, MessageOf8193BytesIsInvalid) {
    const auto message = req(line_of(4096) + line_of(8192 - 13 - 4096 - 1 + 1));
    ASSERT_EQ(message.size(), 8193u);
    EXPECT_EQ(request_errno(message), 1);
}

TEST(Codec, MessageOver8192BytesIsInvalidBeforeItsEnd) {
    RequestParser parser;
    const auto body = "request_ip=1\n"s + line_of(4096) + line_of(4082);
    ASSERT_EQ(body.size(), 8191u);
    EXPECT_EQ(parser.feed(body), 8191u);
    EXPECT_TRUE(std::holds_alternative<NeedMore>(parser.next())); // one "\n" would complete it
    EXPECT_EQ(parser.feed("y"s), 1u);
    EXPECT_TRUE(std::holds_alternative<ParseError>(parser.next()));
}

TEST(Codec, ResponseLimitsAreTheSame) {
    const auto ok = resp("errno=1\n" + line_of(4096));
    EXPECT_EQ(response_errno(ok), 0);
    EXPECT_EQ(response_errno(resp("errno=1\n" + line_of(4097))), 1);
    const auto long_errmsg = "errmsg=" + std::string(4096 - 8, 'e') + "\n";
    EXPECT_EQ(response_errno(resp("errno=1\n" + long_errmsg)), 0);
}

TEST(Codec, ParserNeverBuffersMoreThanTheMessageLimit) {
    RequestParser parser;
    const std::string flood(20000, 'a');
    EXPECT_EQ(parser.feed(flood), max_message_bytes);
    EXPECT_EQ(parser.space(), 0u);
    EXPECT_EQ(parser.feed(flood), 0u);
    EXPECT_TRUE(std::holds_alternative<ParseError>(parser.next()));
}

// --- NUL bytes are invalid ---

TEST(Codec, NulByteIsInvalid) {
    EXPECT_EQ(request_errno("request_ip=1\0\n\n"s), 1);
    EXPECT_EQ(request_errno("request_ip=1\nipv4=192.0.2.7\0\n\n"s), 1);
    EXPECT_EQ(request_errno("request_ip=1\nunknown=a\0b\n\n"s), 1); // even in an ignored line
    EXPECT_EQ(response_errno("request_ip=1\nerrno=1\nerrmsg=a\0\n\n"s), 1);
}

TEST(Codec, NulByteIsInvalidBeforeTheMessageEnds) {
    RequestParser parser;
    parser.feed("request_ip=1\nx=\0"s);
    EXPECT_TRUE(std::holds_alternative<ParseError>(parser.next()));
}

// --- Keys are lower-case ASCII: [a-z0-9_]+ ---

TEST(Codec, KeyWithUpperCaseIsInvalid) {
    EXPECT_EQ(request_errno(req("IPV4=192.0.2.7\n")), 1);
    EXPECT_EQ(request_errno(req("Hostname=a\n")), 1); // also for a key we do not know
    EXPECT_EQ(request_errno("REQUEST_IP=1\n\n"), 1);
}

TEST(Codec, KeyOutsideLowerCaseDigitsUnderscoreIsInvalid) {
    for (const char* line :
         {"host-name=a\n", "host name=a\n", "ipv4 =192.0.2.7\n", "\xc3\xa9=a\n", "k.e.y=a\n"})
        EXPECT_EQ(request_errno(req(line)), 1) << line;
}

TEST(Codec, KeyOfLowerCaseDigitsUnderscoreIsAccepted) {
    EXPECT_EQ(request_errno(req("future_key_2=anything at all = here\n")), 0);
}

TEST(Codec, LineWithoutEqualsIsInvalid) {
    EXPECT_EQ(request_errno(req("ipv4\n")), 1);
    EXPECT_EQ(request_errno("request_ip\n\n"), 1);
}

TEST(Codec, EmptyKeyIsInvalid) {
    EXPECT_EQ(request_errno(req("=192.0.2.7\n")), 1);
}

// --- CR is no line terminator ---

TEST(Codec, CrInAKnownValueIsInvalid) {
    EXPECT_EQ(request_errno("request_ip=1\r\n\n"), 1);
    EXPECT_EQ(request_errno(req("ipv4=192.0.2.7\r\n")), 1);
    EXPECT_EQ(request_errno(req("leasetime=0\r\n")), 1);
    EXPECT_EQ(response_errno(resp("errno=0\r\n")), 1);
}

TEST(Codec, CrLfLineEndingsAreInvalid) {
    EXPECT_EQ(request_errno("request_ip=1\r\n\r\n\n"), 1);
}

TEST(Codec, CrLfEmptyLineDoesNotEndAMessage) {
    RequestParser parser;
    parser.feed("request_ip=1\n\r\n"s);
    EXPECT_TRUE(std::holds_alternative<NeedMore>(parser.next()));
    parser.feed("\n"s);
    EXPECT_TRUE(std::holds_alternative<ParseError>(parser.next())); // "\r" is a line without '='
}

TEST(Codec, CrInAnUnknownValueIsIgnored) {
    EXPECT_EQ(request_errno(req("future=a\r\n")), 0);
}

// --- The first line is the command; only request_ip=1 exists ---

TEST(Codec, FirstLineMustBeTheCommand) {
    EXPECT_EQ(request_errno("ipv4=192.0.2.7\nrequest_ip=1\n\n"), 1);
    EXPECT_EQ(request_errno("leasetime=0\n\n"), 1);
}

TEST(Codec, UnknownCommandIsUnsupportedProtocol) {
    EXPECT_EQ(request_errno("release_ip=1\n\n"), 2);
    EXPECT_EQ(request_errno("errno=0\n\n"), 2); // a response key is no command of a request
}

TEST(Codec, OtherVersionIsUnsupportedProtocol) {
    EXPECT_EQ(request_errno("request_ip=2\n\n"), 2);
    EXPECT_EQ(request_errno("request_ip=0\n\n"), 2);
    EXPECT_EQ(request_errno("request_ip=99999999999999999999999\n\n"), 2);
    EXPECT_EQ(response_errno("request_ip=2\nerrno=0\n\n"), 2);
}

TEST(Codec, MalformedVersionIsInvalid) {
    for (const char* first : {"request_ip=\n", "request_ip=01\n", "request_ip=+1\n",
                              "request_ip=1 \n", "request_ip=one\n"})
        EXPECT_EQ(request_errno(std::string(first) + "\n"), 1) << first;
}

TEST(Codec, CommandAfterTheFirstLineIsInvalid) {
    EXPECT_EQ(request_errno(req("request_ip=1\n")), 1);
    EXPECT_EQ(response_errno("errno=1\nrequest_ip=1\n\n"), 1);
}

// --- Unknown keys are ignored; repeated known keys are invalid ---

TEST(Codec, UnknownKeysAreIgnored) {
    const auto plain = request_ok(req("ipv4=192.0.2.7\n"));
    const auto extra = request_ok(req("hostname=a\nipv4=192.0.2.7\nz_9=\n"));
    EXPECT_EQ(extra, plain);
    EXPECT_EQ(request_errno(req("hostname=a\nhostname=b\n")), 0); // repeats of unknown keys too
    const auto with_unknown = response_ok(resp("errno=1\nserver_id=7\n"));
    EXPECT_EQ(with_unknown.errnum, 1);
}

TEST(Codec, RepeatedKnownKeyIsInvalid) {
    for (const char* body :
         {"ipv4=192.0.2.7\nipv4=192.0.2.7\n", "ipv6=2001:db8::1\nipv6=2001:db8::2\n",
          "ipv4=0.0.0.0\nipv4=192.0.2.7\n", "leasestart=0\nleasestart=0\n",
          "leasetime=0\nleasetime=0\n"})
        EXPECT_EQ(request_errno(req(body)), 1) << body;
    for (const char* body :
         {"errno=0\nerrno=0\nleasestart=1\nleasetime=1\n", "errno=1\nerrmsg=a\nerrmsg=b\n",
          "errno=0\nleasestart=1\nleasestart=1\nleasetime=1\n",
          "errno=0\nleasestart=1\nleasetime=1\nleasetime=1\n",
          "errno=3\nipv4=192.0.2.7\nipv4=192.0.2.8\nleasestart=1\nleasetime=1\n"})
        EXPECT_EQ(response_errno(resp(body)), 1) << body;
}

TEST(Codec, IpKeyMayAppearOncePerFamily) {
    const auto r = request_ok(req("ip=192.0.2.7\nip=2001:db8::7\n"));
    EXPECT_EQ(r.ipv4, ip4("192.0.2.7"));
    EXPECT_EQ(r.ipv6, ip6("2001:db8::7"));
    EXPECT_EQ(request_errno(req("ip=192.0.2.7\nip=192.0.2.7\n")), 1);
    EXPECT_EQ(request_errno(req("ip=2001:db8::7\nip=::\n")), 1);
    EXPECT_EQ(response_errno("ip=192.0.2.7/32\nip=192.0.2.8/32\nleasestart=1\nleasetime=1\n"
                             "errno=0\n\n"),
              1);
}

// --- Request addresses ---

TEST(Codec, UnspecifiedAddressMeansAnyOfItsFamily) {
    const auto r = request_ok(req("ipv4=0.0.0.0/32\nipv6=::/128\n"));
    ASSERT_TRUE(r.ipv4 && r.ipv6);
    EXPECT_TRUE(r.ipv4->is_unspecified());
    EXPECT_TRUE(r.ipv6->is_unspecified());
}

TEST(Codec, OmittedPrefixLengthIsTheFullLength) {
    EXPECT_EQ(request_ok(req("ipv4=0.0.0.0\nipv6=::\n")),
              request_ok(req("ipv4=0.0.0.0/32\nipv6=::/128\n")));
    EXPECT_EQ(request_ok(req("ipv4=192.0.2.7\n")).ipv4, ip4("192.0.2.7"));
}

TEST(Codec, OnlyOneFamilyNamedLeavesTheOtherUnnamed) {
    const auto r = request_ok(req("ipv6=2001:db8::17/128\n"));
    EXPECT_FALSE(r.ipv4);
    EXPECT_EQ(r.ipv6, ip6("2001:db8::17"));
}

TEST(Codec, PrefixLengthOtherThanFullIsInvalid) {
    for (const char* line :
         {"ipv4=192.0.2.7/24\n", "ipv4=192.0.2.7/31\n", "ipv4=192.0.2.7/33\n", "ipv4=192.0.2.7/0\n",
          "ipv4=192.0.2.7/128\n", "ipv4=192.0.2.7/032\n", "ipv4=192.0.2.7/+32\n",
          "ipv4=192.0.2.7/\n", "ipv4=192.0.2.7/ 32\n", "ipv4=192.0.2.7/32/32\n",
          "ipv6=2001:db8::1/64\n", "ipv6=2001:db8::1/32\n", "ipv6=2001:db8::1/0128\n",
          "ipv6=2001:db8::1/129\n"})
        EXPECT_EQ(request_errno(req(line)), 1) << line;
}

TEST(Codec, AnyWithAShortPrefixIsInvalid) {
    EXPECT_EQ(request_errno(req("ipv4=0.0.0.0/0\n")), 1);
    EXPECT_EQ(request_errno(req("ipv6=::/0\n")), 1);
}

TEST(Codec, LinkLocalMulticastLoopbackAddressIsInvalid) {
    for (const char* line :
         {"ipv4=169.254.1.1\n", "ipv4=224.0.0.1\n", "ipv4=127.0.0.1\n", "ipv4=255.255.255.255\n",
          "ipv6=fe80::1\n", "ipv6=ff02::1\n", "ipv6=::1\n", "ipv6=::ffff:192.0.2.7\n",
          "ip=fe80::1/128\n", "ip=127.0.0.1/32\n"})
        EXPECT_EQ(request_errno(req(line)), 1) << line;
}

TEST(Codec, MalformedAddressIsInvalid) {
    for (const char* line :
         {"ipv4=\n", "ipv4=1.2.3\n", "ipv4=192.0.2.07\n", "ipv4=192.0.2.7 \n", "ipv6=fe80::1%wg0\n",
          "ipv6=2001:db8:::1\n", "ip=\n", "ip=banana\n", "ipv4=/32\n"})
        EXPECT_EQ(request_errno(req(line)), 1) << line;
}

TEST(Codec, AddressOfTheOtherFamilyIsInvalid) {
    EXPECT_EQ(request_errno(req("ipv4=2001:db8::1\n")), 1);
    EXPECT_EQ(request_errno(req("ipv6=192.0.2.7\n")), 1);
    EXPECT_EQ(request_errno(req("ipv4=::\n")), 1);
}

TEST(Codec, LeasestartAndLeasetimeInARequestAreAcceptedAndIgnored) {
    const auto plain = request_ok(req("ipv4=0.0.0.0\n"));
    EXPECT_EQ(request_ok(req("ipv4=0.0.0.0\nleasestart=0\nleasetime=0\n")), plain);
    EXPECT_EQ(request_ok(req("ipv4=0.0.0.0\nleasestart=x\nleasetime=\n")), plain); // any value
}

TEST(Codec, ErrnoAndErrmsgInARequestAreUnknownKeysAndIgnored) {
    EXPECT_EQ(request_ok(req("errno=0\nerrmsg=x\nerrno=1\n")), request_ok(req("")));
}

// --- Dialects ---

TEST(Codec, LegacyIpKeyTakesEitherFamilyWithItsFullLength) {
    const auto r = request_ok(req("ip=192.0.2.7\nip=2001:db8::7/128\n"));
    EXPECT_EQ(r.dialect, Dialect::legacy);
    EXPECT_EQ(r.ipv4, ip4("192.0.2.7"));
    EXPECT_EQ(r.ipv6, ip6("2001:db8::7"));
    EXPECT_EQ(request_errno(req("ip=2001:db8::7/32\n")), 1);
    EXPECT_EQ(request_errno(req("ip=192.0.2.7/128\n")), 1);
    const auto any = request_ok(req("ip=0.0.0.0\nip=::\n"));
    EXPECT_TRUE(any.ipv4 && any.ipv4->is_unspecified() && any.ipv6 && any.ipv6->is_unspecified());
}

TEST(Codec, PrototypeClientRequestParsesAsLegacy) {
    const auto r = request_ok("request_ip=1\nip=0.0.0.0/32\nleasestart=0\nleasetime=0\n\n");
    EXPECT_EQ(r.dialect, Dialect::legacy);
    EXPECT_TRUE(r.ipv4 && r.ipv4->is_unspecified());
}

TEST(Codec, BothDialectsInOneMessageIsInvalid) {
    EXPECT_EQ(request_errno(req("ip=192.0.2.7\nipv6=2001:db8::7\n")), 1);
    EXPECT_EQ(request_errno(req("ipv4=192.0.2.7\nip=2001:db8::7\n")), 1);
    EXPECT_EQ(response_errno("ip=192.0.2.7/32\nipv6=2001:db8::7/128\nleasestart=1\nleasetime=1\n"
                             "errno=0\n\n"),
              1);
    EXPECT_EQ(response_errno(resp("ip=192.0.2.7/32\nleasestart=1\nleasetime=1\nerrno=0\n")), 1);
}

TEST(Codec, RequestSerialisesInEitherDialectWithThePrefixLength) {
    Request r;
    r.ipv4 = ip4("0.0.0.0");
    r.ipv6 = ip6("2001:db8::17");
    EXPECT_EQ(serialize(r), "request_ip=1\nipv4=0.0.0.0/32\nipv6=2001:db8::17/128\n\n");
    r.dialect = Dialect::legacy;
    EXPECT_EQ(serialize(r), "request_ip=1\nip=0.0.0.0/32\nip=2001:db8::17/128\n\n");
    EXPECT_EQ(serialize(Request{}), "request_ip=1\n\n");
}

TEST(Codec, LegacyResponseHasIpLinesAndNoCommandLine) {
    Response r;
    r.ipv4 = ip4("192.168.47.11");
    r.ipv6 = ip6("2001:db8::17");
    r.leasestart = 1764201600;
    r.leasetime = 3600;
    r.dialect = Dialect::legacy;
    const std::string expected = "ip=192.168.47.11/32\nip=2001:db8::17/128\n"
                                 "leasestart=1764201600\nleasetime=3600\nerrno=0\n\n";
    EXPECT_EQ(serialize(r), expected);
    const auto parsed = response_ok(expected);
    EXPECT_EQ(parsed.dialect, Dialect::legacy);
    EXPECT_EQ(parsed.ipv4, r.ipv4);
    EXPECT_EQ(parsed.ipv6, r.ipv6);
}

TEST(Codec, ModernResponseWithoutCommandIsLegacyAndRejectsModernKeys) {
    EXPECT_EQ(response_errno("ipv4=192.0.2.7/32\nleasestart=1\nleasetime=1\nerrno=0\n\n"), 1);
}

// --- Responses ---

TEST(Codec, FailureResponseCarriesErrnoAndErrmsgOnly) {
    Response r;
    r.errnum = errnum::invalid_request;
    EXPECT_EQ(serialize(r), "request_ip=1\nerrno=1\nerrmsg=Invalid request\n\n");
    r.dialect = Dialect::legacy;
    EXPECT_EQ(serialize(r), "errno=1\nerrmsg=Invalid request\n\n");
    const auto parsed = response_ok("errno=1\nerrmsg=Invalid request\n\n");
    EXPECT_EQ(parsed.errnum, 1);
    EXPECT_EQ(parsed.errmsg, "Invalid request");
    EXPECT_EQ(parsed.dialect, Dialect::legacy);
    EXPECT_FALSE(parsed.ipv4 || parsed.ipv6);
}

TEST(Codec, PartialSuccessCarriesTheGrantedAddressAndItsLease) {
    Response r;
    r.ipv4 = ip4("192.0.2.7");
    r.leasestart = 10;
    r.leasetime = 60;
    r.errnum = errnum::ip_unavailable;
    const std::string expected = "request_ip=1\nipv4=192.0.2.7/32\nleasestart=10\nleasetime=60\n"
                                 "errno=3\nerrmsg=Chosen IP(s) unavailable\n\n";
    EXPECT_EQ(serialize(r), expected);
    const auto parsed = response_ok(expected);
    EXPECT_EQ(parsed.ipv4, r.ipv4);
    EXPECT_EQ(parsed.leasetime, 60u);
    EXPECT_EQ(parsed.errnum, 3);
    EXPECT_EQ(parsed.errmsg, "Chosen IP(s) unavailable");
}

TEST(Codec, ErrmsgTableMatchesSpec) {
    EXPECT_EQ(errmsg_for(0), "Success");
    EXPECT_EQ(errmsg_for(1), "Invalid request");
    EXPECT_EQ(errmsg_for(2), "Unsupported protocol");
    EXPECT_EQ(errmsg_for(3), "Chosen IP(s) unavailable");
    EXPECT_EQ(errmsg_for(42), "Unknown error");
}

TEST(Codec, ResponseWithoutErrnoIsInvalid) {
    EXPECT_EQ(response_errno(resp("ipv4=192.0.2.7/32\nleasestart=1\nleasetime=1\n")), 1);
}

TEST(Codec, SuccessResponseWithoutLeaseTimesIsInvalid) {
    EXPECT_EQ(response_errno(resp("ipv4=192.0.2.7/32\nleasetime=1\nerrno=0\n")), 1);
    EXPECT_EQ(response_errno(resp("ipv4=192.0.2.7/32\nleasestart=1\nerrno=0\n")), 1);
    EXPECT_EQ(response_errno(resp("errno=0\n")), 1);
    EXPECT_EQ(response_errno(resp("ipv4=192.0.2.7/32\nerrno=3\n")), 1); // granted, so needed
}

TEST(Codec, FailureResponseDropsLeaseTimes) {
    const auto r = response_ok(resp("leasestart=5\nleasetime=6\nerrno=3\n"));
    EXPECT_EQ(r.leasestart, 0u);
    EXPECT_EQ(r.leasetime, 0u);
}

TEST(Codec, ResponseAddressMustBeAHost) {
    for (const char* line :
         {"ipv4=192.0.2.0/24\n", "ipv4=10.0.0.0/8\n", "ipv6=2001:db8::/64\n", "ipv6=::/0\n"})
        EXPECT_EQ(response_errno(resp(line + "leasestart=1\nleasetime=1\nerrno=0\n"s)), 1) << line;
}

TEST(Codec, ResponseAddressMustBeGlobalUnicast) {
    for (const char* line : {"ipv4=0.0.0.0/32\n", "ipv6=::/128\n", "ipv6=fe80::2/128\n",
                             "ipv6=ff02::1/128\n", "ipv4=127.0.0.1/32\n", "ipv4=224.0.0.5/32\n",
                             "ipv4=169.254.0.9/32\n", "ip=fe80::9/128\n"})
        EXPECT_EQ(response_errno((line[1] == 'p' && line[2] == '=' ? ""s : "request_ip=1\n"s) +
                                 line + "leasestart=1\nleasetime=1\nerrno=0\n\n"),
                  1)
            << line;
}

TEST(Codec, ResponseNumbersAreStrictDecimals) {
    EXPECT_EQ(response_errno(resp("errno=1\nleasestart=-1\n")), 1);
    EXPECT_EQ(response_errno(resp("errno=01\n")), 1);
    EXPECT_EQ(response_errno(resp("errno=-1\n")), 1);
    EXPECT_EQ(response_errno(resp("errno=2147483648\n")), 1);
    EXPECT_EQ(response_errno(resp("errno=2147483647\n")), 0);
    EXPECT_EQ(
        response_errno(resp("errno=0\nleasestart=18446744073709551615\nleasetime=4294967295\n")),
        0);
    EXPECT_EQ(response_errno(resp("errno=0\nleasestart=18446744073709551616\nleasetime=1\n")), 1);
    EXPECT_EQ(response_errno(resp("errno=0\nleasestart=1\nleasetime=4294967296\n")), 1);
    EXPECT_EQ(response_errno(resp("errno=0\nleasestart=1\nleasetime=0x10\n")), 1);
    EXPECT_EQ(response_errno(resp("errno=0\nleasestart=1\nleasetime=\n")), 1);
}

TEST(Codec, ErrmsgIsOptionalAndDefaultsToTheTable) {
    EXPECT_EQ(response_ok(resp("errno=2\n")).errmsg, "Unsupported protocol");
    EXPECT_EQ(response_ok(resp("errno=2\nerrmsg=\n")).errmsg, "Unsupported protocol");
    EXPECT_EQ(response_ok(resp("errno=7\nerrmsg=Pool on fire\n")).errmsg, "Pool on fire");
    EXPECT_EQ(response_ok(resp("errno=0\nleasestart=1\nleasetime=1\nerrmsg=Yes\n")).errmsg,
              "Success");
}

TEST(Codec, ErrmsgWithControlBytesIsInvalid) {
    EXPECT_EQ(response_errno(resp("errno=1\nerrmsg=a\tb\n")), 1);
    EXPECT_EQ(response_errno(resp("errno=1\nerrmsg=a\x1b[31m\n")), 1);
    EXPECT_EQ(response_errno(resp("errno=1\nerrmsg=a\x7f\n")), 1);
}

TEST(Codec, SerialiserKeepsErrmsgOnOneLine) {
    Response r;
    r.errnum = 1;
    r.errmsg = "evil\n\nerrno=0\n";
    const auto parsed = response_ok(serialize(r));
    EXPECT_EQ(parsed.errnum, 1);
    EXPECT_EQ(parsed.errmsg, "evil??errno=0?");
}

// --- Incremental parsing: pipelining and errors ---

TEST(Codec, PipelinedMessagesComeOutInOrder) {
    RequestParser parser;
    parser.feed(req("ipv4=192.0.2.1\n") + req("ipv4=192.0.2.2\n") + "request_ip=1\n"s);
    auto first = parser.next();
    auto second = parser.next();
    ASSERT_TRUE(std::holds_alternative<Request>(first));
    ASSERT_TRUE(std::holds_alternative<Request>(second));
    EXPECT_EQ(std::get<Request>(first).ipv4, ip4("192.0.2.1"));
    EXPECT_EQ(std::get<Request>(second).ipv4, ip4("192.0.2.2"));
    EXPECT_TRUE(std::holds_alternative<NeedMore>(parser.next()));
    EXPECT_EQ(parser.buffered(), 13u); // the third message's first line stays
    parser.feed("\n"s);
    EXPECT_TRUE(std::holds_alternative<Request>(parser.next()));
}

TEST(Codec, BytesAfterAMessageWaitWhileTheBufferIsFull) {
    RequestParser parser;
    const auto one = req("");
    std::string many;
    while (many.size() < 3 * max_message_bytes)
        many += one;
    std::size_t fed = 0;
    int messages = 0;
    while (fed < many.size()) {
        fed += parser.feed(std::string_view(many).substr(fed));
        for (auto r = parser.next(); std::holds_alternative<Request>(r); r = parser.next())
            ++messages;
        ASSERT_LE(parser.buffered(), max_message_bytes);
    }
    EXPECT_EQ(static_cast<std::size_t>(messages), many.size() / one.size());
}

TEST(Codec, ErrorIsSticky) {
    RequestParser parser;
    parser.feed("request_ip=2\n\n"s + req(""));
    auto first = parser.next();
    ASSERT_TRUE(std::holds_alternative<ParseError>(first));
    EXPECT_EQ(std::get<ParseError>(first).kind, ErrorKind::unsupported_protocol);
    auto again = parser.next();
    ASSERT_TRUE(std::holds_alternative<ParseError>(again));
    EXPECT_EQ(std::get<ParseError>(again).kind, ErrorKind::unsupported_protocol);
}

TEST(Codec, WholeMessageParserRejectsTrailingBytes) {
    EXPECT_EQ(request_errno(req("") + "x"), 1);
    EXPECT_EQ(request_errno("request_ip=1\n"), 1); // incomplete
}

TEST(Codec, ParseErrorMapsToErrno) {
    EXPECT_EQ((ParseError{ErrorKind::invalid_request, ""}.errnum()), 1);
    EXPECT_EQ((ParseError{ErrorKind::unsupported_protocol, ""}.errnum()), 2);
}

TEST(Codec, ErrorDetailIsShortAndPrintableWhateverTheInput) {
    const auto hostile = req("ipv4=" + std::string(3000, '\x1b') + "\n");
    auto result = parse_request(hostile);
    ASSERT_TRUE(std::holds_alternative<ParseError>(result));
    const auto& detail = std::get<ParseError>(result).detail;
    EXPECT_FALSE(detail.empty());
    EXPECT_LE(detail.size(), 100u);
    for (char c : detail)
        EXPECT_TRUE(c >= 0x20 && c < 0x7f) << static_cast<int>(c);
}
