// rtnetlink for netd: the WireGuard interface's state, its addresses, the
// pools (routes over it) and live events. The message building and parsing
// functions are pure (no I/O) so tests and fuzzers reach them directly; the
// classes Rtnl and RtnlEvents only move those messages over a socket.
#pragma once

#include "common/addr.hpp"
#include "common/fd.hpp"
#include "common/result.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

struct nlmsghdr;
struct mnl_socket;

namespace wgd::netd {

struct LinkInfo {
    int ifindex = 0;
    std::string name;
    std::string kind;            // IFLA_INFO_KIND: "wireguard" (kernel), "tun" (wireguard-go)
    bool admin_up = false;       // IFF_UP
    bool running = false;        // IFF_RUNNING: the kernel's operational state allows traffic
    std::uint8_t oper_state = 0; // IFLA_OPERSTATE (IF_OPER_*), 0 when absent
    std::uint32_t mtu = 0;
    bool is_up() const { return admin_up && running; }
};

using Prefix = std::variant<Prefix4, Prefix6>;

struct IfAddr {
    int ifindex = 0;
    Prefix prefix;           // the address itself with its prefix length (not masked)
    std::uint8_t scope = 0;  // RT_SCOPE_*
    std::uint32_t flags = 0; // IFA_F_*
};

struct RouteInfo {
    Prefix dst;              // masked destination
    std::uint32_t table = 0; // RTA_TABLE when present, else rtm_table
    std::uint8_t type = 0;   // RTN_*
    std::uint8_t scope = 0;
    std::uint8_t protocol = 0;
    std::uint32_t flags = 0;  // rtm_flags (RTM_F_CLONED ...)
    int oif = 0;              // 0 when absent
    bool has_gateway = false; // RTA_GATEWAY, RTA_VIA or RTA_MULTIPATH present
};

struct Pools {
    std::vector<Prefix4> v4;
    std::vector<Prefix6> v6;
};

// ---- pure decoding: nullopt when the message is not of that kind, is
// truncated, or carries an attribute of the wrong length.
std::optional<LinkInfo> parse_link(const nlmsghdr* nlh);
std::optional<IfAddr> parse_addr(const nlmsghdr* nlh);
std::optional<RouteInfo> parse_route(const nlmsghdr* nlh);

// A route is a pool of `ifindex` when it is a unicast route of the main
// table whose output interface is ifindex, with no gateway, and whose
// destination is neither link-local nor multicast.
bool route_is_pool(const RouteInfo& route, int ifindex);
void add_pool(Pools& pools, const Prefix& prefix);

// A route through the client's interface, kept so that it can be put back
// exactly as it was: Linux deletes every IPv4 route through an interface, in
// every table, when the interface loses its last IPv4 address.
struct SavedRoute {
    RouteInfo info;
    std::uint8_t tos = 0;
    std::uint32_t priority = 0; // RTA_PRIORITY (the metric), 0 when absent
    // RTM_NEWROUTE re-creating it (NLM_F_CREATE|NLM_F_EXCL|NLM_F_ACK); the
    // sequence number is set when it is sent.
    std::vector<std::uint8_t> request;
    // The same route: table, destination, type, tos and metric (what the
    // kernel tells routes apart by).
    bool same_route(const SavedRoute& other) const;
};
std::string describe(const SavedRoute& route);

// A dumped route message as a route to keep: nullopt unless it is a unicast
// route of any table whose single output interface is `ifindex` (no
// multipath), not a cached clone and not the kernel's own route of an
// address (protocol kernel: it belongs to that address). The request holds
// only the header and the attributes that define the route (destination,
// source, output interface, gateway, metric, preferred source, metrics,
// table, preference), so what is put back is that route on that interface
// and nothing else.
std::optional<SavedRoute> save_route(const nlmsghdr* nlh, int ifindex);
// The routes of `before` that `after` lacks, those without a gateway first
// (a gateway is accepted only once a route reaches it).
std::vector<SavedRoute> routes_to_restore(const std::vector<SavedRoute>& before,
                                          const std::vector<SavedRoute>& after);

// An address order is acceptable only for a /32 or /128 leasable address.
Result<void> check_address_order(const Prefix& prefix);

enum class AddrOp { add, remove };

// Builds RTM_NEWADDR (NLM_F_CREATE|NLM_F_EXCL, IFA_F_NODAD for IPv6) or
// RTM_DELADDR with NLM_F_ACK into buf. Refuses (nothing built) what
// check_address_order refuses. Returns the message length.
Result<std::size_t> build_addr_request(std::span<std::uint8_t> buf, std::uint32_t seq, AddrOp op,
                                       int ifindex, const Prefix& prefix);
// RTM_GETLINK for one name (NLM_F_ACK, answered with one RTM_NEWLINK).
Result<std::size_t> build_link_request(std::span<std::uint8_t> buf, std::uint32_t seq,
                                       const std::string& ifname);
// A dump request (RTM_GETADDR / RTM_GETROUTE) for one family (AF_UNSPEC: all).
std::size_t build_dump_request(std::span<std::uint8_t> buf, std::uint32_t seq, std::uint16_t type,
                               std::uint8_t family);

// ---- events
struct LinkEvent {
    LinkInfo link;
    bool deleted = false;
};
struct RouteEvent {
    Prefix prefix; // a pool prefix of our interface
    bool added = false;
};
struct AddrEvent {
    IfAddr addr;
    bool added = false;
};
using RtnlEvent = std::variant<LinkEvent, RouteEvent, AddrEvent>;

// One message of the event socket, filtered to `ifindex`: link changes of
// that interface, routes that are (or were) its pools, its addresses.
std::optional<RtnlEvent> parse_event(const nlmsghdr* nlh, int ifindex);

// ---- socket I/O

// Request/answer rtnetlink socket (one per process; not thread-safe).
class Rtnl {
  public:
    static Result<Rtnl> open();
    Rtnl(Rtnl&&) noexcept;
    Rtnl& operator=(Rtnl&&) noexcept;
    ~Rtnl();

