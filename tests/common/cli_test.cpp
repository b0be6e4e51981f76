#include "common/cli.hpp"

#include <gtest/gtest.h>

using namespace wgd;

namespace {
CliResult parse(Side side, std::vector<std::string> args) {
    return parse_command_line(side, args);
}
} // namespace

TEST(CommandLine, DefaultsFollowSpec) {
    auto r = parse(Side::server, {"wg0"});
    auto* o = std::get_if<Options>(&r);
    ASSERT_NE(o, nullptr);
    EXPECT_EQ(o->iface, "wg0");
    EXPECT_FALSE(o->foreground);
    EXPECT_EQ(o->verbosity, 0);
    EXPECT_EQ(o->user, "_wg-dynamic");
    EXPECT_FALSE(o->user_given);
    EXPECT_EQ(o->leasetime, 3600u);
    EXPECT_EQ(o->state_dir, "/var/lib/wg-dynamic");
}

TEST(CommandLine, ShortAndLongFlagsAreEquivalent) {
    auto a = std::get<Options>(parse(Side::client, {"-f", "-v", "-v", "wg0"}));
    auto b =
        std::get<Options>(parse(Side::client, {"--foreground", "--verbose", "--verbose", "wg0"}));
    auto c = std::get<Options>(parse(Side::client, {"-fvv", "wg0"}));
    for (auto& o : {a, b, c}) {
        EXPECT_TRUE(o.foreground);
        EXPECT_EQ(o.verbosity, 2);
    }
}

TEST(CommandLine, ServerOptionsTakeValuesInBothSpellings) {
    auto o = std::get<Options>(
        parse(Side::server, {"--leasetime", "4", "--state-dir=/tmp/x", "--user", "wgd", "wg1"}));
    EXPECT_EQ(o.leasetime, 4u);
    EXPECT_EQ(o.state_dir, "/tmp/x");
    EXPECT_EQ(o.user, "wgd");
    EXPECT_TRUE(o.user_given);
}

TEST(CommandLine, ServerOnlyOptionsAreUnknownToTheClient) {
    EXPECT_TRUE(
        std::holds_alternative<UsageError>(parse(Side::client, {"--leasetime", "4", "wg0"})));
    EXPECT_TRUE(
        std::holds_alternative<UsageError>(parse(Side::client, {"--state-dir", "/x", "wg0"})));
}

TEST(CommandLine, CheckIsAnOptionOfBothDaemonsButNotOfTheOperatingCommands) {
    for (Side side : {Side::server, Side::client}) {
        auto o = parse(side, {"--check", "wg0"});
        ASSERT_TRUE(std::holds_alternative<Options>(o));
        EXPECT_TRUE(std::get<Options>(o).check);
        EXPECT_FALSE(std::get<Options>(parse(side, {"wg0"})).check);
    }
    EXPECT_TRUE(
        std::holds_alternative<UsageError>(parse(Side::server, {"show", "wg0", "--check"})));
    EXPECT_NE(usage_text(Side::client).find("--check"), std::string::npos);
}

TEST(CommandLine, LeasetimeTakesSecondsOrAUnit) {
    const std::vector<std::pair<std::string, std::uint32_t>> cases{
        {"1", 1},       {"90", 90},         {"90s", 90},      {"30m", 1800},      {"1h", 3600},
        {"7d", 604800}, {"604800", 604800}, {"168h", 604800}, {"10080m", 604800}, {"0001m", 60}};
    for (const auto& [text, seconds] : cases) {
        auto o = parse(Side::server, {"--leasetime", text, "wg0"});
        ASSERT_TRUE(std::holds_alternative<Options>(o)) << text;
        EXPECT_EQ(std::get<Options>(o).leasetime, seconds) << text;
        EXPECT_EQ(parse_leasetime(text), seconds) << text;
    }
}

TEST(CommandLine, ZeroOverflowAndGarbageLeasetimesAreUsageErrorsWithOneLineReasons) {
    for (std::string v :
         {"0",           "0s",     "0d",     "-1",   "abc",         "",
          "s",           "1x",     "1hh",    "1 h",  " 1",          "1.5h",
          "8d",          "604801", "10081m", "169h", "99999999999", "18446744073709551617",
          "4294967296s", "+5",     "1H"}) {
        auto o = parse(Side::server, {"--leasetime", v, "wg0"});
        ASSERT_TRUE(std::holds_alternative<UsageError>(o)) << v;
        const std::string& message = std::get<UsageError>(o).message;
        EXPECT_EQ(message.find('\n'), std::string::npos) << message;
        EXPECT_NE(message.find("--leasetime"), std::string::npos) << message;
        EXPECT_FALSE(parse_leasetime(v)) << v;
    }
    EXPECT_TRUE(std::holds_alternative<UsageError>(parse(Side::server, {"wg0", "--leasetime"})));
}

