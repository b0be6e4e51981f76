#include "netd/suite.hpp"

#include "common/log.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>

namespace wgd::netd {

int run_netd(const Options& options, const std::vector<std::string>& args,
             const std::function<int(const Options&, const std::vector<std::string>&)>& netd) {
    Options settled = options;
    std::vector<std::string> child_args = args;
    settle_sandbox_user(settled, child_args);
    try {
        return netd(settled, child_args);
    } catch (const Failure& f) {
        WGD_LOG_ERROR("%s", f.reason.c_str());
        return 1;
    }
}

SuiteParent::Detach::Detach(bool foreground) {
    if (!foreground)
        detach(std::string(log_name()));
}

namespace {

privsep::Loop open_loop() {
    auto loop = privsep::Loop::open();
    if (!loop)
        throw Failure{"cannot open the event loop: " + loop.error().message};
    return std::move(loop.value());
}

std::vector<std::pair<int, int>> numbered(const std::vector<HandedFd>& fds) {
    std::vector<std::pair<int, int>> out;
    for (const HandedFd& h : fds)
        out.emplace_back(h.number, h.fd.get());
    return out;
}

} // namespace

SuiteParent::SuiteParent(bool foreground) : detach_(foreground), loop_(open_loop()) {}

void SuiteParent::start_children(const std::vector<std::string>& args,
                                 const std::vector<HandedFd>& leased,
                                 const std::vector<HandedFd>& protod,
                                 const std::vector<KeptEnd>& kept) {
    pid_t leased_pid = spawn_child(privsep::Role::leased, args, numbered(leased), relay_);
    if (leased_pid < 0)
        throw Failure{std::string("cannot start leased: ") + std::strerror(errno)};
    supervisor_.add(leased_pid, "leased");
    pid_t protod_pid =
        spawn_child(privsep::Role::protod, args, numbered(protod), relay_, leased_pid);
    if (protod_pid < 0) {
        stop_children(supervisor_, {});
        throw Failure{std::string("cannot start protod: ") + std::strerror(errno)};
    }
    supervisor_.add(protod_pid, "protod");
    // What the children hold, netd does not keep.
    for (const HandedFd& h : leased)
        h.fd.reset();
    for (const HandedFd& h : protod)
        h.fd.reset();
    relay_.close_child_end();
    for (const KeptEnd& k : kept) {
        k.channel = privsep::Channel(std::move(k.fd));
        channels_.push_back(&k.channel);
    }
    stop_on_fatal_.emplace([this] {
        relay_.forward();
        stop_children(supervisor_, channels_);
    });
}

bool SuiteParent::enter_sandbox(Side side, const privsep::NetdSandbox& how) {
    if (auto sandboxed = privsep::enter_netd_sandbox(side, how); !sandboxed) {
        WGD_LOG_ERROR("netd sandbox: %s", sandboxed.error().message.c_str());
        stop_children(supervisor_, channels_);
        return false;
    }
    return true;
}

int SuiteParent::run(const std::function<void(const std::vector<privsep::ChildExit>&)>& on_exits,
                     const std::function<void(int)>& on_signal) {
    bool watched = true;
    if (const int relay = relay_.fd(); relay >= 0)
        watched = loop_.watch(relay, EPOLLIN, [this, relay](std::uint32_t) {
            relay_.forward();
            if (relay_.fd() < 0)
                loop_.forget(relay);
        });
    watched = watched && loop_.watch(supervisor_.fd(), EPOLLIN, [&](std::uint32_t) {
        if (relay_.fd() >= 0)
            relay_.forward();
        on_exits(supervisor_.reap()); // reap() logs each exit
    });
    watched = watched && loop_.watch(signals_.fd(), EPOLLIN, [&](std::uint32_t) {
        if (auto sig = signals_.take())
            on_signal(*sig);
    });
    if (!watched) {
        WGD_LOG_ERROR("epoll_ctl: %s", std::strerror(errno));
        loop_.stop(1);
    }
    const int status = loop_.run(); // at once if netd's first sends failed
    stop();
    return status;
}

void SuiteParent::stop() {
    if (relay_.fd() >= 0)
        relay_.forward();
    stop_children(supervisor_, channels_);
}

} // namespace wgd::netd
