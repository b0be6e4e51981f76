// The event loop's own cost, as protod's server loop uses it: many open
// connections, a few of them ready per round, each handler reading its
// request and taking the connection out of the epoll set and back (waiting
// for leased's answer, then for the next request).
#include "privsep/loop.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include <benchmark/benchmark.h>

using namespace wgd;
using namespace wgd::privsep;

namespace {

constexpr int kReadyPerRound = 64;

struct Connections {
    std::vector<UniqueFd> ours, theirs;
    explicit Connections(int n) {
        for (int i = 0; i < n; ++i) {
            int pair[2];
            if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0)
                std::abort();
            ours.emplace_back(pair[0]);
            theirs.emplace_back(pair[1]);
        }
    }
};

void BM_LoopRoundOfReadyConnections(benchmark::State& state) {
    const int count = static_cast<int>(state.range(0));
    Connections conns(count);
    auto opened = Loop::open();
    if (!opened)
        std::abort();
    Loop& loop = *opened;
    int handled = 0;
    for (int i = 0; i < count; ++i) {
        const int fd = conns.ours[i].get();
        if (!loop.watch(fd, EPOLLIN, [&loop, &handled, fd](std::uint32_t) {
                char byte;
                (void)::read(fd, &byte, 1);
                (void)loop.change(fd, 0); // waits for leased
                (void)loop.change(fd, EPOLLIN);
                handled++;
            }))
            std::abort();
    }
    loop.after_each_round([&] {
        if (handled >= kReadyPerRound)
            loop.stop(0);
    });
    int next = 0;
    for (auto _ : state) {
        for (int j = 0; j < kReadyPerRound; ++j) {
            (void)::write(conns.theirs[next].get(), "x", 1);
            next = (next + 7) % count;
        }
        handled = 0;
        loop.run();
    }
    state.SetItemsProcessed(state.iterations() * kReadyPerRound);
}
BENCHMARK(BM_LoopRoundOfReadyConnections)->Arg(kReadyPerRound)->Arg(1000);

// A connection's life in the loop: watched when accepted, forgotten when
// closed.
void BM_LoopWatchAndForget(benchmark::State& state) {
    Connections conns(1000);
    auto opened = Loop::open();
    if (!opened)
        std::abort();
    Loop& loop = *opened;
    int next = 0;
    for (auto _ : state) {
        const int fd = conns.ours[next].get();
        if (!loop.watch(fd, EPOLLIN, [](std::uint32_t) {}))
            std::abort();
        loop.forget(fd);
        next = (next + 1) % 1000;
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LoopWatchAndForget);

} // namespace
