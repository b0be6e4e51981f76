#include "protod/codec.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>

namespace wgd::proto {
namespace {

ParseError invalid(std::string detail) {
    return ParseError{ErrorKind::invalid_request, std::move(detail)};
}
ParseError unsupported(std::string detail) {
    return ParseError{ErrorKind::unsupported_protocol, std::move(detail)};
}

// What goes into a log: the offending text, cut short and without control bytes.
std::string quoted(std::string_view text) {
    constexpr std::size_t shown = 40;
    std::string out = "'";
    for (std::size_t i = 0; i < text.size() && i < shown; ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        out += (c < 0x20 || c >= 0x7f) ? '?' : static_cast<char>(c);
    }
    if (text.size() > shown)
        out += "...";
    return out + "'";
}

bool is_key_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

struct Line {
    std::string_view key;
    std::string_view value;
};

std::variant<Line, ParseError> split_line(std::string_view line) {
    const auto eq = line.find('=');
    if (eq == std::string_view::npos)
        return invalid("line without '=': " + quoted(line));
    const auto key = line.substr(0, eq);
    if (key.empty())
        return invalid("empty key");
    for (char c : key)
        if (!is_key_char(c))
            return invalid("key outside [a-z0-9_]: " + quoted(key));
    return Line{key, line.substr(eq + 1)};
}

// Decimal without sign, leading zeros or overflow.
template <class Unsigned>
std::optional<Unsigned> parse_decimal(std::string_view text, Unsigned max) {
    if (text.empty() || (text.size() > 1 && text[0] == '0'))
        return std::nullopt;
    Unsigned value = 0;
    for (char c : text) {
        if (c < '0' || c > '9')
            return std::nullopt;
        const auto digit = static_cast<Unsigned>(c - '0');
        if (value > (max - digit) / 10)
            return std::nullopt;
        value = static_cast<Unsigned>(value * 10 + digit);
    }
    return value;
}

// The command line's value: "1" is the only version; another well-formed
// number is a version we do not speak, anything else is garbage.
std::optional<ParseError> check_version(std::string_view value) {
    if (value == "1")
        return std::nullopt;
    const bool well_formed = !value.empty() && (value.size() == 1 || value[0] != '0') &&
                             value.find_first_not_of("0123456789") == std::string_view::npos;
    if (well_formed)
        return unsupported("protocol version " + quoted(value));
    return invalid("malformed protocol version " + quoted(value));
}

enum class AnyAllowed { no, yes };

// ADDR[/LEN] with LEN exactly the full length, spelled without sign or zeros.
template <class Ip>
std::variant<Ip, ParseError> parse_host(std::string_view value, std::string_view full_len,
                                        AnyAllowed any) {
    const auto slash = value.find('/');
    const auto addr_text = value.substr(0, slash);
    if (slash != std::string_view::npos && value.substr(slash + 1) != full_len)
        return invalid("prefix length is not /" + std::string(full_len) + ": " + quoted(value));
    std::optional<Ip> addr;
    if constexpr (std::is_same_v<Ip, Ip4>)
        addr = parse_ip4(addr_text);
    else
        addr = parse_ip6(addr_text);
    if (!addr)
        return invalid("malformed address " + quoted(value));
    if (addr->is_unspecified() && any == AnyAllowed::yes)
        return *addr;
    if (!is_leasable(*addr))
        return invalid("address not global unicast: " + quoted(value));
    return *addr;
}

// Parses `value` into the slot of its family, or tells why not.
struct HostSlots {
    std::optional<Ip4>* ipv4;
    std::optional<Ip6>* ipv6;
};

std::optional<ParseError> assign_host(std::string_view key, std::string_view value, HostSlots slots,
                                      AnyAllowed any) {
    bool v6 = key == "ipv6";
    if (key == "ip")
        v6 = value.find(':') != std::string_view::npos;
    if (v6) {
        if (*slots.ipv6)
            return invalid("repeated IPv6 address");
        auto host = parse_host<Ip6>(value, "128", any);
        if (auto* error = std::get_if<ParseError>(&host))
            return std::move(*error);
        *slots.ipv6 = std::get<Ip6>(host);
    } else {
        if (*slots.ipv4)
            return invalid("repeated IPv4 address");
        auto host = parse_host<Ip4>(value, "32", any);
        if (auto* error = std::get_if<ParseError>(&host))
            return std::move(*error);
        *slots.ipv4 = std::get<Ip4>(host);
    }
    return std::nullopt;
}

// Tracks the dialect that address lines set, refusing a mix.
std::optional<ParseError> note_dialect(std::string_view key, std::optional<Dialect>& seen) {
    const auto dialect = key == "ip" ? Dialect::legacy : Dialect::modern;
    if (seen && *seen != dialect)
        return invalid("both ip= and ipv4=/ipv6= in one message");
    seen = dialect;
    return std::nullopt;
}

// Walks the lines of a framed message (each ends in '\n', the last line is empty).
template <class Visit>
std::optional<ParseError> for_each_line(std::string_view message, Visit visit) {
    std::size_t index = 0;
    for (std::size_t pos = 0; pos + 1 < message.size(); ++index) {
        const auto end = message.find('\n', pos);
        auto split = split_line(message.substr(pos, end - pos));
        if (auto* error = std::get_if<ParseError>(&split))
            return std::move(*error);
        if (auto error = visit(index, std::get<Line>(split)))
            return error;
        pos = end + 1;
    }
    return std::nullopt;
}

bool is_request_key(std::string_view key) {
    return key == "request_ip" || key == "ipv4" || key == "ipv6" || key == "ip" ||
           key == "leasestart" || key == "leasetime";
}

bool is_response_key(std::string_view key) {
    return key == "request_ip" || key == "ipv4" || key == "ipv6" || key == "ip" ||
           key == "leasestart" || key == "leasetime" || key == "errno" || key == "errmsg";
}

// Once-only bookkeeping for the single-valued known keys.
struct SeenKeys {
    bool request_ip = false, leasestart = false, leasetime = false, errno_ = false, errmsg = false;
    bool* slot(std::string_view key) {
        if (key == "request_ip")
            return &request_ip;
        if (key == "leasestart")
            return &leasestart;
        if (key == "leasetime")
            return &leasetime;
        if (key == "errno")
            return &errno_;
        if (key == "errmsg")
            return &errmsg;
        return nullptr;
    }
    std::optional<ParseError> note(std::string_view key) {
        bool* seen = slot(key);
        if (!seen)
            return std::nullopt;
        if (*seen)
            return invalid("repeated key " + quoted(key));
        *seen = true;
        return std::nullopt;
    }
};

// A request's first line: the command and its version.
std::optional<ParseError> check_request_command(const Line& line) {
    if (line.key != "request_ip") {
        if (is_request_key(line.key))
            return invalid("first line is not the command: " + quoted(line.key));
        return unsupported("unknown command " + quoted(line.key));
    }
    return check_version(line.value);
}

std::variant<Request, ParseError> decode(std::string_view message, Request*) {
    if (message.size() <= 1)
        return invalid("empty message, no command");
    Request request;
    SeenKeys seen;
    std::optional<Dialect> dialect;
    auto error = for_each_line(
        message, [&](std::size_t index, const Line& line) -> std::optional<ParseError> {
            if (index == 0) {
                seen.request_ip = true;
                return check_request_command(line);
            }
            if (!is_request_key(line.key))
                return std::nullopt; // forward compatibility
            if (line.value.find('\r') != std::string_view::npos)
                return invalid("CR in the value of " + quoted(line.key));
            if (auto repeated = seen.note(line.key))
                return repeated;
            if (line.key == "ipv4" || line.key == "ipv6" || line.key == "ip") {
                if (auto mixed = note_dialect(line.key, dialect))
                    return mixed;
                return assign_host(line.key, line.value, {&request.ipv4, &request.ipv6},
                                   AnyAllowed::yes);
            }
            return std::nullopt; // leasestart, leasetime: accepted and ignored
        });
    if (error)
        return std::move(*error);
    request.dialect = dialect.value_or(Dialect::modern);
    return request;
}

std::optional<ParseError> check_errmsg(std::string_view text) {
    for (char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7f)
            return invalid("control byte in errmsg");
    }
    return std::nullopt;
}

std::variant<Response, ParseError> decode(std::string_view message, Response*) {
    if (message.size() <= 1)
        return invalid("empty message");
    Response response;
    SeenKeys seen;
    std::optional<Dialect> dialect;
    std::optional<std::uint64_t> leasestart;
    std::optional<std::uint32_t> leasetime;
    std::optional<int> errnum;
    auto error = for_each_line(
        message, [&](std::size_t index, const Line& line) -> std::optional<ParseError> {
            if (index == 0 && line.key == "request_ip") {
                dialect = Dialect::modern; // only the prototype's responses lack the command
                seen.request_ip = true;
                return check_version(line.value);
            }
            if (index == 0)
                dialect = Dialect::legacy;
            if (!is_response_key(line.key))
                return std::nullopt; // forward compatibility
            if (line.value.find('\r') != std::string_view::npos)
                return invalid("CR in the value of " + quoted(line.key));
            if (line.key == "request_ip")
                return invalid("request_ip not on the first line");
            if (auto repeated = seen.note(line.key))
                return repeated;
            if (line.key == "ipv4" || line.key == "ipv6" || line.key == "ip") {
                if (auto mixed = note_dialect(line.key, dialect))
                    return mixed;
                return assign_host(line.key, line.value, {&response.ipv4, &response.ipv6},
                                   AnyAllowed::no);
            }
            if (line.key == "leasestart") {
                leasestart = parse_decimal<std::uint64_t>(
                    line.value, std::numeric_limits<std::uint64_t>::max());
                if (!leasestart)
                    return invalid("malformed leasestart " + quoted(line.value));
            } else if (line.key == "leasetime") {
                leasetime = parse_decimal<std::uint32_t>(line.value,
                                                         std::numeric_limits<std::uint32_t>::max());
                if (!leasetime)
                    return invalid("malformed leasetime " + quoted(line.value));
            } else if (line.key == "errno") {
                const auto number = parse_decimal<std::uint32_t>(
                    line.value, static_cast<std::uint32_t>(std::numeric_limits<int>::max()));
                if (!number)
                    return invalid("malformed errno " + quoted(line.value));
                errnum = static_cast<int>(*number);
            } else if (line.key == "errmsg") {
                if (auto bad = check_errmsg(line.value))
                    return bad;
                response.errmsg = std::string(line.value);
            }
            return std::nullopt;
        });
    if (error)
        return std::move(*error);
    if (!errnum)
        return invalid("response without errno");
    response.errnum = *errnum;
    response.dialect = *dialect;
    // A granted address is worthless without its lease times; a plain failure has none.
    if (*errnum == 0 || response.ipv4 || response.ipv6) {
        if (!leasestart || !leasetime)
            return invalid("lease without leasestart or leasetime");
        response.leasestart = *leasestart;
        response.leasetime = *leasetime;
    }
    if (*errnum == 0 || response.errmsg.empty())
        response.errmsg = std::string(errmsg_for(*errnum));
    return response;
}

// The verdict on a message's first line as soon as it is complete, the same
// that decode() gives when it reaches that line: a peer that does not speak
// the protocol (CR LF line ends, HTTP, TLS) is answered at once instead of
// after the request timeout, since its message may never end in "\n\n".
std::optional<ParseError> first_line_error(std::string_view line, Request*) {
    auto split = split_line(line);
    if (auto* error = std::get_if<ParseError>(&split))
        return std::move(*error);
    return check_request_command(std::get<Line>(split));
}

std::optional<ParseError> first_line_error(std::string_view line, Response*) {
    auto split = split_line(line);
    if (auto* error = std::get_if<ParseError>(&split))
        return std::move(*error);
    // Without request_ip= it is a legacy response: only the whole message tells.
    if (std::get<Line>(split).key == "request_ip")
        return check_version(std::get<Line>(split).value);
    return std::nullopt;
}

// Keeps a server's text on its one line whatever it holds.
std::string sanitized_errmsg(std::string_view text) {
    constexpr std::size_t max_text = max_line_bytes - std::string_view("errmsg=\n").size();
    std::string out(text.substr(0, max_text));
    for (char& c : out) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7f)
            c = '?';
    }
    return out;
}

