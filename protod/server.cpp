// The server protod: accepts on the listening socket netd handed in, forwards
// each complete request to leased and writes leased's answers back. The
// per-connection rules (limits, timeouts, one request in flight, dialects)
// live in ConnectionTable; this file does only the socket calls.
#include "common/log.hpp"
#include "privsep/channels.hpp"
#include "privsep/messages.hpp"
#include "privsep/sandbox.hpp"
#include "protod/connections.hpp"
#include "protod/control_server.hpp"
#include "protod/protod.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <unordered_map>
#include <vector>

namespace wgd::protod {
namespace {

// About 1,024 connections, the listener, the channel, stdio and some spare.
constexpr std::uint64_t kServerMaxOpenFiles = 1100;
constexpr int kLeasedMessagesPerRound = 256;
constexpr int kReadsPerConnectionPerRound = 4;

class Server {
  public:
    Server(privsep::Loop& loop, privsep::Channel leased, UniqueFd listener,
           const ServerLoopConfig& config, UniqueFd control)
        : loop_(loop), leased_(std::move(leased)), listener_(std::move(listener)),
          control_listener_(std::move(control)), config_(config),
          table_(Limits{config.max_connections, config.idle_timeout, config.request_timeout}) {}

    int run();

  private:
    bool accept_some(TimePoint now);     // false: leased is gone
    bool dispatch_leased(TimePoint now); // false: leased is gone or broke the protocol
    // leased's messages (privsep/channels.hpp: server_leased_to_protod);
    // false: stop the loop.
    struct FromLeased {
        Server& server;
        TimePoint now;
        bool on(msg::LeaseAnswers& answers, privsep::Message&);
        bool on(msg::RefuseConnection&, privsep::Message& m);
        bool on(control::ControlReply& reply, privsep::Message& m);
        bool on(msg::LeaseEvents& events, privsep::Message&);
    };
    bool forward(ConnId id, const msg::QueryLease& query); // queued: see send_queries
    bool send_queries();                                   // false: leased is gone
    bool deliver(ConnId id, const msg::LeaseAnswer& answer, TimePoint now);
    bool service(ConnId id, std::uint32_t revents, TimePoint now); // false: leased is gone
    bool flush(ConnId id, TimePoint now);                          // false: leased is gone
    void drop(ConnId id, bool broken = false); // broken: no FIN to send (reset, error)
    void watch(ConnId id);                     // interest = what the connection now waits for
    void sweep();                              // closes the connections past their deadline
    Clock::duration min_timeout() const {
        return std::chrono::duration_cast<Clock::duration>(
            std::min(config_.idle_timeout, config_.request_timeout));
    }
    void end_round(); // the round's batched work, in order

    privsep::Loop& loop_;
    std::vector<ConnId> touched_; // this round's, to re-watch
    bool listener_ready_ = false; // accepted at the end of the round
    privsep::Loop::TimerId sweep_timer_ = 0;
    privsep::Loop::TimerId control_timer_ = 0;

    privsep::Channel leased_;
    msg::QueryLeases queries_; // this round's, sent to leased at its end
    UniqueFd listener_;
    UniqueFd control_listener_; // handed to control_ once the loop runs
    std::optional<ControlServer> control_;
    ServerLoopConfig config_;
    ConnectionTable table_;
    std::map<ConnId, UniqueFd> sockets_;
    std::uint64_t refused_peers_ = 0; // wrong source port or address
    std::uint64_t over_limit_ = 0;    // closed because max_connections were open
    std::uint64_t evicted_ = 0;       // quiet connections closed to make room
    std::optional<TimePoint> last_full_warning_;
    std::optional<TimePoint> last_accept_warning_;

