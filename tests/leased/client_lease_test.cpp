// The client's lease state machine, driven with plain numbers for time and a
// deterministic jitter source.
#include "leased/client_lease.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace wgd::leased {
namespace {

Ip4 ip4(const char* text) {
    auto a = parse_ip4(text);
    EXPECT_TRUE(a) << text;
    return a.value_or(Ip4{});
}
Ip6 ip6(const char* text) {
    auto a = parse_ip6(text);
    EXPECT_TRUE(a) << text;
    return a.value_or(Ip6{});
}
Prefix4 p4(const char* text, std::uint8_t len = 32) {
    return Prefix4{ip4(text), len};
}
Prefix6 p6(const char* text, std::uint8_t len = 128) {
    return Prefix6{ip6(text), len};
}

// Midpoint of [0, bound): zero jitter.
std::uint64_t no_jitter(std::uint64_t bound) {
    return bound / 2;
}

// Everything but the log lines, the actions a test usually compares.
ClientActions orders(const ClientActions& actions) {
    ClientActions out;
    for (const auto& a : actions)
        if (!std::holds_alternative<LogLine>(a))
            out.push_back(a);
    return out;
}

template <class T>
std::vector<T> only(const ClientActions& actions) {
    std::vector<T> out;
    for (const auto& a : actions)
        if (auto* p = std::get_if<T>(&a))
            out.push_back(*p);
    return out;
}

bool has_address_orders(const ClientActions& actions) {
    return !only<AddAddress>(actions).empty() || !only<RemoveAddress>(actions).empty();
}

bool has_log(const ClientActions& actions, Severity severity) {
    for (const auto& line : only<LogLine>(actions))
        if (line.severity == severity)
            return true;
    return false;
}

LeaseResponse grant(std::uint64_t exchange, std::optional<Prefix4> a4, std::optional<Prefix6> a6,
                    std::uint64_t leasetime = 3600, std::uint32_t errnum = 0) {
    LeaseResponse r;
    r.exchange = exchange;
    r.ipv4 = a4;
    r.ipv6 = a6;
    r.leasestart = 1764201600;
    r.leasetime = leasetime;
    r.errnum = errnum;
    return r;
}

// A machine started at t=0 with nothing on IFACE and granted X4/X6 for an
// hour by the answer to its first request at t=100.
struct Bound : ::testing::Test {
    ClientLeaseMachine m{no_jitter};
    void SetUp() override {
        m.start(0, {});
        m.response(100, grant(1, p4("10.0.0.5"), p6("2001:db8::5")));
        ASSERT_EQ(m.state(), ClientState::bound);
    }
};

// --- Start and inception ---

TEST(ClientLease, StartWithNothingOnInterfaceAsksForAnyAddressAtOnce) {
    ClientLeaseMachine m(no_jitter);
    EXPECT_EQ(m.state(), ClientState::init);
    auto out = m.start(5000, {});
    EXPECT_EQ(orders(out), (ClientActions{SendRequest{1, std::nullopt, std::nullopt},
                                          SetTimer{5000 + kExchangeGuardMs}}));
    EXPECT_EQ(m.state(), ClientState::requesting);
    EXPECT_FALSE(m.lease().active());
    EXPECT_EQ(m.exchange_in_flight(), 1u);
}

TEST(ClientLease, InceptionAdoptsFirstGlobalHostAddressOfEachFamilyForFifteenSeconds) {
    ClientLeaseMachine m(no_jitter);
    ExistingAddresses existing;
    existing.ipv4 = {p4("10.0.0.1", 24), p4("169.254.3.3"), p4("10.0.0.7"), p4("10.0.0.8")};
    existing.ipv6 = {p6("fe80::1"), p6("2001:db8::1", 64), p6("2001:db8::7"), p6("2001:db8::8")};
    auto out = m.start(1000, existing);
    EXPECT_EQ(orders(out), (ClientActions{SendRequest{1, ip4("10.0.0.7"), ip6("2001:db8::7")},
                                          SetTimer{1000 + kInceptionLeaseMs}}));
    EXPECT_EQ(m.lease().ipv4, ip4("10.0.0.7"));
    EXPECT_EQ(m.lease().ipv6, ip6("2001:db8::7"));
    EXPECT_EQ(m.lease().expires_at, 16000u);
    EXPECT_FALSE(m.lease().granted);
}

TEST(ClientLease, InceptionWithOneFamilyAsksForItAndAnyOfTheOther) {
    ClientLeaseMachine m(no_jitter);
    ExistingAddresses existing;
    existing.ipv4 = {p4("10.0.0.7")};
    auto out = m.start(0, existing);
    EXPECT_EQ(only<SendRequest>(out), (std::vector<SendRequest>{{1, ip4("10.0.0.7"), Ip6{}}}));
}

TEST(ClientLease, InceptionLeaseExpiresAfterFifteenSecondsWithoutAnswer) {
    ClientLeaseMachine m(no_jitter);
    ExistingAddresses existing;
    existing.ipv4 = {p4("10.0.0.7")};
    existing.ipv6 = {p6("2001:db8::7")};
    m.start(1000, existing);
    EXPECT_FALSE(has_address_orders(m.timer(15999)));
    auto out = m.timer(16000);
    EXPECT_EQ(only<RemoveAddress>(out),
              (std::vector<RemoveAddress>{{ip4("10.0.0.7")}, {ip6("2001:db8::7")}}));
    EXPECT_FALSE(m.lease().active());
    EXPECT_EQ(m.state(), ClientState::requesting); // the exchange is still running
}

TEST(ClientLease, InceptionAddressesConfirmedByServerNeedNoOrders) {
    ClientLeaseMachine m(no_jitter);
    ExistingAddresses existing;
    existing.ipv4 = {p4("10.0.0.7")};
    existing.ipv6 = {p6("2001:db8::7")};
    m.start(0, existing);
    auto out = m.response(50, grant(1, p4("10.0.0.7"), p6("2001:db8::7")));
    EXPECT_FALSE(has_address_orders(out));
    EXPECT_TRUE(m.lease().granted);
    EXPECT_EQ(m.lease().expires_at, 3600'000u);
}

TEST(ClientLease, InceptionIgnoresFamiliesNotEnabled) {
    ClientLeaseMachine m(no_jitter, ClientFamilies{true, false});
    ExistingAddresses existing;
    existing.ipv6 = {p6("2001:db8::7")};
    auto out = m.start(0, existing);
    EXPECT_FALSE(m.lease().active());
    EXPECT_EQ(only<SendRequest>(out), (std::vector<SendRequest>{{1, Ip4{}, std::nullopt}}));
}

TEST(ClientLease, StartWithLinkDownWaitsWithoutRequesting) {
    ClientLeaseMachine m(no_jitter);
    auto out = m.start(0, {}, false);
    EXPECT_TRUE(only<SendRequest>(out).empty());
    EXPECT_EQ(m.state(), ClientState::link_down);
    EXPECT_EQ(m.next_deadline(), std::nullopt);
    out = m.link_up(7000);
    EXPECT_EQ(only<SendRequest>(out), (std::vector<SendRequest>{{1, {}, {}}}));
}

// --- Grant, renewal, jitter ---

TEST(ClientLease, GrantAddsAddressesAndRenewsAtHalfLeasetimeFromTheRequest) {
    ClientLeaseMachine m(no_jitter);
    m.start(1000, {});
    auto out = m.response(1300, grant(1, p4("10.0.0.5"), p6("2001:db8::5"), 3600));
    EXPECT_EQ(orders(out),
              (ClientActions{AddAddress{ip4("10.0.0.5")}, AddAddress{ip6("2001:db8::5")},
                             SetTimer{1000 + 1800'000}}));
    EXPECT_EQ(m.state(), ClientState::bound);
    EXPECT_EQ(m.lease().obtained_at, 1000u);
    EXPECT_EQ(m.lease().renew_at, 1000u + 1800'000u);
    EXPECT_EQ(m.lease().expires_at, 1000u + 3600'000u);
    EXPECT_TRUE(m.lease().granted);
}

TEST(ClientLease, RenewalJitterSpansOneSixteenthOfLeasetimeEachSide) {
    std::uint64_t seen_bound = 0;
    auto lowest = [&](std::uint64_t bound) {
        seen_bound = bound;
        return std::uint64_t{0};
    };
    ClientLeaseMachine low(lowest);
    low.start(0, {});
    low.response(10, grant(1, p4("10.0.0.5"), std::nullopt, 3200));
    EXPECT_EQ(seen_bound, 2u * 200'000 + 1);
    EXPECT_EQ(low.lease().renew_at, 1600'000u - 200'000u);

    ClientLeaseMachine high([](std::uint64_t bound) { return bound - 1; });
    high.start(0, {});
    high.response(10, grant(1, p4("10.0.0.5"), std::nullopt, 3200));
    EXPECT_EQ(high.lease().renew_at, 1600'000u + 200'000u);
    EXPECT_LT(high.lease().renew_at, high.lease().expires_at * 7 / 8);
}

TEST(ClientLease, OutOfRangeJitterIsFoldedIntoTheWindow) {
    ClientLeaseMachine m([](std::uint64_t) { return std::uint64_t{1} << 62; });
    m.start(0, {});
    m.response(10, grant(1, p4("10.0.0.5"), std::nullopt, 16));
    EXPECT_GE(m.lease().renew_at, 7000u);
    EXPECT_LE(m.lease().renew_at, 9000u);
}

TEST_F(Bound, TimerBeforeRenewalTimeDoesNothing) {
    auto out = m.timer(1800'000 - 1);
    EXPECT_TRUE(orders(out).empty());
    EXPECT_EQ(m.state(), ClientState::bound);
}

TEST_F(Bound, RenewalAsksForTheHeldAddresses) {
    auto out = m.timer(1800'000);
    EXPECT_EQ(orders(out), (ClientActions{SendRequest{2, ip4("10.0.0.5"), ip6("2001:db8::5")},
                                          SetTimer{1800'000 + kExchangeGuardMs}}));
    EXPECT_EQ(m.state(), ClientState::requesting);
}

TEST_F(Bound, SighupRenewsTheHeldAddressesAtOnce) {
    auto out = m.renew_now(600'000);
    EXPECT_EQ(only<SendRequest>(out),
              (std::vector<SendRequest>{{2, ip4("10.0.0.5"), ip6("2001:db8::5")}}));
    EXPECT_FALSE(has_address_orders(out));
    EXPECT_EQ(m.state(), ClientState::requesting);
    m.response(600'020, grant(2, p4("10.0.0.5"), p6("2001:db8::5")));
    EXPECT_EQ(m.lease().expires_at, 600'000u + 3600'000u) << "counted from the renewal";
}

TEST_F(Bound, SighupWhileAnExchangeIsInFlightSendsNoSecondRequest) {
    m.timer(1800'000);
    ASSERT_EQ(m.state(), ClientState::requesting);
    auto out = m.renew_now(1800'010);
    EXPECT_TRUE(only<SendRequest>(out).empty());
    EXPECT_EQ(m.state(), ClientState::requesting);
}

TEST(ClientLease, SighupWhileBackingOffRetriesAtOnceAndStartsTheBackoffOver) {
    ClientLeaseMachine m(no_jitter);
    m.start(0, {});
    m.exchange_failed(10, 1, "timeout");
    m.timer(1010);
    m.exchange_failed(1020, 2, "timeout");
    ASSERT_EQ(m.state(), ClientState::backing_off);
    auto out = m.renew_now(1500);
    EXPECT_EQ(only<SendRequest>(out).size(), 1u);
    m.exchange_failed(1510, *m.exchange_in_flight(), "timeout");
    EXPECT_EQ(*m.next_deadline(), 1510u + kFirstBackoffMs);
}

TEST(ClientLease, SighupWhileTheLinkIsDownAsksNothing) {
    ClientLeaseMachine m(no_jitter);
    m.start(0, {}, false);
    EXPECT_TRUE(orders(m.renew_now(100)).empty());
    EXPECT_EQ(m.state(), ClientState::link_down);
}

TEST_F(Bound, RenewedGrantMovesExpiryWithoutAddressOrders) {
    m.timer(1800'000);
    auto out = m.response(1800'020, grant(2, p4("10.0.0.5"), p6("2001:db8::5")));
    EXPECT_FALSE(has_address_orders(out));
    EXPECT_EQ(m.lease().expires_at, 1800'000u + 3600'000u);
    EXPECT_EQ(m.lease().renew_at, 1800'000u + 1800'000u);
}

TEST(ClientLease, HoldingOneFamilyRenewalAsksForItAndAnyOfTheOther) {
    ClientLeaseMachine m(no_jitter);
    m.start(0, {});
    m.response(10, grant(1, p4("10.0.0.5"), std::nullopt, 100, 3)); // IPv6 pool exhausted
    ASSERT_EQ(m.state(), ClientState::bound);
    auto out = m.timer(50'000);
    EXPECT_EQ(only<SendRequest>(out), (std::vector<SendRequest>{{2, ip4("10.0.0.5"), Ip6{}}}));
}

// --- Backoff and expiry ---

TEST(ClientLease, BackoffDoublesFromOneSecondUpToSixtySeconds) {
    ClientLeaseMachine m(no_jitter);
    Millis now = 0;
    m.start(now, {});
    std::vector<Millis> waits;
    for (int i = 0; i < 9; ++i) {
        now += 7;
        m.exchange_failed(now, *m.exchange_in_flight(), "connection refused");
        ASSERT_EQ(m.state(), ClientState::backing_off);
        waits.push_back(*m.next_deadline() - now);
        EXPECT_TRUE(orders(m.timer(*m.next_deadline() - 1)).empty());
        now = *m.next_deadline();
        auto out = m.timer(now);
        ASSERT_EQ(only<SendRequest>(out).size(), 1u);
    }
    EXPECT_EQ(waits,
              (std::vector<Millis>{1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000}));
}

TEST(ClientLease, SuccessResetsBackoff) {
    ClientLeaseMachine m(no_jitter);
    m.start(0, {});
    m.exchange_failed(10, 1, "timeout");
    m.timer(1010);
    m.exchange_failed(1020, 2, "timeout");
    EXPECT_EQ(m.next_backoff(), 4000u);
    m.timer(3020);
    m.response(3030, grant(3, p4("10.0.0.5"), std::nullopt, 10));
    EXPECT_EQ(m.next_backoff(), kFirstBackoffMs);
    m.timer(m.lease().renew_at);
    m.exchange_failed(m.lease().renew_at + 5, 4, "timeout");
    EXPECT_EQ(*m.next_deadline(), m.lease().renew_at + 5 + 1000);
}

TEST_F(Bound, FailedRenewalsRetryUntilExpiryThenAddressesAreRemoved) {
    Millis now = 1800'000;
    m.timer(now);
    std::vector<RemoveAddress> removed;
    while (now < 3700'000) {
        auto out = m.exchange_failed(now + 1, *m.exchange_in_flight(), "connection refused");
        EXPECT_TRUE(only<RemoveAddress>(out).empty());
        now = *m.next_deadline();
        out = m.timer(now);
        for (const auto& r : only<RemoveAddress>(out)) {
            EXPECT_EQ(now, 3600'000u) << "addresses go at expiry, not before";
            removed.push_back(r);
        }
        if (m.state() == ClientState::backing_off) { // that deadline was the expiry
            now = *m.next_deadline();
            m.timer(now);
        }
        ASSERT_TRUE(m.exchange_in_flight()) << "still asking, also after expiry";
    }
    EXPECT_EQ(removed, (std::vector<RemoveAddress>{{ip4("10.0.0.5")}, {ip6("2001:db8::5")}}));
    EXPECT_FALSE(m.lease().active());
}

TEST_F(Bound, ExpiryDuringLinkDownRemovesAddresses) {
    m.link_down(2000);
    EXPECT_EQ(m.next_deadline(), 3600'000u);
    auto out = m.timer(3600'000);
    EXPECT_EQ(only<RemoveAddress>(out),
              (std::vector<RemoveAddress>{{ip4("10.0.0.5")}, {ip6("2001:db8::5")}}));
    EXPECT_EQ(m.next_deadline(), std::nullopt);
    EXPECT_EQ(m.state(), ClientState::link_down);
}

TEST_F(Bound, LateTimerPastExpiryRemovesAddressesThenAsksAnew) {
    auto out = m.timer(9000'000);
    ClientActions expected{RemoveAddress{ip4("10.0.0.5")}, RemoveAddress{ip6("2001:db8::5")},
                           SendRequest{2, std::nullopt, std::nullopt},
                           SetTimer{9000'000 + kExchangeGuardMs}};
    EXPECT_EQ(orders(out), expected);
}

TEST(ClientLease, ExchangeWithoutResultTimesOutAsAFailure) {
    ClientLeaseMachine m(no_jitter);
    m.start(0, {});
    EXPECT_TRUE(orders(m.timer(kExchangeGuardMs - 1)).empty());
    m.timer(kExchangeGuardMs);
    EXPECT_EQ(m.state(), ClientState::backing_off);
    EXPECT_EQ(m.next_deadline(), kExchangeGuardMs + 1000);
    auto out = m.response(kExchangeGuardMs + 10, grant(1, p4("10.0.0.5"), std::nullopt));
    EXPECT_FALSE(has_address_orders(out)); // the abandoned exchange's late answer
}

TEST_F(Bound, GrantArrivingAsTheOldLeaseExpiresKeepsAddressesInPlace) {
    m.timer(1800'000);
    m.exchange_failed(1800'001, 2, "refused");
    m.timer(1801'001);
    auto out = m.response(3600'000, grant(3, p4("10.0.0.5"), p6("2001:db8::5")));
    EXPECT_FALSE(has_address_orders(out)) << "no remove-then-add of the same address";
    EXPECT_EQ(m.lease().expires_at, 1801'001u + 3600'000u);
}

TEST(ClientLease, GrantArrivingAfterItsLeaseEndedIsRejected) {
    ClientLeaseMachine m(no_jitter);
    m.start(0, {});
    auto out = m.response(5000, grant(1, p4("10.0.0.5"), std::nullopt, 4));
    EXPECT_FALSE(has_address_orders(out));
    EXPECT_EQ(m.state(), ClientState::backing_off);
}

// --- Replacement ---

TEST_F(Bound, ReplacementAddsNewAddressesBeforeRemovingOldOnes) {
    m.timer(1800'000);
    auto out = m.response(1800'010, grant(2, p4("10.0.0.9"), p6("2001:db8::9")));
    EXPECT_EQ(orders(out),
              (ClientActions{AddAddress{ip4("10.0.0.9")}, AddAddress{ip6("2001:db8::9")},
                             RemoveAddress{ip4("10.0.0.5")}, RemoveAddress{ip6("2001:db8::5")},
                             SetTimer{3600'000}}));
    EXPECT_EQ(m.lease().ipv4, ip4("10.0.0.9"));
    EXPECT_EQ(m.lease().ipv6, ip6("2001:db8::9"));
}

TEST_F(Bound, ReplacingOneFamilyLeavesTheOtherAlone) {
    m.timer(1800'000);
    auto out = m.response(1800'010, grant(2, p4("10.0.0.9"), p6("2001:db8::5")));
    EXPECT_EQ(only<AddAddress>(out), (std::vector<AddAddress>{{ip4("10.0.0.9")}}));
    EXPECT_EQ(only<RemoveAddress>(out), (std::vector<RemoveAddress>{{ip4("10.0.0.5")}}));
}

TEST_F(Bound, PartialGrantRemovesTheFamilyNotGranted) {
    m.timer(1800'000);
    auto out = m.response(1800'010, grant(2, p4("10.0.0.5"), std::nullopt, 3600, 3));
    EXPECT_TRUE(only<AddAddress>(out).empty());
    EXPECT_EQ(only<RemoveAddress>(out), (std::vector<RemoveAddress>{{ip6("2001:db8::5")}}));
    EXPECT_EQ(m.lease().ipv6, std::nullopt);
    EXPECT_EQ(m.state(), ClientState::bound);
}

TEST(ClientLease, InceptionAddressesNotGrantedAreReplaced) {
    ClientLeaseMachine m(no_jitter);
    ExistingAddresses existing;
    existing.ipv4 = {p4("10.0.0.7")};
    m.start(0, existing);
    auto out = m.response(10, grant(1, p4("10.0.0.9"), p6("2001:db8::9")));
    EXPECT_EQ(orders(out),
              (ClientActions{AddAddress{ip4("10.0.0.9")}, AddAddress{ip6("2001:db8::9")},
                             RemoveAddress{ip4("10.0.0.7")}, SetTimer{1800'000}}));
}

// --- Rejection of bad responses ---

struct BadResponse {
    const char* name;
    LeaseResponse response;
    ClientFamilies families{};
};

LeaseResponse with_v4(Prefix4 a, std::uint32_t errnum = 0, std::uint64_t leasetime = 3600) {
    return grant(0, a, std::nullopt, leasetime, errnum);
}
LeaseResponse with_v6(Prefix6 a) {
    return grant(0, std::nullopt, a);
}

std::vector<BadResponse> bad_responses() {
    return {
        {"Ipv4Slash24", with_v4(p4("10.0.0.0", 24))},
        {"Ipv6Slash64", with_v6(p6("2001:db8::", 64))},
        {"Ipv4LinkLocal", with_v4(p4("169.254.1.1"))},
        {"Ipv6LinkLocal", with_v6(p6("fe80::5"))},
        {"Ipv4Multicast", with_v4(p4("224.0.0.1"))},
        {"Ipv6Multicast", with_v6(p6("ff02::1"))},
        {"Ipv4Loopback", with_v4(p4("127.0.0.1"))},
        {"Ipv6Loopback", with_v6(p6("::1"))},
        {"Ipv4Unspecified", with_v4(p4("0.0.0.0"))},
        {"GoodIpv4WithBadIpv6", grant(0, p4("10.0.0.9"), p6("fe80::9"))},
        {"Ipv6NotAskedFor", grant(0, p4("10.0.0.9"), p6("2001:db8::9")),
         ClientFamilies{true, false}},
        {"Ipv4NotAskedFor", with_v4(p4("10.0.0.9")), ClientFamilies{false, true}},
        {"Errno1", with_v4(p4("10.0.0.9"), 1)},
        {"Errno2", with_v4(p4("10.0.0.9"), 2)},
        {"Errno4", with_v4(p4("10.0.0.9"), 4)},
        {"Errno3WithoutAddress", grant(0, std::nullopt, std::nullopt, 3600, 3)},
        {"Errno0WithoutAddress", grant(0, std::nullopt, std::nullopt, 3600, 0)},
        {"LeasetimeZero", with_v4(p4("10.0.0.9"), 0, 0)},
        {"LeasetimeAbsurd", with_v4(p4("10.0.0.9"), 0, kMaxLeaseTimeSeconds + 1)},
    };
}

class RejectedResponse : public ::testing::TestWithParam<BadResponse> {};

TEST_P(RejectedResponse, AppliesNothingAndBacksOff) {
    ClientLeaseMachine m(no_jitter, GetParam().families);
    m.start(0, {});
    LeaseResponse r = GetParam().response;
    r.exchange = 1;
    auto out = m.response(20, r);
    EXPECT_FALSE(has_address_orders(out));
    EXPECT_TRUE(has_log(out, Severity::warning));
    EXPECT_EQ(m.state(), ClientState::backing_off);
    EXPECT_FALSE(m.lease().active());
    EXPECT_EQ(m.next_deadline(), 20u + 1000u);
    EXPECT_EQ(m.next_backoff(), 2000u);
}

TEST_P(RejectedResponse, DuringRenewalLeavesTheHeldLeaseUntouched) {
    ClientLeaseMachine m(no_jitter, GetParam().families);
    m.start(0, {});
    LeaseResponse first;
    first.exchange = 1;
    first.leasetime = 3600;
    if (GetParam().families.ipv4)
        first.ipv4 = p4("10.0.0.5");
    if (GetParam().families.ipv6)
        first.ipv6 = p6("2001:db8::5");
    m.response(10, first);
    ASSERT_EQ(m.state(), ClientState::bound);
    const ClientLease held = m.lease();
    m.timer(held.renew_at);
    LeaseResponse r = GetParam().response;
    r.exchange = 2;
    auto out = m.response(held.renew_at + 10, r);
    EXPECT_FALSE(has_address_orders(out));
    EXPECT_EQ(m.lease(), held);
    EXPECT_EQ(m.state(), ClientState::backing_off);
}

std::string bad_response_name(const ::testing::TestParamInfo<BadResponse>& param) {
    return param.param.name;
}

INSTANTIATE_TEST_SUITE_P(ClientLease, RejectedResponse, ::testing::ValuesIn(bad_responses()),
                         bad_response_name);

TEST(ClientLease, RestrictedToIpv4AsksForIpv4Only) {
    ClientLeaseMachine m(no_jitter, ClientFamilies{true, false});
    auto out = m.start(0, {});
    EXPECT_EQ(only<SendRequest>(out), (std::vector<SendRequest>{{1, Ip4{}, std::nullopt}}));
    out = m.response(10, grant(1, p4("10.0.0.5"), std::nullopt));
    EXPECT_EQ(only<AddAddress>(out), (std::vector<AddAddress>{{ip4("10.0.0.5")}}));
}

TEST(ClientLease, AnswerWithOnlyTheOtherFamilyToAnAnyRequestIsAccepted) {
    // With no address key the server grants what it has pools for.
    ClientLeaseMachine m(no_jitter);
    m.start(0, {});
    auto out = m.response(10, grant(1, std::nullopt, p6("2001:db8::5")));
    EXPECT_EQ(only<AddAddress>(out), (std::vector<AddAddress>{{ip6("2001:db8::5")}}));
}

// --- The interface ---

TEST_F(Bound, LinkDownStopsRequestingUntilLinkUp) {
    auto out = m.link_down(1000);
    EXPECT_EQ(m.state(), ClientState::link_down);
    EXPECT_FALSE(has_address_orders(out));
    EXPECT_TRUE(only<SendRequest>(m.timer(1800'000)).empty());
    out = m.link_up(2000'000);
    EXPECT_EQ(only<SendRequest>(out),
              (std::vector<SendRequest>{{2, ip4("10.0.0.5"), ip6("2001:db8::5")}}));
    EXPECT_EQ(m.state(), ClientState::requesting);
}

TEST(ClientLease, LinkUpRequestsAtOnceWithFreshBackoff) {
    ClientLeaseMachine m(no_jitter);
    m.start(0, {});
    for (std::uint64_t i = 1; i <= 4; ++i) {
        m.exchange_failed(i * 100'000, i, "refused");
        m.timer(i * 100'000 + 60'000);
    }
    EXPECT_EQ(m.next_backoff(), 16'000u);
    m.link_down(500'000);
    m.link_up(600'000);
    EXPECT_EQ(m.next_backoff(), kFirstBackoffMs);
    m.exchange_failed(600'001, *m.exchange_in_flight(), "refused");
    EXPECT_EQ(m.next_deadline(), 601'001u);
}

TEST(ClientLease, ResultOfAnExchangeCutByLinkDownIsStale) {
    ClientLeaseMachine m(no_jitter);
    m.start(0, {});
    m.link_down(10);
    EXPECT_EQ(m.exchange_in_flight(), std::nullopt);
    auto out = m.response(20, grant(1, p4("10.0.0.5"), std::nullopt));
    EXPECT_FALSE(has_address_orders(out));
    EXPECT_EQ(m.state(), ClientState::link_down);
    m.link_up(30);
    out = m.response(40, grant(1, p4("10.0.0.5"), std::nullopt));
    EXPECT_FALSE(has_address_orders(out)) << "exchange 1 is not the one in flight";
    EXPECT_EQ(m.state(), ClientState::requesting);
    out = m.response(50, grant(2, p4("10.0.0.5"), std::nullopt));
    EXPECT_EQ(only<AddAddress>(out), (std::vector<AddAddress>{{ip4("10.0.0.5")}}));
}

TEST_F(Bound, LinkDeletedExitsZeroWithoutAddressOrders) {
    auto out = m.link_deleted();
    EXPECT_EQ(orders(out), (ClientActions{Exit{0}, SetTimer{std::nullopt}}));
    EXPECT_EQ(m.state(), ClientState::exited);
}

TEST(ClientLease, LinkDeletedBeforeStartExitsZero) {
    ClientLeaseMachine m(no_jitter);
    EXPECT_EQ(orders(m.link_deleted()), (ClientActions{Exit{0}}));
}

TEST(ClientLease, LinkUpWhileUpIsIgnored) {
    ClientLeaseMachine m(no_jitter);
    m.start(0, {});
    auto out = m.link_up(10);
    EXPECT_TRUE(orders(out).empty());
    EXPECT_EQ(m.exchange_in_flight(), 1u);
}

// --- Stop ---

TEST_F(Bound, StopRemovesGrantedAddressesThenExits) {
    auto out = m.stop();
    EXPECT_EQ(orders(out),
              (ClientActions{RemoveAddress{ip4("10.0.0.5")}, RemoveAddress{ip6("2001:db8::5")},
                             Exit{0}, SetTimer{std::nullopt}}));
    EXPECT_EQ(m.state(), ClientState::exited);
}

TEST(ClientLease, StopLeavesUnconfirmedInceptionAddresses) {
    ClientLeaseMachine m(no_jitter);
    ExistingAddresses existing;
    existing.ipv4 = {p4("10.0.0.7")};
    m.start(0, existing);
    auto out = m.stop();
    EXPECT_FALSE(has_address_orders(out));
    EXPECT_EQ(only<Exit>(out), (std::vector<Exit>{{0}}));
}

TEST(ClientLease, StopRemovesInceptionAddressOnceServerConfirmedIt) {
    ClientLeaseMachine m(no_jitter);
    ExistingAddresses existing;
    existing.ipv4 = {p4("10.0.0.7")};
    m.start(0, existing);
    m.response(10, grant(1, p4("10.0.0.7"), p6("2001:db8::9")));
    auto out = m.stop();
    EXPECT_EQ(orders(out),
              (ClientActions{RemoveAddress{ip4("10.0.0.7")}, RemoveAddress{ip6("2001:db8::9")},
                             Exit{0}, SetTimer{std::nullopt}}));
}

TEST_F(Bound, StopAfterExpiryRemovesNothing) {
    m.link_down(10);
    m.timer(3600'000);
    auto out = m.stop();
    EXPECT_FALSE(has_address_orders(out));
    EXPECT_EQ(only<Exit>(out), (std::vector<Exit>{{0}}));
}

TEST_F(Bound, StopWhileRenewingRemovesTheHeldLease) {
    m.timer(1800'000);
    auto out = m.stop();
    EXPECT_EQ(only<RemoveAddress>(out).size(), 2u);
    EXPECT_EQ(m.exchange_in_flight(), std::nullopt);
}

// --- Inputs a state does not accept ---

TEST_F(Bound, ResponseWhileBoundIsIgnoredAndLogged) {
    const ClientLease held = m.lease();
    auto out = m.response(500, grant(1, p4("10.0.0.9"), p6("2001:db8::9")));
    EXPECT_TRUE(orders(out).empty());
    EXPECT_TRUE(has_log(out, Severity::warning));
    EXPECT_EQ(m.lease(), held);
    EXPECT_EQ(m.state(), ClientState::bound);
}

TEST(ClientLease, ResponseWhileBackingOffIsIgnored) {
    ClientLeaseMachine m(no_jitter);
    m.start(0, {});
    m.exchange_failed(10, 1, "refused");
    auto out = m.response(20, grant(1, p4("10.0.0.9"), std::nullopt));
    EXPECT_TRUE(orders(out).empty());
    EXPECT_TRUE(has_log(out, Severity::warning));
    EXPECT_EQ(m.state(), ClientState::backing_off);
}

TEST(ClientLease, InputsBeforeStartAreIgnored) {
    ClientLeaseMachine m(no_jitter);
    EXPECT_TRUE(orders(m.response(0, grant(0, p4("10.0.0.9"), std::nullopt))).empty());
    EXPECT_TRUE(orders(m.timer(100)).empty());
    EXPECT_TRUE(orders(m.link_down(100)).empty());
    EXPECT_TRUE(orders(m.link_up(100)).empty());
    EXPECT_TRUE(orders(m.exchange_failed(100, 0, "x")).empty());
    EXPECT_EQ(m.state(), ClientState::init);
}

TEST(ClientLease, FailureOfAnotherExchangeIsIgnored) {
    ClientLeaseMachine m(no_jitter);
    m.start(0, {});
    auto out = m.exchange_failed(10, 7, "refused");
    EXPECT_TRUE(orders(out).empty());
    EXPECT_EQ(m.state(), ClientState::requesting);
}

TEST_F(Bound, EverythingAfterExitIsIgnored) {
    m.stop();
    EXPECT_TRUE(m.stop().empty());
    EXPECT_TRUE(m.timer(9000'000).empty());
    EXPECT_TRUE(orders(m.link_up(1)).empty());
    EXPECT_TRUE(orders(m.link_down(1)).empty());
    EXPECT_TRUE(m.link_deleted().empty());
    EXPECT_TRUE(orders(m.response(1, grant(1, p4("10.0.0.9"), std::nullopt))).empty());
    EXPECT_TRUE(orders(m.start(1, {})).empty());
}

TEST(ClientLease, SecondStartIsIgnored) {
    ClientLeaseMachine m(no_jitter);
    m.start(0, {});
    auto out = m.start(10, {});
    EXPECT_TRUE(orders(out).empty());
    EXPECT_EQ(m.exchange_in_flight(), 1u);
}

// --- The timer the caller arms ---

TEST_F(Bound, DeadlineIsAnnouncedOnlyWhenItChanges) {
    EXPECT_TRUE(only<SetTimer>(m.timer(10)).empty());
    EXPECT_TRUE(only<SetTimer>(m.link_up(10)).empty());
    EXPECT_EQ(only<SetTimer>(m.link_down(20)), (std::vector<SetTimer>{{3600'000}}));
}

TEST(ClientLease, StateNamesAreDistinct) {
    std::vector<std::string> names;
    for (auto s : {ClientState::init, ClientState::requesting, ClientState::bound,
                   ClientState::backing_off, ClientState::link_down, ClientState::exited})
        names.emplace_back(to_string(s));
    std::sort(names.begin(), names.end());
    EXPECT_EQ(std::unique(names.begin(), names.end()), names.end());
}

// --- Invariants over long random event sequences ---

// IFACE as the caller would see it after executing the orders.
struct SimulatedInterface {
    std::set<Ip4> v4;
    std::set<Ip6> v6;
    bool lost_a_family_midway = false;

    // Executes one input's actions in order, checking that no order is
    // pointless and that a family present before and after the input was
    // never absent in between (replacement adds before it removes).
    void execute(const ClientActions& actions) {
        const bool had4 = !v4.empty(), had6 = !v6.empty();
        bool gap4 = false, gap6 = false;
        for (const auto& action : actions) {
            if (auto* add = std::get_if<AddAddress>(&action)) {
                if (auto* a = std::get_if<Ip4>(&add->address))
                    EXPECT_TRUE(v4.insert(*a).second) << "added twice";
                else
                    EXPECT_TRUE(v6.insert(std::get<Ip6>(add->address)).second) << "added twice";
            } else if (auto* remove = std::get_if<RemoveAddress>(&action)) {
                if (auto* a = std::get_if<Ip4>(&remove->address))
                    EXPECT_EQ(v4.erase(*a), 1u) << "removed an absent address";
                else
                    EXPECT_EQ(v6.erase(std::get<Ip6>(remove->address)), 1u)
                        << "removed an absent address";
            }
            gap4 = gap4 || v4.empty();
            gap6 = gap6 || v6.empty();
        }
        if ((had4 && gap4 && !v4.empty()) || (had6 && gap6 && !v6.empty()))
            lost_a_family_midway = true;
    }
};

TEST(ClientLease, RandomEventSequencesKeepInterfaceEqualToLease) {
    const Prefix4 pool4[] = {p4("10.0.0.5"), p4("10.0.0.6"), p4("10.0.0.0", 24), p4("169.254.0.9"),
                             p4("224.0.0.5")};
    const Prefix6 pool6[] = {p6("2001:db8::5"), p6("2001:db8::6"), p6("2001:db8::", 64),
                             p6("fe80::9"), p6("ff02::2")};
    for (unsigned seed = 1; seed <= 200; ++seed) {
        SCOPED_TRACE("seed " + std::to_string(seed));
        std::mt19937_64 rng(seed);
        auto pick = [&](std::uint64_t n) { return rng() % n; };
        ClientLeaseMachine m([&](std::uint64_t bound) { return rng() % bound; });
        SimulatedInterface iface;
        ExistingAddresses existing;
        if (pick(2)) {
            existing.ipv4 = {p4("10.0.0.6")};
            iface.v4.insert(ip4("10.0.0.6"));
        }
        if (pick(2)) {
            existing.ipv6 = {p6("2001:db8::6")};
            iface.v6.insert(ip6("2001:db8::6"));
        }
        Millis now = 1000;
        bool link_up = true;
        iface.execute(m.start(now, existing));
        for (int step = 0; step < 300 && m.state() != ClientState::exited; ++step) {
            ClientActions out;
            switch (pick(8)) {
            case 0:
            case 1:
            case 2: // the timer the machine asked for
                if (auto deadline = m.next_deadline()) {
                    now = std::max(now, *deadline);
                    out = m.timer(now);
                    ASSERT_TRUE(!m.lease().active() || now < m.lease().expires_at);
                }
                break;
            case 3:
            case 4: { // an answer, good or bad, usually to the current exchange
                now += pick(2000);
                LeaseResponse r;
                r.exchange = m.exchange_in_flight().value_or(0) - (pick(8) == 0 ? 1 : 0);
                if (pick(4))
                    r.ipv4 = pool4[pick(pick(3) ? 2 : 5)];
                if (pick(4))
                    r.ipv6 = pool6[pick(pick(3) ? 2 : 5)];
                r.leasetime = pick(10) ? 2 + pick(60) : 0;
                r.errnum = static_cast<std::uint32_t>(pick(3) ? 0 : pick(5));
                out = m.response(now, r);
                break;
            }
            case 5:
                now += pick(2000);
                out = m.exchange_failed(now, m.exchange_in_flight().value_or(0), "refused");
                break;
            case 6:
                now += pick(5000);
                out = link_up ? m.link_down(now) : m.link_up(now);
                link_up = !link_up;
                break;
            default:
                now += pick(30'000);
                break;
            }
            iface.execute(out);
            ASSERT_FALSE(iface.lost_a_family_midway);
            // IFACE carries exactly the lease's addresses.
            std::set<Ip4> lease4;
            std::set<Ip6> lease6;
            if (m.lease().ipv4)
                lease4.insert(*m.lease().ipv4);
            if (m.lease().ipv6)
                lease6.insert(*m.lease().ipv6);
            ASSERT_EQ(iface.v4, lease4);
            ASSERT_EQ(iface.v6, lease6);
            for (const auto& a : iface.v4)
                ASSERT_TRUE(is_leasable(a));
            for (const auto& a : iface.v6)
                ASSERT_TRUE(is_leasable(a));
            ASSERT_EQ(m.state() == ClientState::requesting, m.exchange_in_flight().has_value());
            if (m.lease().active()) {
                ASSERT_TRUE(m.next_deadline());
                ASSERT_LE(*m.next_deadline(), m.lease().expires_at);
            }
            if (m.lease().granted) {
                const Millis length = m.lease().expires_at - m.lease().obtained_at;
                ASSERT_GE(m.lease().renew_at - m.lease().obtained_at, length * 7 / 16);
                ASSERT_LE(m.lease().renew_at - m.lease().obtained_at, length * 9 / 16 + 1);
            }
        }
        if (m.state() == ClientState::exited)
            continue;
        const bool granted = m.lease().granted;
        iface.execute(m.stop());
        if (granted) {
            EXPECT_TRUE(iface.v4.empty());
            EXPECT_TRUE(iface.v6.empty());
        }
    }
}

} // namespace
} // namespace wgd::leased
