// wg-dynamic-server: parse the command line and start the suite, or, when
// started by netd with a role argument, become that role.
#include "common/cli.hpp"
#include "common/fd.hpp"
#include "common/log.hpp"
#include "common/result.hpp"
#include "leased/leased.hpp"
#include "netd/netd.hpp"
#include "privsep/control.hpp"
#include "privsep/spawn.hpp"
#include "protod/protod.hpp"
#include "role.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

void fail_line(const std::string& reason) {
    std::fprintf(stderr, "wg-dynamic-server: %s\n", reason.c_str());
}

// The running server's control socket, connected; the error when no server
// answers there (no socket file, or one left behind by a server that stopped)
// or the socket cannot be reached.
wgd::Result<wgd::UniqueFd> connect_control(const std::string& iface) {
    const std::string path = wgd::control::socket_path(iface);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path)
        return wgd::make_error(ENAMETOOLONG, "control socket path too long");
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    wgd::UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd || connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        const int err = errno;
        return wgd::make_error(err, err == ENOENT || err == ECONNREFUSED
                                        ? "no server running on " + iface +
                                              " (nothing answers on " + path + ")"
                                        : "cannot connect to " + path + ": " + std::strerror(err));
    }
    return fd;
}

bool write_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        ssize_t n = write(fd, bytes.data(), bytes.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

// Sends the request and copies the answer's body to stdout as it comes
// (a monitor's never ends). Exit status: 0, or 1 with a one-line reason.
int run_control(wgd::UniqueFd fd, const wgd::control::Request& request) {
    if (!write_all(fd.get(), wgd::control::format_request(request))) {
        fail_line(std::string("cannot send the request: ") + std::strerror(errno));
        return 1;
    }
    const bool endless = request.command == wgd::control::Command::monitor;
    std::string head;
    bool head_done = false;
    char buf[65536];
    for (;;) {
        pollfd p{fd.get(), POLLIN, 0};
        int ready = poll(&p, 1, endless && head_done ? -1 : 30'000);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready == 0) {
            fail_line("the server did not answer in 30 s");
            return 1;
        }
        ssize_t n = read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fail_line(std::string("reading the answer: ") + std::strerror(errno));
            return 1;
        }
        if (n == 0) {
            if (!head_done) {
                fail_line("the server closed without an answer");
                return 1;
            }
            return 0;
        }
        std::string_view chunk(buf, static_cast<std::size_t>(n));
        if (!head_done) {
            head.append(chunk);
            auto parsed = wgd::control::parse_answer_head(head);
            if (!parsed)
                continue;
            if (parsed->malformed) {
                fail_line("the server's answer is malformed");
                return 1;
            }
            if (!parsed->ok) {
                fail_line(parsed->error);
                return 1;
            }
            head_done = true;
            chunk = std::string_view(head).substr(parsed->size);
        }
        if (!wgd::control::printable(chunk)) {
            fail_line("the server's answer is not text");
            return 1;
        }
        if (!write_all(STDOUT_FILENO, chunk))
            return 1;
        if (!head.empty())
            head.clear(); // its rest was the first piece of the body
    }
}

int monitor(const wgd::MonitorCommand& command) {
    wgd::Result<wgd::UniqueFd> fd = connect_control(command.iface);
    if (!fd) {
        fail_line(fd.error().message);
        return 1;
    }
    wgd::control::Request r;
    r.command = wgd::control::Command::monitor;
    r.format = command.json ? wgd::control::Format::json : wgd::control::Format::text;
    return run_control(std::move(*fd), r);
}

int revoke(const wgd::RevokeCommand& command) {
    wgd::control::Request r;
    r.command = wgd::control::Command::revoke;
    if (auto key = wgd::key_from_base64(command.target))
        r.peer = key;
    else if (auto a4 = wgd::parse_ip4(command.target))
        r.ipv4 = a4;
    else if (auto a6 = wgd::parse_ip6(command.target))
        r.ipv6 = a6;
    if ((r.ipv4 && !wgd::is_leasable(*r.ipv4)) || (r.ipv6 && !wgd::is_leasable(*r.ipv6)) ||
        (!r.peer && !r.ipv4 && !r.ipv6)) {
        fail_line("'" + command.target + "' is neither a peer's public key nor a leasable address");
        return 1;
    }
    wgd::Result<wgd::UniqueFd> fd = connect_control(command.iface);
    if (!fd) {
        fail_line(fd.error().message);
        return 1;
    }
    return run_control(std::move(*fd), r);
}

// show: the running server when one answers on the control socket;
// otherwise the lease file, plus the WireGuard device when it can be read (as
// root) for the peers' link-local identities and their reservations.
int show(const wgd::ShowCommand& command) {
    wgd::Result<wgd::UniqueFd> fd = connect_control(command.iface);
    if (fd) {
        wgd::control::Request r;
        r.format = command.json      ? wgd::control::Format::json
                   : command.metrics ? wgd::control::Format::metrics
                                     : wgd::control::Format::table;
        return run_control(std::move(*fd), r);
    }
    const std::string& why = fd.error().message;
    if (command.metrics) {
        fail_line(why + "; metrics come from a running server");
        return 1;
    }
    fail_line(why + "; showing the lease file in " + command.state_dir);
    wgd::Result<std::string> shown =
        wgd::leased::show_lease_file(command.state_dir, command.iface, command.json,
                                     [&] { return wgd::netd::read_peers(command.iface); });
    if (!shown) {
        std::fprintf(stderr, "wg-dynamic-server: %s\n", shown.error().message.c_str());
        return 1;
    }
    std::fputs(shown->c_str(), stdout);
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    const wgd::Side side = wgd::Side::server;
    const wgd::programs::Invocation in = wgd::programs::take_role(argc, argv);

    wgd::CliResult result = wgd::parse_command_line(side, in.args);
    if (auto status = wgd::answer_without_running(side, result))
        return *status;
    if (auto* show_command = std::get_if<wgd::ShowCommand>(&result))
        return show(*show_command);
    if (auto* monitor_command = std::get_if<wgd::MonitorCommand>(&result))
        return monitor(*monitor_command);
    if (auto* revoke_command = std::get_if<wgd::RevokeCommand>(&result))
        return revoke(*revoke_command);

    return wgd::programs::run_role(
        side, in, std::get<wgd::Options>(result),
        {wgd::netd::server_main, wgd::leased::server_main, wgd::protod::server_main});
}
