// Body encoding for the messages between the processes of the suite.
//
// Every message type has one struct, one encoder built on Writer and one
// decoder built on Reader. A decoder reads each field with get_*, which fail
// on short input, and ends with finished(), which fails on trailing bytes, so
// a body of the wrong size is always rejected:
//
//     std::optional<Order> decode_order(std::span<const std::uint8_t> body) {
//         Reader r(body);
//         Order o;
//         if (!r.get_u32(o.id) || !r.get_ip6(o.addr) || !r.finished())
//             return std::nullopt;
//         return o;
//     }
//
// Integers are in host byte order: both ends run on the same machine.
#pragma once

#include "common/addr.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace wgd::privsep {

class Writer {
  public:
    Writer& put_u8(std::uint8_t v) { return put_raw(&v, sizeof v); }
    Writer& put_u16(std::uint16_t v) { return put_raw(&v, sizeof v); }
    Writer& put_u32(std::uint32_t v) { return put_raw(&v, sizeof v); }
    Writer& put_u64(std::uint64_t v) { return put_raw(&v, sizeof v); }
    Writer& put_bool(bool v) { return put_u8(v ? 1 : 0); }
    Writer& put_bytes(std::span<const std::uint8_t> bytes) {
        return put_raw(bytes.data(), bytes.size());
    }
    Writer& put_ip4(const Ip4& a) { return put_raw(a.bytes.data(), a.bytes.size()); }
    Writer& put_ip6(const Ip6& a) { return put_raw(a.bytes.data(), a.bytes.size()); }
    Writer& put_key(const PublicKey& k) { return put_raw(k.bytes.data(), k.bytes.size()); }
    // A u16 length then the bytes; text longer than 65535 bytes is cut.
    Writer& put_string(std::string_view s) {
        std::size_t n = s.size() > 0xffff ? 0xffff : s.size();
        put_u16(static_cast<std::uint16_t>(n));
        return put_raw(s.data(), n);
    }

    std::size_t size() const { return buf_.size(); }
    const std::vector<std::uint8_t>& bytes() const { return buf_; }
    std::vector<std::uint8_t> take() { return std::move(buf_); }

  private:
    Writer& put_raw(const void* p, std::size_t n) {
        const auto* b = static_cast<const std::uint8_t*>(p);
        buf_.insert(buf_.end(), b, b + n);
        return *this;
    }
    std::vector<std::uint8_t> buf_;
};

class Reader {
  public:
    explicit Reader(std::span<const std::uint8_t> body) : body_(body) {}

    [[nodiscard]] bool get_u8(std::uint8_t& v) { return get_raw(&v, sizeof v); }
    [[nodiscard]] bool get_u16(std::uint16_t& v) { return get_raw(&v, sizeof v); }
    [[nodiscard]] bool get_u32(std::uint32_t& v) { return get_raw(&v, sizeof v); }
    [[nodiscard]] bool get_u64(std::uint64_t& v) { return get_raw(&v, sizeof v); }
    // Only 0 and 1 are booleans; anything else is a malformed body.
    [[nodiscard]] bool get_bool(bool& v) {
        std::uint8_t b = 0;
        if (!get_u8(b) || b > 1)
            return false;
        v = b == 1;
        return true;
    }
    [[nodiscard]] bool get_ip4(Ip4& a) { return get_raw(a.bytes.data(), a.bytes.size()); }
    [[nodiscard]] bool get_ip6(Ip6& a) { return get_raw(a.bytes.data(), a.bytes.size()); }
    [[nodiscard]] bool get_key(PublicKey& k) { return get_raw(k.bytes.data(), k.bytes.size()); }
    // Exactly n bytes, viewed in place (valid as long as the body is).
    [[nodiscard]] bool get_bytes(std::size_t n, std::span<const std::uint8_t>& out) {
        if (remaining() < n)
            return false;
        out = body_.subspan(pos_, n);
        pos_ += n;
        return true;
    }
    [[nodiscard]] bool get_string(std::string& s, std::size_t max_len = 0xffff) {
        std::uint16_t n = 0;
        std::span<const std::uint8_t> raw;
        if (!get_u16(n) || n > max_len || !get_bytes(n, raw))
            return false;
        s.assign(reinterpret_cast<const char*>(raw.data()), raw.size());
        return true;
    }
    // A count of items each at least min_item_size bytes: refuses counts the
    // rest of the body cannot hold, so a decoder never reserves for a lie.
    [[nodiscard]] bool get_count(std::uint32_t& n, std::size_t min_item_size) {
        if (!get_u32(n))
            return false;
        return min_item_size == 0 || n <= remaining() / min_item_size;
    }

    std::size_t remaining() const { return body_.size() - pos_; }
    // True only when every byte of the body has been read.
    [[nodiscard]] bool finished() const { return pos_ == body_.size(); }

  private:
    bool get_raw(void* p, std::size_t n) {
        if (remaining() < n)
            return false;
        std::memcpy(p, body_.data() + pos_, n);
        pos_ += n;
        return true;
    }
    std::span<const std::uint8_t> body_;
    std::size_t pos_ = 0;
};

} // namespace wgd::privsep