    // At most one warning of a kind per interval, so a flood cannot flood the log.
    bool warn_now(std::optional<TimePoint>& last, TimePoint now) const {
        if (last && now - *last < config_.full_warning_interval)
            return false;
        last = now;
        return true;
    }
};

void Server::drop(ConnId id, bool broken) {
    auto it = sockets_.find(id);
    if (it != sockets_.end()) {
        // A graceful FIN after the last answer rather than a reset (close
        // alone would reset a connection with unread bytes). Once the peer
        // has closed its side, close alone sends the FIN.
        if (!broken && !table_.peer_closed_side(id))
            (void)::shutdown(it->second.get(), SHUT_WR);
        loop_.forget(it->second.get());
        sockets_.erase(it);
    }
    table_.close(id);
}

// A connection waiting for leased is not watched at all (not even for
// hang-ups, which epoll reports unasked): its errors show when the answer is
// written.
void Server::watch(ConnId id) {
    auto it = sockets_.find(id);
    if (it == sockets_.end())
        return;
    std::uint32_t events = 0;
    if (table_.read_space(id) > 0)
        events |= EPOLLIN;
    if (!table_.pending_output(id).empty())
        events |= EPOLLOUT;
    if (!loop_.change(it->second.get(), events)) {
        WGD_LOG_WARN("connection %u: epoll_ctl: %s", id, std::strerror(errno));
        drop(id);
    }
}

bool Server::forward(ConnId id, const msg::QueryLease& query) {
    WGD_LOG_DEBUG("connection %u from %s: request forwarded to leased", id,
                  to_string(query.source).c_str());
    if (config_.trace)
        WGD_LOG_DEBUG("connection %u: request ipv4=%s ipv6=%s", id,
                      query.ipv4 ? to_string(*query.ipv4).c_str() : "(not named)",
                      query.ipv6 ? to_string(*query.ipv6).c_str() : "(not named)");
    queries_.items.push_back({id, query});
    return queries_.items.size() < msg::kMaxItemsPerMessage || send_queries();
}

bool Server::send_queries() {
    if (queries_.items.empty())
        return true;
    const bool sent = leased_.send(msg::query_leases, 0, msg::encode(queries_));
    queries_.items.clear();
    if (!sent)
        WGD_LOG_ERROR("cannot send to leased: %s", std::strerror(errno));
    return sent;
}

bool Server::accept_some(TimePoint now) {
    for (int i = 0; i < config_.accepts_per_round; ++i) {
        sockaddr_storage peer{};
        socklen_t len = sizeof peer;
        int fd = ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&peer), &len,
                           SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK && warn_now(last_accept_warning_, now))
                WGD_LOG_WARN("accept: %s", std::strerror(errno));
            return true;
        }
        UniqueFd conn(fd);
        auto source = allowed_source(peer, len, config_.require_link_local_port_970);
        if (!source) {
            ++refused_peers_;
            WGD_LOG_DEBUG("connection refused: not from a link-local address and port 970 "
                          "(%llu so far)",
                          static_cast<unsigned long long>(refused_peers_));
            continue;
        }
        auto id = table_.open(*source, now);
        if (!id) {
            if (auto quiet = table_.evictable(now)) {
                ++evicted_;
                WGD_LOG_DEBUG("connection %u closed to make room (quiet longest; %llu so far)",
                              *quiet, static_cast<unsigned long long>(evicted_));
                drop(*quiet);
                id = table_.open(*source, now);
            }
        }
        if (!id) {
            ++over_limit_;
            if (warn_now(last_full_warning_, now)) {
                WGD_LOG_WARN("%zu connections open: closing new ones (%llu closed so far)",
                             table_.size(), static_cast<unsigned long long>(over_limit_));
            }
            continue;
        }
        WGD_LOG_DEBUG("connection %u from %s", *id, to_string(*source).c_str());
        const ConnId conn_id = *id;
        if (!loop_.watch(conn.get(), 0, [this, conn_id](std::uint32_t events) {
                if (!service(conn_id, events, Clock::now()))
                    loop_.stop(1);
                touched_.push_back(conn_id);
            })) {
            WGD_LOG_WARN("connection %u: epoll_ctl: %s", conn_id, std::strerror(errno));
            table_.close(conn_id);
            continue;
        }
        sockets_.emplace(*id, std::move(conn));
        touched_.push_back(*id);
        // A client sends its request as soon as it is connected, so it is
        // most often here already: reading now spares registering the socket
        // with epoll and a wakeup while leased decides.
        if (!service(*id, EPOLLIN, now))
            return false;
    }
    return true;
}

