#include "leased/audit.hpp"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <sstream>

using namespace wgd;
using namespace wgd::leased;

namespace {

PublicKey key(std::uint8_t seed) {
    PublicKey k;
    k.bytes.fill(seed);
    return k;
}

Plan plan_of(const char* v4, const char* v6) {
    Plan p;
    p.peer = key(1);
    if (v4)
        p.ipv4 = *parse_ip4(v4);
    if (v6)
        p.ipv6 = *parse_ip6(v6);
    p.leasestart = 100;
    p.leasetime = 60;
    p.record = LeaseRecord{p.peer, p.ipv4, p.ipv6, 100, 160};
    return p;
}

std::vector<EventKind> kinds(const std::vector<LeaseEvent>& events) {
    std::vector<EventKind> out;
    for (auto& e : events)
        out.push_back(e.kind);
    return out;
}

TEST(AuditEvents, FirstLeaseIsAGrant) {
    auto events = events_of_plan(plan_of("10.0.0.5", nullptr), std::nullopt, std::nullopt);
    ASSERT_EQ(kinds(events), std::vector<EventKind>{EventKind::grant});
    EXPECT_EQ(events[0].ipv4, parse_ip4("10.0.0.5"));
    EXPECT_EQ(events[0].leasetime, 60u);
}

TEST(AuditEvents, SameAddressesAgainIsARenewalLoggedAtDebug) {
    Plan p = plan_of("10.0.0.5", "2001:db8::5");
    auto events = events_of_plan(p, p.record, std::nullopt);
    ASSERT_EQ(kinds(events), std::vector<EventKind>{EventKind::renew});
    EXPECT_FALSE(audit_at_info(events[0]));
}

TEST(AuditEvents, DroppedFamilyIsAReleaseBeforeTheRenewal) {
    Plan p = plan_of("10.0.0.5", nullptr);
    LeaseRecord before{key(1), *parse_ip4("10.0.0.5"), *parse_ip6("2001:db8::5"), 0, 60};
    auto events = events_of_plan(p, before, std::nullopt);
    ASSERT_EQ(kinds(events), (std::vector<EventKind>{EventKind::release, EventKind::renew}));
    EXPECT_FALSE(events[0].ipv4);
    EXPECT_EQ(events[0].ipv6, parse_ip6("2001:db8::5"));
    EXPECT_TRUE(audit_at_info(events[0]));
}

TEST(AuditEvents, ANewFamilyMakesItAGrantWithAllAddresses) {
    Plan p = plan_of("10.0.0.5", "2001:db8::5");
    LeaseRecord before{key(1), *parse_ip4("10.0.0.5"), std::nullopt, 0, 60};
    auto events = events_of_plan(p, before, std::nullopt);
    ASSERT_EQ(kinds(events), std::vector<EventKind>{EventKind::grant});
    EXPECT_TRUE(events[0].ipv4 && events[0].ipv6);
}

TEST(AuditEvents, PartialGrantIsAGrantThenARefusalWithErrno3) {
    Plan p = plan_of("10.0.0.5", nullptr);
    p.error = kErrnoUnavailable;
    auto events = events_of_plan(p, std::nullopt, *parse_ip6("fe80::1"));
    ASSERT_EQ(kinds(events), (std::vector<EventKind>{EventKind::grant, EventKind::refuse}));
    EXPECT_EQ(events[1].errnum, 3);
    EXPECT_EQ(events[1].link_local, parse_ip6("fe80::1"));
}

TEST(AuditEvents, CountersFollowEventsAndRefusalsByErrno) {
    Counters c;
    Plan p = plan_of(nullptr, nullptr);
    p.error = kErrnoUnavailable;
    for (const auto& e : events_of_plan(p, std::nullopt, std::nullopt))
        c.count(e);
    c.count(event_of_ended(EventKind::expire, LeaseRecord{}, std::nullopt, 5));
    EXPECT_EQ(c.events[static_cast<int>(EventKind::refuse)], 1u);
    EXPECT_EQ(c.refusals[3], 1u);
    EXPECT_EQ(c.events[static_cast<int>(EventKind::expire)], 1u);
    EXPECT_EQ(c.events[static_cast<int>(EventKind::grant)], 0u);
}

// Every sample line is "name{labels} value", every name has one HELP and one
// TYPE line before its first sample, and every name has the wg_dynamic_ prefix.
TEST(Metrics, FormatIsPrometheusTextWithHelpAndTypeForEveryName) {
    MetricsInput in;
    in.iface = "wg0";
    in.counters.events[static_cast<int>(EventKind::grant)] = 4;
    in.counters.refusals[1] = 2;
    in.pools.push_back({"10.77.0.0/24", false, 253, 4});
    in.pools.push_back({"2001:db8::/64", true, (u128{1} << 64) - 2, 1});
    in.pools.push_back({"2001:db8:1::/48", true, u128{1} << 80, 0});
    std::istringstream lines(format_metrics(in));
    std::string line;
    std::set<std::string> helped, typed;
    std::map<std::string, std::string> samples;
    while (std::getline(lines, line)) {
        if (line.rfind("# HELP ", 0) == 0) {
            helped.insert(line.substr(7, line.find(' ', 7) - 7));
            continue;
        }
        if (line.rfind("# TYPE ", 0) == 0) {
            typed.insert(line.substr(7, line.find(' ', 7) - 7));
            continue;
        }
        auto brace = line.find('{');
        ASSERT_NE(brace, std::string::npos) << line;
        std::string name = line.substr(0, brace);
        EXPECT_EQ(name.rfind("wg_dynamic_", 0), 0u) << line;
        EXPECT_TRUE(helped.count(name) && typed.count(name)) << line;
        auto close = line.rfind("} ");
        ASSERT_NE(close, std::string::npos) << line;
        samples[line.substr(0, close + 1)] = line.substr(close + 2);
    }
    EXPECT_EQ(samples["wg_dynamic_grants_total{interface=\"wg0\"}"], "4");
    EXPECT_EQ(samples["wg_dynamic_refusals_total{interface=\"wg0\",errno=\"1\"}"], "2");
    EXPECT_EQ(samples["wg_dynamic_pool_size{interface=\"wg0\",prefix=\"10.77.0.0/24\"}"], "253");
    EXPECT_EQ(samples["wg_dynamic_pool_free{interface=\"wg0\",prefix=\"10.77.0.0/24\"}"], "249");
    EXPECT_EQ(samples["wg_dynamic_pool_leased{interface=\"wg0\",prefix=\"2001:db8::/64\"}"], "1");
    EXPECT_EQ(samples["wg_dynamic_pool_size{interface=\"wg0\",prefix=\"2001:db8::/64\"}"],
              "18446744073709551614");
    EXPECT_EQ(
        std::stold(samples["wg_dynamic_pool_size{interface=\"wg0\",prefix=\"2001:db8:1::/48\"}"]),
        static_cast<long double>(u128{1} << 80));
}

TEST(Metrics, DecimalIsExactForEveryWidth) {
    EXPECT_EQ(decimal(0), "0");
    EXPECT_EQ(decimal(~u128{0}), "340282366920938463463374607431768211455");
}

} // namespace
