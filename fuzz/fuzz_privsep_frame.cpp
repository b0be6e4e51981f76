// The frame decoder of privsep/channel.hpp and the Reader of privsep/wire.hpp
// on arbitrary datagrams. Input: byte 0 bit 0 says whether an fd "arrived",
// the rest is the datagram. Whatever decodes must encode back to exactly the
// same bytes; a sample body decoded with Reader must do the same.
#include "privsep/channel.hpp"
#include "privsep/wire.hpp"

#include <algorithm>
#include <cstdlib>
#include <optional>

using namespace wgd;
using namespace wgd::privsep;

namespace {

// A body shaped like a real order: a count, then that many (address, key)
// items, then a string.
struct Item {
    Ip6 address;
    PublicKey key;
    bool remove = false;
};
struct Sample {
    std::uint64_t expires = 0;
    std::vector<Item> items;
    std::string note;
};

std::optional<Sample> decode_sample(std::span<const std::uint8_t> body) {
    Reader r(body);
    Sample s;
    std::uint32_t n = 0;
    if (!r.get_u64(s.expires) || !r.get_count(n, 16 + 32 + 1))
        return std::nullopt;
    s.items.resize(n);
    for (Item& it : s.items) {
        if (!r.get_ip6(it.address) || !r.get_key(it.key) || !r.get_bool(it.remove))
            return std::nullopt;
    }
    if (!r.get_string(s.note, 255) || !r.finished())
        return std::nullopt;
    return s;
}

std::vector<std::uint8_t> encode_sample(const Sample& s) {
    Writer w;
    w.put_u64(s.expires).put_u32(std::uint32_t(s.items.size()));
    for (const Item& it : s.items)
        w.put_ip6(it.address).put_key(it.key).put_bool(it.remove);
    w.put_string(s.note);
    return w.take();
}

bool same(std::span<const std::uint8_t> a, const std::vector<std::uint8_t>& b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1)
        return 0;
    const bool fd_received = (data[0] & 1) != 0;
    std::span<const std::uint8_t> datagram(data + 1, size - 1);
    auto decoded = decode_frame(datagram, fd_received);
    const Frame* f = std::get_if<Frame>(&decoded);
    if (f == nullptr)
        return 0;
    if (f->body.size() > kMaxBody || ((f->header.flags & kFlagFd) != 0) != fd_received)
        std::abort();
    if (!same(datagram, encode_frame(f->header.type, f->header.id, f->body, fd_received)))
        std::abort();
    if (auto s = decode_sample(f->body)) {
        if (!same(f->body, encode_sample(*s)))
            std::abort();
    }
    return 0;
}
