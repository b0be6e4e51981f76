// The client's lease state machine (SPEC.md "Leases on the client"): pure
// decisions, no I/O and no clock. The daemon's leased process feeds it events
// (each carrying `now`, CLOCK_BOOTTIME in milliseconds) and executes the
// actions it returns, in order: requests go to netd and protod, address
// orders to netd, the timer is armed for next_deadline().
//
// The caller's side of the contract: execute actions in the order given
// (that order is what keeps a replaced family on IFACE); tag each exchange
// with SendRequest::exchange and report its end exactly once, as response()
// or exchange_failed(); call timer() once the last SetTimer deadline has
// passed; on Exit, carry out the RemoveAddress orders before it (wait for
// netd's answers) and then exit with its status. Log lines come back as
// LogLine actions, so this file needs nothing but common/addr.hpp.
//
// Decisions this machine makes (the SPEC leaves them open):
// - Lease times are counted on the client's own clock from the moment the
//   request was sent (the server began the lease later, so the client's view
//   ends first). The response's leasestart (Unix time) is informative only.
// - Renewal at leasetime/2 plus a jitter drawn uniformly in
//   [-leasetime/16, +leasetime/16]: never before 0.4375 nor after 0.5625 of
//   the lease (well before 0.875).
// - Failed attempts are retried after 1, 2, 4, ..., 32, 60, 60, ... seconds
//   (no jitter), also after the lease expired; success and link up reset it.
// - What is asked for: with both families enabled and no address held, the
//   request names no address (the server grants every family it has a pool
//   for). Otherwise it names every enabled family: the held address to
//   renew, or the unspecified address ("any") for a family not held, so a
//   client holding one family still picks up the other one later (naming a
//   single family would release the other under SPEC's request rules).
//   Families asked for are therefore always the enabled ones.
// - A grant is accepted with errno 0 or 3 and at least one address, each
//   address a /32 or /128, is_leasable() and of an enabled family, and
//   1 <= leasetime <= kMaxLeaseTimeSeconds; anything else is a failed
//   attempt and nothing of it is applied. The granted addresses become the
//   whole lease: a held family missing from the grant is removed.
// - Replacement: every new address is added before any old one is removed.
//   A good grant that arrives just as the old lease runs out replaces it
//   directly (an address in both is never removed and re-added).
// - Inception: the first /32 global IPv4 and the first /128 global IPv6
//   found on IFACE (of the enabled families) become a lease of 15 s that is
//   requested at once. Such a lease is "assumed" until a server grant
//   confirms it: expiry and replacement remove assumed addresses (they were
//   taken as a lease), but stop() removes only addresses of a granted lease,
//   i.e. those the client added or that the server confirmed as its own; an
//   unconfirmed adopted address was not put there by this client.
// - IFACE deleted: exit 0 without address orders (they went with the link).
// - At most one exchange is in flight; each carries an id and a result with
//   another id is stale and ignored. If no result arrives within
//   kExchangeGuardMs the attempt counts as failed.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/addr.hpp"