bool Server::dispatch_leased(TimePoint now) {
    for (int i = 0; i < kLeasedMessagesPerRound; ++i) {
        auto received = leased_.recv();
        if (auto* error = std::get_if<privsep::RecvError>(&received)) {
            if (*error == privsep::RecvError::would_block)
                return true;
            if (*error == privsep::RecvError::peer_closed) // a stop, not a failure
                WGD_LOG_INFO("leased closed the channel: stopping");
            else
                WGD_LOG_ERROR("channel to leased: %s", privsep::to_string(*error));
            return false;
        }
        namespace ch = privsep::channels;
        FromLeased handler{*this, now};
        if (!ch::dispatch<ch::server_leased_to_protod>(ch::states::only,
                                                       std::get<privsep::Message>(received),
                                                       handler, ch::OnViolation::report))
            return false;
    }
    return true;
}

bool Server::FromLeased::on(msg::LeaseAnswers& answers, privsep::Message&) {
    for (const auto& [id, answer] : answers.items)
        if (!server.deliver(id, answer, now))
            return false;
    return true;
}

bool Server::FromLeased::on(msg::RefuseConnection&, privsep::Message& m) {
    WGD_LOG_DEBUG("connection %u refused by leased (not a peer)", m.id);
    if (server.table_.contains(m.id))
        server.drop(m.id);
    return true;
}

bool Server::FromLeased::on(control::ControlReply& reply, privsep::Message& m) {
    if (!server.control_) {
        WGD_LOG_ERROR("leased sent a control message, and there is no control socket");
        return false;
    }
    server.control_->on_reply(m.id, reply);
    return true;
}

bool Server::FromLeased::on(msg::LeaseEvents& events, privsep::Message&) {
    if (!server.control_) {
        WGD_LOG_ERROR("leased sent a control message, and there is no control socket");
        return false;
    }
    server.control_->on_events(events.events);
    return true;
}

bool Server::deliver(ConnId id, const msg::LeaseAnswer& answer, TimePoint now) {
    if (config_.trace)
        WGD_LOG_DEBUG("connection %u: answer errno=%u ipv4=%s ipv6=%s leasetime=%u", id,
                      unsigned{answer.errnum},
                      answer.ipv4 ? to_string(*answer.ipv4).c_str() : "(none)",
                      answer.ipv6 ? to_string(*answer.ipv6).c_str() : "(none)", answer.leasetime);
    if (!table_.answered(id, answer, now)) {
        WGD_LOG_DEBUG("answer for connection %u dropped: it is closed", id);
        return true;
    }
    touched_.push_back(id);
    return flush(id, now);
}

// Writes what is owed; once all of it is written, a pipelined request that
// waited for it goes to leased (and an invalid one's error is written).
bool Server::flush(ConnId id, TimePoint now) {
    auto it = sockets_.find(id);
    if (it == sockets_.end())
        return true;
    for (;;) {
        std::string_view out = table_.pending_output(id);
        if (out.empty())
            break;
        ssize_t n = ::send(it->second.get(), out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return true;
            WGD_LOG_DEBUG("connection %u: send: %s", id, std::strerror(errno));
            drop(id, true);
            return true;
        }
        if (auto next = table_.wrote(id, static_cast<std::size_t>(n), now))
            if (!forward(id, *next))
                return false;
    }
    if (table_.finished(id))
        drop(id);
    return true;
}

bool Server::service(ConnId id, std::uint32_t revents, TimePoint now) {
    auto it = sockets_.find(id);
    if (it == sockets_.end())
        return true;
    const int fd = it->second.get();
    if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        std::uint8_t buf[proto::max_message_bytes];
        for (int i = 0; i < kReadsPerConnectionPerRound; ++i) {
            const std::size_t space = std::min(table_.read_space(id), sizeof buf);
            if (space == 0)
                break;
            ssize_t n = ::recv(fd, buf, space, MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                WGD_LOG_DEBUG("connection %u: recv: %s", id, std::strerror(errno));
                drop(id, true);
                return true;
            }
            if (n == 0) {
                table_.peer_closed(id);
                break;
            }
            auto query = table_.received(id, {buf, static_cast<std::size_t>(n)}, now);
            if (query && !forward(id, *query))
                return false;
            // A short read drained the socket: asking again would only
            // return EAGAIN, and epoll reports whatever comes next.
            if (static_cast<std::size_t>(n) < space)
                break;
        }
    }
    return flush(id, now);
}

void Server::sweep() {
    const TimePoint now = Clock::now();
    for (ConnId id : table_.expired(now)) {
        WGD_LOG_DEBUG("connection %u: timed out", id);
        drop(id);
    }
    // A deadline set after a sweep (a new connection, progress, an answer
    // written) is at least the shorter timeout away, so a sweep that comes
    // at the latest that long after the last one misses none.
    if (auto earliest = table_.next_deadline())
        loop_.arm(sweep_timer_, std::min(*earliest, now + min_timeout()));
}

