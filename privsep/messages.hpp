// The messages between the processes of each suite: the only thing protod,
// leased and netd share. One struct, one encoder, one decoder per type;
// decoders refuse any body that is not exactly the struct (see wire.hpp).
//
// Which channel carries which type, in which direction and state, is
// declared in privsep/channels.hpp; DESIGN.md ("The channels") shows the map
// rendered from it.
#pragma once

#include "common/addr.hpp"
#include "common/peer.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace wgd::msg {

enum Type : std::uint16_t {
    query_leases = 1,
    lease_answers,
    refuse_connection,
    refresh_peers,
    peers_begin,
    peers_chunk,
    peers_end,
    pools_snapshot,
    apply_allowed_ips,
    allowed_ips_applied,
    link_state,
    exchange_request,
    exchange_result,
    address_order,
    address_result,
    stop,
    claim_leases,
    // The control socket (privsep/control.hpp, privsep/events.hpp):
    control_request, // protod -> leased, id = control connection
    control_reply,   // leased -> protod, id = control connection
    monitor_state,   // protod -> leased: how many monitors listen
    lease_events,    // leased -> protod: the events, while monitors listen
    status,
    renew,
};

using Bytes = std::vector<std::uint8_t>;
using Body = std::span<const std::uint8_t>;

// ---- server

struct QueryLease {
    Ip6 source;              // the connection's link-local source address
    std::optional<Ip4> ipv4; // as parsed: nullopt not named, unspecified = any
    std::optional<Ip6> ipv6;
    // 1 or 2: the request was invalid (SPEC's errno); no address is named and
    // leased only judges the source: a peer gets the error (a LeaseAnswer
    // with this errnum and nothing else), any other source no answer at all.
    std::uint8_t invalid = 0;
    friend bool operator==(const QueryLease&, const QueryLease&) = default;
};
Bytes encode(const QueryLease& m);
std::optional<QueryLease> decode_query_lease(Body body);

struct LeaseAnswer {
    std::optional<Ip4> ipv4;
    std::optional<Ip6> ipv6;
    std::uint64_t leasestart = 0;
    std::uint32_t leasetime = 0;
    std::uint8_t errnum = 0; // SPEC's table: 0 or 3, or the `invalid` of the query (1, 2)
    friend bool operator==(const LeaseAnswer&, const LeaseAnswer&) = default;
};
Bytes encode(const LeaseAnswer& m);
std::optional<LeaseAnswer> decode_lease_answer(Body body);

// Queries and answers travel several to a message, each with its connection:
// what one round of protod's loop read, what one batch of leased decided. A
// message per query cost two system calls on each side per request.
inline constexpr std::size_t kMaxItemsPerMessage = 1024; // 40 bytes an item
struct QueryLeases {
    struct Item {
        std::uint32_t conn = 0;
        QueryLease query;
        friend bool operator==(const Item&, const Item&) = default;
    };
    std::vector<Item> items; // at most kMaxItemsPerMessage
    friend bool operator==(const QueryLeases&, const QueryLeases&) = default;
};
Bytes encode(const QueryLeases& m);
std::optional<QueryLeases> decode_query_leases(Body body);

struct LeaseAnswers {
    struct Item {
        std::uint32_t conn = 0;
        LeaseAnswer answer;
        friend bool operator==(const Item&, const Item&) = default;
    };
    std::vector<Item> items; // at most kMaxItemsPerMessage
    friend bool operator==(const LeaseAnswers&, const LeaseAnswers&) = default;
};
Bytes encode(const LeaseAnswers& m);
std::optional<LeaseAnswers> decode_lease_answers(Body body);

// Empty bodies (each with a struct of its own in channels.hpp): RefuseConnection,
// RefreshPeers, PeersBegin, PeersEnd, Stop, Status, Renew.
bool decode_empty(Body body);

// As many peers as fit in one message; split_peers() cuts a device in chunks.
struct PeersChunk {
    std::vector<PeerFacts> peers;
    friend bool operator==(const PeersChunk&, const PeersChunk&) = default;
};
Bytes encode(const PeersChunk& m);
std::optional<PeersChunk> decode_peers_chunk(Body body);
std::vector<PeersChunk> split_peers(const std::vector<PeerFacts>& peers);

