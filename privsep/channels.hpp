// The channels of each suite, declared once: which processes each channel
// joins and at which descriptor number each child holds its end, and per
// direction the rows {message type, its struct and decoder, descriptor or
// not, the receiver's states that accept it, largest body, least interval}.
// Everything else comes from here: each receiver's Acceptance
// (acceptance<D>()), its dispatch (dispatch<D>(): check, decode, call the
// handler's on(Struct&, Message&), like OpenSSH's mon_table), the
// descriptors netd's spawner places and the children open (fds::), and the
// channel map in DESIGN.md (render_channel_map(), checked by a test).
//
// A new message type: its struct, encoder and decoder in messages.hpp, one
// row in the direction that carries it below, and an on() overload in the
// receiver's handler; without the overload the receiver does not compile.
#pragma once

#include "common/cli.hpp"
#include "common/fatal.hpp"
#include "common/log.hpp"
#include "privsep/channel.hpp"
#include "privsep/control.hpp"
#include "privsep/events.hpp"
#include "privsep/messages.hpp"
#include "privsep/sandbox.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace wgd::msg {

// Types whose body is empty or a bare value elsewhere get a struct of their
// own here, so that a handler tells every message apart by its struct.
struct RefuseConnection {};
struct RefreshPeers {};
struct PeersBegin {};
struct PeersEnd {};
struct Status {};
struct Stop {};
struct Renew {};
struct MonitorState {
    std::uint32_t monitors = 0;
};
struct LeaseEvents {
    std::vector<LeaseEvent> events;
};

template <class Empty>
std::optional<Empty> decode_empty_as(Body body) {
    if (!decode_empty(body))
        return std::nullopt;
    return Empty{};
}
std::optional<MonitorState> decode_monitor_state(Body body);
std::optional<LeaseEvents> decode_lease_events(Body body);

} // namespace wgd::msg