    Result<LinkInfo> link_by_name(const std::string& ifname);
    Result<std::vector<IfAddr>> addresses(int ifindex);
    // EEXIST (add) and EADDRNOTAVAIL (remove) come back as Error::code.
    Result<void> add_address(int ifindex, const Prefix& prefix);
    Result<void> remove_address(int ifindex, const Prefix& prefix);
    Result<Pools> pools(int ifindex);
    // The routes of one family through ifindex that save_route keeps, in
    // every table.
    Result<std::vector<SavedRoute>> routes_through(int ifindex, std::uint8_t family);
    // EEXIST comes back as Error::code.
    Result<void> add_route(const SavedRoute& route);

    // How many requests went to the kernel: proves refusals send nothing.
    std::size_t messages_sent() const { return sent_; }

  private:
    explicit Rtnl(mnl_socket* sock);
    using OnMessage = std::function<Result<void>(const nlmsghdr*)>;
    Result<void> request(std::span<const std::uint8_t> message, const OnMessage& on_message);
    // Re-runs the dump from scratch (after reset) while the kernel flags it
    // NLM_F_DUMP_INTR: the table changed under it.
    Result<void> dump(std::uint16_t type, std::uint8_t family, const OnMessage& on_message,
                      const std::function<void()>& reset);

    mnl_socket* sock_ = nullptr;
    std::uint32_t seq_ = 0;
    std::size_t sent_ = 0;
};

// The event socket: subscribe once, poll fd(), then read().
class RtnlEvents {
  public:
    struct Batch {
        std::vector<RtnlEvent> events;
        // The kernel dropped events (ENOBUFS): re-dump links, addresses and
        // routes; the events above are still valid but incomplete.
        bool resync_needed = false;
    };

    static Result<RtnlEvents> open(int ifindex);
    RtnlEvents(RtnlEvents&&) noexcept;
    RtnlEvents& operator=(RtnlEvents&&) noexcept;
    ~RtnlEvents();

    int fd() const;
    // Reads everything pending without blocking.
    Result<Batch> read();

  private:
    RtnlEvents(mnl_socket* sock, int ifindex);
    mnl_socket* sock_ = nullptr;
    int ifindex_ = 0;
};

} // namespace wgd::netd
