// The client protod: netd hands it a socket that is connecting to the
// server; protod sends the request, parses the response and gives leased the
// typed result. The steps and timeouts live in Exchange; this file does only
// the socket calls.
#include "common/log.hpp"
#include "privsep/channels.hpp"
#include "privsep/messages.hpp"
#include "privsep/sandbox.hpp"
#include "protod/exchange.hpp"
#include "protod/protod.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

namespace wgd::protod {
namespace {

using TimePoint = Exchange::TimePoint;
using Clock = Exchange::Clock;

class Client {
  public:
    Client(privsep::Loop& loop, privsep::Channel leased, privsep::Channel netd,
           const ClientLoopConfig& config)
        : loop_(loop), leased_(std::move(leased)),
          netd_(std::move(netd)), timeouts_{config.connect_timeout, config.answer_timeout},
          trace_(config.trace) {}

    int run();

  private:
    bool dispatch_leased();
    bool dispatch_netd(TimePoint now);
    // netd's message (privsep/channels.hpp: client_netd_to_protod); leased
    // sends protod nothing (client_leased_to_protod). false: stop the loop.
    struct FromNetd {
        Client& client;
        TimePoint now;
        bool on(msg::ExchangeRequest& request, privsep::Message& m);
    };
    struct FromLeased {};
    void step(std::uint32_t revents, TimePoint now);
    bool report(); // false: leased is gone
    void take_socket(UniqueFd socket);
    void end_round();

