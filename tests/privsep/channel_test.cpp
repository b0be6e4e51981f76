#include "privsep/channel.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
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
    auto r = ch.recv_wait(1000);
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
    auto r = cb.recv_wait(1000);
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
    auto r = cb.recv_wait(1000);
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
    auto r = cb.recv_wait(1000);
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

TEST(Channel, SendWaitsOnAFullNonBlockingSocketInsteadOfFailing) {
    auto [a, b] = make_channel_pair();
    ASSERT_EQ(::fcntl(a.get(), F_SETFL, O_NONBLOCK), 0);
    Channel ca(std::move(a)), cb(std::move(b));
    std::vector<std::uint8_t> max(kMaxBody, 1);
    pid_t reader = ::fork();
    if (reader == 0) {
        ::usleep(200 * 1000); // let the writer fill the buffer first
        int got = 0;
        while (got < 64) {
            auto r = cb.recv_wait(5000);
            if (!std::holds_alternative<Message>(r))
                ::_exit(1);
            ++got;
        }
        ::_exit(0);
    }
    for (int i = 0; i < 64; ++i)
        ASSERT_TRUE(ca.send(1, std::uint32_t(i), max)) << strerror(errno);
    int status = 0;
    ::waitpid(reader, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(Channel, SendGivesUpOnAPeerThatStopsReading) {
    auto [a, b] = make_channel_pair(); // blocking sockets: the timeout still holds
    Channel ca(std::move(a));
    ca.set_send_timeout_ms(200);
    std::vector<std::uint8_t> max(kMaxBody, 1);
    bool sent = true;
    int i = 0;
    for (; i < 1000 && sent; ++i)
        sent = ca.send(1, 1, max);
    EXPECT_FALSE(sent);
    EXPECT_EQ(errno, ETIMEDOUT);
    EXPECT_GT(i, 1); // the buffer took some messages before it was full
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
