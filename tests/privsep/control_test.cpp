#include "privsep/control.hpp"

#include <gtest/gtest.h>

using namespace wgd;
using namespace wgd::control;

namespace {

Request parsed(std::string_view text) {
    auto r = parse_request(text);
    EXPECT_TRUE(std::holds_alternative<Request>(r)) << std::get<std::string>(r);
    return std::holds_alternative<Request>(r) ? std::get<Request>(r) : Request{};
}

std::string refused(std::string_view text) {
    auto r = parse_request(text);
    EXPECT_TRUE(std::holds_alternative<std::string>(r)) << text;
    return std::holds_alternative<std::string>(r) ? std::get<std::string>(r) : "";
}

TEST(ControlRequest, ShowDefaultsToTheTableAndTakesJsonOrMetrics) {
    EXPECT_EQ(parsed("show=1\n\n").format, Format::table);
    EXPECT_EQ(parsed("show=1\nformat=json\n\n").format, Format::json);
    EXPECT_EQ(parsed("show=1\nformat=metrics\n\n").format, Format::metrics);
    EXPECT_EQ(refused("show=1\nformat=text\n\n"), "unknown format");
}

TEST(ControlRequest, MonitorDefaultsToTextAndTakesJson) {
    Request r = parsed("monitor=1\n\n");
    EXPECT_EQ(r.command, Command::monitor);
    EXPECT_EQ(r.format, Format::text);
    EXPECT_EQ(parsed("monitor=1\nformat=json\n\n").format, Format::json);
}

TEST(ControlRequest, RevokeNamesExactlyOnePeerOrLeasableAddress) {
    const std::string key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    EXPECT_TRUE(parsed("revoke=1\npeer=" + key + "\n\n").peer);
    EXPECT_EQ(parsed("revoke=1\naddress=10.77.0.5\n\n").ipv4, parse_ip4("10.77.0.5"));
    EXPECT_EQ(parsed("revoke=1\naddress=2001:db8::5\n\n").ipv6, parse_ip6("2001:db8::5"));
    EXPECT_EQ(refused("revoke=1\n\n"), "revoke names no lease");
    EXPECT_EQ(refused("revoke=1\naddress=10.77.0.5\npeer=" + key + "\n\n"),
              "more than one lease named");
    EXPECT_EQ(refused("revoke=1\naddress=fe80::1\n\n"), "not a leasable address");
    EXPECT_EQ(refused("revoke=1\npeer=abc\n\n"), "not a WireGuard public key");
    EXPECT_EQ(refused("revoke=1\nformat=json\n\n"), "unknown key");
}

TEST(ControlRequest, RefusesUnknownCommandsVersionsKeysAndBytes) {
    EXPECT_EQ(refused("reboot=1\n\n"), "unknown command");
    EXPECT_EQ(refused("show=2\n\n"), "unsupported version");
    EXPECT_EQ(refused("show=1\nformat=json\nformat=json\n\n"), "repeated format");
    EXPECT_EQ(refused("show=1\nFormat=json\n\n"), "bad key");
    EXPECT_EQ(refused("show=1\nformat=js on\n\n"), "bad value");
    EXPECT_EQ(refused(std::string("show=1\nformat=js") + '\0' + "n\n\n"), "bad value");
    EXPECT_EQ(refused("show\n\n"), "line without '='");
    EXPECT_EQ(refused("\n"), "request not ended by an empty line");
    EXPECT_EQ(refused("show=1\n" + std::string(kMaxRequestBytes, 'a') + "\n\n"),
              "request too long");
}

TEST(ControlRequest, EndIsTheFirstEmptyLine) {
    EXPECT_EQ(request_end("show=1\n"), 0u);
    EXPECT_EQ(request_end("show=1\n\nrest"), 8u);
}

TEST(ControlRequest, FormatParsesBackToTheSameRequest) {
    Request r;
    r.command = Command::revoke;
    r.ipv6 = parse_ip6("2001:db8::5");
    EXPECT_EQ(parsed(format_request(r)), r);
    Request m;
    m.command = Command::monitor;
    m.format = Format::json;
    EXPECT_EQ(parsed(format_request(m)), m);
}

TEST(ControlAnswer, HeadIsOkOrOneErrorLine) {
    auto ok = parse_answer_head("ok\nbody");
    ASSERT_TRUE(ok);
    EXPECT_TRUE(ok->ok);
    EXPECT_EQ(ok->size, 3u);
    auto err = parse_answer_head("error=no lease of 10.0.0.1\n");
    ASSERT_TRUE(err);
    EXPECT_FALSE(err->ok);
    EXPECT_FALSE(err->malformed);
    EXPECT_EQ(err->error, "no lease of 10.0.0.1");
    EXPECT_FALSE(parse_answer_head("ok"));
    EXPECT_TRUE(parse_answer_head("okay\n")->malformed);
    EXPECT_TRUE(parse_answer_head("error=\x1b[2J\n")->malformed);
    EXPECT_TRUE(parse_answer_head(std::string(kMaxHeadBytes, 'x'))->malformed);
}

TEST(ControlAnswer, ErrorHeadIsOneLineWhateverTheReason) {
    EXPECT_EQ(format_answer_head(false, "a\nb"), "error=a b\n");
    EXPECT_EQ(format_answer_head(true, "ignored"), "ok\n");
}

TEST(ControlAnswer, BodyMayHoldTabsAndNewlinesButNoOtherControlBytes) {
    EXPECT_TRUE(printable("a\tb\n"));
    EXPECT_FALSE(printable("\x1b[31m"));
    EXPECT_FALSE(printable(std::string_view("\0", 1)));
    EXPECT_FALSE(printable("\x7f"));
}

TEST(ControlMessages, QueryReplyAndMonitorStateRoundTrip) {
    ControlQuery q{parsed("revoke=1\naddress=10.77.0.5\n\n"), 1, 2, 3};
    EXPECT_EQ(decode_control_query(encode(q)), q);
    ControlReply r{false, true, "no lease"};
    EXPECT_EQ(decode_control_reply(encode(r)), r);
    EXPECT_EQ(decode_monitor_state(encode_monitor_state(4)), 4u);
}

TEST(ControlMessages, QueryRefusesAShowWithATargetAndARevokeWithout) {
    ControlQuery q{parsed("revoke=1\naddress=10.77.0.5\n\n"), 0, 0, 0};
    auto bytes = encode(q);
    bytes[0] = static_cast<std::uint8_t>(Command::show);
    EXPECT_FALSE(decode_control_query(bytes));
    bytes[0] = static_cast<std::uint8_t>(Command::revoke);
    bytes[2] = 0;
    EXPECT_FALSE(decode_control_query(bytes));
}

TEST(ControlMessages, SplitReplyCutsLongTextAndMarksTheLastPiece) {
    std::string text(kMaxReplyText * 2 + 5, 'x');
    auto pieces = split_reply(true, text);
    ASSERT_EQ(pieces.size(), 3u);
    EXPECT_FALSE(pieces[0].last);
    EXPECT_TRUE(pieces[2].last);
    EXPECT_EQ(pieces[2].text.size(), 5u);
    EXPECT_EQ(split_reply(false, "").size(), 1u);
}

} // namespace
