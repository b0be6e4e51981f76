#include "common/addr.hpp"

#include <gtest/gtest.h>

#include <map>
#include <vector>

using namespace wgd;

TEST(Addr, ParsesAndFormatsBothFamiliesRoundTrip) {
    for (auto t : {"0.0.0.0", "10.77.0.1", "255.255.255.255"})
        EXPECT_EQ(to_string(*parse_ip4(t)), t);
    for (auto t : {"::", "2001:db8::17", "fe80::1234", "ff02::1"})
        EXPECT_EQ(to_string(*parse_ip6(t)), t);
}

TEST(Addr, RejectsNonCanonicalOrMalformedText) {
    for (auto t :
         {"", "10.1", "10.0.0.256", "010.0.0.1", "1.2.3.4 ", "1.2.3.4/32", "a.b.c.d", "1.2.3.4.5"})
        EXPECT_FALSE(parse_ip4(t)) << t;
    for (auto t : {"", "fe80::1%wg0", "2001:db8::/64", "1:2:3:4:5:6:7:8:9", ":::", "g::"})
        EXPECT_FALSE(parse_ip6(t)) << t;
}

TEST(Addr, PrefixContainsAndMasks) {
    Prefix4 p{*parse_ip4("10.77.0.9"), 24};
    EXPECT_TRUE(p.contains(*parse_ip4("10.77.0.200")));
    EXPECT_FALSE(p.contains(*parse_ip4("10.78.0.1")));
    EXPECT_EQ(to_string(p.masked()), "10.77.0.0/24");
    Prefix6 q{*parse_ip6("2001:db8:77::1"), 61};
    EXPECT_EQ(to_string(q.masked()), "2001:db8:77::/61");
    EXPECT_TRUE(q.contains(*parse_ip6("2001:db8:77:7::5")));
    EXPECT_FALSE(q.contains(*parse_ip6("2001:db8:77:8::5")));
    EXPECT_TRUE((Prefix6{Ip6{}, 0}).contains(*parse_ip6("2001:db8::1")));
}

TEST(Addr, OnlyGlobalUnicastIsLeasable) {
    for (auto t : {"10.0.0.1", "192.168.47.11", "8.8.8.8", "100.64.0.1"})
        EXPECT_TRUE(is_leasable(*parse_ip4(t))) << t;
    for (auto t : {"0.0.0.0", "0.1.2.3", "127.0.0.1", "169.254.1.1", "224.0.0.1", "239.1.1.1",
                   "240.0.0.1", "255.255.255.255"})
        EXPECT_FALSE(is_leasable(*parse_ip4(t))) << t;
    for (auto t : {"2001:db8::17", "fd00::1", "2a00:1::"})
        EXPECT_TRUE(is_leasable(*parse_ip6(t))) << t;
    for (auto t : {"::", "::1", "fe80::1", "febf::1", "ff02::1", "::ffff:10.0.0.1", "::10.0.0.1"})
        EXPECT_FALSE(is_leasable(*parse_ip6(t))) << t;
}

TEST(Addr, PublicKeysConvertBetweenBase64AndHex) {
    PublicKey k;
    for (int i = 0; i < 32; i++)
        k.bytes[i] = static_cast<std::uint8_t>(i * 7);
    auto b64 = to_base64(k);
    EXPECT_EQ(b64.size(), 44u);
    EXPECT_EQ(key_from_base64(b64), k);
    EXPECT_EQ(key_from_hex(to_hex(k)), k);
    EXPECT_FALSE(key_from_base64(b64.substr(0, 43)));
    EXPECT_FALSE(key_from_hex(to_hex(k) + "0"));
    EXPECT_FALSE(key_from_hex(std::string(64, 'g')));
}

namespace {

// The buckets (of 4096) that 4096 consecutive addresses of each family fall
// into, in order.
std::vector<std::uint64_t> buckets_of_consecutive(AddressHash hash, bool ipv6) {
    std::vector<std::uint64_t> out;
    Ip6 a6{};
    a6.bytes[0] = 0x20;
    for (std::uint32_t n = 0; n < 4096; n++) {
        a6.bytes[14] = static_cast<std::uint8_t>(n >> 8);
        a6.bytes[15] = static_cast<std::uint8_t>(n);
        out.push_back((ipv6 ? hash(a6) : hash(Ip4::from_u32(0x0a000000u + n))) & 4095);
    }
    return out;
}

std::size_t distinct(const std::vector<std::uint64_t>& v) {
    std::map<std::uint64_t, int> seen;
    for (std::uint64_t b : v)
        seen[b]++;
    return seen.size();
}

} // namespace

TEST(AddressHash, SpreadsConsecutiveAddressesOverLowBitsWithAnyKey) {
    // A fresh pool hands out neighbours: 4096 consecutive addresses must not
    // fall into a few of 4096 buckets. Uniform: about 63% of buckets are
    // hit; a weak hash hits far fewer.
    for (std::uint64_t key : {0ull, 0x243f6a8885a308d3ull}) {
        SCOPED_TRACE(key);
        EXPECT_GT(distinct(buckets_of_consecutive(AddressHash{key}, false)), 2400u);
        EXPECT_GT(distinct(buckets_of_consecutive(AddressHash{key}, true)), 2400u);
    }
}

TEST(AddressHash, AnotherKeySendsTheSameAddressesToOtherBuckets) {
    for (bool ipv6 : {false, true}) {
        auto a = buckets_of_consecutive(AddressHash{0}, ipv6);
        auto b = buckets_of_consecutive(AddressHash{0x243f6a8885a308d3ull}, ipv6);
        int same = 0;
        for (std::size_t i = 0; i < a.size(); i++)
            same += a[i] == b[i];
        // Independent buckets agree for about 1 address in 4096.
        EXPECT_LT(same, 20) << (ipv6 ? "IPv6" : "IPv4");
    }
}
