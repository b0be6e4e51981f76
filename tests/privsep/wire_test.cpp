#include "privsep/wire.hpp"

#include <gtest/gtest.h>

using namespace wgd;
using namespace wgd::privsep;

namespace {

// A sample message type, written the way each real one is: struct, encoder, decoder.
struct Sample {
    std::uint32_t conn = 0;
    Ip6 source;
    PublicKey key;
    bool renew = false;
    std::string note;
};

std::vector<std::uint8_t> encode(const Sample& s) {
    Writer w;
    w.put_u32(s.conn).put_ip6(s.source).put_key(s.key).put_bool(s.renew).put_string(s.note);
    return w.take();
}

std::optional<Sample> decode(std::span<const std::uint8_t> body) {
    Reader r(body);
    Sample s;
    if (!r.get_u32(s.conn) || !r.get_ip6(s.source) || !r.get_key(s.key) || !r.get_bool(s.renew) ||
        !r.get_string(s.note, 64) || !r.finished())
        return std::nullopt;
    return s;
}

Sample sample() {
    Sample s;
    s.conn = 0xdeadbeef;
    s.source.bytes = {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34};
    for (std::size_t i = 0; i < s.key.bytes.size(); ++i)
        s.key.bytes[i] = std::uint8_t(i * 7);
    s.renew = true;
    s.note = "hello";
    return s;
}

} // namespace

TEST(Wire, EncodedSampleDecodesToTheSameFields) {
    Sample in = sample();
    auto out = decode(encode(in));
    ASSERT_TRUE(out);
    EXPECT_EQ(out->conn, in.conn);
    EXPECT_EQ(out->source.bytes, in.source.bytes);
    EXPECT_EQ(out->key.bytes, in.key.bytes);
    EXPECT_EQ(out->renew, in.renew);
    EXPECT_EQ(out->note, in.note);
}

TEST(Wire, EveryShorterBodyIsRejected) {
    auto body = encode(sample());
    for (std::size_t n = 0; n < body.size(); ++n)
        EXPECT_FALSE(decode(std::span<const std::uint8_t>(body.data(), n))) << "length " << n;
}

TEST(Wire, TrailingByteIsRejected) {
    auto body = encode(sample());
    body.push_back(0);
    EXPECT_FALSE(decode(body));
}

TEST(Wire, BooleanOtherThanZeroOrOneIsRejected) {
    auto body = encode(sample());
    body[4 + 16 + 32] = 2; // the renew byte
    EXPECT_FALSE(decode(body));
}

TEST(Wire, StringLongerThanItsLimitIsRejected) {
    Sample s = sample();
    s.note = std::string(65, 'x');
    EXPECT_FALSE(decode(encode(s)));
    s.note = std::string(64, 'x');
    EXPECT_TRUE(decode(encode(s)));
}

TEST(Wire, CountLargerThanTheRestOfTheBodyIsRejected) {
    Writer w;
    w.put_u32(3).put_u32(1).put_u32(2); // claims 3 items of 4 bytes, holds 2
    auto body = w.take();
    Reader r(body);
    std::uint32_t n = 0;
    EXPECT_FALSE(r.get_count(n, 4));
    Reader ok(body);
    Writer w2;
    w2.put_u32(2).put_u32(1).put_u32(2);
    auto body2 = w2.take();
    Reader r2(body2);
    EXPECT_TRUE(r2.get_count(n, 4));
    EXPECT_EQ(n, 2u);
}

TEST(Wire, IntegersOfEachWidthRoundTrip) {
    Writer w;
    w.put_u8(0xab).put_u16(0xbeef).put_u32(0x01020304).put_u64(0x1122334455667788ull);
    auto body = w.take();
    ASSERT_EQ(body.size(), 15u);
    Reader r(body);
    std::uint8_t a;
    std::uint16_t b;
    std::uint32_t c;
    std::uint64_t d;
    ASSERT_TRUE(r.get_u8(a) && r.get_u16(b) && r.get_u32(c) && r.get_u64(d));
    EXPECT_TRUE(r.finished());
    EXPECT_EQ(a, 0xab);
    EXPECT_EQ(b, 0xbeef);
    EXPECT_EQ(c, 0x01020304u);
    EXPECT_EQ(d, 0x1122334455667788ull);
}
