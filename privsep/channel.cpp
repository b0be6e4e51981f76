#include "privsep/channel.hpp"
#include "common/fatal.hpp"

#include "common/log.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace wgd::privsep {

const char* to_string(FrameError e) {
    switch (e) {
    case FrameError::short_header:
        return "shorter than a header";
    case FrameError::body_too_large:
        return "body larger than 64 KiB";
    case FrameError::size_mismatch:
        return "length field does not match the datagram size";
    case FrameError::unknown_flags:
        return "unknown flags";
    case FrameError::fd_missing:
        return "fd flag set but no fd attached";
    case FrameError::fd_unexpected:
        return "fd attached but fd flag not set";
    }
    return "?";
}

const char* to_string(RecvError e) {
    switch (e) {
    case RecvError::would_block:
        return "no message";
    case RecvError::peer_closed:
        return "peer closed the channel";
    case RecvError::truncated:
        return "truncated message";
    case RecvError::bad_frame:
        return "malformed frame";
    case RecvError::too_many_fds:
        return "more than one fd or unexpected ancillary data";
    case RecvError::io_error:
        return "receive failed";
    }
    return "?";
}

const char* to_string(Verdict v) {
    switch (v) {
    case Verdict::accepted:
        return "accepted";
    case Verdict::unknown_type:
        return "unknown message type";
    case Verdict::wrong_state:
        return "message type not allowed in this state";
    case Verdict::fd_missing:
        return "message requires an fd, none attached";
    case Verdict::too_large:
        return "body larger than the table allows";
    case Verdict::fd_unexpected:
        return "fd attached to a message that takes none";
    }
    return "?";
}

std::variant<Frame, FrameError> decode_frame(std::span<const std::uint8_t> datagram,
                                             bool fd_received) {
    if (datagram.size() < kHeaderSize)
        return FrameError::short_header;
    Header h;
    std::memcpy(&h.type, datagram.data() + 0, 2);
    std::memcpy(&h.flags, datagram.data() + 2, 2);
    std::memcpy(&h.id, datagram.data() + 4, 4);
    std::memcpy(&h.length, datagram.data() + 8, 4);
    if (h.length > kMaxBody)
        return FrameError::body_too_large;
    if (kHeaderSize + h.length != datagram.size())
        return FrameError::size_mismatch;
    if ((h.flags & ~kKnownFlags) != 0)
        return FrameError::unknown_flags;
    const bool fd_flag = (h.flags & kFlagFd) != 0;
    if (fd_flag && !fd_received)
        return FrameError::fd_missing;
    if (!fd_flag && fd_received)
        return FrameError::fd_unexpected;
    return Frame{h, datagram.subspan(kHeaderSize, h.length)};
}

std::vector<std::uint8_t> encode_frame(std::uint16_t type, std::uint32_t id,
                                       std::span<const std::uint8_t> body, bool with_fd) {
    std::vector<std::uint8_t> out(kHeaderSize + body.size());
    const std::uint16_t flags = with_fd ? kFlagFd : 0;
    const auto length = static_cast<std::uint32_t>(body.size());
    std::memcpy(out.data() + 0, &type, 2);
    std::memcpy(out.data() + 2, &flags, 2);
    std::memcpy(out.data() + 4, &id, 4);
    std::memcpy(out.data() + 8, &length, 4);
    if (!body.empty())
        std::memcpy(out.data() + kHeaderSize, body.data(), body.size());
    return out;
}

Channel::Attempt Channel::try_send(std::span<const std::uint8_t> frame, int fd_to_pass) {
    iovec iov{const_cast<std::uint8_t*>(frame.data()), frame.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (fd_to_pass >= 0) {
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &fd_to_pass, sizeof(int));
    }
    for (;;) {
        // SOCK_SEQPACKET sends a datagram whole or not at all.
        if (::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
            return Attempt::sent;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? Attempt::would_block : Attempt::failed;
    }
}

bool Channel::flush() {
    using Clock = std::chrono::steady_clock;
    while (!queue_.empty()) {
        switch (try_send(queue_.front(), -1)) {
        case Attempt::sent:
            queued_bytes_ -= queue_.front().size();
            queue_.pop_front();
            queue_moved_ = Clock::now();
            continue;
        case Attempt::failed:
            return false;
        case Attempt::would_block:
            if (Clock::now() - queue_moved_ > std::chrono::milliseconds(send_timeout_ms_)) {
                errno = ETIMEDOUT;
                return false;
            }
            return true;
        }
    }
    return true;
}

bool Channel::flush_wait() {
    if (!flush_within(std::chrono::milliseconds(send_timeout_ms_)))
        return false;
    if (queue_.empty())
        return true;
    errno = ETIMEDOUT;
    return false;
}

bool Channel::flush_within(std::chrono::milliseconds at_most) {
    const auto deadline = std::chrono::steady_clock::now() + at_most;
    for (;;) {
        if (!flush())
            return false;
        if (queue_.empty())
            return true;
        if (!wait_writable(deadline))
            return errno == ETIMEDOUT;
    }
}

bool Channel::wait_writable(std::chrono::steady_clock::time_point deadline) {
    auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now())
            .count();
    if (left <= 0) {
        errno = ETIMEDOUT;
        return false;
    }
    pollfd p{fd_.get(), POLLOUT, 0};
    return ::poll(&p, 1, int(left)) >= 0 || errno == EINTR;
}

