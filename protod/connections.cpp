#include "protod/connections.hpp"

#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <variant>

namespace wgd::protod {

std::optional<Ip6> allowed_source(const sockaddr_storage& peer, socklen_t len,
                                  bool require_link_local_port_970) {
    if (peer.ss_family != AF_INET6 || len < static_cast<socklen_t>(sizeof(sockaddr_in6)))
        return std::nullopt;
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&peer);
    Ip6 source;
    std::memcpy(source.bytes.data(), &sin6->sin6_addr, source.bytes.size());
    if (require_link_local_port_970 &&
        (ntohs(sin6->sin6_port) != kProtocolPort || !source.is_link_local()))
        return std::nullopt;
    return source;
}

proto::Response response_for(const msg::LeaseAnswer& answer, proto::Dialect dialect) {
    proto::Response r;
    r.ipv4 = answer.ipv4;
    r.ipv6 = answer.ipv6;
    r.leasestart = answer.leasestart;
    r.leasetime = answer.leasetime;
    r.errnum = answer.errnum;
    if (answer.errnum != 0)
        r.errmsg = std::string(proto::errmsg_for(answer.errnum));
    r.dialect = dialect;
    return r;
}

proto::Response response_for(const proto::ParseError& error, proto::Dialect dialect) {
    proto::Response r;
    r.errnum = error.errnum();
    r.errmsg = std::string(proto::errmsg_for(r.errnum));
    r.dialect = dialect;
    return r;
}

proto::Dialect dialect_of(std::string_view request) {
    bool legacy = false, modern = false;
    for (std::size_t pos = 0; pos < request.size();) {
        const std::size_t end = request.find('\n', pos);
        const std::string_view line =
            request.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
        legacy = legacy || line.starts_with("ip=");
        modern = modern || line.starts_with("ipv4=") || line.starts_with("ipv6=");
        if (end == std::string_view::npos)
            break;
        pos = end + 1;
    }
    return legacy && !modern ? proto::Dialect::legacy : proto::Dialect::modern;
}

struct ConnectionTable::Conn {
    Ip6 source;
    proto::RequestParser parser;
    std::string output;
    proto::Dialect dialect = proto::Dialect::modern; // of the request in flight
    bool awaiting_answer = false;
    // An invalid request (its errno) waits for leased's verdict on the
    // source: a peer gets the error, anyone else no answer (refused).
    std::uint8_t invalid = 0;
    bool closing = false;   // an invalid request was answered: close after the write
    bool peer_done = false; // EOF from the peer
    TimePoint last_progress;
    std::optional<TimePoint> request_started; // first byte of the incomplete request
    // The bytes the parser holds (its unconsumed tail), so that each line of
    // an incomplete request is checked as soon as it ends: a request that can
    // never become valid (CRLF, an HTTP request) is answered at once instead
    // of waiting for an empty line that may never come.
    std::string unparsed;
    std::size_t lines_checked_upto = 0; // offset in `unparsed` of the first unchecked line
};

namespace {

// The verdict on one complete line of a request whose message has not ended:
// the line decoded in a minimal request (as the command line when first).
// Every error found so is final: more lines cannot repair it.
std::optional<proto::ParseError> line_error(std::string_view line, bool first) {
    std::string message;
    if (!first)
        message = "request_ip=1\n";
    message.append(line).append("\n\n");
    auto result = proto::parse_request(message);
    if (auto* error = std::get_if<proto::ParseError>(&result))
        return *error;
    return std::nullopt;
}

} // namespace

ConnectionTable::ConnectionTable(Limits limits) : limits_(limits) {}
ConnectionTable::~ConnectionTable() = default;

ConnectionTable::Conn* ConnectionTable::find(ConnId id) const {
    auto it = conns_.find(id);
    return it == conns_.end() ? nullptr : it->second.get();
}

