// The server protod's connections as pure state: limits, timeouts, one
// request in flight per connection, answers in the dialect of their request.
// No I/O: the loop in server.cpp reads and writes the sockets and tells the
// table what happened; the table says what to forward, write and close.
//
// Backpressure: a connection is read only while nothing is owed to its peer
// (no answer awaited from leased, no byte of an answer unwritten), and a
// pipelined request already buffered is forwarded only once the answer before
// it is written. A peer that sends without reading therefore stops being read
// as soon as its first answer fills its socket, and its stalled write counts
// toward the idle timeout (only bytes read or written are progress). What one
// connection holds is bounded by kMaxConnectionBytes; with max_connections
// open, protod's connection state is bounded by kMaxTableBytes.
#pragma once

#include "common/addr.hpp"
#include "privsep/messages.hpp"
#include "protod/codec.hpp"

#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace wgd::protod {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using ConnId = std::uint32_t; // the conn of a QueryLeases / LeaseAnswers item

struct Limits {
    std::size_t max_connections = 1024;
    // No byte received or written and no answer of leased pending for this long: closed.
    std::chrono::milliseconds idle_timeout{10'000};
    // A request must be complete this long after its first byte (slow senders are cut).
    std::chrono::milliseconds request_timeout{10'000};
    // When every slot is taken, a connection quiet for this long may make
    // room for a new one (see evictable()).
    std::chrono::milliseconds evict_after_quiet{250};
};

inline constexpr std::uint16_t kProtocolPort = 970;

// The largest response: both address lines, leasestart, leasetime, errno and
// the longest errmsg, each line at most max_line_bytes (the serializer writes
// far less: about 200 bytes).
inline constexpr std::size_t kMaxResponseBytes = 8 * proto::max_line_bytes;
// One connection's buffers at most: the request parser's buffer and the copy
// of its unchecked tail (each at most one message), and one response owed.
inline constexpr std::size_t kMaxConnectionBytes = 2 * proto::max_message_bytes + kMaxResponseBytes;
// Every connection of a table with the default limits at most (the fixed
// part of each connection, a few hundred bytes, aside).
inline constexpr std::size_t kMaxTableBytes = 1024 * kMaxConnectionBytes;

// SPEC "Transport": the source of an accepted connection, as accept() gave it,
// if the server talks to it: IPv6, link-local (fe80::/10) and port 970. With
// the check off (tests over ::1) any IPv6 source is taken; other families never are.
std::optional<Ip6> allowed_source(const sockaddr_storage& peer, socklen_t len,
                                  bool require_link_local_port_970);

// The response to a request whose answer leased decided, in the request's dialect.
proto::Response response_for(const msg::LeaseAnswer& answer, proto::Dialect dialect);
// The response to an invalid request (errno 1 or 2), in the dialect it was
// written in (see dialect_of).
proto::Response response_for(const proto::ParseError& error, proto::Dialect dialect);
// The dialect of a request, complete or not, valid or not, as its lines show:
// ip= lines and no ipv4= or ipv6= line are the upstream prototype's.
proto::Dialect dialect_of(std::string_view request);

class ConnectionTable {
  public:
    explicit ConnectionTable(Limits limits = {});
    ~ConnectionTable();
    ConnectionTable(const ConnectionTable&) = delete;
    ConnectionTable& operator=(const ConnectionTable&) = delete;

    // A new connection from `source`; nullopt when max_connections are open.
    // Ids are never reused while their connection lives.
    std::optional<ConnId> open(const Ip6& source, TimePoint now);
    // With every slot taken, the connection to close so that a new one fits:
    // the one quiet longest, if it owes nothing, awaits no answer and has been
    // quiet for evict_after_quiet. Without it, peers holding silent
    // connections would lock every other peer out until the idle timeout;
    // with it, a peer that connects and sends its request at once is served,
    // since its connection is never the quiet one.
    std::optional<ConnId> evictable(TimePoint now) const;
    void close(ConnId id);
    bool contains(ConnId id) const;
    std::size_t size() const { return conns_.size(); }
    std::vector<ConnId> ids() const;

    // How many bytes the owner may read from the peer now; 0 means do not
    // read (an answer is awaited or unwritten, the connection is closing, or
    // the peer is done).
    std::size_t read_space(ConnId id) const;
    // Bytes read from the peer (at most read_space()). Returns the query to
    // send to leased when they completed a request. An invalid request is a
    // query too (QueryLease::invalid): leased's answer says the source is a
    // peer, and the error is then written and the connection closed; leased's
    // refusal closes it without a word.
    std::optional<msg::QueryLease> received(ConnId id, std::span<const std::uint8_t> bytes,
                                            TimePoint now);
    // The peer closed its side: an incomplete request is dropped, and the
    // connection closes once nothing more is owed to the peer.
    void peer_closed(ConnId id);
    bool peer_closed_side(ConnId id) const; // peer_closed() was called

    // leased's answer for connection `id`: the response is queued for
    // writing. False: no such connection, or it asked nothing.
    bool answered(ConnId id, const msg::LeaseAnswer& answer, TimePoint now);

    // Bytes owed to the peer; wrote() after writing n of them. Once all are
    // written, wrote() returns the pipelined request that was waiting for
    // them, to send to leased (an invalid one too: leased judges its source).
    std::string_view pending_output(ConnId id) const;
    std::optional<msg::QueryLease> wrote(ConnId id, std::size_t n, TimePoint now);

    // Nothing is owed and nothing more will be read: the owner closes it.
    bool finished(ConnId id) const;
    // Connections past their idle or request timeout at `now`.
    std::vector<ConnId> expired(TimePoint now) const;
    // The earliest timeout of any connection (for poll's timeout).
    std::optional<TimePoint> next_deadline() const;
    // Invalid requests answered so far: errno 1, errno 2 (for the metrics).
    std::uint64_t invalid_answered() const { return invalid_answered_; }
    std::uint64_t unsupported_answered() const { return unsupported_answered_; }

  private:
    struct Conn;
    Conn* find(ConnId id) const;
    std::optional<msg::QueryLease> take_request(Conn& c, TimePoint now);
    std::optional<TimePoint> deadline(const Conn& c) const;

    Limits limits_;
    ConnId next_id_ = 1;
    std::uint64_t invalid_answered_ = 0;
    std::uint64_t unsupported_answered_ = 0;
    std::map<ConnId, std::unique_ptr<Conn>> conns_;
};

} // namespace wgd::protod
