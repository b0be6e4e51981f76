#include "privsep/messages.hpp"

#include "privsep/channel.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <string>

using namespace wgd;
using namespace wgd::msg;

namespace {
Ip4 v4(const char* s) {
    return *parse_ip4(s);
}
Ip6 v6(const char* s) {
    return *parse_ip6(s);
}
PublicKey key(std::uint8_t seed) {
    PublicKey k;
    k.bytes.fill(seed);
    return k;
}
} // namespace

TEST(Messages, QueryLeaseRoundTripsWithEveryFamilyCombination) {
    for (int mask = 0; mask < 4; mask++) {
        QueryLease q{v6("fe80::1234"), std::nullopt, std::nullopt};
        if (mask & 1)
            q.ipv4 = v4("10.77.0.9");
        if (mask & 2)
            q.ipv6 = Ip6{}; // "any"
        EXPECT_EQ(decode_query_lease(encode(q)), q);
    }
}

TEST(Messages, EveryDecoderRefusesATruncatedOrOverlongBody) {
    QueryLease q{v6("fe80::1"), v4("10.0.0.1"), v6("2001:db8::1")};
    Bytes b = encode(q);
    for (std::size_t n = 0; n < b.size(); n++)
        EXPECT_FALSE(decode_query_lease(Body(b.data(), n))) << n;
    b.push_back(0);
    EXPECT_FALSE(decode_query_lease(b));

    LeaseAnswer a{v4("10.0.0.1"), std::nullopt, 1764201600, 3600, 0};
    Bytes ab = encode(a);
    EXPECT_EQ(decode_lease_answer(ab), a);
    for (std::size_t n = 0; n < ab.size(); n++)
        EXPECT_FALSE(decode_lease_answer(Body(ab.data(), n)));
}

TEST(Messages, AbsentAddressMustBeWrittenAsZeros) {
    Bytes b = encode(QueryLease{v6("fe80::1"), std::nullopt, std::nullopt});
    b[16 + 1] = 7; // the bytes of the absent IPv4 address
    EXPECT_FALSE(decode_query_lease(b));
}

TEST(Messages, LeaseAnswerCarriesAnErrnoOfSpecsTableOnly) {
    LeaseAnswer a{};
    for (std::uint8_t e : {0, 1, 2, 3}) {
        a.errnum = e;
        EXPECT_TRUE(decode_lease_answer(encode(a))) << int{e};
    }
    a.errnum = 4;
    EXPECT_FALSE(decode_lease_answer(encode(a)));
}

// An invalid request travels to leased for its verdict on the source only:
// errno 1 or 2, and never an address.
TEST(Messages, InvalidQueryCarriesItsErrnoAndNoAddress) {
    for (std::uint8_t e : {1, 2}) {
        QueryLease q{v6("fe80::1"), std::nullopt, std::nullopt, e};
        EXPECT_EQ(decode_query_lease(encode(q)), q);
    }
    EXPECT_FALSE(
        decode_query_lease(encode(QueryLease{v6("fe80::1"), std::nullopt, std::nullopt, 3})));
    EXPECT_FALSE(
        decode_query_lease(encode(QueryLease{v6("fe80::1"), v4("0.0.0.0"), std::nullopt, 1})));
    EXPECT_FALSE(decode_query_lease(encode(QueryLease{v6("fe80::1"), std::nullopt, Ip6{}, 2})));
}

TEST(Messages, QueriesAndAnswersTravelSeveralToAMessage) {
    QueryLeases q;
    q.items.push_back({7, {v6("fe80::7"), v4("0.0.0.0"), std::nullopt}});
    q.items.push_back({9, {v6("fe80::9"), std::nullopt, v6("2001:db8::9")}});
    EXPECT_EQ(decode_query_leases(encode(q)), q);
    LeaseAnswers a;
    a.items.push_back({7, {v4("10.0.0.7"), std::nullopt, 1764201600, 3600, 0}});
    a.items.push_back({9, {std::nullopt, std::nullopt, 0, 0, 3}});
    EXPECT_EQ(decode_lease_answers(encode(a)), a);
    Bytes b = encode(a);
    for (std::size_t n = 0; n < b.size(); n++)
        EXPECT_FALSE(decode_lease_answers(Body(b.data(), n))) << n;
}

