// Framed messages between the processes of the suite, over SOCK_SEQPACKET
// socketpairs (one datagram = one message, at most one fd per message).
//
// Frame layout (host byte order, both ends are on the same machine):
//
//     offset 0  u16 type     message type, defined by each pair of peers
//     offset 2  u16 flags    bit 0: an fd is attached (SCM_RIGHTS); others must be 0
//     offset 4  u32 id       free for the peers (connection id, request id, ...)
//     offset 8  u32 length   body bytes that follow; header + length == datagram size
//     offset 12 body         at most kMaxBody bytes
//
// The frame decoder is pure (no I/O) so it is unit-tested and fuzzed on its
// own; Channel does the socket I/O and hands every datagram to it. Whether a
// type is known and allowed is the receiver's business: Acceptance.
#pragma once

#include "common/fd.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <optional>
#include <span>
#include <utility>
#include <variant>
#include <vector>

namespace wgd::privsep {

struct Header {
    std::uint16_t type = 0;
    std::uint16_t flags = 0;
    std::uint32_t id = 0;
    std::uint32_t length = 0;
};

inline constexpr std::size_t kHeaderSize = 12;
inline constexpr std::size_t kMaxBody = 64 * 1024;
inline constexpr std::size_t kMaxFrame = kHeaderSize + kMaxBody;
inline constexpr std::uint16_t kFlagFd = 0x1;
inline constexpr std::uint16_t kKnownFlags = kFlagFd;
// What a channel's queue may hold (128 maximum messages): beyond it the
// peer is not keeping up with what the protocol asks of it.
inline constexpr std::size_t kMaxQueued = 128 * kMaxFrame;

struct Frame {
    Header header;
    std::span<const std::uint8_t> body; // points into the decoded bytes
};

enum class FrameError {
    short_header,   // fewer than kHeaderSize bytes
    body_too_large, // length > kMaxBody
    size_mismatch,  // header + length != datagram size
    unknown_flags,  // a flag bit other than kFlagFd
    fd_missing,     // flag says an fd is attached, none arrived
    fd_unexpected,  // an fd arrived, flag says none
};
const char* to_string(FrameError e);

// Checks one received datagram. fd_received: whether exactly one fd came with it.
std::variant<Frame, FrameError> decode_frame(std::span<const std::uint8_t> datagram,
                                             bool fd_received);
// The datagram for one message; the body must be at most kMaxBody bytes.
std::vector<std::uint8_t> encode_frame(std::uint16_t type, std::uint32_t id,
                                       std::span<const std::uint8_t> body, bool with_fd);

struct Message {
    std::uint16_t type = 0;
    std::uint32_t id = 0;
    std::vector<std::uint8_t> body;
    UniqueFd fd; // valid only when the sender attached one
};

enum class RecvError {
    would_block,  // nothing to read now (not a failure): poll fd() again
    peer_closed,  // EOF: the peer process is gone
    truncated,    // MSG_TRUNC or MSG_CTRUNC: datagram or control data did not fit
    bad_frame,    // decode_frame refused it (see last_frame_error())
    too_many_fds, // more than one fd, or ancillary data other than SCM_RIGHTS
    io_error,     // recvmsg failed (errno kept in last_errno())
};
const char* to_string(RecvError e);

// Any RecvError but would_block means the peer cannot be trusted any more:
// the owner logs it and ends the process (fail closed).
class Channel {
  public:
    Channel() = default;
    explicit Channel(UniqueFd fd) : fd_(std::move(fd)) {}

    int fd() const { return fd_.get(); }
    bool valid() const { return fd_.valid(); }

    // Sends one message without waiting: what the socket buffer cannot take
    // now waits in the channel's queue, in order, and flush() writes it when
    // the owner's loop sees the socket writable (wants_write()), as imsg's
    // msgbuf does. So two processes sending large batches to each other at
    // the same moment never wait on each other. A message with a descriptor
    // (fd_to_pass, -1 for none; it stays owned by the caller) is never
    // queued: it waits for the queue to empty and the socket to take it, at
    // most send_timeout_ms. Returns false with errno set: EMSGSIZE for a body
    // over kMaxBody, EPIPE when the peer is gone, ENOBUFS when kMaxQueued
    // bytes already wait, ETIMEDOUT when nothing queued went out for
    // send_timeout_ms (the peer stopped reading): all fatal for the suite.
    [[nodiscard]] bool send(std::uint16_t type, std::uint32_t id,
                            std::span<const std::uint8_t> body, int fd_to_pass = -1);
    // For a long stream of messages (netd's peers, leased's answers to
    // `show`): waits until the queue is empty, then sends, so that the
    // sender holds one message of the stream at a time, never all of it.
    // The receiver never waits on its own sends, so the wait is short.
    [[nodiscard]] bool send_paced(std::uint16_t type, std::uint32_t id,
                                  std::span<const std::uint8_t> body);
    // Writes queued messages while the socket takes them; false as send().
    [[nodiscard]] bool flush();
    // Writes the queue, waiting at most `at_most` for it to empty; false
    // only as flush(). Messages may still wait afterwards (wants_write()):
    // for a sender that paces a stream only while its peer keeps up.
    [[nodiscard]] bool flush_within(std::chrono::milliseconds at_most);
    // True while messages wait: the owner's loop then waits for writability too.
    bool wants_write() const { return !queue_.empty(); }
    // While messages wait: the moment flush() gives up on them (ETIMEDOUT)
    // unless one goes out before. The owner's loop wakes then to call it.
    std::optional<std::chrono::steady_clock::time_point> stall_deadline() const {
        if (queue_.empty())
            return std::nullopt;
        return queue_moved_ + std::chrono::milliseconds(send_timeout_ms_);
    }
    std::size_t queued_bytes() const { return queued_bytes_; }

