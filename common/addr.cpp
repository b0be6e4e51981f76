#include "common/addr.hpp"

#include <arpa/inet.h>
#include <sodium.h>

#include <cstring>

namespace wgd {

std::uint32_t Ip4::to_u32() const {
    return (std::uint32_t{bytes[0]} << 24) | (std::uint32_t{bytes[1]} << 16) |
           (std::uint32_t{bytes[2]} << 8) | std::uint32_t{bytes[3]};
}

Ip4 Ip4::from_u32(std::uint32_t v) {
    return Ip4{{static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16),
                static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)}};
}

bool Ip6::is_unspecified() const {
    for (auto b : bytes)
        if (b != 0)
            return false;
    return true;
}

bool Ip6::is_link_local() const {
    return bytes[0] == 0xfe && (bytes[1] & 0xc0) == 0x80;
}

namespace {

template <std::size_t N>
bool prefix_match(const std::array<std::uint8_t, N>& a, const std::array<std::uint8_t, N>& b,
                  unsigned len) {
    unsigned full = len / 8, rest = len % 8;
    if (std::memcmp(a.data(), b.data(), full) != 0)
        return false;
    if (rest == 0)
        return true;
    std::uint8_t mask = static_cast<std::uint8_t>(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

template <std::size_t N>
std::array<std::uint8_t, N> mask_bytes(std::array<std::uint8_t, N> a, unsigned len) {
    for (unsigned i = 0; i < N; i++) {
        unsigned bit = i * 8;
        if (bit >= len)
            a[i] = 0;
        else if (len - bit < 8)
            a[i] &= static_cast<std::uint8_t>(0xff << (8 - (len - bit)));
    }
    return a;
}

} // namespace

bool Prefix4::contains(const Ip4& a) const {
    return len <= 32 && prefix_match(addr.bytes, a.bytes, len);
}
Prefix4 Prefix4::masked() const {
    return Prefix4{Ip4{mask_bytes(addr.bytes, len)}, len};
}
bool Prefix6::contains(const Ip6& a) const {
    return len <= 128 && prefix_match(addr.bytes, a.bytes, len);
}
Prefix6 Prefix6::masked() const {
    return Prefix6{Ip6{mask_bytes(addr.bytes, len)}, len};
}

std::optional<Ip4> parse_ip4(std::string_view text) {
    // inet_pton(AF_INET) already refuses shorthand ("10.1") and octal forms;
    // the copy makes the view NUL-terminated and bounds its length.
    if (text.empty() || text.size() > 15)
        return std::nullopt;
    char buf[16];
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    Ip4 a;
    if (inet_pton(AF_INET, buf, a.bytes.data()) != 1)
        return std::nullopt;
    return a;
}

std::optional<Ip6> parse_ip6(std::string_view text) {
    if (text.empty() || text.size() > 45)
        return std::nullopt;
    char buf[46];
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    Ip6 a;
    if (inet_pton(AF_INET6, buf, a.bytes.data()) != 1)
        return std::nullopt;
    return a;
}

std::string to_string(const Ip4& a) {
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, a.bytes.data(), buf, sizeof buf);
    return buf;
}

std::string to_string(const Ip6& a) {
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, a.bytes.data(), buf, sizeof buf);
    return buf;
}

std::string to_string(const Prefix4& p) {
    return to_string(p.addr) + "/" + std::to_string(p.len);
}
std::string to_string(const Prefix6& p) {
    return to_string(p.addr) + "/" + std::to_string(p.len);
}

namespace {

constexpr Prefix4 kUnleasable4[] = {
    {{{0, 0, 0, 0}}, 8},      // "this network"
    {{{127, 0, 0, 0}}, 8},    // loopback
    {{{169, 254, 0, 0}}, 16}, // link-local
    {{{224, 0, 0, 0}}, 4},    // multicast
    {{{240, 0, 0, 0}}, 4},    // reserved, and the limited broadcast
};

// ::/96 covers ::, ::1 and the deprecated IPv4-compatible form;
// ::ffff:0:0/96 is IPv4-mapped. Neither belongs on a WireGuard peer.
constexpr Prefix6 kUnleasable6[] = {
    {{{}}, 96},
    {{{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}}, 96},
    {{{0xfe, 0x80}}, 10}, // link-local
    {{{0xff}}, 8},        // multicast
};

} // namespace

std::span<const Prefix4> unleasable_prefixes4() {
    return kUnleasable4;
}
std::span<const Prefix6> unleasable_prefixes6() {
    return kUnleasable6;
}

bool is_leasable(const Ip4& a) {
    for (const Prefix4& p : kUnleasable4)
        if (p.contains(a))
            return false;
    return true;
}

bool is_leasable(const Ip6& a) {
    for (const Prefix6& p : kUnleasable6)
        if (p.contains(a))
            return false;
    return true;
}

std::string to_base64(const PublicKey& key) {
    char buf[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(buf, sizeof buf, key.bytes.data(), key.bytes.size(),
                      sodium_base64_VARIANT_ORIGINAL);
    return buf;
}

std::string to_hex(const PublicKey& key) {
    char buf[65];
    sodium_bin2hex(buf, sizeof buf, key.bytes.data(), key.bytes.size());
    return buf;
}

std::optional<PublicKey> key_from_base64(std::string_view text) {
    if (text.size() != 44 || text[43] != '=')
        return std::nullopt;
    PublicKey key;
    std::size_t len = 0;
    const char* end = nullptr;
    if (sodium_base642bin(key.bytes.data(), key.bytes.size(), text.data(), text.size(), nullptr,
                          &len, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
        len != 32 || end != text.data() + text.size())
        return std::nullopt;
    return key;
}

std::optional<PublicKey> key_from_hex(std::string_view text) {
    if (text.size() != 64)
        return std::nullopt;
    PublicKey key;
    std::size_t len = 0;
    const char* end = nullptr;
    if (sodium_hex2bin(key.bytes.data(), key.bytes.size(), text.data(), text.size(), nullptr, &len,
                       &end) != 0 ||
        len != 32 || end != text.data() + text.size())
        return std::nullopt;
    return key;
}

} // namespace wgd
