#include "protod/control_server.hpp"

#include "common/log.hpp"
#include "privsep/messages.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <ctime>

namespace wgd::protod {

ControlServer::ControlServer(UniqueFd listener, privsep::Loop& loop, privsep::Channel& leased,
                             ControlLimits limits)
    : listener_(std::move(listener)), loop_(loop), leased_(leased), limits_(limits) {
    if (!listener_)
        return;
    if (!loop_.watch(listener_.get(), EPOLLIN, [this](std::uint32_t) {
            if (!accept_some())
                loop_.stop(1);
        })) {
        WGD_LOG_ERROR("control socket: epoll_ctl: %s", std::strerror(errno));
        listener_.reset();
    }
}

ControlServer::~ControlServer() {
    for (auto& [id, c] : conns_)
        loop_.forget(c.fd.get());
    if (listener_)
        loop_.forget(listener_.get());
}

bool ControlServer::on_event(std::uint32_t id, std::uint32_t events) {
    auto it = conns_.find(id);
    if (it == conns_.end())
        return true;
    Conn& c = it->second;
    if ((events & EPOLLIN) && c.state == State::reading && !read_request(id, c))
        return false;
    if (conns_.count(id) == 0)
        return true;
    if (events & (EPOLLHUP | EPOLLERR)) {
        // A monitor ends when its client goes away (it sends nothing).
        if (c.state == State::monitoring || c.state == State::closing) {
            drop(id);
            return true;
        }
    }
    if (c.state == State::monitoring && (events & EPOLLIN)) {
        char sink[256];
        ssize_t n = ::recv(c.fd.get(), sink, sizeof sink, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            drop(id);
            return true;
        }
    }
    flush(id, c);
    return true;
}

bool ControlServer::accept_some() {
    for (int i = 0; i < 8; i++) {
        int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return true;
        UniqueFd conn(fd);
        // The socket file is root's, mode 0600, in a directory of mode 0700:
        // only root reaches it. The peer's credentials say so once more.
        ucred cred{};
        socklen_t len = sizeof cred;
        if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof cred ||
            cred.uid != 0) {
            WGD_LOG_WARN("control socket: a client that is not root (uid %u) was refused",
                         static_cast<unsigned>(cred.uid));
            continue;
        }
        if (conns_.size() >= limits_.max_clients) {
            WGD_LOG_WARN("control socket: %zu clients already, one refused", conns_.size());
            continue;
        }
        std::uint32_t id = next_id_++;
        Conn& c = conns_[id];
        c.fd = std::move(conn);
        c.deadline = Clock::now() + limits_.request_timeout;
        if (!loop_.watch(c.fd.get(), 0, [this, id](std::uint32_t events) {
                if (!on_event(id, events))
                    loop_.stop(1);
            })) {
            WGD_LOG_WARN("control socket: epoll_ctl: %s", std::strerror(errno));
            conns_.erase(id);
            continue;
        }
        watch(id, c);
    }
    return true;
}

bool ControlServer::read_request(std::uint32_t id, Conn& c) {
    char buf[control::kMaxRequestBytes];
    while (c.in.size() < control::kMaxRequestBytes) {
        ssize_t n = ::recv(c.fd.get(), buf, control::kMaxRequestBytes - c.in.size(), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            drop(id);
            return true;
        }
        c.in.append(buf, static_cast<std::size_t>(n));
    }
    std::size_t end = control::request_end(c.in);
    if (end == 0) {
        if (c.in.size() >= control::kMaxRequestBytes)
            fail(id, c, "request too long");
        return true;
    }
    auto parsed = control::parse_request(std::string_view(c.in).substr(0, end));
    c.in.clear();
    if (auto* error = std::get_if<std::string>(&parsed)) {
        fail(id, c, *error);
        return true;
    }
    const control::Request& r = std::get<control::Request>(parsed);
    if (r.command == control::Command::monitor) {
        c.state = State::monitoring;
        c.json = r.format == control::Format::json;
        c.out = control::format_answer_head(true, "");
        c.head_written = true;
        monitors_++;
        flush(id, c);
        return send_monitor_state();
    }
    c.state = State::waiting;
    c.deadline = Clock::time_point::max(); // leased answers, however long a revoke takes
    control::ControlQuery q{r, invalid_requests, unsupported_requests, monitor_lost_};
    watch(id, c);
    if (!leased_.send(msg::control_request, id, control::encode(q))) {
        WGD_LOG_ERROR("cannot send to leased: %s", std::strerror(errno));
        return false;
    }
    return true;
}

