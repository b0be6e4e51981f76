#include "leased/client_lease.hpp"

#include <algorithm>
#include <type_traits>
#include <utility>

// Which input each state accepts (anything else is ignored and logged):
//
//   input            init  requesting  bound  backing_off  link_down  exited
//   start            yes   -           -      -            -          -
//   link_up          -     -           -      -            yes        -
//   link_down        -     yes         yes    yes          -          -
//   link_deleted     yes   yes         yes    yes          yes        -
//   timer            -     yes         yes    yes          yes        -
//   response         -     yes (id)    -      -            -          -
//   exchange_failed  -     yes (id)    -      -            -          -
//   stop             yes   yes         yes    yes          yes        -
//
// "(id)": only for the exchange in flight; a result of an older exchange
// (abandoned by link_down or the guard timeout) is stale.

namespace wgd::leased {
namespace {

std::string describe(const std::optional<Ip4>& a4, const std::optional<Ip6>& a6) {
    std::string text;
    if (a4)
        text += to_string(Prefix4{*a4, 32});
    if (a6) {
        if (!text.empty())
            text += ' ';
        text += to_string(Prefix6{*a6, 128});
    }
    return text.empty() ? std::string("no address") : text;
}

std::string seconds(Millis ms) {
    return std::to_string(ms / 1000) + "." + std::to_string(ms % 1000 / 100) + " s";
}

LogLine log(Severity severity, std::string text) {
    return LogLine{severity, std::move(text)};
}

// Constructs the alternative inside the vector: pushing a temporary variant
// trips a false -Wmaybe-uninitialized in GCC 12 at -O2.
template <class Action>
void emit(ClientActions& out, Action&& action) {
    out.emplace_back(std::in_place_type<std::decay_t<Action>>, std::forward<Action>(action));
}

} // namespace

const char* to_string(ClientState state) {
    switch (state) {
    case ClientState::init:
        return "init";
    case ClientState::requesting:
        return "requesting";
    case ClientState::bound:
        return "bound";
    case ClientState::backing_off:
        return "backing-off";
    case ClientState::link_down:
        return "link-down";
    case ClientState::exited:
        return "exited";
    }
    return "?";
}

ClientLeaseMachine::ClientLeaseMachine(JitterSource jitter, ClientFamilies families)
    : jitter_(std::move(jitter)), families_(families) {}

std::optional<std::uint64_t> ClientLeaseMachine::exchange_in_flight() const {
    if (!in_flight_)
        return std::nullopt;
    return last_exchange_;
}

std::optional<Millis> ClientLeaseMachine::next_deadline() const {
    std::optional<Millis> expiry;
    if (lease_.active())
        expiry = lease_.expires_at;
    auto earliest = [&](Millis deadline) {
        return expiry ? std::min(*expiry, deadline) : deadline;
    };
    switch (state_) {
    case ClientState::init:
    case ClientState::exited:
        return std::nullopt;
    case ClientState::requesting:
        return earliest(guard_at_);
    case ClientState::bound:
        return earliest(lease_.renew_at);
    case ClientState::backing_off:
        return earliest(retry_at_);
    case ClientState::link_down:
        return expiry;
    }
    return std::nullopt;
}

// Every input ends here, so the caller learns of each change of deadline.
ClientActions ClientLeaseMachine::finish(ClientActions out) {
    const auto deadline = next_deadline();
    if (deadline != announced_deadline_) {
        announced_deadline_ = deadline;
        emit(out, SetTimer{deadline});
    }
    return out;
}

ClientActions ClientLeaseMachine::start(Millis now, const ExistingAddresses& existing,
                                        bool link_is_up) {
    ClientActions out;
    if (state_ != ClientState::init) {
        emit(out, log(Severity::warning, "start ignored: already started"));
        return finish(std::move(out));
    }
    // Only what this client could have been granted qualifies: a /32 or
    // /128 global unicast address of a family it asks for.
    if (families_.ipv4) {
        for (const auto& p : existing.ipv4) {
            if (p.len == 32 && is_leasable(p.addr)) {
                lease_.ipv4 = p.addr;
                break;
            }
        }
    }
    if (families_.ipv6) {
        for (const auto& p : existing.ipv6) {
            if (p.len == 128 && is_leasable(p.addr)) {
                lease_.ipv6 = p.addr;
                break;
            }
        }
    }
    if (lease_.active()) {
        lease_.obtained_at = now;
        lease_.expires_at = now + kInceptionLeaseMs;
        lease_.renew_at = now; // ask at once
        lease_.granted = false;
        emit(out, log(Severity::info, "inception: taking " + describe(lease_.ipv4, lease_.ipv6) +
                                          " as a lease of 15 s"));
    }
    if (link_is_up) {
        send_request(now, out);
    } else {
        state_ = ClientState::link_down;
        emit(out, log(Severity::info, "interface is down: waiting for it to come up"));
    }
    return finish(std::move(out));
}

ClientActions ClientLeaseMachine::link_up(Millis now) {
    ClientActions out;
    if (state_ != ClientState::link_down) {
        emit(out,
             log(Severity::debug, std::string("link up ignored in state ") + to_string(state_)));
        return finish(std::move(out));
    }
    expire_if_due(now, out);
    next_backoff_ = kFirstBackoffMs;
    emit(out, log(Severity::info, "interface is up: requesting a lease"));
    send_request(now, out);
    return finish(std::move(out));
}

ClientActions ClientLeaseMachine::link_down(Millis now) {
    ClientActions out;
    switch (state_) {
    case ClientState::requesting:
    case ClientState::bound:
    case ClientState::backing_off:
        expire_if_due(now, out);
        in_flight_ = false; // its result, if any, is stale from now on
        state_ = ClientState::link_down;
        emit(out, log(Severity::info, "interface is down: waiting for it to come up"));
        break;
    default:
        emit(out,
             log(Severity::debug, std::string("link down ignored in state ") + to_string(state_)));
        break;
    }
    return finish(std::move(out));
}

ClientActions ClientLeaseMachine::link_deleted() {
    ClientActions out;
    if (state_ == ClientState::exited)
        return finish(std::move(out));
    // The addresses went away with the interface: nothing to remove.
    in_flight_ = false;
    lease_ = ClientLease{};
    state_ = ClientState::exited;
    emit(out, log(Severity::info, "interface deleted: exiting"));
    emit(out, Exit{0});
    return finish(std::move(out));
}

ClientActions ClientLeaseMachine::stop() {
    ClientActions out;
    if (state_ == ClientState::exited)
        return finish(std::move(out));
    if (lease_.granted)
        remove_lease_addresses(out);
    in_flight_ = false;
    lease_ = ClientLease{};
    state_ = ClientState::exited;
    emit(out, log(Severity::info, "stopping"));
    emit(out, Exit{0});
    return finish(std::move(out));
}

ClientActions ClientLeaseMachine::renew_now(Millis now) {
    ClientActions out;
    switch (state_) {
    case ClientState::bound:
    case ClientState::backing_off:
        expire_if_due(now, out);
        next_backoff_ = kFirstBackoffMs;
        emit(out, log(Severity::info,
                      "renewing " + describe(lease_.ipv4, lease_.ipv6) + " now (SIGHUP)"));
        send_request(now, out);
        break;
    default: // requesting: one is on its way; link down, init, exited: nothing to ask
        emit(out, log(Severity::info, std::string("SIGHUP: nothing to renew now, the client is ") +
                                          to_string(state_)));
        break;
    }
    return finish(std::move(out));
}

ClientActions ClientLeaseMachine::timer(Millis now) {
    ClientActions out;
    if (state_ == ClientState::init || state_ == ClientState::exited)
        return finish(std::move(out));
    expire_if_due(now, out);
    switch (state_) {
    case ClientState::requesting:
        if (in_flight_ && now >= guard_at_)
            fail_attempt(now, "no answer from the exchange", out);
        break;
    case ClientState::bound:
        // An expired lease (a timer that fired very late) is requested anew.
        if (!lease_.active() || now >= lease_.renew_at) {
            emit(out, log(Severity::debug, "renewing " + describe(lease_.ipv4, lease_.ipv6)));
            send_request(now, out);
        }
        break;
    case ClientState::backing_off:
        if (now >= retry_at_)
            send_request(now, out);
        break;
    default: // link_down: only the expiry above
        break;
    }
    return finish(std::move(out));
}

ClientActions ClientLeaseMachine::response(Millis now, const LeaseResponse& response) {
    ClientActions out;
    if (state_ != ClientState::requesting || !in_flight_ || response.exchange != last_exchange_) {
        emit(out, log(Severity::warning, "ignoring a response to exchange " +
                                             std::to_string(response.exchange) + " in state " +
                                             to_string(state_)));
        return finish(std::move(out));
    }
    in_flight_ = false;
    // A good grant is valid at `now`, so it replaces even a lease that has
    // just run out: expiring that one first would drop and re-add addresses.
    if (auto problem = check_grant(now, response)) {
        expire_if_due(now, out);
        fail_attempt(now, "rejected response: " + *problem, out);
    } else {
        apply_grant(now, response, out);
    }
    return finish(std::move(out));
}

ClientActions ClientLeaseMachine::exchange_failed(Millis now, std::uint64_t exchange,
                                                  std::string_view reason) {
    ClientActions out;
    if (state_ != ClientState::requesting || !in_flight_ || exchange != last_exchange_) {
        emit(out,
             log(Severity::debug, "ignoring the failure of exchange " + std::to_string(exchange) +
                                      " in state " + to_string(state_)));
        return finish(std::move(out));
    }
    in_flight_ = false;
    expire_if_due(now, out);
    fail_attempt(now, std::string(reason), out);
    return finish(std::move(out));
}

void ClientLeaseMachine::send_request(Millis now, ClientActions& out) {
    SendRequest request;
    request.exchange = ++last_exchange_;
    const bool both = families_.ipv4 && families_.ipv6;
    if (!both || lease_.active()) {
        if (families_.ipv4)
            request.want4 = lease_.ipv4.value_or(Ip4{});
        if (families_.ipv6)
            request.want6 = lease_.ipv6.value_or(Ip6{});
    }
    in_flight_ = true;
    sent_at_ = now;
    guard_at_ = now + kExchangeGuardMs;
    state_ = ClientState::requesting;
    emit(out, std::move(request));
}

void ClientLeaseMachine::fail_attempt(Millis now, std::string_view reason, ClientActions& out) {
    in_flight_ = false;
    const Millis wait = next_backoff_;
    next_backoff_ = std::min(wait * 2, kMaxBackoffMs);
    retry_at_ = now + wait;
    state_ = ClientState::backing_off;
    emit(out, log(Severity::warning, std::string(reason) + "; retrying in " + seconds(wait)));
}

void ClientLeaseMachine::expire_if_due(Millis now, ClientActions& out) {
    if (!lease_.active() || now < lease_.expires_at)
        return;
    emit(out, log(Severity::info, "lease expired: removing " + describe(lease_.ipv4, lease_.ipv6)));
    remove_lease_addresses(out);
    lease_ = ClientLease{};
}

void ClientLeaseMachine::remove_lease_addresses(ClientActions& out) {
    if (lease_.ipv4)
        emit(out, RemoveAddress{*lease_.ipv4});
    if (lease_.ipv6)
        emit(out, RemoveAddress{*lease_.ipv6});
}

std::optional<std::string> ClientLeaseMachine::check_grant(Millis now,
                                                           const LeaseResponse& r) const {
    if (r.errnum != 0 && r.errnum != 3)
        return "server error " + std::to_string(r.errnum);
    if (!r.ipv4 && !r.ipv6)
        return "no address granted (errno " + std::to_string(r.errnum) + ")";
    if (r.ipv4) {
        if (!families_.ipv4)
            return "IPv4 was not asked for";
        if (r.ipv4->len != 32 || !is_leasable(r.ipv4->addr))
            return "unacceptable address " + to_string(*r.ipv4);
    }
    if (r.ipv6) {
        if (!families_.ipv6)
            return "IPv6 was not asked for";
        if (r.ipv6->len != 128 || !is_leasable(r.ipv6->addr))
            return "unacceptable address " + to_string(*r.ipv6);
    }
    if (r.leasetime == 0 || r.leasetime > kMaxLeaseTimeSeconds)
        return "unacceptable leasetime " + std::to_string(r.leasetime);
    if (sent_at_ + r.leasetime * 1000 <= now)
        return "the lease ended before its response arrived";
    return std::nullopt;
}

Millis ClientLeaseMachine::renewal_time(Millis obtained_at, Millis lease_ms) const {
    const Millis span = lease_ms / 16;
    Millis draw = span; // no jitter source: exactly half
    if (jitter_)
        draw = jitter_(2 * span + 1) % (2 * span + 1);
    // obtained_at + lease_ms/2 + (draw - span), kept unsigned: lease_ms/2 >= span.
    return obtained_at + lease_ms / 2 - span + draw;
}

void ClientLeaseMachine::apply_grant(Millis now, const LeaseResponse& r, ClientActions& out) {
    std::optional<Ip4> new4;
    std::optional<Ip6> new6;
    if (r.ipv4)
        new4 = r.ipv4->addr;
    if (r.ipv6)
        new6 = r.ipv6->addr;

    // New addresses first, then the old ones go: a family being replaced
    // always has one address on IFACE.
    if (new4 && new4 != lease_.ipv4)
        emit(out, AddAddress{*new4});
    if (new6 && new6 != lease_.ipv6)
        emit(out, AddAddress{*new6});
    if (lease_.ipv4 && lease_.ipv4 != new4)
        emit(out, RemoveAddress{*lease_.ipv4});
    if (lease_.ipv6 && lease_.ipv6 != new6)
        emit(out, RemoveAddress{*lease_.ipv6});

    const Millis lease_ms = r.leasetime * 1000;
    lease_.ipv4 = new4;
    lease_.ipv6 = new6;
    lease_.obtained_at = sent_at_;
    lease_.expires_at = sent_at_ + lease_ms;
    lease_.renew_at = renewal_time(sent_at_, lease_ms);
    lease_.granted = true;
    next_backoff_ = kFirstBackoffMs;
    state_ = ClientState::bound;

    std::string text = "lease " + describe(new4, new6) + " for " + std::to_string(r.leasetime) +
                       " s, renewing in " +
                       seconds(lease_.renew_at > now ? lease_.renew_at - now : 0);
    if (r.errnum == 3)
        text += " (partial: the server could not grant every family)";
    emit(out, log(Severity::info, std::move(text)));
}

} // namespace wgd::leased