bool Channel::send(std::uint16_t type, std::uint32_t id, std::span<const std::uint8_t> body,
                   int fd_to_pass) {
    if (body.size() > kMaxBody) {
        errno = EMSGSIZE;
        return false;
    }
    std::vector<std::uint8_t> frame = encode_frame(type, id, body, fd_to_pass >= 0);
    if (fd_to_pass >= 0) {
        // Not queued: the descriptor is the caller's once send returns.
        if (!flush_wait())
            return false;
        using Clock = std::chrono::steady_clock;
        const auto deadline = Clock::now() + std::chrono::milliseconds(send_timeout_ms_);
        for (;;) {
            switch (try_send(frame, fd_to_pass)) {
            case Attempt::sent:
                return true;
            case Attempt::failed:
                return false;
            case Attempt::would_block:
                break;
            }
            if (!wait_writable(deadline))
                return false;
        }
    }
    if (!flush())
        return false;
    if (queue_.empty()) {
        switch (try_send(frame, -1)) {
        case Attempt::sent:
            return true;
        case Attempt::failed:
            return false;
        case Attempt::would_block:
            queue_moved_ = std::chrono::steady_clock::now(); // the queue starts now
            break;
        }
    }
    if (queued_bytes_ + frame.size() > kMaxQueued) {
        errno = ENOBUFS;
        return false;
    }
    queued_bytes_ += frame.size();
    queue_.push_back(std::move(frame));
    return true;
}

bool Channel::send_paced(std::uint16_t type, std::uint32_t id, std::span<const std::uint8_t> body) {
    return flush_wait() && send(type, id, body);
}

std::variant<Message, RecvError> Channel::recv() {
    // Room for several fds so that a peer sending more than one is caught
    // (and every one of them closed) rather than silently cut to one.
    constexpr std::size_t kFdRoom = 8;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kFdRoom)];
    iovec iov{buf_.data(), buf_.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;

    ssize_t n;
    do {
        n = ::recvmsg(fd_.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return RecvError::would_block;
        last_errno_ = errno;
        return errno == ECONNRESET ? RecvError::peer_closed : RecvError::io_error;
    }

    // Take ownership of every fd that arrived before looking at anything
    // else, so that each is closed whatever the verdict.
    std::vector<UniqueFd> fds;
    bool foreign_control = false;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (std::size_t i = 0; i < count; ++i) {
                int fd;
                std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                fds.emplace_back(fd);
            }
        } else {
            foreign_control = true;
        }
    }
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
        return RecvError::truncated;
    if (n == 0 && fds.empty())
        return RecvError::peer_closed;
    if (fds.size() > 1 || foreign_control)
        return RecvError::too_many_fds;

    auto decoded =
        decode_frame(std::span<const std::uint8_t>(buf_.data(), std::size_t(n)), fds.size() == 1);
    if (auto* err = std::get_if<FrameError>(&decoded)) {
        last_frame_error_ = *err;
        return RecvError::bad_frame;
    }
    const Frame& f = std::get<Frame>(decoded);
    Message m;
    m.type = f.header.type;
    m.id = f.header.id;
    m.body.assign(f.body.begin(), f.body.end());
    if (!fds.empty())
        m.fd = std::move(fds.front());
    return m;
}

std::pair<UniqueFd, UniqueFd> make_channel_pair() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return {};
    // Best effort: the kernel caps this at net.core.wmem_max/rmem_max, and
    // the default (about 208 KiB) already holds three maximum messages.
    const int size = 1 << 20;
    for (int fd : sv) {
        (void)::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    }
    return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

Verdict Acceptance::check(std::uint32_t state, std::uint16_t type, bool has_fd,
                          std::size_t body_size) const {
    bool type_known = false;
    for (const AcceptRule& r : rules_) {
        if (r.type != type)
            continue;
        type_known = true;
        if (r.state != state)
            continue;
        if (r.fd_required && !has_fd)
            return Verdict::fd_missing;
        if (!r.fd_required && has_fd)
            return Verdict::fd_unexpected;
        if (body_size > r.max_body)
            return Verdict::too_large;
        return Verdict::accepted;
    }
    return type_known ? Verdict::wrong_state : Verdict::unknown_type;
}

std::uint32_t Acceptance::min_interval_ms(std::uint16_t type) const {
    std::uint32_t ms = 0;
    for (const AcceptRule& r : rules_)
        if (r.type == type)
            ms = std::max(ms, r.min_interval_ms);
    return ms;
}

void Acceptance::enforce(std::uint32_t state, const Message& m, const char* peer) const {
    Verdict v = check(state, m);
    if (v == Verdict::accepted)
        return;
    WGD_LOG_ERROR("protocol violation by %s: type %u in state %u: %s", peer, unsigned(m.type),
                  unsigned(state), to_string(v));
    exit_fatally();
}

void channel_failed(const Channel& ch, RecvError e, const char* peer) {
    if (e == RecvError::bad_frame)
        WGD_LOG_ERROR("protocol violation by %s: %s", peer, to_string(ch.last_frame_error()));
    else if (e == RecvError::io_error)
        WGD_LOG_ERROR("channel to %s: %s: %s", peer, to_string(e), std::strerror(ch.last_errno()));
    else if (e == RecvError::peer_closed) // how a child is told to stop: netd logs a crash
        WGD_LOG_INFO("%s closed the channel: stopping", peer);
    else
        WGD_LOG_ERROR("protocol violation by %s: %s", peer, to_string(e));
    exit_fatally();
}

} // namespace wgd::privsep