TEST(Messages, OneBadAnswerRefusesTheWholeMessage) {
    LeaseAnswers a;
    a.items.push_back({1, {v4("10.0.0.1"), std::nullopt, 1764201600, 3600, 0}});
    a.items.push_back({2, {std::nullopt, std::nullopt, 0, 0, 4}}); // no errno of SPEC's table
    EXPECT_FALSE(decode_lease_answers(encode(a)));
}

TEST(Messages, MoreItemsThanAMessageMayCarryAreRefused) {
    QueryLeases q;
    q.items.assign(kMaxItemsPerMessage, {1, {v6("fe80::1"), std::nullopt, std::nullopt}});
    EXPECT_TRUE(decode_query_leases(encode(q)));
    q.items.push_back(q.items.back());
    EXPECT_FALSE(decode_query_leases(encode(q)));
}

TEST(Messages, PeersChunkRoundTripsAndRefusesLyingCounts) {
    PeersChunk c;
    c.peers.push_back({key(1), {{v4("10.0.0.5"), 32}}, {{v6("fe80::1"), 128}}});
    c.peers.push_back({key(2), {}, {{v6("fe80::2"), 128}, {v6("2001:db8::"), 64}}});
    EXPECT_EQ(decode_peers_chunk(encode(c)), c);
    Bytes b = encode(c);
    b[0] = 0xff; // count of peers far beyond the body
    EXPECT_FALSE(decode_peers_chunk(b));
}

// The peer vocabulary (common/peer.hpp) is what these messages carry; their
// bytes are fixed here (counts little-endian, addresses in network order, a
// prefix's length after its address), so that the fuzz corpora and the hostile tests'
// frames stay valid.
TEST(Messages, PeersChunkAndApplyAllowedIpsKeepTheirBytes) {
    const auto hex = [](const Bytes& b) {
        std::string out;
        char two[3];
        for (auto c : b) {
            std::snprintf(two, sizeof two, "%02x", static_cast<unsigned>(c));
            out += two;
        }
        return out;
    };
    PeersChunk c;
    c.peers.push_back(
        {key(1), {{v4("10.0.0.9"), 32}, {v4("192.168.1.0"), 24}}, {{v6("fe80::1"), 128}}});
    c.peers.push_back({key(2), {}, {}});
    const std::string chunk = "02000000"
                              "0101010101010101010101010101010101010101010101010101010101010101"
                              "02000000"
                              "0a00000920"
                              "c0a8010018"
                              "01000000"
                              "fe80000000000000000000000000000180"
                              "0202020202020202020202020202020202020202020202020202020202020202"
                              "00000000"
                              "00000000";
    EXPECT_EQ(hex(encode(c)), chunk);
    EXPECT_EQ(decode_peers_chunk(encode(c)), c);

    ApplyAllowedIps a;
    a.changes.push_back({key(3), {v4("10.0.0.5")}, {v4("10.0.0.6")}, {v6("2001:db8::7")}, {}});
    const std::string order = "01000000"
                              "0303030303030303030303030303030303030303030303030303030303030303"
                              "01000000"
                              "0a000005"
                              "01000000"
                              "0a000006"
                              "01000000"
                              "20010db8000000000000000000000007"
                              "00000000";
    EXPECT_EQ(hex(encode(a)), order);
    EXPECT_EQ(decode_apply_allowed_ips(encode(a)), a);
}

TEST(Messages, PrefixLengthsBeyondTheFamilyAreRefused) {
    PoolsSnapshot p;
    p.pools4.push_back({v4("10.77.0.0"), 24});
    Bytes b = encode(p);
    EXPECT_EQ(decode_pools_snapshot(b), p);
    b[4 + 4] = 33; // the length byte of the only IPv4 pool
    EXPECT_FALSE(decode_pools_snapshot(b));
}