void append_hosts(std::string& out, const std::optional<Ip4>& ipv4, const std::optional<Ip6>& ipv6,
                  Dialect dialect) {
    const bool legacy = dialect == Dialect::legacy;
    if (ipv4)
        out.append(legacy ? "ip=" : "ipv4=").append(to_string(*ipv4)).append("/32\n");
    if (ipv6)
        out.append(legacy ? "ip=" : "ipv6=").append(to_string(*ipv6)).append("/128\n");
}

} // namespace

std::string_view errmsg_for(int errnum) {
    switch (errnum) {
    case errnum::success:
        return "Success";
    case errnum::invalid_request:
        return "Invalid request";
    case errnum::unsupported_protocol:
        return "Unsupported protocol";
    case errnum::ip_unavailable:
        return "Chosen IP(s) unavailable";
    default:
        return "Unknown error";
    }
}

template <class Message>
std::size_t Parser<Message>::space() const {
    return max_message_bytes - size_;
}

template <class Message>
std::size_t Parser<Message>::feed(std::span<const std::uint8_t> bytes) {
    const auto taken = std::min(bytes.size(), space());
    if (taken > 0)
        std::memcpy(buf_ + size_, bytes.data(), taken);
    size_ += taken;
    return taken;
}

template <class Message>
std::size_t Parser<Message>::feed(std::string_view bytes) {
    return feed(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
}

template <class Message>
ParseResult<Message> Parser<Message>::next() {
    if (error_)
        return *error_;
    // Framing: every limit is checked at the byte that breaks it, so the outcome
    // does not depend on how the bytes were split between feeds.
    for (; scanned_ < size_; ++scanned_) {
        const char c = buf_[scanned_];
        if (c == '\0') {
            error_ = invalid("NUL byte");
            return *error_;
        }
        if (c == '\n' && scanned_ == line_start_) {
            const std::size_t end = scanned_ + 1;
            auto decoded = decode(std::string_view(buf_, end), static_cast<Message*>(nullptr));
            std::memmove(buf_, buf_ + end, size_ - end);
            size_ -= end;
            scanned_ = 0;
            line_start_ = 0;
            if (auto* error = std::get_if<ParseError>(&decoded)) {
                error_ = std::move(*error);
                return *error_;
            }
            return std::get<Message>(std::move(decoded));
        }
        if (c == '\n') {
            if (line_start_ == 0) {
                if (auto error = first_line_error(std::string_view(buf_, scanned_),
                                                  static_cast<Message*>(nullptr))) {
                    error_ = std::move(*error);
                    return *error_;
                }
            }
            line_start_ = scanned_ + 1;
        } else if (scanned_ - line_start_ + 1 >= max_line_bytes) {
            error_ = invalid("line longer than 4096 bytes");
            return *error_;
        }
        if (scanned_ + 1 >= max_message_bytes) {
            error_ = invalid("message longer than 8192 bytes");
            return *error_;
        }
    }
    return NeedMore{};
}

template class Parser<Request>;
template class Parser<Response>;

namespace {
template <class Message>
std::variant<Message, ParseError> parse_one(std::string_view message) {
    Parser<Message> parser;
    const auto taken = parser.feed(message);
    auto result = parser.next();
    if (auto* error = std::get_if<ParseError>(&result))
        return std::move(*error);
    if (std::holds_alternative<NeedMore>(result))
        return invalid("incomplete message");
    if (taken != message.size() || parser.buffered() != 0)
        return invalid("bytes after the message");
    return std::get<Message>(std::move(result));
}
} // namespace

std::variant<Request, ParseError> parse_request(std::string_view message) {
    return parse_one<Request>(message);
}

std::variant<Response, ParseError> parse_response(std::string_view message) {
    return parse_one<Response>(message);
}

std::string serialize(const Request& request) {
    std::string out;
    out.reserve(80);
    out = "request_ip=1\n";
    append_hosts(out, request.ipv4, request.ipv6, request.dialect);
    out += '\n';
    return out;
}

std::string serialize(const Response& response) {
    std::string out;
    out.reserve(160); // a whole typical response, one allocation
    if (response.dialect == Dialect::modern)
        out = "request_ip=1\n";
    append_hosts(out, response.ipv4, response.ipv6, response.dialect);
    if (response.errnum == 0 || response.ipv4 || response.ipv6) {
        out.append("leasestart=").append(std::to_string(response.leasestart)).append("\n");
        out.append("leasetime=").append(std::to_string(response.leasetime)).append("\n");
    }
    out.append("errno=").append(std::to_string(response.errnum)).append("\n");
    if (response.errnum != 0) {
        const auto text = response.errmsg.empty() ? std::string(errmsg_for(response.errnum))
                                                  : sanitized_errmsg(response.errmsg);
        out.append("errmsg=").append(text).append("\n");
    }
    out += '\n';
    return out;
}

} // namespace wgd::proto