void ControlServer::fail(std::uint32_t id, Conn& c, const std::string& reason) {
    WGD_LOG_DEBUG("control socket: refused a request: %s", reason.c_str());
    c.state = State::closing;
    c.out = control::format_answer_head(false, reason);
    c.head_written = true;
    c.deadline = Clock::now() + limits_.write_timeout;
    flush(id, c);
}

void ControlServer::on_reply(std::uint32_t id, const control::ControlReply& reply) {
    auto it = conns_.find(id);
    if (it == conns_.end() || it->second.state != State::waiting)
        return; // the client went away meanwhile
    Conn& c = it->second;
    if (!c.head_written) {
        c.out += control::format_answer_head(reply.ok, reply.ok ? "" : reply.text);
        c.head_written = true;
    }
    if (reply.ok)
        c.out += reply.text;
    if (reply.last) {
        c.state = State::closing;
        c.deadline = Clock::now() + limits_.write_timeout;
    }
    flush(id, c);
}

void ControlServer::on_events(const std::vector<LeaseEvent>& events) {
    const std::int64_t now = std::time(nullptr);
    for (auto& [id, c] : conns_) {
        if (c.state != State::monitoring)
            continue;
        for (const LeaseEvent& e : events) {
            if (c.lost > 0 && c.out.size() < limits_.monitor_queue_bytes / 2) {
                c.out += c.json ? format_lost_json(c.lost, now) : format_lost_text(c.lost, now);
                c.lost = 0;
            }
            std::string line = c.json ? format_json(e) : format_monitor_line(e);
            if (c.out.size() + line.size() > limits_.monitor_queue_bytes) {
                c.lost++;
                monitor_lost_++;
                continue;
            }
            c.out += line;
        }
    }
    // Written after all are queued: a failed write drops its connection.
    std::vector<std::uint32_t> ids;
    for (auto& [id, c] : conns_)
        if (c.state == State::monitoring)
            ids.push_back(id);
    for (std::uint32_t id : ids)
        if (auto it = conns_.find(id); it != conns_.end())
            flush(id, it->second);
}

void ControlServer::flush(std::uint32_t id, Conn& c) {
    while (!c.out.empty()) {
        ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0) {
            drop(id);
            return;
        }
        c.out.erase(0, static_cast<std::size_t>(n));
        if (c.state == State::closing)
            c.deadline = Clock::now() + limits_.write_timeout;
    }
    if (c.out.empty() && c.state == State::closing) {
        (void)::shutdown(c.fd.get(), SHUT_WR);
        drop(id);
        return;
    }
    watch(id, c);
}

void ControlServer::watch(std::uint32_t id, Conn& c) {
    std::uint32_t events = 0;
    if (c.state == State::reading || c.state == State::monitoring)
        events |= EPOLLIN;
    if (!c.out.empty())
        events |= EPOLLOUT;
    if (!loop_.change(c.fd.get(), events)) {
        WGD_LOG_WARN("control socket: epoll_ctl: %s", std::strerror(errno));
        drop(id);
    }
}

void ControlServer::drop(std::uint32_t id) {
    auto it = conns_.find(id);
    if (it == conns_.end())
        return;
    const bool monitor = it->second.state == State::monitoring;
    loop_.forget(it->second.fd.get());
    conns_.erase(it);
    if (monitor) {
        monitors_--;
        if (!send_monitor_state())
            WGD_LOG_ERROR("cannot send to leased: %s", std::strerror(errno));
    }
}

bool ControlServer::send_monitor_state() {
    return leased_.send(msg::monitor_state, 0, control::encode_monitor_state(monitors_));
}

void ControlServer::sweep() {
    const auto now = Clock::now();
    std::vector<std::uint32_t> late;
    for (auto& [id, c] : conns_)
        if (c.state != State::monitoring && c.state != State::waiting && now >= c.deadline)
            late.push_back(id);
    for (std::uint32_t id : late)
        drop(id);
}

} // namespace wgd::protod
