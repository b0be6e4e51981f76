#include "privsep/messages.hpp"

#include "privsep/channel.hpp"
#include "privsep/wire.hpp"

#include <type_traits>

namespace wgd::msg {

using privsep::Reader;
using privsep::Writer;

namespace {

template <class T>
void put_opt(Writer& w, const std::optional<T>& v) {
    w.put_bool(v.has_value());
    if constexpr (std::is_same_v<T, Ip4>) {
        w.put_ip4(v ? *v : Ip4{});
    } else {
        w.put_ip6(v ? *v : Ip6{});
    }
}

template <class T>
bool get_opt(Reader& r, std::optional<T>& v) {
    bool has = false;
    T a;
    bool ok;
    if constexpr (std::is_same_v<T, Ip4>)
        ok = r.get_bool(has) && r.get_ip4(a);
    else
        ok = r.get_bool(has) && r.get_ip6(a);
    if (!ok)
        return false;
    // An absent value is written as zeros; anything else is a malformed body.
    if (!has && a != T{})
        return false;
    v = has ? std::optional<T>(a) : std::nullopt;
    return true;
}

void put_prefix(Writer& w, const Prefix4& p) {
    w.put_ip4(p.addr).put_u8(p.len);
}
void put_prefix(Writer& w, const Prefix6& p) {
    w.put_ip6(p.addr).put_u8(p.len);
}
bool get_prefix(Reader& r, Prefix4& p) {
    return r.get_ip4(p.addr) && r.get_u8(p.len) && p.len <= 32;
}
bool get_prefix(Reader& r, Prefix6& p) {
    return r.get_ip6(p.addr) && r.get_u8(p.len) && p.len <= 128;
}

template <class T, class Put>
void put_list(Writer& w, const std::vector<T>& items, Put put) {
    w.put_u32(static_cast<std::uint32_t>(items.size()));
    for (const T& item : items)
        put(w, item);
}

template <class T, class Get>
bool get_list(Reader& r, std::vector<T>& items, std::size_t min_item_size, Get get) {
    std::uint32_t n = 0;
    if (!r.get_count(n, min_item_size))
        return false;
    items.resize(n);
    for (T& item : items)
        if (!get(r, item))
            return false;
    return true;
}

const auto put4 = [](Writer& w, const Ip4& a) { w.put_ip4(a); };
const auto put6 = [](Writer& w, const Ip6& a) { w.put_ip6(a); };
const auto get4 = [](Reader& r, Ip4& a) { return r.get_ip4(a); };
const auto get6 = [](Reader& r, Ip6& a) { return r.get_ip6(a); };
const auto putp4 = [](Writer& w, const Prefix4& p) { put_prefix(w, p); };
const auto putp6 = [](Writer& w, const Prefix6& p) { put_prefix(w, p); };
const auto getp4 = [](Reader& r, Prefix4& p) { return get_prefix(r, p); };
const auto getp6 = [](Reader& r, Prefix6& p) { return get_prefix(r, p); };

// Room left in a message for the body of a list message, with the margin
// that one more item could need.
constexpr std::size_t kBudget = privsep::kMaxBody - 64;

std::size_t peer_size(const PeerFacts& p) {
    return 32 + 8 + p.allowed4.size() * 5 + p.allowed6.size() * 17;
}

std::size_t change_size(const PeerChange& c) {
    return 32 + 16 + (c.add4.size() + c.remove4.size()) * 4 +
           (c.add6.size() + c.remove6.size()) * 16;
}

} // namespace

namespace {

void put_query(Writer& w, const QueryLease& m) {
    w.put_ip6(m.source);
    put_opt(w, m.ipv4);
    put_opt(w, m.ipv6);
    w.put_u8(m.invalid);
}

bool get_query(Reader& r, QueryLease& m) {
    return r.get_ip6(m.source) && get_opt(r, m.ipv4) && get_opt(r, m.ipv6) && r.get_u8(m.invalid) &&
           m.invalid <= 2 && (m.invalid == 0 || (!m.ipv4 && !m.ipv6));
}

void put_answer(Writer& w, const LeaseAnswer& m) {
    put_opt(w, m.ipv4);
    put_opt(w, m.ipv6);
    w.put_u64(m.leasestart).put_u32(m.leasetime).put_u8(m.errnum);
}

bool get_answer(Reader& r, LeaseAnswer& m) {
    return get_opt(r, m.ipv4) && get_opt(r, m.ipv6) && r.get_u64(m.leasestart) &&
           r.get_u32(m.leasetime) && r.get_u8(m.errnum) && m.errnum <= 3;
}

constexpr std::size_t kQuerySize = 16 + 5 + 17 + 1;
constexpr std::size_t kAnswerSize = 5 + 17 + 8 + 4 + 1;

} // namespace

Bytes encode(const QueryLease& m) {
    Writer w;
    put_query(w, m);
    return w.take();
}

std::optional<QueryLease> decode_query_lease(Body body) {
    Reader r(body);
    QueryLease m;
    if (!get_query(r, m) || !r.finished())
        return std::nullopt;
    return m;
}

Bytes encode(const LeaseAnswer& m) {
    Writer w;
    put_answer(w, m);
    return w.take();
}

std::optional<LeaseAnswer> decode_lease_answer(Body body) {
    Reader r(body);
    LeaseAnswer m;
    if (!get_answer(r, m) || !r.finished())
        return std::nullopt;
    return m;
}

namespace {

// QueryLeases and LeaseAnswers: a list of {connection, item}.
template <class Batch, class Put>
Bytes encode_batch(const Batch& m, Put put_item) {
    Writer w;
    put_list(w, m.items, [&](Writer& w2, const auto& item) {
        w2.put_u32(item.conn);
        put_item(w2, item);
    });
    return w.take();
}

template <class Batch, class Get>
std::optional<Batch> decode_batch(Body body, std::size_t item_size, Get get_item) {
    Reader r(body);
    Batch m;
    if (!get_list(
            r, m.items, 4 + item_size,
            [&](Reader& r2, auto& item) { return r2.get_u32(item.conn) && get_item(r2, item); }) ||
        !r.finished() || m.items.size() > kMaxItemsPerMessage)
        return std::nullopt;
    return m;
}

} // namespace

Bytes encode(const QueryLeases& m) {
    return encode_batch(m,
                        [](Writer& w, const QueryLeases::Item& item) { put_query(w, item.query); });
}

std::optional<QueryLeases> decode_query_leases(Body body) {
    return decode_batch<QueryLeases>(body, kQuerySize, [](Reader& r, QueryLeases::Item& item) {
        return get_query(r, item.query);
    });
}

Bytes encode(const LeaseAnswers& m) {
    return encode_batch(
        m, [](Writer& w, const LeaseAnswers::Item& item) { put_answer(w, item.answer); });
}

std::optional<LeaseAnswers> decode_lease_answers(Body body) {
    return decode_batch<LeaseAnswers>(body, kAnswerSize, [](Reader& r, LeaseAnswers::Item& item) {
        return get_answer(r, item.answer);
    });
}

bool decode_empty(Body body) {
    return body.empty();
}

Bytes encode(const PeersChunk& m) {
    Writer w;
    put_list(w, m.peers, [](Writer& w2, const PeerFacts& p) {
        w2.put_key(p.key);
        put_list(w2, p.allowed4, putp4);
        put_list(w2, p.allowed6, putp6);
    });
    return w.take();
}

std::optional<PeersChunk> decode_peers_chunk(Body body) {
    Reader r(body);
    PeersChunk m;
    if (!get_list(r, m.peers, 40,
                  [](Reader& r2, PeerFacts& p) {
                      return r2.get_key(p.key) && get_list(r2, p.allowed4, 5, getp4) &&
                             get_list(r2, p.allowed6, 17, getp6);
                  }) ||
        !r.finished())
        return std::nullopt;
    return m;
}

std::vector<PeersChunk> split_peers(const std::vector<PeerFacts>& peers) {
    std::vector<PeersChunk> chunks(1);
    std::size_t used = 4;
    for (const PeerFacts& p : peers) {
        std::size_t size = peer_size(p);
        if (used + size > kBudget && !chunks.back().peers.empty()) {
            chunks.emplace_back();
            used = 4;
        }
        // A single peer with more allowed IPs than one message holds is cut
        // to what fits: the daemon only needs its link-local identity and its
        // /32 and /128 entries, and logs the truncation.
        PeerFacts copy = p;
        while (used + peer_size(copy) > kBudget && !copy.allowed6.empty())
            copy.allowed6.pop_back();
        while (used + peer_size(copy) > kBudget && !copy.allowed4.empty())
            copy.allowed4.pop_back();
        used += peer_size(copy);
        chunks.back().peers.push_back(std::move(copy));
    }
    return chunks;
}

Bytes encode(const PoolsSnapshot& m) {
    Writer w;
    put_list(w, m.pools4, putp4);
    put_list(w, m.pools6, putp6);
    put_list(w, m.own4, put4);
    put_list(w, m.own6, put6);
    return w.take();
}

std::optional<PoolsSnapshot> decode_pools_snapshot(Body body) {
    Reader r(body);
    PoolsSnapshot m;
    if (!get_list(r, m.pools4, 5, getp4) || !get_list(r, m.pools6, 17, getp6) ||
        !get_list(r, m.own4, 4, get4) || !get_list(r, m.own6, 16, get6) || !r.finished())
        return std::nullopt;
    return m;
}

Bytes encode(const ApplyAllowedIps& m) {
    Writer w;
    put_list(w, m.changes, [](Writer& w2, const PeerChange& c) {
        w2.put_key(c.key);
        put_list(w2, c.add4, put4);
        put_list(w2, c.remove4, put4);
        put_list(w2, c.add6, put6);
        put_list(w2, c.remove6, put6);
    });
    return w.take();
}

std::optional<ApplyAllowedIps> decode_apply_allowed_ips(Body body) {
    Reader r(body);
    ApplyAllowedIps m;
    if (!get_list(r, m.changes, 48,
                  [](Reader& r2, PeerChange& c) {
                      return r2.get_key(c.key) && get_list(r2, c.add4, 4, get4) &&
                             get_list(r2, c.remove4, 4, get4) && get_list(r2, c.add6, 16, get6) &&
                             get_list(r2, c.remove6, 16, get6);
                  }) ||
        !r.finished())
        return std::nullopt;
    return m;
}

std::vector<ApplyAllowedIps> split_changes(const std::vector<PeerChange>& changes) {
    std::vector<ApplyAllowedIps> parts;
    std::size_t used = 0;
    for (const PeerChange& c : changes) {
        std::size_t size = change_size(c);
        if (parts.empty() || (used + size > kBudget && !parts.back().changes.empty())) {
            parts.emplace_back();
            used = 4;
        }
        used += size;
        parts.back().changes.push_back(c);
    }
    return parts;
}

Bytes encode(const Outcome& m) {
    Writer w;
    w.put_bool(m.ok).put_string(m.error);
    return w.take();
}

std::optional<Outcome> decode_outcome(Body body) {
    Reader r(body);
    Outcome m;
    if (!r.get_bool(m.ok) || !r.get_string(m.error, 1024) || !r.finished())
        return std::nullopt;
    return m;
}

Bytes encode(const AllowedIpsApplied& m) {
    Writer w;
    put_list(w, m.status, [](Writer& w2, std::uint16_t v) { w2.put_u16(v); });
    return w.take();
}

std::optional<AllowedIpsApplied> decode_allowed_ips_applied(Body body) {
    Reader r(body);
    AllowedIpsApplied m;
    if (!get_list(r, m.status, 2, [](Reader& r2, std::uint16_t& v) { return r2.get_u16(v); }) ||
        !r.finished())
        return std::nullopt;
    return m;
}

Bytes encode(const ClaimLeases& m) {
    Writer w;
    put_list(w, m.claims, [](Writer& w2, const LeaseClaim& c) {
        w2.put_key(c.key);
        put_opt(w2, c.ipv4);
        put_opt(w2, c.ipv6);
    });
    return w.take();
}

std::optional<ClaimLeases> decode_claim_leases(Body body) {
    Reader r(body);
    ClaimLeases m;
    if (!get_list(r, m.claims, 32 + 5 + 17,
                  [](Reader& r2, LeaseClaim& c) {
                      return r2.get_key(c.key) && get_opt(r2, c.ipv4) && get_opt(r2, c.ipv6);
                  }) ||
        m.claims.size() > kMaxClaimsPerMessage || !r.finished())
        return std::nullopt;
    return m;
}

Bytes encode(const LinkState& m) {
    Writer w;
    w.put_u8(static_cast<std::uint8_t>(m.link));
    put_list(w, m.global4, putp4);
    put_list(w, m.global6, putp6);
    return w.take();
}

std::optional<LinkState> decode_link_state(Body body) {
    Reader r(body);
    LinkState m;
    std::uint8_t link = 0;
    if (!r.get_u8(link) || link < 1 || link > 3 || !get_list(r, m.global4, 5, getp4) ||
        !get_list(r, m.global6, 17, getp6) || !r.finished())
        return std::nullopt;
    m.link = static_cast<Link>(link);
    return m;
}

Bytes encode(const ExchangeRequest& m) {
    Writer w;
    put_opt(w, m.want4);
    put_opt(w, m.want6);
    return w.take();
}

std::optional<ExchangeRequest> decode_exchange_request(Body body) {
    Reader r(body);
    ExchangeRequest m;
    if (!get_opt(r, m.want4) || !get_opt(r, m.want6) || !r.finished())
        return std::nullopt;
    return m;
}

Bytes encode(const ExchangeResult& m) {
    Writer w;
    w.put_bool(m.answered).put_string(m.error);
    w.put_bool(m.ipv4.has_value());
    put_prefix(w, m.ipv4.value_or(Prefix4{Ip4{}, 0}));
    w.put_bool(m.ipv6.has_value());
    put_prefix(w, m.ipv6.value_or(Prefix6{Ip6{}, 0}));
    w.put_u64(m.leasestart).put_u32(m.leasetime).put_u32(m.errnum);
    return w.take();
}

std::optional<ExchangeResult> decode_exchange_result(Body body) {
    Reader r(body);
    ExchangeResult m;
    bool has4 = false, has6 = false;
    Prefix4 p4;
    Prefix6 p6;
    if (!r.get_bool(m.answered) || !r.get_string(m.error, 1024) || !r.get_bool(has4) ||
        !get_prefix(r, p4) || !r.get_bool(has6) || !get_prefix(r, p6) || !r.get_u64(m.leasestart) ||
        !r.get_u32(m.leasetime) || !r.get_u32(m.errnum) || !r.finished())
        return std::nullopt;
    if ((!has4 && p4 != Prefix4{Ip4{}, 0}) || (!has6 && p6 != Prefix6{Ip6{}, 0}))
        return std::nullopt;
    if (has4)
        m.ipv4 = p4;
    if (has6)
        m.ipv6 = p6;
    return m;
}

Bytes encode(const AddressOrder& m) {
    Writer w;
    w.put_bool(m.add);
    put_opt(w, m.ipv4);
    put_opt(w, m.ipv6);
    return w.take();
}

std::optional<AddressOrder> decode_address_order(Body body) {
    Reader r(body);
    AddressOrder m;
    if (!r.get_bool(m.add) || !get_opt(r, m.ipv4) || !get_opt(r, m.ipv6) || !r.finished())
        return std::nullopt;
    if (m.ipv4.has_value() == m.ipv6.has_value())
        return std::nullopt; // exactly one address per order
    return m;
}

} // namespace wgd::msg
