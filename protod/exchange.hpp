// One client exchange as pure state: wait for the connect, send the request,
// parse the response, each step under its timeout, and the typed result for
// leased. No I/O: the loop in client.cpp does the socket calls and reports
// their outcome here.
#pragma once

#include "privsep/messages.hpp"
#include "protod/codec.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace wgd::protod {

struct ExchangeTimeouts {
    std::chrono::milliseconds connect{10'000}; // from the order to the established connection
    std::chrono::milliseconds answer{10'000};  // from the connection to the complete response
};

// The result leased gets for a parsed response (answered = true).
msg::ExchangeResult result_from_response(const proto::Response& response);
// The result for an exchange that got no answer, with a one-line reason.
msg::ExchangeResult result_from_failure(std::string error);

class Exchange {
  public:
    using Clock = std::chrono::steady_clock;
    using TimePoint = Clock::time_point;

    enum class Phase { connecting, sending, receiving, done };

    Exchange(std::uint32_t id, const msg::ExchangeRequest& request, TimePoint now,
             ExchangeTimeouts timeouts = {});

    std::uint32_t id() const { return id_; }
    Phase phase() const { return phase_; }
    bool done() const { return phase_ == Phase::done; }

    // The connect completed; so_error is SO_ERROR (0: connected).
    void connected(int so_error, TimePoint now);
    // The request bytes still to send (while sending); wrote() after n of them went out.
    std::string_view output() const;
    void wrote(std::size_t n);
    // How many bytes to read now (0 unless receiving).
    std::size_t read_space() const;
    void received(std::span<const std::uint8_t> bytes);
    // The server closed before a complete response.
    void peer_closed();
    // A socket call failed: "read: Connection reset by peer".
    void failed(std::string error);

    // When the current step times out, and the check against it.
    TimePoint deadline() const { return deadline_; }
    void check_timeout(TimePoint now);

    // Set once done().
    const std::optional<msg::ExchangeResult>& result() const { return result_; }

  private:
    void finish(msg::ExchangeResult result);

    std::uint32_t id_;
    ExchangeTimeouts timeouts_;
    Phase phase_ = Phase::connecting;
    TimePoint deadline_;
    std::string output_;
    proto::ResponseParser parser_;
    std::optional<msg::ExchangeResult> result_;
};

} // namespace wgd::protod