namespace wgd::privsep::channels {

// ---- descriptors: the number at which each child holds each of its fds.
// netd's spawner places them there and the child opens them by these names;
// spawn_role closes everything else above stderr. netd keeps its own ends
// as Channel objects, with no fixed number.
namespace fds {
namespace server_leased {
inline constexpr int netd = 3, protod = 4;
inline constexpr int lease_file = 5, lease_file_next = 6; // IFACE.leases.0 and .1
} // namespace server_leased
namespace server_protod {
inline constexpr int leased = 3;
inline constexpr int listener = 4; // TCP [fe80::%IFACE]:970
inline constexpr int control = 5;  // unix /run/wg-dynamic/IFACE.sock
} // namespace server_protod
namespace client_leased {
inline constexpr int netd = 3, protod = 4;
} // namespace client_leased
namespace client_protod {
inline constexpr int leased = 3, netd = 4;
} // namespace client_protod
} // namespace fds

// netd's end of a channel: netd is the parent and holds it as an object.
inline constexpr int kHeldByNetd = -1;

// One fd of a child, for the map and the tests.
struct ChildFd {
    int number;
    const char* what;
};
// The fds of `child` (leased or protod) on `side`, in the order of their numbers.
std::vector<ChildFd> child_fds(Side side, Role child);

// ---- the receivers' states (a row lists those that accept it)
namespace states {
// server leased -> netd: claims come only before the first order, so a
// leased taken over later cannot make a static allowed IP its own.
enum ServerNetd : std::uint32_t { restoring = 0, serving = 1 };
// server netd -> leased: peers arrive as begin, chunks, end; nothing else
// may interleave.
enum ServerLeased : std::uint32_t { idle = 0, in_peers = 1 };
// client netd -> leased: nothing but the link's state before the first one.
enum ClientLeased : std::uint32_t { before_link = 0, running = 1 };
// A receiver with one state.
inline constexpr std::uint32_t only = 0;
} // namespace states

constexpr std::uint32_t in(std::uint32_t state) {
    return 1u << state;
}
template <class... S>
constexpr std::uint32_t in(std::uint32_t first, S... rest) {
    return in(first) | in(std::uint32_t(rest)...);
}

enum class Fd : bool { none = false, attached = true };

// One message type on one direction of a channel.
template <class S>
struct Row {
    using Struct = S;
    msg::Type type;
    const char* name; // the struct as the map shows it
    std::optional<S> (*decode)(msg::Body);
    std::uint32_t states; // bit n: accepted in the receiver's state n
    Fd fd = Fd::none;
    std::uint32_t max_body = kMaxBody;
    std::uint32_t min_interval_ms = 0; // sooner: the receiver coalesces (AcceptRule)
    const char* malformed = "";        // "<sender> sent <this>" when the decoder refuses
    const char* note = "";             // for the map: what the id means, when it comes
};

template <class S>
constexpr Row<S> row(msg::Type type, const char* name, std::optional<S> (*decode)(msg::Body),
                     std::uint32_t states, const char* malformed, const char* note = "",
                     Fd fd = Fd::none, std::uint32_t max_body = kMaxBody,
                     std::uint32_t min_interval_ms = 0) {
    return Row<S>{type, name, decode, states, fd, max_body, min_interval_ms, malformed, note};
}

// The state names of a receiver, for the map (index = state).
inline constexpr std::size_t kMaxStates = 4;
struct StateNames {
    const char* names[kMaxStates] = {};
};

template <class... S>
struct Direction {
    Side side;
    Role from, to;
    StateNames states;
    std::tuple<Row<S>...> rows;
};
template <class... S>
constexpr Direction<S...> direction(Side side, Role from, Role to, StateNames states,
                                    Row<S>... rows) {
    return Direction<S...>{side, from, to, states, std::tuple<Row<S>...>{rows...}};
}

// ---- the directions

// Sizes: a refresh is empty; claims at most kMaxClaimsPerMessage of
// 32 + 5 + 17 bytes after their count; an order fills at most a message.
inline constexpr std::uint32_t kClaimsBody = 4 + msg::kMaxClaimsPerMessage * (32 + 5 + 17);
// A refresh makes netd read the whole device (20 to 24 MB of UAPI text at
// 65,536 peers, by the addresses each holds): acted on at most once a
// second, whatever leased sends; quicker ones are answered together after
// the next read.
inline constexpr std::uint32_t kRefreshIntervalMs = 1000;

inline constexpr auto server_leased_to_protod = direction(
    Side::server, Role::leased, Role::protod, {{"any"}},
    row(msg::lease_answers, "LeaseAnswers", msg::decode_lease_answers, in(states::only),
        "malformed LeaseAnswers", "per connection"),
    row(msg::refuse_connection, "RefuseConnection", msg::decode_empty_as<msg::RefuseConnection>,
        in(states::only), "a malformed RefuseConnection",
        "id = connection (not a peer: close silently)"),
    row(msg::control_reply, "ControlReply", control::decode_control_reply, in(states::only),
        "a malformed ControlReply", "id = control conn. (the answer, in pieces)"),
    row(msg::lease_events, "LeaseEvents", msg::decode_lease_events, in(states::only),
        "malformed LeaseEvents", "while monitors listen"));

inline constexpr auto server_protod_to_leased = direction(
    Side::server, Role::protod, Role::leased, {{"any"}},
    row(msg::query_leases, "QueryLeases", msg::decode_query_leases, in(states::only),
        "malformed queries", "per connection: source, asked"),
    row(msg::control_request, "ControlRequest", control::decode_control_query, in(states::only),
        "a malformed control request", "id = control conn. (show, revoke)"),
    row(msg::monitor_state, "MonitorState", msg::decode_monitor_state, in(states::only),
        "a malformed monitor state", "monitors listening"));

inline constexpr auto server_netd_to_leased = direction(
    Side::server, Role::netd, Role::leased, {{"idle", "in_peers"}},
    row(msg::pools_snapshot, "PoolsSnapshot", msg::decode_pools_snapshot, in(states::idle),
        "a malformed pools snapshot", "pools and own addresses"),
    row(msg::peers_begin, "PeersBegin", msg::decode_empty_as<msg::PeersBegin>, in(states::idle),
        "a malformed PeersBegin", "the WireGuard device: begin,"),
    row(msg::peers_chunk, "PeersChunk", msg::decode_peers_chunk, in(states::in_peers),
        "a malformed peers chunk", "chunks,"),
    row(msg::peers_end, "PeersEnd", msg::decode_empty_as<msg::PeersEnd>, in(states::in_peers),
        "a malformed PeersEnd", "end"),
    row(msg::allowed_ips_applied, "AllowedIpsApplied", msg::decode_allowed_ips_applied,
        in(states::idle), "a malformed allowed-IP answer", "id = batch (one status per change)"),
    row(msg::status, "Status", msg::decode_empty_as<msg::Status>, in(states::idle),
        "a malformed Status", "SIGHUP, after the pools and peers: log one status line"));

inline constexpr auto server_leased_to_netd = direction(
    Side::server, Role::leased, Role::netd, {{"restoring", "serving"}},
    row(msg::claim_leases, "ClaimLeases", msg::decode_claim_leases, in(states::restoring),
        "malformed lease claims", "at start: the leases restored", Fd::none, kClaimsBody),
    row(msg::refresh_peers, "RefreshPeers", msg::decode_empty_as<msg::RefreshPeers>,
        in(states::restoring, states::serving), "a malformed refresh request",
        "a source was not known", Fd::none, 0, kRefreshIntervalMs),
    row(msg::apply_allowed_ips, "ApplyAllowedIps", msg::decode_apply_allowed_ips,
        in(states::restoring, states::serving), "a malformed allowed-IP order", "id = batch"));

// ExchangeRequest: two optional addresses (1 + 4, 1 + 16); AddressOrder:
// one more byte for add/remove.
inline constexpr std::uint32_t kExchangeRequestBody = 5 + 17;
inline constexpr std::uint32_t kAddressOrderBody = 1 + 5 + 17;

inline constexpr auto client_netd_to_leased = direction(
    Side::client, Role::netd, Role::leased, {{"before_link", "running"}},
    row(msg::link_state, "LinkState", msg::decode_link_state,
        in(states::before_link, states::running), "a malformed link state",
        "up/down/deleted, addresses"),
    row(msg::exchange_result, "ExchangeResult", msg::decode_exchange_result, in(states::running),
        "a malformed exchange result", "id = exchange (when no socket could be made)"),
    row(msg::address_result, "AddressResult", msg::decode_outcome, in(states::running),
        "a malformed address result", "id = order (an Outcome)"),
    row(msg::stop, "Stop", msg::decode_empty_as<msg::Stop>,
        in(states::before_link, states::running), "a malformed Stop",
        "SIGTERM: remove addresses, exit 0"),
    row(msg::renew, "Renew", msg::decode_empty_as<msg::Renew>,
        in(states::before_link, states::running), "a malformed Renew",
        "SIGHUP: renew the lease now"));

inline constexpr auto client_leased_to_netd =
    direction(Side::client, Role::leased, Role::netd, {{"any"}},
              row(msg::exchange_request, "ExchangeRequest", msg::decode_exchange_request,
                  in(states::only), "a malformed exchange request",
                  "id = exchange (connect to the server)", Fd::none, kExchangeRequestBody),
              row(msg::address_order, "AddressOrder", msg::decode_address_order, in(states::only),
                  "a malformed address order", "id = order", Fd::none, kAddressOrderBody));

inline constexpr auto client_netd_to_protod = direction(
    Side::client, Role::netd, Role::protod, {{"any"}},
    row(msg::exchange_request, "ExchangeRequest", msg::decode_exchange_request, in(states::only),
        "a malformed ExchangeRequest", "id = exchange, fd = the connecting socket", Fd::attached));

inline constexpr auto client_protod_to_leased = direction(
    Side::client, Role::protod, Role::leased, {{"any"}},
    row(msg::exchange_result, "ExchangeResult", msg::decode_exchange_result, in(states::only),
        "a malformed exchange result", "id = exchange (the server's answer, parsed)"));

// Nothing flows this way: any message is a violation.
inline constexpr auto client_leased_to_protod =
    direction(Side::client, Role::leased, Role::protod, {{"any"}});
inline constexpr auto client_protod_to_netd =
    direction(Side::client, Role::protod, Role::netd, {{"any"}});

// ---- the channels: two ends, each with its fd number in its process

struct End {
    Role role;
    int fd; // in that child; kHeldByNetd for netd's end
};

// One row as data, for the map and the tests.
struct RowInfo {
    std::uint16_t type;
    const char* name;
    std::uint32_t states;
    bool fd;
    std::uint32_t max_body;
    std::uint32_t min_interval_ms;
    const char* note;
};
struct DirectionInfo {
    Side side;
    Role from, to;
    StateNames states;
    std::vector<RowInfo> rows;
};
struct ChannelInfo {
    Side side;
    End a, b;
    DirectionInfo a_to_b, b_to_a;
};
// The channels of `side`, in the order the messages first flow.
std::vector<ChannelInfo> channels(Side side);

template <class... S>
DirectionInfo describe(const Direction<S...>& d) {
    DirectionInfo info{d.side, d.from, d.to, d.states, {}};
    std::apply(
        [&](const auto&... r) {
            (info.rows.push_back(RowInfo{r.type, r.name, r.states, r.fd == Fd::attached, r.max_body,
                                         r.min_interval_ms, r.note}),
             ...);
        },
        d.rows);
    return info;
}

// The rules of a direction, one per row and state.
Acceptance acceptance_of(const DirectionInfo& d);

// The channel map: each side's channels, their ends' fds, each direction's
// rows, then each child's fds. DESIGN.md keeps a copy that a test compares.
std::string render_channel_map(Side side);

// ---- dispatch

template <const auto& D>
const Acceptance& acceptance() {
    static const Acceptance table = acceptance_of(describe(D));
    return table;
}

// What a receiver does with a message outside its table or a body the
// decoder refuses: end the process (fatal path), or log it and report false
// to its loop (protod, whose loops return 1 and are run in-process by tests).
enum class OnViolation { exit, report };

// A handler of direction D: an on(Struct&, Message&) for each row's struct.
template <class Handler, class S>
concept handles = requires(Handler& h, S& body, Message& m) {
    h.on(body, m);
};
template <const auto& D, class Handler>
inline constexpr bool handles_all = []<std::size_t... I>(std::index_sequence<I...>) {
    return (handles<Handler, typename std::tuple_element_t<I, decltype(D.rows)>::Struct> && ...);
}
(std::make_index_sequence<std::tuple_size_v<decltype(D.rows)>>{});

namespace detail {

template <const auto& D, std::size_t I, class Handler>
bool call_row(Message& m, Handler& handler, OnViolation mode) {
    constexpr const auto& r = std::get<I>(D.rows);
    auto body = r.decode(m.body);
    if (!body) {
        if (mode == OnViolation::exit)
            fatal("%s sent %s", role_name(D.from), r.malformed);
        WGD_LOG_ERROR("%s sent %s", role_name(D.from), r.malformed);
        return false;
    }
    using Result = decltype(handler.on(*body, m));
    static_assert(std::is_void_v<Result> || std::is_same_v<Result, bool>,
                  "a handler's on() returns void or bool (false: stop the loop)");
    if constexpr (std::is_void_v<Result>) {
        handler.on(*body, m);
        return true;
    } else {
        return handler.on(*body, m);
    }
}

template <const auto& D, class Handler, std::size_t... I>
bool call([[maybe_unused]] Message& m, [[maybe_unused]] Handler& handler,
          [[maybe_unused]] OnViolation mode, std::index_sequence<I...>) {
    bool result = false;
    (void)((m.type == std::get<I>(D.rows).type &&
            (result = call_row<D, I>(m, handler, mode), true)) ||
           ...);
    return result;
}

} // namespace detail

// Checks `m` against direction D in the receiver's `state`, decodes its body
// with the row's decoder and calls handler.on(Struct&, Message&) (its id and
// fd are the message's). Returns what the handler returned (true for void);
// a violation is fatal, or with OnViolation::report logged and false.
// A handler without an on() for one of D's rows does not compile.
template <const auto& D, class Handler>
requires handles_all<D, Handler>
bool dispatch(std::uint32_t state, Message& m, Handler& handler,
              OnViolation mode = OnViolation::exit) {
    const Acceptance& table = acceptance<D>();
    if (mode == OnViolation::exit) {
        table.enforce(state, m, role_name(D.from));
    } else if (Verdict v = table.check(state, m); v != Verdict::accepted) {
        WGD_LOG_ERROR("%s sent message type %u: %s", role_name(D.from), unsigned(m.type),
                      to_string(v));
        return false;
    }
    return detail::call<D>(m, handler, mode,
                           std::make_index_sequence<std::tuple_size_v<decltype(D.rows)>>{});
}

} // namespace wgd::privsep::channels
