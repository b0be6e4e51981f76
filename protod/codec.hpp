// The wire protocol of SPEC.md "Messages": typed requests and responses, an
// incremental parser for untrusted bytes and the serialisers. Pure code, no I/O.
//
// Rules beyond the SPEC's words (decided here, documented in codec_test.cpp):
// - A key is one or more of [a-z0-9_]; anything else (upper case, '-', CR, space)
//   is an invalid request. A line without '=' or with an empty key is invalid.
// - CR is no line terminator: a CR in the value of a known key makes it invalid.
//   Values of unknown keys are opaque and skipped (only NUL and the limits apply).
// - The first line must be the command. `request_ip=1` is the only one; a
//   well-formed other version (`request_ip=2`) or an unknown key as the first line
//   is unsupported_protocol (errno 2); a malformed version (`request_ip=01`,
//   `request_ip=`) is invalid_request. In a request, a known non-command key as the
//   first line (`ipv4=...`), or an empty message, is invalid_request (no command).
// - Requests: `leasestart=`/`leasetime=` are known (at most once each) and their
//   value is ignored; `errno=`/`errmsg=` are unknown keys in a request (ignored).
// - Responses: a response whose first line is not `request_ip=` is the legacy
//   dialect (the prototype's server writes no command line). errno is required;
//   leasestart and leasetime are required when errno is 0 or an address is
//   granted, and are dropped (0) otherwise. errmsg is optional printable text
//   (bytes < 0x20 and 0x7f invalid); absent or empty it reads as errmsg_for(errno),
//   and when errno is 0 it always reads as "Success".
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "common/addr.hpp"

namespace wgd::proto {

inline constexpr std::size_t max_line_bytes = 4096;    // with its newline
inline constexpr std::size_t max_message_bytes = 8192; // with the final empty line

enum class Dialect {
    modern, // ipv4= / ipv6= lines, responses start with request_ip=1
    legacy, // ip= lines of the upstream prototype, responses without request_ip=1
};

// request_ip=1. Both addresses nullopt: the request named no family (one of each
// family the server has a pool for). An unspecified address means "any of this family".
struct Request {
    std::optional<Ip4> ipv4;
    std::optional<Ip6> ipv6;
    Dialect dialect = Dialect::modern; // a request without address lines parses as modern
    friend bool operator==(const Request&, const Request&) = default;
};

struct Response {
    std::optional<Ip4> ipv4;      // always a leasable /32 when parsed
    std::optional<Ip6> ipv6;      // always a leasable /128 when parsed
    std::uint64_t leasestart = 0; // Unix time, seconds
    std::uint32_t leasetime = 0;  // seconds
    int errnum = 0;
    std::string errmsg; // empty: serialised as errmsg_for(errnum)
    Dialect dialect = Dialect::modern;
    friend bool operator==(const Response&, const Response&) = default;
};

namespace errnum {
inline constexpr int success = 0;
inline constexpr int invalid_request = 1;
inline constexpr int unsupported_protocol = 2;
inline constexpr int ip_unavailable = 3;
} // namespace errnum

// SPEC's table: "Success", "Invalid request", "Unsupported protocol",
// "Chosen IP(s) unavailable"; "Unknown error" for any other number.
std::string_view errmsg_for(int errnum);

enum class ErrorKind { invalid_request = 1, unsupported_protocol = 2 };

struct ParseError {
    ErrorKind kind;
    std::string detail; // short, for the log
    int errnum() const { return static_cast<int>(kind); }
};

struct NeedMore {};

template <class Message>
using ParseResult = std::variant<NeedMore, Message, ParseError>;

// Incremental parser over a byte stream carrying messages back to back.
// Memory is bounded: it never holds more than max_message_bytes. Use:
//   n = read(fd, buf, parser.space()); parser.feed({buf, n});
//   while (holds Message r = parser.next()) handle(r);
// After a ParseError every later next() returns the same error.
template <class Message>
class Parser {
  public:
    // How many bytes feed() takes now (0 while a complete message waits in next()).
    std::size_t space() const;
    // Buffers up to space() bytes; returns how many it took. The caller keeps the rest.
    std::size_t feed(std::span<const std::uint8_t> bytes);
    std::size_t feed(std::string_view bytes);
    // The next complete message, NeedMore, or the (sticky) error.
    ParseResult<Message> next();
    // Bytes held that next() has not returned yet.
    std::size_t buffered() const { return size_; }

  private:
    char buf_[max_message_bytes];
    std::size_t size_ = 0;
    std::size_t scanned_ = 0;    // bytes of the current message already checked
    std::size_t line_start_ = 0; // offset of the current line in buf_
    std::optional<ParseError> error_;
};

using RequestParser = Parser<Request>;
using ResponseParser = Parser<Response>;

// Decoders of one whole message (exactly one: its lines and the final empty line).
std::variant<Request, ParseError> parse_request(std::string_view message);
std::variant<Response, ParseError> parse_response(std::string_view message);

// Always write the prefix length; legacy requests still start with request_ip=1.
std::string serialize(const Request& request);
std::string serialize(const Response& response);

} // namespace wgd::proto
