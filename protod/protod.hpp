// protod: the process that speaks the network protocol (DESIGN.md). It reads
// untrusted bytes only on sockets handed to it and talks to leased over a
// channel; it creates no socket and opens no file.
#pragma once

#include "common/cli.hpp"
#include "common/fd.hpp"
#include "privsep/channel.hpp"
#include "privsep/loop.hpp"

#include <chrono>
#include <cstddef>

namespace wgd::protod {

// protod works on the fds netd placed at the numbers of
// privsep/channels.hpp (fds::server_protod: its channel to leased, the
// listening TCP socket on [fe80::%IFACE]:970 and the control socket
// /run/wg-dynamic/IFACE.sock; fds::client_protod: its channels to leased and
// netd).

// Enter the sandbox, then run the loop on the fds above. Return the exit status.
int server_main(const Options& options);
int client_main(const Options& options);

struct ServerLoopConfig {
    // SPEC "Transport": only source port 970 from a link-local address. Always
    // on in the daemon; tests over ::1 turn it off.
    bool require_link_local_port_970 = true;
    std::size_t max_connections = 1024;
    std::chrono::milliseconds idle_timeout{10'000};
    std::chrono::milliseconds request_timeout{10'000};
    int accepts_per_round = 64; // fairness between the listener and open connections
    // At most one "too many connections" warning (and one accept error) per interval.
    std::chrono::seconds full_warning_interval{10};
    // -vv: every request forwarded to leased and every answer, at debug.
    bool trace = false;
};

// The server loop without the sandbox: accepts on `listener`, forwards
// requests to leased, writes leased's answers. Returns 1 when leased goes
// away or breaks the protocol (it never returns otherwise). control: the
// control socket's listener, when there is one (control_server.hpp).
int run_server_loop(privsep::Loop& loop, privsep::Channel leased, UniqueFd listener,
                    const ServerLoopConfig& config, UniqueFd control = UniqueFd());

struct ClientLoopConfig {
    std::chrono::milliseconds connect_timeout{10'000};
    std::chrono::milliseconds answer_timeout{10'000};
    // -vv: every answer as parsed, at debug.
    bool trace = false;
};

// The client loop without the sandbox: takes connecting sockets from netd
// (ExchangeRequest with an fd), runs each exchange and sends the result to
// leased. Returns 1 when leased or netd goes away or breaks the protocol.
int run_client_loop(privsep::Loop& loop, privsep::Channel leased, privsep::Channel netd,
                    const ClientLoopConfig& config);

} // namespace wgd::protod