struct PoolsSnapshot {
    std::vector<Prefix4> pools4;
    std::vector<Prefix6> pools6;
    std::vector<Ip4> own4; // the server's own addresses on IFACE
    std::vector<Ip6> own6;
    friend bool operator==(const PoolsSnapshot&, const PoolsSnapshot&) = default;
};
Bytes encode(const PoolsSnapshot& m);
std::optional<PoolsSnapshot> decode_pools_snapshot(Body body);

struct ApplyAllowedIps {
    std::vector<PeerChange> changes;
    friend bool operator==(const ApplyAllowedIps&, const ApplyAllowedIps&) = default;
};
Bytes encode(const ApplyAllowedIps& m);
std::optional<ApplyAllowedIps> decode_apply_allowed_ips(Body body);
// Cuts a batch so that each part fits in one message.
std::vector<ApplyAllowedIps> split_changes(const std::vector<PeerChange>& changes);

struct Outcome {
    bool ok = false;
    std::string error; // one line, when !ok
    friend bool operator==(const Outcome&, const Outcome&) = default;
};
Bytes encode(const Outcome& m); // AddressResult
std::optional<Outcome> decode_outcome(Body body);

// netd's answer to one ApplyAllowedIps: one status per change, in the order
// of the order's changes; 0 when the change was applied, otherwise the errno
// of the rule it broke (or of WireGuard's failure). A refused change never
// fails the other changes of its order.
struct AllowedIpsApplied {
    std::vector<std::uint16_t> status;
    friend bool operator==(const AllowedIpsApplied&, const AllowedIpsApplied&) = default;
};
Bytes encode(const AllowedIpsApplied& m);
std::optional<AllowedIpsApplied> decode_allowed_ips_applied(Body body);

// The leases leased restored from its lease file, sent once at start before
// any ApplyAllowedIps: netd takes an address the device already shows on
// that peer as one wg-dynamic leased (and so may later remove) only when
// claimed here, once, before the first order.
struct LeaseClaim {
    PublicKey key;
    std::optional<Ip4> ipv4;
    std::optional<Ip6> ipv6;
    friend bool operator==(const LeaseClaim&, const LeaseClaim&) = default;
};
inline constexpr std::size_t kMaxClaimsPerMessage = 1024; // 55 bytes a claim
struct ClaimLeases {
    std::vector<LeaseClaim> claims; // at most kMaxClaimsPerMessage
    friend bool operator==(const ClaimLeases&, const ClaimLeases&) = default;
};
Bytes encode(const ClaimLeases& m);
std::optional<ClaimLeases> decode_claim_leases(Body body);

// ---- client

enum class Link : std::uint8_t { up = 1, down = 2, deleted = 3 };
struct LinkState {
    Link link = Link::up;
    std::vector<Prefix4> global4; // global addresses on IFACE (first report only matters)
    std::vector<Prefix6> global6;
    friend bool operator==(const LinkState&, const LinkState&) = default;
};
Bytes encode(const LinkState& m);
std::optional<LinkState> decode_link_state(Body body);

struct ExchangeRequest {
    std::optional<Ip4> want4; // as in QueryLease
    std::optional<Ip6> want6;
    friend bool operator==(const ExchangeRequest&, const ExchangeRequest&) = default;
};
Bytes encode(const ExchangeRequest& m);
std::optional<ExchangeRequest> decode_exchange_request(Body body);

struct ExchangeResult {
    bool answered = false; // false: no answer (connect, timeout, parse error: see error)
    std::string error;
    std::optional<Prefix4> ipv4; // as the server wrote them (leased re-checks)
    std::optional<Prefix6> ipv6;
    std::uint64_t leasestart = 0;
    std::uint32_t leasetime = 0;
    std::uint32_t errnum = 0;
    friend bool operator==(const ExchangeResult&, const ExchangeResult&) = default;
};
Bytes encode(const ExchangeResult& m);
std::optional<ExchangeResult> decode_exchange_result(Body body);

struct AddressOrder {
    bool add = true;         // false: remove
    std::optional<Ip4> ipv4; // exactly one of the two
    std::optional<Ip6> ipv6;
    friend bool operator==(const AddressOrder&, const AddressOrder&) = default;
};
Bytes encode(const AddressOrder& m);
std::optional<AddressOrder> decode_address_order(Body body);

} // namespace wgd::msg