void Server::end_round() {
    const TimePoint now = Clock::now();
    if (listener_ready_) {
        listener_ready_ = false;
        if (!accept_some(now)) {
            loop_.stop(1);
            return;
        }
        const auto due = loop_.deadline(sweep_timer_);
        if (table_.size() > 0 && (!due || *due > now + min_timeout()))
            loop_.arm(sweep_timer_, now + min_timeout());
    }
    if (control_) {
        control_->invalid_requests = table_.invalid_answered();
        control_->unsupported_requests = table_.unsupported_answered();
        control_->sweep();
        if (control_->clients() > 0 && !loop_.deadline(control_timer_))
            loop_.arm_after(control_timer_, std::chrono::seconds(1)); // their deadlines
    }
    if (!send_queries()) {
        loop_.stop(1);
        return;
    }
    for (ConnId id : touched_)
        watch(id);
    touched_.clear();
}

int Server::run() {
    int flags = ::fcntl(listener_.get(), F_GETFL);
    if (flags < 0 || ::fcntl(listener_.get(), F_SETFL, flags | O_NONBLOCK) < 0) {
        WGD_LOG_ERROR("listening socket: %s", std::strerror(errno));
        return 1;
    }
    // Accepted at the end of the round, after the answers and the sweep
    // have made what room they make.
    if (!loop_.watch(listener_.get(), EPOLLIN, [this](std::uint32_t) { listener_ready_ = true; }) ||
        !loop_.watch_channel(leased_, "leased", [this] {
            if (!dispatch_leased(Clock::now()))
                loop_.stop(1);
        })) {
        WGD_LOG_ERROR("epoll_ctl: %s", std::strerror(errno));
        return 1;
    }
    if (control_listener_) {
        int cflags = ::fcntl(control_listener_.get(), F_GETFL);
        if (cflags < 0 || ::fcntl(control_listener_.get(), F_SETFL, cflags | O_NONBLOCK) < 0) {
            WGD_LOG_ERROR("control socket: %s", std::strerror(errno));
            return 1;
        }
        control_.emplace(std::move(control_listener_), loop_, leased_);
        if (!control_->valid())
            return 1;
    }
    sweep_timer_ = loop_.add_timer([this] { sweep(); });
    control_timer_ = loop_.add_timer([] {}); // wakes the round that sweeps them
    loop_.after_each_round([this] { end_round(); });
    return loop_.run();
}

bool is_listening_unix_socket(int fd) {
    int listening = 0, domain = 0;
    socklen_t len = sizeof listening;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || listening != 1)
        return false;
    len = sizeof domain;
    return ::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_UNIX;
}

} // namespace

int run_server_loop(privsep::Loop& loop, privsep::Channel leased, UniqueFd listener,
                    const ServerLoopConfig& config, UniqueFd control) {
    Server server(loop, std::move(leased), std::move(listener), config, std::move(control));
    return server.run();
}

int server_main(const Options& options) {
    log_set_verbosity(options.verbosity);
    // Taken before the sandbox opens anything that could land on its number:
    // the control socket is whatever listening unix socket netd put there.
    UniqueFd control;
    namespace fds = privsep::channels::fds::server_protod;
    if (is_listening_unix_socket(fds::control))
        control.reset(fds::control);
    auto loop = privsep::Loop::open();
    if (!loop) {
        WGD_LOG_ERROR("%s", loop.error().message.c_str());
        return 1;
    }
    privsep::SandboxSpec spec;
    spec.role = privsep::Role::protod;
    spec.side = Side::server;
    spec.user = options.user;
    spec.max_open_files = kServerMaxOpenFiles;
    if (auto sandbox = privsep::enter_sandbox(spec); !sandbox) {
        WGD_LOG_ERROR("sandbox: %s", sandbox.error().message.c_str());
        return 1;
    }
    ServerLoopConfig config;
    config.trace = options.verbosity >= 2;
    return run_server_loop(*loop, privsep::Channel(UniqueFd(fds::leased)), UniqueFd(fds::listener),
                           config, std::move(control));
}

} // namespace wgd::protod
