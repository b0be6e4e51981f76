#include "protod/exchange.hpp"

#include <cstring>
#include <utility>
#include <variant>

namespace wgd::protod {

msg::ExchangeResult result_from_response(const proto::Response& response) {
    msg::ExchangeResult r;
    r.answered = true;
    if (response.ipv4)
        r.ipv4 = Prefix4{*response.ipv4, 32};
    if (response.ipv6)
        r.ipv6 = Prefix6{*response.ipv6, 128};
    r.leasestart = response.leasestart;
    r.leasetime = response.leasetime;
    r.errnum = static_cast<std::uint32_t>(response.errnum);
    return r;
}

msg::ExchangeResult result_from_failure(std::string error) {
    msg::ExchangeResult r;
    r.answered = false;
    r.error = std::move(error);
    return r;
}

Exchange::Exchange(std::uint32_t id, const msg::ExchangeRequest& request, TimePoint now,
                   ExchangeTimeouts timeouts)
    : id_(id), timeouts_(timeouts), deadline_(now + timeouts.connect) {
    output_ =
        proto::serialize(proto::Request{request.want4, request.want6, proto::Dialect::modern});
}

void Exchange::finish(msg::ExchangeResult result) {
    if (phase_ == Phase::done)
        return;
    phase_ = Phase::done;
    output_.clear();
    result_ = std::move(result);
}

void Exchange::connected(int so_error, TimePoint now) {
    if (phase_ != Phase::connecting)
        return;
    if (so_error != 0) {
        finish(result_from_failure(std::string("connect: ") + std::strerror(so_error)));
        return;
    }
    phase_ = Phase::sending;
    deadline_ = now + timeouts_.answer;
}

std::string_view Exchange::output() const {
    return phase_ == Phase::sending ? std::string_view(output_) : std::string_view();
}

void Exchange::wrote(std::size_t n) {
    if (phase_ != Phase::sending)
        return;
    output_.erase(0, n < output_.size() ? n : output_.size());
    if (output_.empty())
        phase_ = Phase::receiving;
}

std::size_t Exchange::read_space() const {
    return phase_ == Phase::receiving ? parser_.space() : 0;
}

void Exchange::received(std::span<const std::uint8_t> bytes) {
    if (phase_ != Phase::receiving)
        return;
    parser_.feed(bytes);
    auto parsed = parser_.next();
    if (auto* response = std::get_if<proto::Response>(&parsed))
        finish(result_from_response(*response));
    else if (auto* error = std::get_if<proto::ParseError>(&parsed))
        finish(result_from_failure("protocol error: " + error->detail));
}

void Exchange::peer_closed() {
    if (phase_ == Phase::done)
        return;
    finish(result_from_failure(parser_.buffered() > 0
                                   ? "protocol error: connection closed inside the answer"
                                   : "connection closed without an answer"));
}

void Exchange::failed(std::string error) {
    finish(result_from_failure(std::move(error)));
}

void Exchange::check_timeout(TimePoint now) {
    if (phase_ == Phase::done || now < deadline_)
        return;
    finish(result_from_failure(phase_ == Phase::connecting ? "timeout connecting to the server"
                                                           : "timeout waiting for the answer"));
}

} // namespace wgd::protod