TEST(CommandLine, HelpAndVersionWinOverEverythingElse) {
    EXPECT_TRUE(std::holds_alternative<HelpRequested>(parse(Side::server, {"--bogus", "-h"})));
    EXPECT_TRUE(std::holds_alternative<VersionRequested>(parse(Side::server, {"wg0", "x", "-V"})));
    EXPECT_TRUE(std::holds_alternative<HelpRequested>(parse(Side::server, {"--help"})));
    EXPECT_TRUE(std::holds_alternative<VersionRequested>(parse(Side::client, {"-V"})));
    EXPECT_TRUE(std::holds_alternative<VersionRequested>(parse(Side::client, {"--version"})));
}

TEST(CommandLine, MissingOrExtraInterfaceIsAUsageError) {
    EXPECT_TRUE(std::holds_alternative<UsageError>(parse(Side::server, {})));
    EXPECT_TRUE(std::holds_alternative<UsageError>(parse(Side::server, {"wg0", "wg1"})));
    EXPECT_TRUE(std::holds_alternative<UsageError>(parse(Side::server, {"-x", "wg0"})));
}

TEST(CommandLine, InterfaceNamesAreCheckedLikeTheKernelDoes) {
    EXPECT_TRUE(is_valid_ifname("wg0"));
    EXPECT_TRUE(is_valid_ifname("abcdefghijklmno"));
    EXPECT_FALSE(is_valid_ifname("abcdefghijklmnop"));
    EXPECT_FALSE(is_valid_ifname("a/b"));
    EXPECT_FALSE(is_valid_ifname("a b"));
    EXPECT_FALSE(is_valid_ifname(".."));
    EXPECT_TRUE(std::holds_alternative<UsageError>(parse(Side::server, {"../etc"})));
}

TEST(CommandLine, ShowSubcommandReadsInterfaceAndJson) {
    auto r = parse(Side::server, {"show", "wg0", "--json", "--state-dir", "/s"});
    auto* s = std::get_if<ShowCommand>(&r);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->iface, "wg0");
    EXPECT_TRUE(s->json);
    EXPECT_EQ(s->state_dir, "/s");
    EXPECT_TRUE(std::holds_alternative<UsageError>(parse(Side::server, {"--json", "wg0"})));
    EXPECT_TRUE(std::holds_alternative<UsageError>(parse(Side::client, {"show", "wg0"})));
}

TEST(CommandLine, ShowTakesMetricsButNotWithJson) {
    auto r = parse(Side::server, {"show", "wg0", "--metrics"});
    auto* s = std::get_if<ShowCommand>(&r);
    ASSERT_NE(s, nullptr);
    EXPECT_TRUE(s->metrics);
    EXPECT_FALSE(s->json);
    EXPECT_TRUE(std::holds_alternative<UsageError>(
        parse(Side::server, {"show", "wg0", "--metrics", "--json"})));
    EXPECT_TRUE(
        std::holds_alternative<UsageError>(parse(Side::server, {"monitor", "wg0", "--metrics"})));
}

TEST(CommandLine, MonitorTakesAnInterfaceAndJson) {
    auto r = parse(Side::server, {"monitor", "wg0", "--json"});
    auto* m = std::get_if<MonitorCommand>(&r);
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->iface, "wg0");
    EXPECT_TRUE(m->json);
    EXPECT_TRUE(std::holds_alternative<UsageError>(parse(Side::server, {"monitor"})));
    EXPECT_TRUE(std::holds_alternative<UsageError>(parse(Side::client, {"monitor", "wg0"})));
}

TEST(CommandLine, RevokeTakesAnInterfaceAndOneTarget) {
    auto r = parse(Side::server, {"revoke", "wg0", "10.77.0.5"});
    auto* v = std::get_if<RevokeCommand>(&r);
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(v->iface, "wg0");
    EXPECT_EQ(v->target, "10.77.0.5");
    EXPECT_TRUE(std::holds_alternative<UsageError>(parse(Side::server, {"revoke", "wg0"})));
    EXPECT_TRUE(
        std::holds_alternative<UsageError>(parse(Side::server, {"revoke", "wg0", "a", "b"})));
    EXPECT_TRUE(
        std::holds_alternative<UsageError>(parse(Side::server, {"revoke", "wg0", "x", "--json"})));
}

TEST(CommandLine, UsageTextNamesEveryOption) {
    std::string server = usage_text(Side::server), client = usage_text(Side::client);
    for (auto opt : {"--foreground", "--verbose", "--user", "--help", "--version"}) {
        EXPECT_NE(server.find(opt), std::string::npos) << opt;
        EXPECT_NE(client.find(opt), std::string::npos) << opt;
    }
    EXPECT_NE(server.find("--leasetime"), std::string::npos);
    EXPECT_EQ(client.find("--leasetime"), std::string::npos);
}