std::optional<ConnId> ConnectionTable::open(const Ip6& source, TimePoint now) {
    if (conns_.size() >= limits_.max_connections)
        return std::nullopt;
    // The counter wraps after 2^32 connections; skip 0 and ids still alive.
    while (next_id_ == 0 || conns_.count(next_id_) != 0)
        ++next_id_;
    const ConnId id = next_id_++;
    auto c = std::make_unique<Conn>();
    c->source = source;
    c->last_progress = now;
    conns_.emplace(id, std::move(c));
    return id;
}

std::optional<ConnId> ConnectionTable::evictable(TimePoint now) const {
    if (conns_.size() < limits_.max_connections)
        return std::nullopt;
    std::optional<ConnId> quietest;
    TimePoint quietest_since = now - limits_.evict_after_quiet;
    for (const auto& [id, c] : conns_) {
        if (c->awaiting_answer || !c->output.empty() || c->last_progress > quietest_since)
            continue;
        if (!quietest || c->last_progress < quietest_since) {
            quietest = id;
            quietest_since = c->last_progress;
        }
    }
    return quietest;
}

void ConnectionTable::close(ConnId id) {
    conns_.erase(id);
}

bool ConnectionTable::contains(ConnId id) const {
    return find(id) != nullptr;
}

std::vector<ConnId> ConnectionTable::ids() const {
    std::vector<ConnId> out;
    out.reserve(conns_.size());
    for (const auto& [id, c] : conns_)
        out.push_back(id);
    return out;
}

std::size_t ConnectionTable::read_space(ConnId id) const {
    const Conn* c = find(id);
    if (c == nullptr || c->awaiting_answer || c->closing || c->peer_done || !c->output.empty())
        return 0;
    return c->parser.space();
}

std::optional<msg::QueryLease> ConnectionTable::take_request(Conn& c, TimePoint now) {
    if (c.awaiting_answer || c.closing || !c.output.empty())
        return std::nullopt;
    auto result = c.parser.next();
    // Keep `unparsed` equal to the parser's tail.
    const std::size_t consumed = c.unparsed.size() - c.parser.buffered();
    proto::Dialect error_dialect = proto::Dialect::modern;
    if (std::holds_alternative<proto::ParseError>(result))
        error_dialect = dialect_of(std::string_view(c.unparsed).substr(0, consumed));
    if (consumed > 0) {
        c.unparsed.erase(0, consumed);
        c.lines_checked_upto = 0;
    }
    if (std::holds_alternative<proto::NeedMore>(result)) {
        // Everything held is the current, incomplete request: check its new lines.
        std::size_t end;
        while ((end = c.unparsed.find('\n', c.lines_checked_upto)) != std::string::npos) {
            const std::string_view line =
                std::string_view(c.unparsed)
                    .substr(c.lines_checked_upto, end - c.lines_checked_upto);
            if (auto error = line_error(line, c.lines_checked_upto == 0)) {
                result = *error;
                error_dialect = dialect_of(std::string_view(c.unparsed).substr(0, end));
                break;
            }
            c.lines_checked_upto = end + 1;
        }
    }
    if (auto* request = std::get_if<proto::Request>(&result)) {
        c.awaiting_answer = true;
        c.dialect = request->dialect;
        // Bytes already buffered belong to the next request; its clock starts
        // when this one is answered (see answered()).
        c.request_started.reset();
        return msg::QueryLease{c.source, request->ipv4, request->ipv6};
    }
    if (auto* error = std::get_if<proto::ParseError>(&result)) {
        // Not answered yet: only a peer gets an answer, and only leased
        // knows the peers. Nothing more is read from this connection.
        c.awaiting_answer = true;
        c.invalid = static_cast<std::uint8_t>(error->errnum());
        c.dialect = error_dialect;
        c.closing = true;
        c.request_started.reset();
        msg::QueryLease verdict{c.source, std::nullopt, std::nullopt, c.invalid};
        return verdict;
    }
    // NeedMore: the clock of a partial request runs from its first byte.
    if (c.parser.buffered() > 0 && !c.request_started)
        c.request_started = now;
    if (c.parser.buffered() == 0)
        c.request_started.reset();
    return std::nullopt;
}

