// Lease events: what happened to a peer's lease, as one record that the
// audit log (leased), `monitor` (protod, for each client) and the metrics
// share. One struct, one text formatter, one JSON formatter: a log line and
// a monitor line of the same event say the same thing.
//
// Text (the audit log line, and a `monitor` line after its timestamp):
//   grant peer=KEY link-local=fe80::1234 ipv4=10.77.0.5/32 ipv6=2001:db8::5/128 leasetime=3600
//   refuse peer=KEY link-local=fe80::1234 errno=3
// Fields that do not apply are left out; the kind is always first.
//
// JSON (`monitor --json`): one object per event, always the same fields:
//   {"time":1764201600,"event":"grant","peer":"KEY","link_local":"fe80::1234",
//    "ipv4":"10.77.0.5/32","ipv6":null,"leasetime":3600,"errno":0}
#pragma once

#include "common/addr.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace wgd {

enum class EventKind : std::uint8_t {
    grant = 1, // new addresses (or a first lease) added to the peer's allowed IPs
    renew,     // the same addresses again, for another leasetime
    release,   // addresses the peer no longer asked for
    expire,    // not renewed in time
    revoke,    // ended by `revoke`, its pool's route or its peer removed, its address moved
    refuse,    // a request not (fully) served: errno
};
inline constexpr std::uint8_t kLastEventKind = static_cast<std::uint8_t>(EventKind::refuse);

const char* to_string(EventKind kind);

struct LeaseEvent {
    EventKind kind = EventKind::grant;
    std::int64_t time = 0; // Unix seconds
    PublicKey peer{};
    std::optional<Ip6> link_local; // the peer's identity, when it has one
    std::optional<Ip4> ipv4;       // the addresses the event concerns
    std::optional<Ip6> ipv6;
    std::uint32_t leasetime = 0; // grant and renew
    std::uint8_t errnum = 0;     // refuse
    friend bool operator==(const LeaseEvent&, const LeaseEvent&) = default;
};

std::string format_text(const LeaseEvent& e);         // no newline, no time
std::string format_monitor_line(const LeaseEvent& e); // ISO time, text, newline
std::string format_json(const LeaseEvent& e);         // one object, newline
std::string format_lost_text(std::uint64_t lost, std::int64_t now);
std::string format_lost_json(std::uint64_t lost, std::int64_t now);

// leased -> protod: the events of one round, for the monitors.
inline constexpr std::size_t kMaxEventsPerMessage = 512; // 83 bytes an event
std::vector<std::uint8_t> encode_events(std::span<const LeaseEvent> events);
std::optional<std::vector<LeaseEvent>> decode_events(std::span<const std::uint8_t> body);

} // namespace wgd