    privsep::Loop& loop_;
    privsep::Loop::TimerId deadline_timer_ = 0;
    bool netd_ready_ = false; // read at the end of the round
    privsep::Channel leased_;
    privsep::Channel netd_;
    ExchangeTimeouts timeouts_;
    bool trace_ = false;
    std::optional<Exchange> exchange_;
    UniqueFd socket_;
};

bool Client::dispatch_leased() {
    auto received = leased_.recv();
    if (auto* error = std::get_if<privsep::RecvError>(&received)) {
        if (*error == privsep::RecvError::would_block)
            return true;
        if (*error == privsep::RecvError::peer_closed) // a stop, not a failure
            WGD_LOG_INFO("leased closed the channel: stopping");
        else
            WGD_LOG_ERROR("channel to leased: %s", privsep::to_string(*error));
        return false;
    }
    namespace ch = privsep::channels;
    FromLeased handler;
    return ch::dispatch<ch::client_leased_to_protod>(
        ch::states::only, std::get<privsep::Message>(received), handler, ch::OnViolation::report);
}

bool Client::dispatch_netd(TimePoint now) {
    for (;;) {
        auto received = netd_.recv();
        if (auto* error = std::get_if<privsep::RecvError>(&received)) {
            if (*error == privsep::RecvError::would_block)
                return true;
            if (*error == privsep::RecvError::peer_closed) // a stop, not a failure
                WGD_LOG_INFO("netd closed the channel: stopping");
            else
                WGD_LOG_ERROR("channel to netd: %s", privsep::to_string(*error));
            return false;
        }
        namespace ch = privsep::channels;
        FromNetd handler{*this, now};
        if (!ch::dispatch<ch::client_netd_to_protod>(ch::states::only,
                                                     std::get<privsep::Message>(received), handler,
                                                     ch::OnViolation::report))
            return false;
    }
}

bool Client::FromNetd::on(msg::ExchangeRequest& request, privsep::Message& m) {
    auto& exchange = client.exchange_;
    if (exchange && !exchange->done()) {
        exchange->failed("superseded by exchange " + std::to_string(m.id));
        if (!client.report())
            return false;
    }
    int flags = ::fcntl(m.fd.get(), F_GETFL);
    if (flags >= 0)
        (void)::fcntl(m.fd.get(), F_SETFL, flags | O_NONBLOCK);
    client.take_socket(std::move(m.fd));
    exchange.emplace(m.id, request, now, client.timeouts_);
    WGD_LOG_DEBUG("exchange %u: connecting", m.id);
    return true;
}

void Client::step(std::uint32_t revents, TimePoint now) {
    const int fd = socket_.get();
    if (exchange_->phase() == Exchange::Phase::connecting) {
        int so_error = 0;
        socklen_t len = sizeof so_error;
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) < 0)
            so_error = errno;
        exchange_->connected(so_error, now);
    }
    while (exchange_->phase() == Exchange::Phase::sending) {
        std::string_view out = exchange_->output();
        ssize_t n = ::send(fd, out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                exchange_->failed(std::string("send: ") + std::strerror(errno));
            return;
        }
        exchange_->wrote(static_cast<std::size_t>(n));
    }
    if (!(revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    std::uint8_t buf[proto::max_message_bytes];
    while (exchange_->phase() == Exchange::Phase::receiving) {
        const std::size_t space = std::min(exchange_->read_space(), sizeof buf);
        ssize_t n = ::recv(fd, buf, space, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                exchange_->failed(std::string("recv: ") + std::strerror(errno));
            return;
        }
        if (n == 0) {
            exchange_->peer_closed();
            return;
        }
        exchange_->received({buf, static_cast<std::size_t>(n)});
    }
}

bool Client::report() {
    const msg::ExchangeResult result = *exchange_->result(); // outlives the exchange
    if (result.answered)
        WGD_LOG_DEBUG("exchange %u: answered, errno %u", exchange_->id(), result.errnum);
    if (result.answered && trace_)
        WGD_LOG_DEBUG("exchange %u: answer ipv4=%s ipv6=%s leasestart=%llu leasetime=%u",
                      exchange_->id(), result.ipv4 ? to_string(*result.ipv4).c_str() : "(none)",
                      result.ipv6 ? to_string(*result.ipv6).c_str() : "(none)",
                      static_cast<unsigned long long>(result.leasestart), result.leasetime);
    else
        WGD_LOG_INFO("exchange %u: %s", exchange_->id(), result.error.c_str());
    // Reset on close so no TIME_WAIT keeps port 970 from the next exchange.
    const linger reset{1, 0};
    (void)::setsockopt(socket_.get(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    take_socket(UniqueFd());
    const std::uint32_t id = exchange_->id();
    exchange_.reset();
    if (!leased_.send(msg::exchange_result, id, msg::encode(result))) {
        WGD_LOG_ERROR("cannot send to leased: %s", std::strerror(errno));
        return false;
    }
    return true;
}

void Client::take_socket(UniqueFd socket) {
    if (socket_)
        loop_.forget(socket_.get());
    socket_ = std::move(socket);
    if (socket_ && !loop_.watch(socket_.get(), 0, [this](std::uint32_t events) {
            if (exchange_)
                step(events, Clock::now());
        }))
        WGD_LOG_ERROR("epoll_ctl: %s", std::strerror(errno)); // the exchange times out
}

// After the socket: a new order from netd may replace the exchange just
// served.
void Client::end_round() {
    const TimePoint now = Clock::now();
    if (exchange_) {
        exchange_->check_timeout(now);
        if (exchange_->done() && !report()) {
            loop_.stop(1);
            return;
        }
    }
    if (netd_ready_) {
        netd_ready_ = false;
        if (!dispatch_netd(now)) {
            loop_.stop(1);
            return;
        }
    }
    if (!exchange_) {
        loop_.disarm(deadline_timer_);
        return;
    }
    const bool receiving = exchange_->phase() == Exchange::Phase::receiving;
    (void)loop_.change(socket_.get(), receiving ? EPOLLIN : EPOLLOUT);
    loop_.arm(deadline_timer_, exchange_->deadline());
}

int Client::run() {
    if (!loop_.watch_channel(leased_, "leased",
                             [this] {
                                 if (!dispatch_leased())
                                     loop_.stop(1);
                             }) ||
        !loop_.watch_channel(netd_, "netd", [this] { netd_ready_ = true; })) {
        WGD_LOG_ERROR("epoll_ctl: %s", std::strerror(errno));
        return 1;
    }
    deadline_timer_ = loop_.add_timer([] {}); // wakes the round that times the exchange out
    loop_.after_each_round([this] { end_round(); });
    return loop_.run();
}

} // namespace

int run_client_loop(privsep::Loop& loop, privsep::Channel leased, privsep::Channel netd,
                    const ClientLoopConfig& config) {
    Client client(loop, std::move(leased), std::move(netd), config);
    return client.run();
}

int client_main(const Options& options) {
    log_set_verbosity(options.verbosity);
    auto loop = privsep::Loop::open();
    if (!loop) {
        WGD_LOG_ERROR("%s", loop.error().message.c_str());
        return 1;
    }
    privsep::SandboxSpec spec;
    spec.role = privsep::Role::protod;
    spec.side = Side::client;
    spec.user = options.user;
    if (auto sandbox = privsep::enter_sandbox(spec); !sandbox) {
        WGD_LOG_ERROR("sandbox: %s", sandbox.error().message.c_str());
        return 1;
    }
    ClientLoopConfig config;
    config.trace = options.verbosity >= 2;
    namespace fds = privsep::channels::fds::client_protod;
    return run_client_loop(*loop, privsep::Channel(UniqueFd(fds::leased)),
                           privsep::Channel(UniqueFd(fds::netd)), config);
}

} // namespace wgd::protod
