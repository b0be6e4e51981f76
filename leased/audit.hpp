// The lease events of leased's decisions (privsep/events.hpp), and the
// counters behind the metrics. Pure: the loop in server_main.cpp logs the
// events, counts them and hands them to the monitors.
#pragma once

#include "leased/lease_record.hpp"
#include "leased/random.hpp"
#include "leased/server.hpp"
#include "privsep/events.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace wgd::leased {

// A committed plan, given the peer's lease before it: a release of the
// addresses it no longer holds, then a grant (new addresses) or a renewal
// (the same ones), then a refusal when a family asked for was not granted.
std::vector<LeaseEvent> events_of_plan(const Plan& plan, const std::optional<LeaseRecord>& before,
                                       std::optional<Ip6> link_local);
// Leases that ended without a request (expire or revoke).
LeaseEvent event_of_ended(EventKind kind, const LeaseRecord& was, std::optional<Ip6> link_local,
                          std::int64_t now);

// Whether the audit trail logs it at info (debug: a renewal that changes nothing).
bool audit_at_info(const LeaseEvent& e);

struct Counters {
    std::array<std::uint64_t, kLastEventKind + 1> events{}; // by EventKind
    std::array<std::uint64_t, 4> refusals{};                // by errno (1 and 2 from protod)
    std::uint64_t over_budget = 0; // requests answered unchanged, the peer's budget spent
    void count(const LeaseEvent& e);
};

// One pool prefix as `show` and the metrics report it.
struct PoolUse {
    std::string prefix; // "10.77.0.0/24"
    bool ipv6 = false;
    u128 size = 0; // addresses it can lease (leased ones included)
    std::uint64_t leased = 0;
};

struct MetricsInput {
    std::string iface;
    Counters counters;
    std::vector<PoolUse> pools;
    std::uint64_t peers = 0;
    std::uint64_t leases = 0;
    std::uint64_t monitor_lost = 0; // events dropped for slow monitors (protod's count)
};
std::string decimal(u128 v);

// The Prometheus text exposition format (version 0.0.4).
std::string format_metrics(const MetricsInput& in);

} // namespace wgd::leased
