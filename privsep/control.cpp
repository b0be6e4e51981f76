#include "privsep/control.hpp"

#include "privsep/wire.hpp"

namespace wgd::control {

std::string socket_path(const std::string& iface) {
    return std::string(kRunDir) + "/" + iface + ".sock";
}

std::size_t request_end(std::string_view buf) {
    if (buf.size() >= 1 && buf[0] == '\n')
        return 1; // an empty request: parse_request refuses it
    auto at = buf.find("\n\n");
    return at == std::string_view::npos ? 0 : at + 2;
}

namespace {

bool valid_key(std::string_view k) {
    if (k.empty() || k.size() > 16)
        return false;
    for (char c : k)
        if (!(c >= 'a' && c <= 'z'))
            return false;
    return true;
}

} // namespace

std::variant<Request, std::string> parse_request(std::string_view text) {
    if (text.size() > kMaxRequestBytes)
        return std::string("request too long");
    if (text.size() < 2 || text.substr(text.size() - 2) != "\n\n")
        return std::string("request not ended by an empty line");
    text.remove_suffix(1); // the empty line; every line now ends with '\n'
    Request r;
    bool first = true, format_seen = false;
    while (!text.empty()) {
        auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl + 1);
        auto eq = line.find('=');
        if (eq == std::string_view::npos)
            return std::string("line without '='");
        std::string_view key = line.substr(0, eq), value = line.substr(eq + 1);
        if (!valid_key(key))
            return std::string("bad key");
        for (char c : value)
            if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e)
                return std::string("bad value");
        if (first) {
            first = false;
            if (value != "1")
                return std::string("unsupported version");
            if (key == "show")
                r.command = Command::show;
            else if (key == "monitor")
                r.command = Command::monitor;
            else if (key == "revoke")
                r.command = Command::revoke;
            else
                return std::string("unknown command");
            r.format = r.command == Command::monitor ? Format::text : Format::table;
            continue;
        }
        if (key == "format" && r.command != Command::revoke) {
            if (format_seen)
                return std::string("repeated format");
            format_seen = true;
            if (r.command == Command::show && value == "table")
                r.format = Format::table;
            else if (r.command == Command::show && value == "json")
                r.format = Format::json;
            else if (r.command == Command::show && value == "metrics")
                r.format = Format::metrics;
            else if (r.command == Command::monitor && value == "text")
                r.format = Format::text;
            else if (r.command == Command::monitor && value == "json")
                r.format = Format::json;
            else
                return std::string("unknown format");
        } else if (key == "peer" && r.command == Command::revoke) {
            if (r.peer || r.ipv4 || r.ipv6)
                return std::string("more than one lease named");
            r.peer = key_from_base64(value);
            if (!r.peer)
                return std::string("not a WireGuard public key");
        } else if (key == "address" && r.command == Command::revoke) {
            if (r.peer || r.ipv4 || r.ipv6)
                return std::string("more than one lease named");
            if (auto a4 = parse_ip4(value); a4 && is_leasable(*a4))
                r.ipv4 = a4;
            else if (auto a6 = parse_ip6(value); a6 && is_leasable(*a6))
                r.ipv6 = a6;
            else
                return std::string("not a leasable address");
        } else {
            return std::string("unknown key");
        }
    }
    if (first)
        return std::string("empty request");
    if (r.command == Command::revoke && !r.peer && !r.ipv4 && !r.ipv6)
        return std::string("revoke names no lease");
    return r;
}

std::string format_request(const Request& r) {
    std::string out;
    switch (r.command) {
    case Command::show:
        out = "show=1\n";
        break;
    case Command::monitor:
        out = "monitor=1\n";
        break;
    case Command::revoke:
        out = "revoke=1\n";
        break;
    }
    if (r.command != Command::revoke) {
        const char* f = r.format == Format::json      ? "json"
                        : r.format == Format::metrics ? "metrics"
                        : r.format == Format::text    ? "text"
                                                      : "table";
        out += std::string("format=") + f + "\n";
    }
    if (r.peer)
        out += "peer=" + to_base64(*r.peer) + "\n";
    if (r.ipv4)
        out += "address=" + to_string(*r.ipv4) + "\n";
    if (r.ipv6)
        out += "address=" + to_string(*r.ipv6) + "\n";
    return out + "\n";
}

