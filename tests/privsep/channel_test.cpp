#include "privsep/channel.hpp"
#include "tests/privsep/recv_within.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <gtest/gtest.h>

using namespace wgd;
using namespace wgd::privsep;

namespace {

std::vector<std::uint8_t> bytes(std::string_view s) {
    return {s.begin(), s.end()};
}

FrameError frame_error(const std::vector<std::uint8_t>& datagram, bool fd) {
    auto r = decode_frame(datagram, fd);
    EXPECT_TRUE(std::holds_alternative<FrameError>(r));
    return std::holds_alternative<FrameError>(r) ? std::get<FrameError>(r)
                                                 : FrameError::short_header;
}

// Sends raw bytes and fds as one datagram, bypassing Channel's encoder: a
// hostile peer.
void send_raw(int sock, const std::vector<std::uint8_t>& datagram, std::vector<int> fds = {}) {
    iovec iov{const_cast<std::uint8_t*>(datagram.data()), datagram.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
    if (!fds.empty()) {
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    ASSERT_EQ(::sendmsg(sock, &msg, MSG_NOSIGNAL), ssize_t(datagram.size())) << strerror(errno);
}

struct Pipe {
    UniqueFd r, w;
    Pipe() {
        int p[2];
        EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
        r.reset(p[0]);
        w.reset(p[1]);
    }
};

// True when nobody holds the read end of the pipe any more.
bool reader_gone(int write_end) {
    signal(SIGPIPE, SIG_IGN);
    return ::write(write_end, "x", 1) < 0 && errno == EPIPE;
}

RecvError recv_error(Channel& ch) {
    auto r = wgd::privsep::testing::recv_within(ch, 1000);
    EXPECT_TRUE(std::holds_alternative<RecvError>(r));
    return std::holds_alternative<RecvError>(r) ? std::get<RecvError>(r) : RecvError::io_error;
}

} // namespace

TEST(Frame, EncodedFrameDecodesToTypeIdAndBody) {
    auto body = bytes("hello");
    auto datagram = encode_frame(7, 42, body, false);
    ASSERT_EQ(datagram.size(), kHeaderSize + body.size());
    auto r = decode_frame(datagram, false);
    ASSERT_TRUE(std::holds_alternative<Frame>(r));
    const Frame& f = std::get<Frame>(r);
    EXPECT_EQ(f.header.type, 7);
    EXPECT_EQ(f.header.id, 42u);
    EXPECT_EQ(f.header.flags, 0);
    EXPECT_EQ(std::vector<std::uint8_t>(f.body.begin(), f.body.end()), body);
}

TEST(Frame, DatagramShorterThanHeaderIsRejected) {
    auto datagram = encode_frame(1, 1, {}, false);
    datagram.pop_back();
    EXPECT_EQ(frame_error(datagram, false), FrameError::short_header);
}

TEST(Frame, LengthFieldMustMatchDatagramSizeExactly) {
    auto datagram = encode_frame(1, 1, bytes("abcd"), false);
    auto longer = datagram;
    longer.push_back(0);
    EXPECT_EQ(frame_error(longer, false), FrameError::size_mismatch);
    auto shorter = datagram;
    shorter.pop_back();
    EXPECT_EQ(frame_error(shorter, false), FrameError::size_mismatch);
}

TEST(Frame, BodyOverLimitIsRejectedEvenIfSizesAgree) {
    std::vector<std::uint8_t> big(kMaxBody + 1, 0xaa);
    auto datagram = encode_frame(1, 1, big, false);
    EXPECT_EQ(frame_error(datagram, false), FrameError::body_too_large);
    std::vector<std::uint8_t> max(kMaxBody, 0xaa);
    EXPECT_TRUE(std::holds_alternative<Frame>(decode_frame(encode_frame(1, 1, max, false), false)));
}

TEST(Frame, UnknownFlagIsRejected) {
    auto datagram = encode_frame(1, 1, {}, false);
    datagram[2] = 0x2;
    EXPECT_EQ(frame_error(datagram, false), FrameError::unknown_flags);
}

TEST(Frame, FdFlagMustMatchWhetherAnFdArrived) {
    EXPECT_EQ(frame_error(encode_frame(1, 1, {}, true), false), FrameError::fd_missing);
    EXPECT_EQ(frame_error(encode_frame(1, 1, {}, false), true), FrameError::fd_unexpected);
    EXPECT_TRUE(std::holds_alternative<Frame>(decode_frame(encode_frame(1, 1, {}, true), true)));
}

TEST(Channel, MessageArrivesWhole) {
    auto [a, b] = make_channel_pair();
    ASSERT_TRUE(a && b);
    Channel ca(std::move(a)), cb(std::move(b));
    auto body = bytes("one message");
    ASSERT_TRUE(ca.send(3, 99, body));
    auto r = wgd::privsep::testing::recv_within(cb, 1000);
    ASSERT_TRUE(std::holds_alternative<Message>(r)) << to_string(std::get<RecvError>(r));
    Message& m = std::get<Message>(r);
    EXPECT_EQ(m.type, 3);
    EXPECT_EQ(m.id, 99u);
    EXPECT_EQ(m.body, body);
    EXPECT_FALSE(m.fd.valid());
}

TEST(Channel, EmptyChannelWouldBlock) {
    auto [a, b] = make_channel_pair();
    Channel cb(std::move(b));
    auto r = cb.recv();
    ASSERT_TRUE(std::holds_alternative<RecvError>(r));
    EXPECT_EQ(std::get<RecvError>(r), RecvError::would_block);
}

TEST(Channel, MaximumBodyFitsAndLargerIsRefusedBySender) {
    auto [a, b] = make_channel_pair();
    Channel ca(std::move(a)), cb(std::move(b));
    std::vector<std::uint8_t> max(kMaxBody, 0x5a);
    ASSERT_TRUE(ca.send(1, 1, max));
    auto r = wgd::privsep::testing::recv_within(cb, 1000);
    ASSERT_TRUE(std::holds_alternative<Message>(r));
    EXPECT_EQ(std::get<Message>(r).body, max);
    std::vector<std::uint8_t> over(kMaxBody + 1);
    errno = 0;
    EXPECT_FALSE(ca.send(1, 1, over));
    EXPECT_EQ(errno, EMSGSIZE);
}

TEST(Channel, PassedFdReachesTheReceiver) {
    auto [a, b] = make_channel_pair();
    Channel ca(std::move(a)), cb(std::move(b));
    Pipe p;
    ASSERT_TRUE(ca.send(5, 1, bytes("fd"), p.w.get()));
    p.w.reset();
    auto r = wgd::privsep::testing::recv_within(cb, 1000);
    ASSERT_TRUE(std::holds_alternative<Message>(r));
    Message& m = std::get<Message>(r);
    ASSERT_TRUE(m.fd.valid());
    EXPECT_TRUE(::fcntl(m.fd.get(), F_GETFD) & FD_CLOEXEC);
    ASSERT_EQ(::write(m.fd.get(), "z", 1), 1);
    char c = 0;
    ASSERT_EQ(::read(p.r.get(), &c, 1), 1);
    EXPECT_EQ(c, 'z');
}

TEST(Channel, ClosedPeerIsReported) {
    auto [a, b] = make_channel_pair();
    Channel cb(std::move(b));
    a.reset();
    EXPECT_EQ(recv_error(cb), RecvError::peer_closed);
}

TEST(Channel, OversizedDatagramIsTruncatedAndRejected) {
    auto [a, b] = make_channel_pair();
    Channel cb(std::move(b));
    send_raw(a.get(), std::vector<std::uint8_t>(kMaxFrame + 1, 0));
    EXPECT_EQ(recv_error(cb), RecvError::truncated);
}

TEST(Channel, WrongLengthFieldIsABadFrame) {
    auto [a, b] = make_channel_pair();
    Channel cb(std::move(b));
    auto datagram = encode_frame(1, 1, bytes("abc"), false);
    datagram.push_back('!');
    send_raw(a.get(), datagram);
    EXPECT_EQ(recv_error(cb), RecvError::bad_frame);
    EXPECT_EQ(cb.last_frame_error(), FrameError::size_mismatch);
}

TEST(Channel, FdWhereNoneIsDeclaredIsRejectedAndClosed) {
    auto [a, b] = make_channel_pair();
    Channel cb(std::move(b));
    Pipe p;
    send_raw(a.get(), encode_frame(1, 1, {}, false), {p.r.get()});
    p.r.reset();
    EXPECT_EQ(recv_error(cb), RecvError::bad_frame);
    EXPECT_EQ(cb.last_frame_error(), FrameError::fd_unexpected);
    EXPECT_TRUE(reader_gone(p.w.get())) << "the unexpected fd was kept open";
}

TEST(Channel, DeclaredFdThatNeverCameIsRejected) {
    auto [a, b] = make_channel_pair();
    Channel cb(std::move(b));
    send_raw(a.get(), encode_frame(1, 1, {}, true));
    EXPECT_EQ(recv_error(cb), RecvError::bad_frame);
    EXPECT_EQ(cb.last_frame_error(), FrameError::fd_missing);
}

TEST(Channel, TwoFdsInOneMessageAreRejectedAndBothClosed) {
    auto [a, b] = make_channel_pair();
    Channel cb(std::move(b));
    Pipe p1, p2;
    send_raw(a.get(), encode_frame(1, 1, {}, true), {p1.r.get(), p2.r.get()});
    p1.r.reset();
    p2.r.reset();
    EXPECT_EQ(recv_error(cb), RecvError::too_many_fds);
    EXPECT_TRUE(reader_gone(p1.w.get()));
    EXPECT_TRUE(reader_gone(p2.w.get()));
}

// Receives everything pending on `c`, flushing `c`'s own queue meanwhile;
// the ids in arrival order.
std::vector<std::uint32_t> drain_ids(Channel& c) {
    std::vector<std::uint32_t> ids;
    for (;;) {
        auto r = c.recv();
        if (auto* m = std::get_if<Message>(&r)) {
            ids.push_back(m->id);
            continue;
        }
        EXPECT_EQ(std::get<RecvError>(r), RecvError::would_block);
        return ids;
    }
}

TEST(Channel, SendQueuesWhatAFullSocketCannotTakeAndFlushDeliversItInOrder) {
    auto [a, b] = make_channel_pair();
    Channel ca(std::move(a)), cb(std::move(b));
    std::vector<std::uint8_t> max(kMaxBody, 1);
    for (std::uint32_t i = 0; i < 64; ++i) // 4 MiB: more than any socket buffer takes
        ASSERT_TRUE(ca.send(1, i, max)) << strerror(errno);
    EXPECT_TRUE(ca.wants_write());
    EXPECT_GT(ca.queued_bytes(), 0u);
    std::vector<std::uint32_t> got;
    while (got.size() < 64) {
        auto more = drain_ids(cb);
        ASSERT_TRUE(!more.empty() || ca.wants_write()) << "nothing arrives, nothing waits";
        got.insert(got.end(), more.begin(), more.end());
        ASSERT_TRUE(ca.flush()) << strerror(errno);
    }
    EXPECT_FALSE(ca.wants_write());
    EXPECT_EQ(ca.queued_bytes(), 0u);
    for (std::uint32_t i = 0; i < 64; ++i)
        EXPECT_EQ(got[i], i);
}

TEST(Channel, TwoEndsSendingLargeBatchesToEachOtherNeverWaitOnEachOther) {
    // The crossing that would hold both processes in send until the timeout
    // if a send waited for the peer: each end sends 4 MiB before reading
    // anything.
    auto [a, b] = make_channel_pair();
    Channel ca(std::move(a)), cb(std::move(b));
    ca.set_send_timeout_ms(60'000);
    cb.set_send_timeout_ms(60'000);
    std::vector<std::uint8_t> max(kMaxBody, 2);
    const auto start = std::chrono::steady_clock::now();
    for (std::uint32_t i = 0; i < 64; ++i) {
        ASSERT_TRUE(ca.send(1, i, max));
        ASSERT_TRUE(cb.send(2, i, max));
    }
    // Nobody read yet, so nothing could have waited for the other side to.
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
    std::size_t at_a = 0, at_b = 0;
    while (at_a < 64 || at_b < 64) {
        at_a += drain_ids(ca).size();
        at_b += drain_ids(cb).size();
        ASSERT_TRUE(ca.flush() && cb.flush());
    }
    EXPECT_EQ(at_a, 64u);
    EXPECT_EQ(at_b, 64u);
}

TEST(Channel, QueueIsBoundedForAPeerThatNeverReads) {
    auto [a, b] = make_channel_pair();
    Channel ca(std::move(a));
    std::vector<std::uint8_t> max(kMaxBody, 1);
    bool sent = true;
    int i = 0;
    for (; i < 1000 && sent; ++i)
        sent = ca.send(1, 1, max);
    EXPECT_FALSE(sent);
    EXPECT_EQ(errno, ENOBUFS);
    EXPECT_LE(ca.queued_bytes(), kMaxQueued);
    EXPECT_GT(i, 64); // the socket and the queue took their share first
}

TEST(Channel, SendGivesUpWhenTheQueueStandsStillForTheTimeout) {
    auto [a, b] = make_channel_pair();
    Channel ca(std::move(a));
    ca.set_send_timeout_ms(100);
    std::vector<std::uint8_t> max(kMaxBody, 1);
    while (!ca.wants_write())
        ASSERT_TRUE(ca.send(1, 1, max));
    EXPECT_TRUE(ca.flush()) << "not yet: the queue has just started";
    ::usleep(200 * 1000);
    EXPECT_FALSE(ca.send(1, 1, max));
    EXPECT_EQ(errno, ETIMEDOUT);
    EXPECT_FALSE(ca.flush());
    EXPECT_EQ(errno, ETIMEDOUT);
}

TEST(Channel, PacedSendWaitsForTheQueueToEmptyWhileTheReaderReads) {
    auto [a, b] = make_channel_pair();
    Channel ca(std::move(a)), cb(std::move(b));
    std::vector<std::uint8_t> max(kMaxBody, 1);
    pid_t reader = ::fork();
    if (reader == 0) {
        ::usleep(200 * 1000); // let the writer fill the buffer first
        int got = 0;
        while (got < 256) {
            auto r = wgd::privsep::testing::recv_within(cb, 5000);
            if (!std::holds_alternative<Message>(r))
                ::_exit(1);
            ++got;
        }
        ::_exit(0);
    }
    std::size_t most_queued = 0;
    for (std::uint32_t i = 0; i < 256; ++i) { // 16 MiB: over the queue's bound
        ASSERT_TRUE(ca.send_paced(1, i, max)) << strerror(errno);
        most_queued = std::max(most_queued, ca.queued_bytes());
    }
    EXPECT_LE(most_queued, kMaxFrame) << "a paced stream holds one message at a time";
    while (ca.wants_write()) {
        ASSERT_TRUE(ca.flush());
        ::usleep(1000);
    }
    int status = 0;
    ::waitpid(reader, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(Channel, MessageWithAnFdWaitsForTheQueueAndArrivesAfterIt) {
    auto [a, b] = make_channel_pair();
    Channel ca(std::move(a)), cb(std::move(b));
    std::vector<std::uint8_t> max(kMaxBody, 1);
    std::uint32_t queued = 0;
    while (!ca.wants_write())
        ASSERT_TRUE(ca.send(1, queued++, max));
    pid_t reader = ::fork();
    if (reader == 0) {
        ::usleep(100 * 1000);
        std::uint32_t expected = 0;
        for (;;) {
            auto r = wgd::privsep::testing::recv_within(cb, 5000);
            auto* m = std::get_if<Message>(&r);
            if (!m || m->id != expected)
                ::_exit(1);
            if (m->type == 2)
                ::_exit(m->fd.valid() ? 0 : 2);
            ++expected;
        }
    }
    auto [x, y] = make_channel_pair();
    ASSERT_TRUE(ca.send(2, queued, {}, x.get())) << strerror(errno);
    EXPECT_FALSE(ca.wants_write());
    int status = 0;
    ::waitpid(reader, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

namespace {
enum : std::uint32_t { kStarting = 0, kRunning = 1 };
enum : std::uint16_t { kHello = 1, kSocket = 2, kOrder = 3 };
const Acceptance kTable{
    {kStarting, kHello, false},
    {kStarting, kSocket, true},
    {kRunning, kOrder, false},
};
} // namespace

TEST(Acceptance, ListedTypeInItsStateIsAccepted) {
    EXPECT_EQ(kTable.check(kStarting, kHello, false), Verdict::accepted);
    EXPECT_EQ(kTable.check(kStarting, kSocket, true), Verdict::accepted);
    EXPECT_EQ(kTable.check(kRunning, kOrder, false), Verdict::accepted);
}

TEST(Acceptance, UnknownTypeIsRejected) {
    EXPECT_EQ(kTable.check(kStarting, 77, false), Verdict::unknown_type);
}

TEST(Acceptance, KnownTypeInAnotherStateIsRejected) {
    EXPECT_EQ(kTable.check(kRunning, kHello, false), Verdict::wrong_state);
    EXPECT_EQ(kTable.check(kStarting, kOrder, false), Verdict::wrong_state);
}

TEST(Acceptance, FdMustBePresentExactlyWhenTheTableSaysSo) {
    EXPECT_EQ(kTable.check(kStarting, kSocket, false), Verdict::fd_missing);
    EXPECT_EQ(kTable.check(kStarting, kHello, true), Verdict::fd_unexpected);
}

TEST(Acceptance, EnforceEndsTheProcessOnViolation) {
    Message m;
    m.type = 77;
    EXPECT_EXIT(kTable.enforce(kStarting, m, "test peer"), ::testing::ExitedWithCode(1),
                "protocol violation by test peer");
}

TEST(Channel, FlushWithinWaitsNoLongerThanAskedAndLeavesTheRestQueued) {
    auto [a, b] = make_channel_pair();
    Channel ca(std::move(a)), cb(std::move(b));
    std::vector<std::uint8_t> max(kMaxBody, 3);
    while (!ca.wants_write())
        ASSERT_TRUE(ca.send(1, 1, max));
    const auto start = std::chrono::steady_clock::now();
    EXPECT_TRUE(ca.flush_within(std::chrono::milliseconds(50))); // nobody reads
    EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(50));
    EXPECT_TRUE(ca.wants_write());
    // Once the peer reads, the queue empties within the wait.
    while (ca.wants_write()) {
        drain_ids(cb);
        ASSERT_TRUE(ca.flush_within(std::chrono::milliseconds(50)));
    }
    EXPECT_FALSE(ca.wants_write());
}
