// The control socket of a running server (wg-dynamic-server show, monitor,
// revoke): its request text, its answer, and the messages that carry a
// request from protod, which serves the socket, to leased, which answers it.
//
// On the socket (a unix stream socket, root only), like the wire protocol:
// `key=value` lines ended by an empty line; the first line is the command.
//
//     show=1                 format=table (default), json or metrics
//     monitor=1              format=text (default) or json
//     revoke=1               peer=BASE64-KEY or address=IPV4|IPV6 (exactly one)
//
// The answer is one line, `ok` or `error=ONE LINE`, then the body (show's
// text, or monitor's events as they happen) until the server closes. The
// body is printable text: tabs and newlines, no other control bytes.
//
// The parsers here are pure and fuzzed: the request parser runs in protod on
// a root client's bytes, the answer parser in the unsandboxed command on
// bytes that leased produced.
#pragma once

#include "common/addr.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace wgd::control {

// Where the socket of IFACE is: kRunDir + "/" + IFACE + ".sock".
inline constexpr const char* kRunDir = "/run/wg-dynamic";
std::string socket_path(const std::string& iface);

enum class Command : std::uint8_t { show = 1, monitor, revoke };
enum class Format : std::uint8_t { table = 1, json, metrics, text };

struct Request {
    Command command = Command::show;
    Format format = Format::table;
    // revoke: exactly one of the three
    std::optional<PublicKey> peer;
    std::optional<Ip4> ipv4;
    std::optional<Ip6> ipv6;
    friend bool operator==(const Request&, const Request&) = default;
};

inline constexpr std::size_t kMaxRequestBytes = 1024;

// Bytes up to and including the empty line that ends a request, or 0 when
// the buffer holds no complete request yet.
std::size_t request_end(std::string_view buf);
// One complete request (as request_end delimits it); an error is one line.
std::variant<Request, std::string> parse_request(std::string_view text);
std::string format_request(const Request& r);

// The answer's first line. nullopt: not complete yet (no newline within
// kMaxHeadBytes is an error instead).
inline constexpr std::size_t kMaxHeadBytes = 512;
struct AnswerHead {
    bool ok = false;
    std::string error;    // when !ok
    std::size_t size = 0; // bytes of the head, its newline included
    bool malformed = false;
};
std::optional<AnswerHead> parse_answer_head(std::string_view buf);
std::string format_answer_head(bool ok, std::string_view error);
// Whether body bytes are printable text (a compromised leased must not
// reach the operator's terminal with escape sequences).
bool printable(std::string_view body);

// ---- protod <-> leased (privsep/messages.hpp numbers them)

// protod -> leased ControlRequest, id = the control connection. protod's own
// counters ride along for the metrics.
struct ControlQuery {
    Request request;
    std::uint64_t invalid_requests = 0;     // errno 1 answers protod wrote
    std::uint64_t unsupported_requests = 0; // errno 2
    std::uint64_t monitor_lost = 0;         // events dropped for slow monitors
    friend bool operator==(const ControlQuery&, const ControlQuery&) = default;
};
std::vector<std::uint8_t> encode(const ControlQuery& q);
std::optional<ControlQuery> decode_control_query(std::span<const std::uint8_t> body);

// leased -> protod ControlReply, id = the control connection: the answer in
// pieces, the last one marked. ok and error are read from the first piece.
inline constexpr std::size_t kMaxReplyText = 60 * 1024;
struct ControlReply {
    bool ok = true;
    bool last = true;
    std::string text; // error (when !ok), or a piece of the body
    friend bool operator==(const ControlReply&, const ControlReply&) = default;
};
std::vector<std::uint8_t> encode(const ControlReply& r);
std::optional<ControlReply> decode_control_reply(std::span<const std::uint8_t> body);
// A whole answer as pieces that each fit in a message.
std::vector<ControlReply> split_reply(bool ok, std::string_view text);

// protod -> leased MonitorState: how many monitors listen (0: send no events).
std::vector<std::uint8_t> encode_monitor_state(std::uint32_t monitors);
std::optional<std::uint32_t> decode_monitor_state(std::span<const std::uint8_t> body);

} // namespace wgd::control
