// The control socket of the server, served by protod (privsep/control.hpp):
// netd binds /run/wg-dynamic/IFACE.sock before any sandbox and hands the
// listening socket in; protod accepts on it like on the protocol's
// listener, checks that the client is root (SO_PEERCRED), parses its
// request, passes show and revoke to leased and writes leased's answer.
// A monitor is protod's own: it writes the events leased sends while
// monitors listen, each client with a bounded queue (a client that does not
// read loses events, counted, and never slows leased or the other clients).
#pragma once

#include "common/fd.hpp"
#include "privsep/channel.hpp"
#include "privsep/control.hpp"
#include "privsep/events.hpp"
#include "privsep/loop.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace wgd::protod {

struct ControlLimits {
    std::size_t max_clients = 16;
    std::size_t monitor_queue_bytes = 256 * 1024; // per monitor, then events are lost
    std::chrono::milliseconds request_timeout{5'000};
    // A show client that stops reading its answer is dropped after this long.
    std::chrono::milliseconds write_timeout{10'000};
};

class ControlServer {
  public:
    // Watches the listener and its connections in `loop`; when leased is
    // gone, stops the loop with 1.
    ControlServer(UniqueFd listener, privsep::Loop& loop, privsep::Channel& leased,
                  ControlLimits limits = {});
    ~ControlServer();
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;
    bool valid() const { return listener_.valid(); }

    // leased's answer (a piece of it) for connection id.
    void on_reply(std::uint32_t id, const control::ControlReply& reply);
    void on_events(const std::vector<LeaseEvent>& events);
    // Connections past their deadline are closed.
    void sweep();
    std::size_t clients() const { return conns_.size(); }

    // protod's counts that the metrics report: errno 1 and 2 answers.
    std::uint64_t invalid_requests = 0;
    std::uint64_t unsupported_requests = 0;
    std::uint64_t monitor_lost() const { return monitor_lost_; }

  private:
    using Clock = std::chrono::steady_clock;
    enum class State { reading, waiting, monitoring, closing };
    struct Conn {
        UniqueFd fd;
        State state = State::reading;
        std::string in, out;
        bool json = false;
        bool head_written = false;
        std::uint64_t lost = 0; // events dropped since the last "lost" line
        Clock::time_point deadline;
    };

    bool accept_some();
    bool on_event(std::uint32_t id, std::uint32_t events); // false: leased is gone
    bool read_request(std::uint32_t id, Conn& c);
    void flush(std::uint32_t id, Conn& c);
    void watch(std::uint32_t id, Conn& c);
    void drop(std::uint32_t id);
    void fail(std::uint32_t id, Conn& c, const std::string& reason);
    bool send_monitor_state();

    UniqueFd listener_;
    privsep::Loop& loop_;
    privsep::Channel& leased_;
    ControlLimits limits_;
    std::map<std::uint32_t, Conn> conns_;
    std::uint32_t next_id_ = 1;
    std::uint32_t monitors_ = 0;
    std::uint64_t monitor_lost_ = 0;
};

} // namespace wgd::protod