TEST(Messages, SplitPeersKeepsEveryMessageUnderTheLimitAndLosesNoPeer) {
    std::vector<PeerFacts> peers;
    for (int i = 0; i < 10000; i++) {
        PeerFacts p{key(static_cast<std::uint8_t>(i)),
                    {{Ip4::from_u32(0x0a000000u + i), 32}},
                    {{v6("fe80::1"), 128}}};
        peers.push_back(p);
    }
    auto chunks = split_peers(peers);
    EXPECT_GT(chunks.size(), 1u);
    std::size_t total = 0;
    for (auto& c : chunks) {
        EXPECT_LE(encode(c).size(), privsep::kMaxBody);
        total += c.peers.size();
    }
    EXPECT_EQ(total, peers.size());
}

TEST(Messages, SplitChangesKeepsEveryMessageUnderTheLimit) {
    std::vector<PeerChange> changes;
    for (int i = 0; i < 5000; i++)
        changes.push_back({key(static_cast<std::uint8_t>(i)),
                           {Ip4::from_u32(0x0a000000u + i)},
                           {},
                           {v6("2001:db8::1")},
                           {v6("2001:db8::2")}});
    auto parts = split_changes(changes);
    std::size_t total = 0;
    for (auto& p : parts) {
        Bytes b = encode(p);
        EXPECT_LE(b.size(), privsep::kMaxBody);
        EXPECT_EQ(decode_apply_allowed_ips(b), p);
        total += p.changes.size();
    }
    EXPECT_EQ(total, changes.size());
}

TEST(Messages, AddressOrderNamesExactlyOneAddress) {
    AddressOrder o{true, v4("10.77.0.9"), std::nullopt};
    EXPECT_EQ(decode_address_order(encode(o)), o);
    o.ipv6 = v6("2001:db8::1");
    EXPECT_FALSE(decode_address_order(encode(o)));
    EXPECT_FALSE(decode_address_order(encode(AddressOrder{false, std::nullopt, std::nullopt})));
}

TEST(Messages, ClientMessagesRoundTrip) {
    LinkState l{Link::down, {{v4("10.77.0.9"), 32}}, {}};
    EXPECT_EQ(decode_link_state(encode(l)), l);
    ExchangeRequest r{Ip4{}, v6("2001:db8::5")};
    EXPECT_EQ(decode_exchange_request(encode(r)), r);
    ExchangeResult x{true, "", Prefix4{v4("10.77.0.9"), 24}, std::nullopt, 5, 60, 0};
    EXPECT_EQ(decode_exchange_result(encode(x)), x);
    Outcome o{false, "peer unknown"};
    EXPECT_EQ(decode_outcome(encode(o)), o);
    Bytes bad = encode(l);
    bad[0] = 9;
    EXPECT_FALSE(decode_link_state(bad));
}

TEST(Messages, AllowedIpsAppliedCarriesOneStatusPerChange) {
    AllowedIpsApplied a{{0, EPERM, 0, EEXIST}};
    EXPECT_EQ(decode_allowed_ips_applied(encode(a)), a);
    EXPECT_EQ(decode_allowed_ips_applied(encode(AllowedIpsApplied{})), AllowedIpsApplied{});
    Bytes cut = encode(a);
    cut.pop_back();
    EXPECT_FALSE(decode_allowed_ips_applied(cut));
    Bytes longer = encode(a);
    longer.push_back(0);
    EXPECT_FALSE(decode_allowed_ips_applied(longer));
}

TEST(Messages, ClaimLeasesRoundTripAndRefuseMoreThanOneMessageHolds) {
    ClaimLeases c{
        {{key(1), v4("10.77.0.9"), v6("2001:db8::9")}, {key(2), std::nullopt, v6("2001:db8::a")}}};
    EXPECT_EQ(decode_claim_leases(encode(c)), c);
    Bytes bad = encode(c);
    bad[4 + 32] = 0; // "no IPv4" with an address written after it
    EXPECT_FALSE(decode_claim_leases(bad));
    ClaimLeases many;
    many.claims.assign(kMaxClaimsPerMessage + 1, LeaseClaim{key(3), v4("10.77.0.1"), std::nullopt});
    EXPECT_FALSE(decode_claim_leases(encode(many)));
    many.claims.pop_back();
    EXPECT_EQ(decode_claim_leases(encode(many)), many);
}
