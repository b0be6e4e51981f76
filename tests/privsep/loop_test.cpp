#include "privsep/loop.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include <gtest/gtest.h>

using namespace wgd;
using namespace wgd::privsep;
using namespace std::chrono_literals;

namespace {

struct Pipe {
    UniqueFd read, write;
    Pipe() {
        int fds[2];
        EXPECT_EQ(::pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
        read.reset(fds[0]);
        write.reset(fds[1]);
    }
    void poke() const { ASSERT_EQ(::write(write.get(), "x", 1), 1); }
    void drain() const {
        char buf[64];
        while (::read(read.get(), buf, sizeof buf) > 0) {
        }
    }
};

Loop open_loop() {
    auto loop = Loop::open();
    EXPECT_TRUE(loop.has_value());
    return std::move(loop.value());
}

std::size_t drain_count(Channel& ch) {
    std::size_t n = 0;
    for (;;) {
        auto r = ch.recv();
        if (std::holds_alternative<RecvError>(r))
            return n;
        n++;
    }
}

} // namespace

TEST(Loop, HandlerRunsWhenItsDescriptorIsReadable) {
    Loop loop = open_loop();
    Pipe quiet, ready;
    int quiet_calls = 0, ready_calls = 0;
    ASSERT_TRUE(loop.watch(quiet.read.get(), EPOLLIN, [&](std::uint32_t) { quiet_calls++; }));
    ASSERT_TRUE(loop.watch(ready.read.get(), EPOLLIN, [&](std::uint32_t events) {
        EXPECT_TRUE(events & EPOLLIN);
        ready_calls++;
        ready.drain();
        loop.stop(7);
    }));
    ready.poke();
    EXPECT_EQ(loop.run(), 7);
    EXPECT_EQ(ready_calls, 1);
    EXPECT_EQ(quiet_calls, 0);
}

TEST(Loop, ADescriptorIsWatchedOnlyOnce) {
    Loop loop = open_loop();
    Pipe p;
    ASSERT_TRUE(loop.watch(p.read.get(), EPOLLIN, [](std::uint32_t) {}));
    EXPECT_FALSE(loop.watch(p.read.get(), EPOLLIN, [](std::uint32_t) {}));
    EXPECT_EQ(errno, EEXIST);
    loop.forget(p.read.get());
    EXPECT_TRUE(loop.watch(p.read.get(), EPOLLIN, [](std::uint32_t) {}));
}

TEST(Loop, TimersFireInTheirOrderAndADisarmedOneNever) {
    Loop loop = open_loop();
    std::vector<std::string> fired;
    auto late = loop.add_timer([&] {
        fired.push_back("late");
        loop.stop(0);
    });
    auto early = loop.add_timer([&] { fired.push_back("early"); });
    auto never = loop.add_timer([&] { fired.push_back("never"); });
    loop.arm_after(late, 60ms);
    loop.arm_after(early, 10ms);
    loop.arm_after(never, 30ms);
    loop.disarm(never);
    const auto start = Loop::Clock::now();
    EXPECT_EQ(loop.run(), 0);
    EXPECT_GE(Loop::Clock::now() - start, 60ms);
    EXPECT_EQ(fired, (std::vector<std::string>{"early", "late"}));
    EXPECT_FALSE(loop.deadline(late)); // a due timer is disarmed before it runs
}

TEST(Loop, ForgottenDescriptorGetsNoStaleEventEvenWhenItsNumberIsReused) {
    Loop loop = open_loop();
    Pipe first, second;
    // Both ready in one round, the first first (epoll reports in the order
    // they became ready).
    first.poke();
    second.poke();
    const int second_fd = second.read.get();
    int first_calls = 0, old_second_calls = 0, new_second_calls = 0;
    ASSERT_TRUE(loop.watch(first.read.get(), EPOLLIN, [&](std::uint32_t) {
        // Forgets the second pipe and puts a silent descriptor at its
        // number: the event the round still holds for it is stale.
        first_calls++;
        first.drain();
        loop.forget(second_fd);
        UniqueFd silent(::dup(first.write.get()));
        ASSERT_EQ(::dup2(silent.get(), second_fd), second_fd);
        ASSERT_TRUE(loop.watch(second_fd, EPOLLIN, [&](std::uint32_t) { new_second_calls++; }));
    }));
    ASSERT_TRUE(loop.watch(second_fd, EPOLLIN, [&](std::uint32_t) { old_second_calls++; }));
    loop.after_each_round([&] { loop.stop(0); });
    EXPECT_EQ(loop.run(), 0);
    EXPECT_EQ(first_calls, 1);
    EXPECT_EQ(old_second_calls, 0);
    EXPECT_EQ(new_second_calls, 0);
}

TEST(Loop, StopEndsTheRoundBeforeTheNextHandler) {
    Loop loop = open_loop();
    Pipe a, b;
    a.poke();
    b.poke();
    int calls = 0;
    ASSERT_TRUE(loop.watch(a.read.get(), EPOLLIN, [&](std::uint32_t) {
        calls++;
        loop.stop(3);
    }));
    ASSERT_TRUE(loop.watch(b.read.get(), EPOLLIN, [&](std::uint32_t) {
        calls++;
        loop.stop(4);
    }));
    int hooks = 0;
    loop.after_each_round([&] { hooks++; });
    const int status = loop.run();
    EXPECT_EQ(calls, 1);
    EXPECT_TRUE(status == 3 || status == 4);
    EXPECT_EQ(hooks, 0);
}

TEST(Loop, AfterRoundHooksRunAfterTheHandlersOfEveryRound) {
    Loop loop = open_loop();
    Pipe p;
    std::vector<std::string> order;
    ASSERT_TRUE(loop.watch(p.read.get(), EPOLLIN, [&](std::uint32_t) {
        order.push_back("handler");
        p.drain();
    }));
    loop.after_each_round([&] {
        order.push_back("hook");
        if (order.size() >= 4)
            loop.stop(0);
        else
            p.poke();
    });
    p.poke();
    EXPECT_EQ(loop.run(), 0);
    EXPECT_EQ(order, (std::vector<std::string>{"handler", "hook", "handler", "hook"}));
}

TEST(Loop, QueuedSendsAreWrittenWhenTheSocketTakesThemAndArriveInOrder) {
    auto [a, b] = make_channel_pair();
    Channel sender(std::move(a)), receiver(std::move(b));
    // More than the socket takes: the rest waits in the sender's queue.
    std::vector<std::uint8_t> max(kMaxBody, 9);
    constexpr std::uint32_t kCount = 48;
    for (std::uint32_t i = 0; i < kCount; ++i)
        ASSERT_TRUE(sender.send(1, i, max));
    ASSERT_TRUE(sender.wants_write());

    Loop loop = open_loop();
    std::uint32_t next = 0;
    ASSERT_TRUE(loop.watch_channel(sender, "receiver", [] {}));
    ASSERT_TRUE(loop.watch_channel(receiver, "sender", [&] {
        for (;;) {
            auto r = receiver.recv();
            if (std::holds_alternative<RecvError>(r))
                break;
            EXPECT_EQ(std::get<Message>(r).id, next);
            next++;
        }
        if (next == kCount)
            loop.stop(0);
    }));
    EXPECT_EQ(loop.run(), 0);
    EXPECT_EQ(next, kCount);
    EXPECT_FALSE(sender.wants_write());
}

TEST(Loop, PausedChannelIsNotReadUntilReadingResumes) {
    auto [a, b] = make_channel_pair();
    Channel sender(std::move(a)), receiver(std::move(b));
    ASSERT_TRUE(sender.send(1, 1, {}));
    Loop loop = open_loop();
    std::size_t received = 0;
    bool resumed = false;
    ASSERT_TRUE(loop.watch_channel(receiver, "sender", [&] {
        EXPECT_TRUE(resumed);
        received += drain_count(receiver);
        loop.stop(0);
    }));
    loop.read_channel(receiver, false);
    auto resume = loop.add_timer([&] {
        resumed = true;
        loop.read_channel(receiver, true);
    });
    loop.arm_after(resume, 50ms);
    EXPECT_EQ(loop.run(), 0);
    EXPECT_EQ(received, 1u);
}

TEST(Loop, ASendThatCannotBeWrittenStopsTheLoopWithStatusOne) {
    auto [a, b] = make_channel_pair();
    Channel sender(std::move(a));
    std::vector<std::uint8_t> max(kMaxBody, 9);
    while (!sender.wants_write())
        ASSERT_TRUE(sender.send(1, 1, max));
    b.reset(); // the peer is gone with the queue unwritten
    Loop loop = open_loop();
    ASSERT_TRUE(loop.watch_channel(sender, "the peer", [] {}));
    EXPECT_EQ(loop.run(), 1);
}

TEST(Loop, DescriptorWatchedForNothingHearsNotEvenAHangUpUntilAsked) {
    int pair[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    UniqueFd ours(pair[0]);
    ::close(pair[1]); // hung up: epoll reports EPOLLHUP to any registered watcher
    Loop loop = open_loop();
    std::uint32_t heard = 0;
    ASSERT_TRUE(loop.watch(ours.get(), 0, [&](std::uint32_t events) { heard = events; }));
    auto give_up = loop.add_timer([&] { loop.stop(0); });
    loop.arm_after(give_up, 30ms);
    EXPECT_EQ(loop.run(), 0);
    EXPECT_EQ(heard, 0u);
    ASSERT_TRUE(loop.change(ours.get(), EPOLLIN));
    loop.after_each_round([&] { loop.stop(0); });
    EXPECT_EQ(loop.run(), 0);
    EXPECT_TRUE(heard & EPOLLHUP);
}

TEST(Loop, AStopBeforeRunEndsItAtOnceWithThatStatus) {
    Loop loop = open_loop();
    int rounds = 0;
    loop.after_each_round([&] { rounds++; });
    loop.stop(5);
    EXPECT_EQ(loop.run(), 5);
    EXPECT_EQ(rounds, 0);
}

TEST(Loop, AChannelWhosePeerStopsReadingStopsTheLoopAtTheSendTimeout) {
    auto [a, b] = make_channel_pair();
    Channel sender(std::move(a)), never_reads(std::move(b));
    sender.set_send_timeout_ms(100);
    std::vector<std::uint8_t> max(kMaxBody, 9);
    while (!sender.wants_write())
        ASSERT_TRUE(sender.send(1, 1, max));
    Loop loop = open_loop();
    ASSERT_TRUE(loop.watch_channel(sender, "the peer", [] {}));
    // Nothing else would wake the loop: without the stall deadline it would
    // wait until this timer.
    auto give_up = loop.add_timer([&] { loop.stop(99); });
    loop.arm_after(give_up, 20s);
    EXPECT_EQ(loop.run(), 1);
    EXPECT_EQ(errno, ETIMEDOUT);
}