bool printable(std::string_view body) {
    for (char ch : body) {
        auto c = static_cast<unsigned char>(ch);
        if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

std::optional<AnswerHead> parse_answer_head(std::string_view buf) {
    auto nl = buf.find('\n');
    if (nl == std::string_view::npos) {
        if (buf.size() < kMaxHeadBytes)
            return std::nullopt;
        return AnswerHead{false, "", 0, true};
    }
    if (nl >= kMaxHeadBytes)
        return AnswerHead{false, "", 0, true};
    std::string_view line = buf.substr(0, nl);
    AnswerHead head;
    head.size = nl + 1;
    if (line == "ok") {
        head.ok = true;
        return head;
    }
    constexpr std::string_view prefix = "error=";
    if (line.substr(0, prefix.size()) != prefix || line.size() == prefix.size() ||
        !printable(line) || line.find('\t') != std::string_view::npos) {
        head.malformed = true;
        return head;
    }
    head.error = std::string(line.substr(prefix.size()));
    return head;
}

std::string format_answer_head(bool ok, std::string_view error) {
    if (ok)
        return "ok\n";
    std::string line = "error=";
    for (char c : error) // one printable line, whatever the reason holds
        line.push_back(static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? ' ' : c);
    if (line.size() > kMaxHeadBytes - 1)
        line.resize(kMaxHeadBytes - 1);
    return line + "\n";
}

std::vector<std::uint8_t> encode(const ControlQuery& q) {
    const Request& r = q.request;
    std::uint8_t target = r.peer ? 1 : r.ipv4 ? 2 : r.ipv6 ? 3 : 0;
    privsep::Writer w;
    w.put_u8(static_cast<std::uint8_t>(r.command))
        .put_u8(static_cast<std::uint8_t>(r.format))
        .put_u8(target)
        .put_key(r.peer.value_or(PublicKey{}))
        .put_ip4(r.ipv4.value_or(Ip4{}))
        .put_ip6(r.ipv6.value_or(Ip6{}))
        .put_u64(q.invalid_requests)
        .put_u64(q.unsupported_requests)
        .put_u64(q.monitor_lost);
    return w.take();
}

std::optional<ControlQuery> decode_control_query(std::span<const std::uint8_t> body) {
    privsep::Reader r(body);
    ControlQuery q;
    std::uint8_t command = 0, format = 0, target = 0;
    PublicKey key{};
    Ip4 v4{};
    Ip6 v6{};
    if (!r.get_u8(command) || !r.get_u8(format) || !r.get_u8(target) || !r.get_key(key) ||
        !r.get_ip4(v4) || !r.get_ip6(v6) || !r.get_u64(q.invalid_requests) ||
        !r.get_u64(q.unsupported_requests) || !r.get_u64(q.monitor_lost) || !r.finished())
        return std::nullopt;
    if (command < 1 || command > 3 || format < 1 || format > 4 || target > 3)
        return std::nullopt;
    q.request.command = static_cast<Command>(command);
    q.request.format = static_cast<Format>(format);
    const bool revoke = q.request.command == Command::revoke;
    if (revoke != (target != 0))
        return std::nullopt;
    if (target == 1)
        q.request.peer = key;
    if (target == 2) {
        if (!is_leasable(v4))
            return std::nullopt;
        q.request.ipv4 = v4;
    }
    if (target == 3) {
        if (!is_leasable(v6))
            return std::nullopt;
        q.request.ipv6 = v6;
    }
    return q;
}

std::vector<std::uint8_t> encode(const ControlReply& m) {
    privsep::Writer w;
    w.put_bool(m.ok).put_bool(m.last).put_string(m.text);
    return w.take();
}

std::optional<ControlReply> decode_control_reply(std::span<const std::uint8_t> body) {
    privsep::Reader r(body);
    ControlReply m;
    if (!r.get_bool(m.ok) || !r.get_bool(m.last) || !r.get_string(m.text, kMaxReplyText) ||
        !r.finished())
        return std::nullopt;
    return m;
}

std::vector<ControlReply> split_reply(bool ok, std::string_view text) {
    std::vector<ControlReply> out;
    do {
        std::size_t n = std::min(text.size(), kMaxReplyText);
        out.push_back({ok, false, std::string(text.substr(0, n))});
        text.remove_prefix(n);
    } while (!text.empty());
    out.back().last = true;
    return out;
}

std::vector<std::uint8_t> encode_monitor_state(std::uint32_t monitors) {
    privsep::Writer w;
    w.put_u32(monitors);
    return w.take();
}

std::optional<std::uint32_t> decode_monitor_state(std::span<const std::uint8_t> body) {
    privsep::Reader r(body);
    std::uint32_t n = 0;
    if (!r.get_u32(n) || !r.finished())
        return std::nullopt;
    return n;
}

} // namespace wgd::control
