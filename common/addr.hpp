// The suite's shared vocabulary: IPv4 and IPv6 addresses, prefixes and
// WireGuard public keys as fixed-size values. Pure code, no I/O.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace wgd {

struct Ip4 {
    std::array<std::uint8_t, 4> bytes{};

    std::uint32_t to_u32() const; // host order
    static Ip4 from_u32(std::uint32_t host_order);
    bool is_unspecified() const { return to_u32() == 0; }
    friend auto operator<=>(const Ip4&, const Ip4&) = default;
};

struct Ip6 {
    std::array<std::uint8_t, 16> bytes{};

    bool is_unspecified() const;
    bool is_link_local() const; // fe80::/10
    friend auto operator<=>(const Ip6&, const Ip6&) = default;
};

struct Prefix4 {
    Ip4 addr;
    std::uint8_t len = 32;
    bool contains(const Ip4& a) const;
    Prefix4 masked() const; // host bits cleared
    friend auto operator<=>(const Prefix4&, const Prefix4&) = default;
};

struct Prefix6 {
    Ip6 addr;
    std::uint8_t len = 128;
    bool contains(const Ip6& a) const;
    Prefix6 masked() const;
    friend auto operator<=>(const Prefix6&, const Prefix6&) = default;
};

// Strict textual forms: dotted quad for IPv4 (no leading zeros, no
// shorthand), RFC 4291 text for IPv6 (no zone, no embedded prefix).
std::optional<Ip4> parse_ip4(std::string_view text);
std::optional<Ip6> parse_ip6(std::string_view text);
std::string to_string(const Ip4& a);
std::string to_string(const Ip6& a);
std::string to_string(const Prefix4& p);
std::string to_string(const Prefix6& p);

// An address that may be leased, put on an interface or accepted from a
// server: a global unicast address. IPv4: not 0/8, 127/8, 169.254/16,
// 224/4 (multicast), 240/4 (reserved and broadcast). IPv6: not ::, ::1,
// fe80::/10, ff00::/8, ::ffff:0:0/96 (IPv4-mapped), ::/96 (IPv4-compatible).
bool is_leasable(const Ip4& a);
bool is_leasable(const Ip6& a);
// The prefixes is_leasable() refuses, each given once: what no pool may
// hand out, whatever route covers it.
std::span<const Prefix4> unleasable_prefixes4();
std::span<const Prefix6> unleasable_prefixes6();

// splitmix64's finalizer: every input bit moves about half the output bits,
// so consecutive addresses (a fresh pool fills low bits) spread evenly.
constexpr std::uint64_t mix64(std::uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// The hash of the address tables. `key` is 0 where the addresses come from
// the operator or a uniform draw; random where the process beside chooses
// them, so that it cannot aim many addresses at one probe run without
// knowing the key.
struct AddressHash {
    std::uint64_t key = 0;
    std::uint64_t operator()(const Ip4& a) const {
        std::uint32_t v;
        std::memcpy(&v, a.bytes.data(), sizeof v);
        return mix64(v ^ key);
    }
    std::uint64_t operator()(const Ip6& a) const {
        std::uint64_t hi, lo;
        std::memcpy(&hi, a.bytes.data(), sizeof hi);
        std::memcpy(&lo, a.bytes.data() + 8, sizeof lo);
        return mix64(lo ^ mix64(hi ^ key));
    }
};

struct PublicKey {
    std::array<std::uint8_t, 32> bytes{};
    friend auto operator<=>(const PublicKey&, const PublicKey&) = default;
};

// WireGuard's two spellings of a key: base64 (wg(8), logs) and hex (UAPI).
std::string to_base64(const PublicKey& key);
std::string to_hex(const PublicKey& key);
std::optional<PublicKey> key_from_base64(std::string_view text);
std::optional<PublicKey> key_from_hex(std::string_view text);

} // namespace wgd