    // Never blocks: receives one datagram if there is one.
    std::variant<Message, RecvError> recv();

    void set_send_timeout_ms(int ms) { send_timeout_ms_ = ms; }

    FrameError last_frame_error() const { return last_frame_error_; }
    int last_errno() const { return last_errno_; }

  private:
    UniqueFd fd_;
    // Sends one datagram now or not at all: sent, would_block or failed.
    enum class Attempt { sent, would_block, failed };
    Attempt try_send(std::span<const std::uint8_t> frame, int fd_to_pass);
    // Waits, at most send_timeout_ms, until the queue is empty.
    bool flush_wait();
    // Waits until the socket may take a message; false (ETIMEDOUT) once
    // the deadline has passed.
    bool wait_writable(std::chrono::steady_clock::time_point deadline);

    std::vector<std::uint8_t> buf_ = std::vector<std::uint8_t>(kMaxFrame);
    std::deque<std::vector<std::uint8_t>> queue_;
    std::size_t queued_bytes_ = 0;
    // When the queue last moved (a message went out, or it started): a
    // queue that stands still for send_timeout_ms means a peer that stopped
    // reading.
    std::chrono::steady_clock::time_point queue_moved_{};
    FrameError last_frame_error_ = FrameError::short_header;
    int last_errno_ = 0;
    int send_timeout_ms_ = 10000;
};

// A SOCK_SEQPACKET socketpair, close-on-exec, buffers big enough for
// several maximum-size messages in flight.
std::pair<UniqueFd, UniqueFd> make_channel_pair();

// What a receiver accepts, as a table: in state `state`, message `type` is
// allowed, with an fd (fd_required) or without one, with a body of at most
// max_body bytes, and acted on at most once per min_interval_ms (sooner:
// the receiver coalesces it with the next, see Acceptance::min_interval_ms;
// never fatal, an honest peer may be quick). Everything else is a protocol
// violation. Like OpenSSH's monitor table, but per channel and peer.
struct AcceptRule {
    std::uint32_t state;
    std::uint16_t type;
    bool fd_required;
    std::uint32_t max_body = kMaxBody;
    std::uint32_t min_interval_ms = 0;
};

enum class Verdict {
    accepted,
    unknown_type, // no rule mentions this type in any state
    wrong_state,  // the type exists, not in this state
    fd_missing,
    fd_unexpected,
    too_large, // body over the rule's max_body
};
const char* to_string(Verdict v);

class Acceptance {
  public:
    Acceptance(std::initializer_list<AcceptRule> rules) : rules_(rules) {}
    explicit Acceptance(std::vector<AcceptRule> rules) : rules_(std::move(rules)) {}

    Verdict check(std::uint32_t state, std::uint16_t type, bool has_fd,
                  std::size_t body_size = 0) const;
    Verdict check(std::uint32_t state, const Message& m) const {
        return check(state, m.type, m.fd.valid(), m.body.size());
    }
    // The least time between two messages of `type` that the receiver acts
    // on (the largest of its rules); 0: no limit.
    std::uint32_t min_interval_ms(std::uint16_t type) const;
    const std::vector<AcceptRule>& rules() const { return rules_; }
    // check(), and on anything but accepted: log "<peer> sent ...: <why>"
    // and _exit(1). The suite then goes down through supervision.
    void enforce(std::uint32_t state, const Message& m, const char* peer) const;

  private:
    std::vector<AcceptRule> rules_;
};

// Logs why a channel failed (peer gone, bad frame, ...) and _exit(1): for the
// owner's loop when recv() returns anything but would_block.
[[noreturn]] void channel_failed(const Channel& ch, RecvError e, const char* peer);

// Hands each pending message (at most `max`, so that one busy peer cannot
// starve the others of a loop) to handle(Message&); a broken channel ends
// the process through channel_failed.
template <class Handle>
void drain(Channel& ch, const char* peer, int max, Handle handle) {
    for (int i = 0; i < max; i++) {
        auto r = ch.recv();
        if (auto* e = std::get_if<RecvError>(&r)) {
            if (*e == RecvError::would_block)
                return;
            channel_failed(ch, *e, peer);
        }
        handle(std::get<Message>(r));
    }
}

} // namespace wgd::privsep
