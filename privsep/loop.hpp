// The one event loop of every process of the suite: descriptors watched
// through epoll, timers as the wait's timeout, signals as a descriptor
// (privsep::SignalFd, a signalfd), and the channels' queued sends written
// when their sockets take them.
//
// A round is one wait and what it woke: the handlers of the ready
// descriptors in the kernel's order, then the due timers, then the
// after-round hooks, where a process does the work it batches (answers to
// send, queries to forward). Before each wait the loop writes what every
// watched channel has queued and asks for writability only while something
// waits, so no loop ever blocks in a send.
//
// The epoll descriptor is made by open(), before the sandbox: a sandboxed
// process needs only epoll_ctl and epoll_wait.
#pragma once

#include "common/fd.hpp"
#include "common/result.hpp"
#include "privsep/channel.hpp"

#include <sys/epoll.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace wgd::privsep {

class Loop {
  public:
    using Clock = std::chrono::steady_clock;
    // Called with the ready events (EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP).
    using Handler = std::function<void(std::uint32_t events)>;
    using Callback = std::function<void()>;
    using TimerId = std::size_t;

    static Result<Loop> open();

    Loop(Loop&&) = default;
    Loop& operator=(Loop&&) = default;

    // Watches `fd` for `events` (EPOLLIN, EPOLLOUT or both; with 0 the
    // handler is kept but the descriptor is not watched at all, not even for
    // the hang-ups epoll reports unasked). A descriptor is watched at most
    // once; forget it before closing it. A false return has the errno of
    // epoll_ctl.
    [[nodiscard]] bool watch(int fd, std::uint32_t events, Handler handler);
    [[nodiscard]] bool change(int fd, std::uint32_t events);
    // Stops watching `fd`; its events still pending in this round are
    // dropped, even if a new descriptor takes its number meanwhile.
    void forget(int fd);

    // Watches a channel: `on_readable` runs when it has messages (or its
    // peer closed) and reads them; its queue is written when the socket
    // takes it. When a queued send fails the loop logs "cannot send to
    // NAME: ..." and stops with status 1. `name` must outlive the loop.
    [[nodiscard]] bool watch_channel(Channel& channel, const char* name, Callback on_readable);
    // While false, the channel is not read (its queue is still written).
    void read_channel(const Channel& channel, bool reading);

    // Timers: each added once, then armed for a moment and disarmed as the
    // process's state asks; a due timer is disarmed, then its callback runs.
    TimerId add_timer(Callback on_due);
    void arm(TimerId timer, Clock::time_point when);
    void arm_after(TimerId timer, std::chrono::milliseconds delay);
    void disarm(TimerId timer);
    bool armed(TimerId timer) const { return deadline(timer).has_value(); }
    std::optional<Clock::time_point> deadline(TimerId timer) const;

    // Runs after the handlers and timers of every round, in the order added.
    void after_each_round(Callback hook);

    // Runs rounds until stop(); returns the status stop() was given (at
    // once when stop() came before). A failed wait is logged and returns 1.
    // Can be run again after it returns.
    int run();
    // Ends the loop at the end of the current handler: the rest of the
    // round is not run.
    void stop(int status);
    bool stopping() const { return status_.has_value(); }

  private:
    struct Slot {
        // On the heap so it stays put while it runs, even when the handler
        // forgets its own descriptor or watches a new one.
        std::unique_ptr<Handler> handler;
        Channel* channel = nullptr; // a channel's slot writes its queue itself
        const char* name = nullptr;
        std::uint32_t generation = 0;
        std::uint32_t events = 0; // what epoll watches now
        bool watched = false;
        bool reading = true;
    };
    struct Timer {
        Callback on_due;
        std::optional<Clock::time_point> when;
    };

    explicit Loop(UniqueFd epoll) : epoll_(std::move(epoll)) {}
    Slot* slot(int fd);
    bool set_events(int fd, Slot& s, std::uint32_t events);
    bool flush_channels();
    int wait_timeout_ms() const;
    void run_due_timers();

    UniqueFd epoll_;
    std::vector<Slot> slots_; // by descriptor number: descriptors are small and dense
    std::vector<std::unique_ptr<Handler>> forgotten_; // freed after the round
    std::vector<int> channel_fds_;
    std::vector<Timer> timers_;
    std::vector<Callback> hooks_;
    std::vector<epoll_event> ready_;
    std::optional<int> status_;
};

} // namespace wgd::privsep
