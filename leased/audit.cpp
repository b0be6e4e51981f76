#include "leased/audit.hpp"

#include <cstdio>

namespace wgd::leased {

std::vector<LeaseEvent> events_of_plan(const Plan& plan, const std::optional<LeaseRecord>& before,
                                       std::optional<Ip6> link_local) {
    std::vector<LeaseEvent> out;
    LeaseEvent base;
    base.time = plan.leasestart;
    base.peer = plan.peer;
    base.link_local = link_local;

    LeaseEvent release = base;
    release.kind = EventKind::release;
    if (before && before->ipv4 && before->ipv4 != plan.record.ipv4)
        release.ipv4 = before->ipv4;
    if (before && before->ipv6 && before->ipv6 != plan.record.ipv6)
        release.ipv6 = before->ipv6;
    if (release.ipv4 || release.ipv6)
        out.push_back(release);

    if (plan.ipv4 || plan.ipv6) {
        const bool new4 = plan.record.ipv4 && (!before || before->ipv4 != plan.record.ipv4);
        const bool new6 = plan.record.ipv6 && (!before || before->ipv6 != plan.record.ipv6);
        LeaseEvent grant = base;
        grant.kind = new4 || new6 ? EventKind::grant : EventKind::renew;
        grant.ipv4 = plan.ipv4;
        grant.ipv6 = plan.ipv6;
        grant.leasetime = plan.leasetime;
        out.push_back(grant);
    }
    if (plan.error != kErrnoSuccess) {
        LeaseEvent refuse = base;
        refuse.kind = EventKind::refuse;
        refuse.errnum = static_cast<std::uint8_t>(plan.error);
        out.push_back(refuse);
    }
    return out;
}

LeaseEvent event_of_ended(EventKind kind, const LeaseRecord& was, std::optional<Ip6> link_local,
                          std::int64_t now) {
    LeaseEvent e;
    e.kind = kind;
    e.time = now;
    e.peer = was.peer;
    e.link_local = link_local;
    e.ipv4 = was.ipv4;
    e.ipv6 = was.ipv6;
    return e;
}

bool audit_at_info(const LeaseEvent& e) {
    return e.kind != EventKind::renew;
}

void Counters::count(const LeaseEvent& e) {
    events[static_cast<std::size_t>(e.kind)]++;
    if (e.kind == EventKind::refuse && e.errnum < refusals.size())
        refusals[e.errnum]++;
}

namespace {

void family(std::string& out, const char* name, const char* type, const char* help) {
    out += std::string("# HELP wg_dynamic_") + name + " " + help + "\n";
    out += std::string("# TYPE wg_dynamic_") + name + " " + type + "\n";
}

// Exact below 2^64; the float Prometheus reads above that.
std::string number(u128 v) {
    if (v <= UINT64_MAX)
        return decimal(v);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.21Lg", static_cast<long double>(v));
    return buf;
}

} // namespace

std::string decimal(u128 v) {
    std::string out;
    do {
        out.insert(out.begin(), static_cast<char>('0' + static_cast<int>(v % 10)));
        v /= 10;
    } while (v != 0);
    return out;
}

std::string format_metrics(const MetricsInput& in) {
    std::string out;
    const std::string iface = "interface=\"" + in.iface + "\"";
    struct Kind {
        EventKind kind;
        const char* name;
        const char* help;
    };
    static const Kind kinds[] = {
        {EventKind::grant, "grants_total", "Leases granted with new addresses."},
        {EventKind::renew, "renewals_total", "Leases renewed with the addresses they held."},
        {EventKind::release, "releases_total", "Leases of a family the peer no longer asked for."},
        {EventKind::expire, "expiries_total", "Leases that expired, not renewed in time."},
        {EventKind::revoke, "revocations_total",
         "Leases ended by revoke, by the removal of their pool's route or peer, or by "
         "their address given to another peer."},
    };
    for (const Kind& k : kinds) {
        family(out, k.name, "counter", k.help);
        out += std::string("wg_dynamic_") + k.name + "{" + iface + "} " +
               std::to_string(in.counters.events[static_cast<std::size_t>(k.kind)]) + "\n";
    }
    family(out, "refusals_total", "counter",
           "Requests answered with an error, by errno (1 invalid, 2 unsupported, 3 unavailable).");
    for (unsigned e = 1; e < in.counters.refusals.size(); e++)
        out += "wg_dynamic_refusals_total{" + iface + ",errno=\"" + std::to_string(e) + "\"} " +
               std::to_string(in.counters.refusals[e]) + "\n";
    family(out, "over_budget_total", "counter",
           "Requests that would have changed their peer's addresses beyond its budget of "
           "changes, answered from what it holds.");
    out += "wg_dynamic_over_budget_total{" + iface + "} " +
           std::to_string(in.counters.over_budget) + "\n";
    family(out, "monitor_events_lost_total", "counter",
           "Lease events not delivered to a monitor client that did not read them in time.");
    out += "wg_dynamic_monitor_events_lost_total{" + iface + "} " +
           std::to_string(in.monitor_lost) + "\n";
    family(out, "peers", "gauge", "WireGuard peers of the interface.");
    out += "wg_dynamic_peers{" + iface + "} " + std::to_string(in.peers) + "\n";
    family(out, "leases", "gauge", "Leased addresses (IPv4 and IPv6 counted apart).");
    out += "wg_dynamic_leases{" + iface + "} " + std::to_string(in.leases) + "\n";
    family(out, "pool_size", "gauge", "Addresses a pool prefix can lease.");
    for (const PoolUse& p : in.pools)
        out += "wg_dynamic_pool_size{" + iface + ",prefix=\"" + p.prefix + "\"} " + number(p.size) +
               "\n";
    family(out, "pool_leased", "gauge", "Addresses of a pool prefix that are leased.");
    for (const PoolUse& p : in.pools)
        out += "wg_dynamic_pool_leased{" + iface + ",prefix=\"" + p.prefix + "\"} " +
               std::to_string(p.leased) + "\n";
    family(out, "pool_free", "gauge", "Addresses of a pool prefix that are free to lease.");
    for (const PoolUse& p : in.pools)
        out += "wg_dynamic_pool_free{" + iface + ",prefix=\"" + p.prefix + "\"} " +
               number(p.size - p.leased) + "\n";
    return out;
}

} // namespace wgd::leased
