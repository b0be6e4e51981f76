#include "privsep/channels.hpp"

#include <algorithm>
#include <cstdio>

namespace wgd::msg {

std::optional<MonitorState> decode_monitor_state(Body body) {
    auto n = control::decode_monitor_state(body);
    if (!n)
        return std::nullopt;
    return MonitorState{*n};
}

std::optional<LeaseEvents> decode_lease_events(Body body) {
    auto events = decode_events(body);
    if (!events)
        return std::nullopt;
    return LeaseEvents{std::move(*events)};
}

} // namespace wgd::msg

namespace wgd::privsep::channels {

std::vector<ChannelInfo> channels(Side side) {
    if (side == Side::server)
        return {
            {side,
             {Role::protod, fds::server_protod::leased},
             {Role::leased, fds::server_leased::protod},
             describe(server_protod_to_leased),
             describe(server_leased_to_protod)},
            {side,
             {Role::leased, fds::server_leased::netd},
             {Role::netd, kHeldByNetd},
             describe(server_leased_to_netd),
             describe(server_netd_to_leased)},
        };
    return {
        {side,
         {Role::leased, fds::client_leased::netd},
         {Role::netd, kHeldByNetd},
         describe(client_leased_to_netd),
         describe(client_netd_to_leased)},
        {side,
         {Role::netd, kHeldByNetd},
         {Role::protod, fds::client_protod::netd},
         describe(client_netd_to_protod),
         describe(client_protod_to_netd)},
        {side,
         {Role::protod, fds::client_protod::leased},
         {Role::leased, fds::client_leased::protod},
         describe(client_protod_to_leased),
         describe(client_leased_to_protod)},
    };
}

std::vector<ChildFd> child_fds(Side side, Role child) {
    // The channel ends come from the channels' declaration; the rest are
    // the other fds netd hands over.
    static const std::string kChannelTo[] = {"channel to netd", "channel to leased",
                                             "channel to protod"};
    std::vector<ChildFd> out;
    for (const ChannelInfo& c : channels(side)) {
        if (c.a.role == child)
            out.push_back({c.a.fd, kChannelTo[int(c.b.role)].c_str()});
        if (c.b.role == child)
            out.push_back({c.b.fd, kChannelTo[int(c.a.role)].c_str()});
    }
    if (side == Side::server && child == Role::leased) {
        out.push_back({fds::server_leased::lease_file, "lease file IFACE.leases.0"});
        out.push_back({fds::server_leased::lease_file_next, "lease file IFACE.leases.1"});
    }
    if (side == Side::server && child == Role::protod) {
        out.push_back({fds::server_protod::listener, "TCP listener [fe80::%IFACE]:970"});
        out.push_back({fds::server_protod::control, "control socket /run/wg-dynamic/IFACE.sock"});
    }
    std::sort(out.begin(), out.end(),
              [](const ChildFd& x, const ChildFd& y) { return x.number < y.number; });
    return out;
}

Acceptance acceptance_of(const DirectionInfo& d) {
    std::vector<AcceptRule> rules;
    for (const RowInfo& r : d.rows)
        for (std::uint32_t state = 0; state < 32; state++)
            if (r.states & (1u << state))
                rules.push_back({state, r.type, r.fd, r.max_body, r.min_interval_ms});
    return Acceptance(std::move(rules));
}

namespace {

std::string states_of(const DirectionInfo& d, std::uint32_t mask) {
    std::string out;
    for (std::uint32_t s = 0; s < kMaxStates; s++)
        if ((mask & (1u << s)) && d.states.names[s] != nullptr)
            out += (out.empty() ? "" : ",") + std::string(d.states.names[s]);
    return out;
}

std::string pad(std::string s, std::size_t width) {
    if (s.size() < width)
        s.append(width - s.size(), ' ');
    return s;
}

std::string end_of(const End& e) {
    std::string who = role_name(e.role);
    if (e.fd == kHeldByNetd)
        return who;
    return who + " (fd " + std::to_string(e.fd) + ")";
}

void render_direction(std::string& out, const DirectionInfo& d) {
    out += "  ";
    out += role_name(d.from);
    out += " -> ";
    out += role_name(d.to);
    if (d.rows.empty()) {
        out += ": nothing (any message is a violation)\n";
        return;
    }
    out += "\n";
    for (const RowInfo& r : d.rows) {
        std::string limits;
        if (r.fd)
            limits += "fd ";
        if (r.max_body < kMaxBody)
            limits += "<=" + std::to_string(r.max_body) + "B ";
        if (r.min_interval_ms > 0)
            limits += "1/" + std::to_string(r.min_interval_ms) + "ms ";
        char type[8];
        std::snprintf(type, sizeof type, "%4u ", unsigned(r.type));
        std::string line = std::string("  ") + type + pad(r.name, 18) +
                           pad(states_of(d, r.states), 20) + pad(limits, 14) + r.note;
        while (!line.empty() && line.back() == ' ')
            line.pop_back();
        out += line + "\n";
    }
}

} // namespace

std::string render_channel_map(Side side) {
    std::string out = side == Side::server ? "server\n" : "client\n";
    for (const ChannelInfo& c : channels(side)) {
        out += end_of(c.a) + " <-> " + end_of(c.b) + "\n";
        render_direction(out, c.a_to_b);
        render_direction(out, c.b_to_a);
    }
    for (Role child : {Role::leased, Role::protod}) {
        out += role_name(child);
        out += "'s fds:";
        for (const ChildFd& f : child_fds(side, child))
            out += " " + std::to_string(f.number) + " " + f.what + ";";
        out.back() = '\n';
    }
    return out;
}

} // namespace wgd::privsep::channels
