#include "privsep/loop.hpp"

#include "common/log.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace wgd::privsep {

namespace {

// A round takes at most this many ready descriptors; the rest are still
// ready at the next wait (level-triggered).
constexpr int kReadyPerWait = 256;

std::uint64_t pack(int fd, std::uint32_t generation) {
    return std::uint64_t(std::uint32_t(fd)) | std::uint64_t(generation) << 32;
}

} // namespace

Result<Loop> Loop::open() {
    UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll)
        return make_error(errno, std::string("epoll_create1: ") + std::strerror(errno));
    return Loop(std::move(epoll));
}

Loop::Slot* Loop::slot(int fd) {
    if (fd < 0 || std::size_t(fd) >= slots_.size() || !slots_[fd].watched)
        return nullptr;
    return &slots_[fd];
}

// Events 0 take the descriptor out of the epoll set: epoll would report
// hang-ups and errors even with nothing asked.
bool Loop::set_events(int fd, Slot& s, std::uint32_t events) {
    if (events == s.events)
        return true;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = pack(fd, s.generation);
    const int op = s.events == 0 ? EPOLL_CTL_ADD : events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (::epoll_ctl(epoll_.get(), op, fd, &ev) < 0)
        return false;
    s.events = events;
    return true;
}

bool Loop::watch(int fd, std::uint32_t events, Handler handler) {
    if (fd < 0) {
        errno = EBADF;
        return false;
    }
    if (std::size_t(fd) >= slots_.size())
        slots_.resize(std::size_t(fd) + 1);
    Slot& s = slots_[fd];
    if (s.watched) {
        errno = EEXIST;
        return false;
    }
    s.events = 0;
    if (!set_events(fd, s, events))
        return false;
    s.handler = std::make_unique<Handler>(std::move(handler));
    s.channel = nullptr;
    s.name = nullptr;
    s.watched = true;
    s.reading = true;
    return true;
}

bool Loop::change(int fd, std::uint32_t events) {
    Slot* s = slot(fd);
    if (!s) {
        errno = ENOENT;
        return false;
    }
    return set_events(fd, *s, events);
}

void Loop::forget(int fd) {
    Slot* s = slot(fd);
    if (!s)
        return;
    if (s->events != 0)
        (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    s->events = 0;
    forgotten_.push_back(std::move(s->handler));
    s->watched = false;
    s->generation++; // what this round still holds for fd is stale
    if (s->channel)
        std::erase(channel_fds_, fd);
    s->channel = nullptr;
}

bool Loop::watch_channel(Channel& channel, const char* name, Callback on_readable) {
    const int fd = channel.fd();
    if (!watch(fd, EPOLLIN, [cb = std::move(on_readable)](std::uint32_t) { cb(); }))
        return false;
    Slot& s = slots_[fd];
    s.channel = &channel;
    s.name = name;
    channel_fds_.push_back(fd);
    return true;
}

void Loop::read_channel(const Channel& channel, bool reading) {
    if (Slot* s = slot(channel.fd()))
        s->reading = reading;
}

Loop::TimerId Loop::add_timer(Callback on_due) {
    timers_.push_back({std::move(on_due), std::nullopt});
    return timers_.size() - 1;
}

void Loop::arm(TimerId timer, Clock::time_point when) {
    timers_.at(timer).when = when;
}

void Loop::arm_after(TimerId timer, std::chrono::milliseconds delay) {
    arm(timer, Clock::now() + delay);
}

void Loop::disarm(TimerId timer) {
    timers_.at(timer).when.reset();
}

std::optional<Loop::Clock::time_point> Loop::deadline(TimerId timer) const {
    return timers_.at(timer).when;
}

void Loop::after_each_round(Callback hook) {
    hooks_.push_back(std::move(hook));
}

void Loop::stop(int status) {
    if (!status_)
        status_ = status;
}

// Writes what each channel has queued, then watches each for what it needs:
// reading unless paused, writing only while its queue waits.
bool Loop::flush_channels() {
    for (int fd : channel_fds_) {
        Slot& s = slots_[fd];
        if (!s.channel->flush()) {
            WGD_LOG_ERROR("cannot send to %s: %s", s.name, std::strerror(errno));
            return false;
        }
        const std::uint32_t events =
            (s.reading ? EPOLLIN : 0u) | (s.channel->wants_write() ? EPOLLOUT : 0u);
        if (!set_events(fd, s, events)) {
            WGD_LOG_ERROR("epoll_ctl: %s", std::strerror(errno));
            return false;
        }
    }
    return true;
}

// Until the earliest timer, or the moment a channel's queue that has not
// moved counts as stalled: its peer stopped reading, which the next flush
// reports.
int Loop::wait_timeout_ms() const {
    std::optional<Clock::time_point> earliest;
    auto consider = [&](std::optional<Clock::time_point> when) {
        if (when && (!earliest || *when < *earliest))
            earliest = when;
    };
    for (const Timer& t : timers_)
        consider(t.when);
    for (int fd : channel_fds_)
        if (auto stall = slots_[fd].channel->stall_deadline())
            consider(*stall + std::chrono::milliseconds(1));
    if (!earliest)
        return -1;
    auto wait = std::chrono::ceil<std::chrono::milliseconds>(*earliest - Clock::now());
    return int(std::clamp<std::int64_t>(wait.count(), 0, 3'600'000));
}

void Loop::run_due_timers() {
    const auto now = Clock::now();
    for (Timer& t : timers_) {
        if (status_)
            return;
        if (t.when && *t.when <= now) {
            t.when.reset();
            t.on_due();
        }
    }
}

int Loop::run() {
    ready_.resize(kReadyPerWait);
    while (!status_) {
        if (!flush_channels()) {
            stop(1);
            break;
        }
        const int n = ::epoll_wait(epoll_.get(), ready_.data(), kReadyPerWait, wait_timeout_ms());
        if (n < 0) {
            if (errno == EINTR)
                continue;
            WGD_LOG_ERROR("epoll_wait: %s", std::strerror(errno));
            stop(1);
            break;
        }
        for (int i = 0; i < n && !status_; i++) {
            const int fd = int(std::uint32_t(ready_[i].data.u64));
            const auto generation = std::uint32_t(ready_[i].data.u64 >> 32);
            Slot* s = slot(fd);
            if (!s || s->generation != generation)
                continue; // forgotten earlier in this round
            std::uint32_t events = ready_[i].events;
            if (s->channel) {
                // The queue is written at the top of the next round; a
                // closed peer shows as readable so its handler learns it.
                if (!s->reading)
                    continue;
                events &= ~std::uint32_t(EPOLLOUT);
                if (events == 0)
                    continue;
            }
            Handler& handler = *s->handler; // kept alive by forgotten_ if forgotten
            handler(events);
        }
        forgotten_.clear();
        run_due_timers();
        for (auto& hook : hooks_) {
            if (status_)
                break;
            hook();
        }
    }
    const int status = *status_;
    status_.reset(); // the loop can run again
    return status;
}

} // namespace wgd::privsep
