#include "privsep/events.hpp"

#include "privsep/wire.hpp"

#include <cstdio>
#include <ctime>

namespace wgd {

const char* to_string(EventKind kind) {
    switch (kind) {
    case EventKind::grant:
        return "grant";
    case EventKind::renew:
        return "renew";
    case EventKind::release:
        return "release";
    case EventKind::expire:
        return "expire";
    case EventKind::revoke:
        return "revoke";
    case EventKind::refuse:
        return "refuse";
    }
    return "unknown";
}

namespace {

bool has_leasetime(EventKind k) {
    return k == EventKind::grant || k == EventKind::renew;
}

std::string iso_time(std::int64_t t) {
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::string quoted_or_null(bool present, const std::string& s) {
    // Keys (base64), addresses and kinds hold no character JSON must escape.
    return present ? "\"" + s + "\"" : "null";
}

} // namespace

std::string format_text(const LeaseEvent& e) {
    std::string out = to_string(e.kind);
    out += " peer=" + to_base64(e.peer);
    if (e.link_local)
        out += " link-local=" + to_string(*e.link_local);
    if (e.ipv4)
        out += " ipv4=" + to_string(Prefix4{*e.ipv4, 32});
    if (e.ipv6)
        out += " ipv6=" + to_string(Prefix6{*e.ipv6, 128});
    if (has_leasetime(e.kind))
        out += " leasetime=" + std::to_string(e.leasetime);
    if (e.kind == EventKind::refuse)
        out += " errno=" + std::to_string(e.errnum);
    return out;
}

std::string format_monitor_line(const LeaseEvent& e) {
    return iso_time(e.time) + " " + format_text(e) + "\n";
}

std::string format_json(const LeaseEvent& e) {
    std::string out = "{\"time\":" + std::to_string(e.time) + ",\"event\":\"" + to_string(e.kind) +
                      "\",\"peer\":\"" + to_base64(e.peer) + "\"";
    out += ",\"link_local\":" +
           quoted_or_null(e.link_local.has_value(), e.link_local ? to_string(*e.link_local) : "");
    out += ",\"ipv4\":" +
           quoted_or_null(e.ipv4.has_value(), e.ipv4 ? to_string(Prefix4{*e.ipv4, 32}) : "");
    out += ",\"ipv6\":" +
           quoted_or_null(e.ipv6.has_value(), e.ipv6 ? to_string(Prefix6{*e.ipv6, 128}) : "");
    out += ",\"leasetime\":" + std::to_string(e.leasetime) +
           ",\"errno\":" + std::to_string(e.errnum) + "}\n";
    return out;
}

std::string format_lost_text(std::uint64_t lost, std::int64_t now) {
    return iso_time(now) + " lost events=" + std::to_string(lost) + "\n";
}

std::string format_lost_json(std::uint64_t lost, std::int64_t now) {
    return "{\"time\":" + std::to_string(now) +
           ",\"event\":\"lost\",\"count\":" + std::to_string(lost) + "}\n";
}

namespace {
constexpr std::size_t kEventBytes = 1 + 8 + 32 + 1 + 16 + 4 + 16 + 4 + 1;
constexpr std::uint8_t kHasLinkLocal = 1, kHasIpv4 = 2, kHasIpv6 = 4;
} // namespace

std::vector<std::uint8_t> encode_events(std::span<const LeaseEvent> events) {
    privsep::Writer w;
    w.put_u32(static_cast<std::uint32_t>(events.size()));
    for (const LeaseEvent& e : events) {
        std::uint8_t present =
            (e.link_local ? kHasLinkLocal : 0) | (e.ipv4 ? kHasIpv4 : 0) | (e.ipv6 ? kHasIpv6 : 0);
        w.put_u8(static_cast<std::uint8_t>(e.kind))
            .put_u64(static_cast<std::uint64_t>(e.time))
            .put_key(e.peer)
            .put_u8(present)
            .put_ip6(e.link_local.value_or(Ip6{}))
            .put_ip4(e.ipv4.value_or(Ip4{}))
            .put_ip6(e.ipv6.value_or(Ip6{}))
            .put_u32(e.leasetime)
            .put_u8(e.errnum);
    }
    return w.take();
}

std::optional<std::vector<LeaseEvent>> decode_events(std::span<const std::uint8_t> body) {
    privsep::Reader r(body);
    std::uint32_t n = 0;
    if (!r.get_count(n, kEventBytes) || n > kMaxEventsPerMessage)
        return std::nullopt;
    std::vector<LeaseEvent> out(n);
    for (LeaseEvent& e : out) {
        std::uint8_t kind = 0, present = 0;
        std::uint64_t time = 0;
        Ip6 ll{}, v6{};
        Ip4 v4{};
        if (!r.get_u8(kind) || !r.get_u64(time) || !r.get_key(e.peer) || !r.get_u8(present) ||
            !r.get_ip6(ll) || !r.get_ip4(v4) || !r.get_ip6(v6) || !r.get_u32(e.leasetime) ||
            !r.get_u8(e.errnum))
            return std::nullopt;
        if (kind == 0 || kind > kLastEventKind || (present & ~7u) != 0)
            return std::nullopt;
        // What leased never produces is refused, so that formatters see only
        // events a sound leased makes: a link-local identity is link-local,
        // addresses are leasable, an errno is one of SPEC's.
        if ((present & kHasLinkLocal) && !ll.is_link_local())
            return std::nullopt;
        if (((present & kHasIpv4) && !is_leasable(v4)) ||
            ((present & kHasIpv6) && !is_leasable(v6)))
            return std::nullopt;
        if (e.errnum > 3 || static_cast<std::int64_t>(time) < 0)
            return std::nullopt;
        e.kind = static_cast<EventKind>(kind);
        e.time = static_cast<std::int64_t>(time);
        if (present & kHasLinkLocal)
            e.link_local = ll;
        if (present & kHasIpv4)
            e.ipv4 = v4;
        if (present & kHasIpv6)
            e.ipv6 = v6;
    }
    if (!r.finished())
        return std::nullopt;
    return out;
}

} // namespace wgd