namespace wgd::leased {

using Millis = std::uint64_t; // CLOCK_BOOTTIME, milliseconds

inline constexpr Millis kInceptionLeaseMs = 15'000;
inline constexpr Millis kFirstBackoffMs = 1'000;
inline constexpr Millis kMaxBackoffMs = 60'000;
// protod gives up after 10 s to connect and 10 s to answer; this only
// protects the machine against a result that never comes back.
inline constexpr Millis kExchangeGuardMs = 30'000;
inline constexpr std::uint64_t kMaxLeaseTimeSeconds = 365ull * 24 * 3600;

struct ClientFamilies {
    bool ipv4 = true;
    bool ipv6 = true;
};

// Global addresses found on IFACE at start, in the order netd listed them.
struct ExistingAddresses {
    std::vector<Prefix4> ipv4;
    std::vector<Prefix6> ipv6;
};

// What protod parsed from the server's answer to exchange `exchange`.
struct LeaseResponse {
    std::uint64_t exchange = 0;
    std::optional<Prefix4> ipv4;
    std::optional<Prefix6> ipv6;
    std::uint64_t leasestart = 0; // Unix seconds, informative
    std::uint64_t leasetime = 0;  // seconds
    std::uint32_t errnum = 0;
};

struct ClientLease {
    std::optional<Ip4> ipv4;
    std::optional<Ip6> ipv6;
    Millis obtained_at = 0; // when the request that won it was sent
    Millis renew_at = 0;
    Millis expires_at = 0;
    bool granted = false; // false: inception assumption, not confirmed yet
    bool active() const { return ipv4.has_value() || ipv6.has_value(); }
    friend bool operator==(const ClientLease&, const ClientLease&) = default;
};

// --- Actions, executed by the caller in the order given. ---

// want4/want6: nullopt = family not named; the unspecified address = any
// address of that family; both nullopt = a request with no address key.
struct SendRequest {
    std::uint64_t exchange = 0;
    std::optional<Ip4> want4;
    std::optional<Ip6> want6;
    friend bool operator==(const SendRequest&, const SendRequest&) = default;
};
// Addresses are put on IFACE as /32 and /128.
struct AddAddress {
    std::variant<Ip4, Ip6> address;
    friend bool operator==(const AddAddress&, const AddAddress&) = default;
};
struct RemoveAddress {
    std::variant<Ip4, Ip6> address;
    friend bool operator==(const RemoveAddress&, const RemoveAddress&) = default;
};
// Call timer() once `deadline` has passed; nullopt: no timer needed.
struct SetTimer {
    std::optional<Millis> deadline;
    friend bool operator==(const SetTimer&, const SetTimer&) = default;
};
struct Exit {
    int status = 0;
    friend bool operator==(const Exit&, const Exit&) = default;
};
enum class Severity { debug, info, warning };
struct LogLine {
    Severity severity = Severity::info;
    std::string text;
    friend bool operator==(const LogLine&, const LogLine&) = default;
};

using ClientAction = std::variant<SendRequest, AddAddress, RemoveAddress, SetTimer, Exit, LogLine>;
using ClientActions = std::vector<ClientAction>;

// Returns a number drawn uniformly from [0, bound); bound >= 1.
using JitterSource = std::function<std::uint64_t(std::uint64_t bound)>;

enum class ClientState {
    init,        // constructed, start() not called yet
    requesting,  // an exchange is in flight (lease active or not)
    bound,       // lease granted, waiting for its renewal time
    backing_off, // last attempt failed, waiting for the retry time
    link_down,   // IFACE is down: no requests, the lease still expires
    exited,      // Exit was returned; every input is ignored
};
const char* to_string(ClientState state);

class ClientLeaseMachine {
  public:
    explicit ClientLeaseMachine(JitterSource jitter, ClientFamilies families = {});

    // Inception. `link_is_up`: IFACE's state at start.
    ClientActions start(Millis now, const ExistingAddresses& existing, bool link_is_up = true);
    ClientActions link_up(Millis now);
    ClientActions link_down(Millis now);
    ClientActions link_deleted();
    // The deadline last asked for passed (early or repeated calls are harmless).
    ClientActions timer(Millis now);
    ClientActions response(Millis now, const LeaseResponse& response);
    // Connect failure, timeout, unparsable answer, for exchange `exchange`.
    ClientActions exchange_failed(Millis now, std::uint64_t exchange, std::string_view reason);
    // SIGHUP: a bound or backing-off client asks the server at once (the
    // backoff starts over); in the other states nothing changes.
    ClientActions renew_now(Millis now);
    // SIGTERM/SIGINT: removes the addresses of a granted lease, then exits 0.
    ClientActions stop();

    ClientState state() const { return state_; }
    const ClientLease& lease() const { return lease_; }
    std::optional<Millis> next_deadline() const;
    // The wait that the next failed attempt will get.
    Millis next_backoff() const { return next_backoff_; }
    std::optional<std::uint64_t> exchange_in_flight() const;

  private:
    void send_request(Millis now, ClientActions& out);
    void fail_attempt(Millis now, std::string_view reason, ClientActions& out);
    void expire_if_due(Millis now, ClientActions& out);
    void apply_grant(Millis now, const LeaseResponse& response, ClientActions& out);
    std::optional<std::string> check_grant(Millis now, const LeaseResponse& response) const;
    Millis renewal_time(Millis obtained_at, Millis lease_ms) const;
    void remove_lease_addresses(ClientActions& out);
    ClientActions finish(ClientActions out);

    JitterSource jitter_;
    ClientFamilies families_;
    ClientState state_ = ClientState::init;
    ClientLease lease_;
    Millis next_backoff_ = kFirstBackoffMs;
    Millis retry_at_ = 0;
    std::uint64_t last_exchange_ = 0;
    bool in_flight_ = false;
    Millis sent_at_ = 0;
    Millis guard_at_ = 0;
    std::optional<Millis> announced_deadline_;
};

} // namespace wgd::leased