std::optional<msg::QueryLease>
ConnectionTable::received(ConnId id, std::span<const std::uint8_t> bytes, TimePoint now) {
    Conn* c = find(id);
    if (c == nullptr || bytes.empty())
        return std::nullopt;
    c->last_progress = now;
    if (c->parser.buffered() == 0 && !c->request_started)
        c->request_started = now;
    const std::size_t taken = c->parser.feed(bytes);
    c->unparsed.append(reinterpret_cast<const char*>(bytes.data()), taken);
    return take_request(*c, now);
}

void ConnectionTable::peer_closed(ConnId id) {
    if (Conn* c = find(id)) {
        c->peer_done = true;
        c->request_started.reset();
    }
}

bool ConnectionTable::answered(ConnId id, const msg::LeaseAnswer& answer, TimePoint now) {
    Conn* c = find(id);
    if (c == nullptr || !c->awaiting_answer)
        return false;
    c->awaiting_answer = false;
    if (c->invalid != 0) {
        // leased judged the source a peer: it gets protod's own error, in
        // its request's dialect, whatever else leased's answer says.
        const proto::ParseError error{static_cast<proto::ErrorKind>(c->invalid), {}};
        if (c->invalid == 1)
            invalid_answered_++;
        else
            unsupported_answered_++;
        c->output += proto::serialize(response_for(error, c->dialect));
        c->last_progress = now;
        return true;
    }
    c->output += proto::serialize(response_for(answer, c->dialect));
    c->last_progress = now;
    return true;
}

std::string_view ConnectionTable::pending_output(ConnId id) const {
    const Conn* c = find(id);
    return c == nullptr ? std::string_view() : std::string_view(c->output);
}

std::optional<msg::QueryLease> ConnectionTable::wrote(ConnId id, std::size_t n, TimePoint now) {
    Conn* c = find(id);
    if (c == nullptr)
        return std::nullopt;
    const bool owed = !c->output.empty();
    c->output.erase(0, std::min(n, c->output.size()));
    if (n > 0)
        c->last_progress = now;
    if (!owed || !c->output.empty() || c->parser.buffered() == 0)
        return std::nullopt;
    // The next request's clock starts now that the one before it is answered.
    c->request_started = now;
    return take_request(*c, now);
}

bool ConnectionTable::peer_closed_side(ConnId id) const {
    const Conn* c = find(id);
    return c != nullptr && c->peer_done;
}

bool ConnectionTable::finished(ConnId id) const {
    const Conn* c = find(id);
    if (c == nullptr)
        return true;
    return (c->closing || c->peer_done) && !c->awaiting_answer && c->output.empty();
}

std::optional<TimePoint> ConnectionTable::deadline(const Conn& c) const {
    // While leased decides, the peer is owed an answer: no timeout runs.
    if (c.awaiting_answer)
        return std::nullopt;
    TimePoint d = c.last_progress + limits_.idle_timeout;
    if (c.request_started)
        d = std::min(d, *c.request_started + limits_.request_timeout);
    return d;
}

std::vector<ConnId> ConnectionTable::expired(TimePoint now) const {
    std::vector<ConnId> out;
    for (const auto& [id, c] : conns_) {
        auto d = deadline(*c);
        if (d && *d <= now)
            out.push_back(id);
    }
    return out;
}

std::optional<TimePoint> ConnectionTable::next_deadline() const {
    std::optional<TimePoint> earliest;
    for (const auto& [id, c] : conns_) {
        auto d = deadline(*c);
        if (d && (!earliest || *d < *earliest))
            earliest = d;
    }
    return earliest;
}

} // namespace wgd::protod
