#include "privsep/events.hpp"

#include <gtest/gtest.h>

using namespace wgd;

namespace {

LeaseEvent grant_event() {
    LeaseEvent e;
    e.kind = EventKind::grant;
    e.time = 1764201600; // 2025-11-27T00:00:00Z
    e.peer.bytes.fill(0);
    e.link_local = *parse_ip6("fe80::1234");
    e.ipv4 = *parse_ip4("10.77.0.5");
    e.ipv6 = *parse_ip6("2001:db8::5");
    e.leasetime = 3600;
    return e;
}

TEST(LeaseEventText, GrantNamesKindPeerLinkLocalAddressesAndLeasetime) {
    EXPECT_EQ(format_text(grant_event()),
              "grant peer=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= link-local=fe80::1234 "
              "ipv4=10.77.0.5/32 ipv6=2001:db8::5/128 leasetime=3600");
}

TEST(LeaseEventText, ExpiryLeavesOutLeasetimeAndAbsentFamilies) {
    LeaseEvent e = grant_event();
    e.kind = EventKind::expire;
    e.ipv6.reset();
    EXPECT_EQ(format_text(e), "expire peer=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= "
                              "link-local=fe80::1234 ipv4=10.77.0.5/32");
}

TEST(LeaseEventText, RefusalCarriesItsErrno) {
    LeaseEvent e = grant_event();
    e.kind = EventKind::refuse;
    e.ipv4.reset();
    e.ipv6.reset();
    e.errnum = 3;
    EXPECT_EQ(format_text(e), "refuse peer=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= "
                              "link-local=fe80::1234 errno=3");
}

TEST(LeaseEventText, MonitorLineIsUtcTimeThenTheAuditText) {
    EXPECT_EQ(format_monitor_line(grant_event()),
              "2025-11-27T00:00:00Z " + format_text(grant_event()) + "\n");
}

TEST(LeaseEventJson, EveryFieldAlwaysPresentAbsentOnesNull) {
    LeaseEvent e = grant_event();
    e.kind = EventKind::revoke;
    e.ipv6.reset();
    e.leasetime = 0;
    EXPECT_EQ(format_json(e), "{\"time\":1764201600,\"event\":\"revoke\",\"peer\":"
                              "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\",\"link_local\":"
                              "\"fe80::1234\",\"ipv4\":\"10.77.0.5/32\",\"ipv6\":null,"
                              "\"leasetime\":0,\"errno\":0}\n");
}

TEST(LeaseEventJson, LostEventsLineCountsThem) {
    EXPECT_EQ(format_lost_json(7, 10), "{\"time\":10,\"event\":\"lost\",\"count\":7}\n");
    EXPECT_EQ(format_lost_text(7, 0), "1970-01-01T00:00:00Z lost events=7\n");
}

TEST(LeaseEventCodec, RoundTripsEveryKind) {
    std::vector<LeaseEvent> events;
    for (std::uint8_t k = 1; k <= kLastEventKind; k++) {
        LeaseEvent e = grant_event();
        e.kind = static_cast<EventKind>(k);
        e.peer.bytes[0] = k;
        if (k % 2)
            e.link_local.reset();
        events.push_back(e);
    }
    auto decoded = decode_events(encode_events(events));
    ASSERT_TRUE(decoded);
    EXPECT_EQ(*decoded, events);
}

TEST(LeaseEventCodec, RefusesWhatLeasedNeverSends) {
    auto bytes = [](auto mutate) {
        LeaseEvent e = grant_event();
        mutate(e);
        return encode_events(std::vector<LeaseEvent>{e});
    };
    EXPECT_FALSE(decode_events(bytes([](LeaseEvent& e) { e.link_local = *parse_ip6("2001::1"); })));
    EXPECT_FALSE(decode_events(bytes([](LeaseEvent& e) { e.ipv4 = *parse_ip4("224.0.0.1"); })));
    EXPECT_FALSE(decode_events(bytes([](LeaseEvent& e) { e.errnum = 4; })));
    EXPECT_FALSE(decode_events(bytes([](LeaseEvent& e) { e.kind = static_cast<EventKind>(0); })));
    auto good = bytes([](LeaseEvent&) {});
    good.push_back(0);
    EXPECT_FALSE(decode_events(good)); // trailing byte
    good.pop_back();
    good.pop_back();
    EXPECT_FALSE(decode_events(good)); // short
}

} // namespace
