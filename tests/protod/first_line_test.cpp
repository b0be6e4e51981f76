// A peer that does not speak the protocol (CR LF line ends, HTTP,
// TLS) is answered as soon as its first line is complete, not after the
// request timeout: its bytes may never contain the "\n\n" that ends a message.
// The early verdict is the one codec.hpp's rules give the whole message.
#include "protod/codec.hpp"

#include <gtest/gtest.h>

#include <string>
#include <variant>

using namespace wgd::proto;

namespace {

template <class Message>
std::variant<NeedMore, Message, ParseError> feed_all(Parser<Message>& parser, std::string bytes) {
    parser.feed(bytes);
    return parser.next();
}

int early_errnum(const std::string& first_line) {
    RequestParser parser;
    auto r = feed_all(parser, first_line);
    auto* error = std::get_if<ParseError>(&r);
    return error ? error->errnum() : 0;
}

} // namespace

TEST(FirstLine, CrLfRequestIsInvalidAtItsFirstLine) {
    EXPECT_EQ(early_errnum("request_ip=1\r\n"), 1);
}

TEST(FirstLine, HttpRequestIsInvalidAtItsFirstLine) {
    EXPECT_EQ(early_errnum("GET / HTTP/1.1\r\n"), 1);
}

TEST(FirstLine, UnknownCommandIsUnsupportedAtItsFirstLine) {
    EXPECT_EQ(early_errnum("release_ip=1\n"), 2);
    EXPECT_EQ(early_errnum("request_ip=2\n"), 2);
}

TEST(FirstLine, GoodCommandWaitsForTheRestOfTheMessage) {
    RequestParser parser;
    auto r = feed_all(parser, "request_ip=1\nipv4=0.0.0.0/32\n");
    EXPECT_TRUE(std::holds_alternative<NeedMore>(r));
}

TEST(FirstLine, EarlyVerdictFollowsTheCodecRulesForTheCommandLine) {
    // The errno codec.hpp's rules give each first line, whatever follows it.
    const std::pair<const char*, int> cases[] = {
        {"request_ip=1\r", 1}, {"GET / HTTP/1.1\r", 1}, {"=1", 1},           {"REQUEST_IP=1", 1},
        {"hello=world", 2},    {"request_ip=01", 1},    {"request_ip=3", 2}, {"ipv4=0.0.0.0/32", 1},
        {"request_ip", 1},     {"\x16\x03\x01=1", 1},
    };
    for (const auto& [first, errnum] : cases) {
        SCOPED_TRACE(first);
        EXPECT_EQ(early_errnum(std::string(first) + "\n"), errnum);
        auto whole = parse_request(std::string(first) + "\nipv4=0.0.0.0/32\n\n");
        ASSERT_TRUE(std::holds_alternative<ParseError>(whole));
        EXPECT_EQ(std::get<ParseError>(whole).errnum(), errnum);
    }
}

TEST(FirstLine, ResponseWithBadVersionIsRefusedEarlyAndLegacyResponseIsNot) {
    ResponseParser bad;
    auto r = feed_all(bad, "request_ip=2\n");
    ASSERT_TRUE(std::holds_alternative<ParseError>(r));
    EXPECT_EQ(std::get<ParseError>(r).errnum(), 2);
    ResponseParser legacy;
    EXPECT_TRUE(std::holds_alternative<NeedMore>(feed_all(legacy, "ip=10.0.0.2/32\n")));
}
