// wg-dynamic-server: parse the command line and start the suite, or, when
// started by netd with a role argument, become that role.
#include "leased/leased.hpp"
#include "leased/show.hpp"
#include "netd/netd.hpp"
#include "netd/wireguard.hpp"
#include "privsep/cli.hpp"
#include "privsep/log.hpp"
#include "privsep/spawn.hpp"
#include "protod/protod.hpp"

#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

namespace {

// show: the lease file, plus the WireGuard device when it can be read (as
// root) for the peers' link-local identities and their reservations.
int show(const wgd::ShowCommand& command) {
    wgd::leased::ReadLeases read = wgd::leased::read_leases(command.state_dir, command.iface);
    if (!read.error.empty()) {
        std::fprintf(stderr, "wg-dynamic-server: %s\n", read.error.c_str());
        return 1;
    }
    wgd::leased::ShowInput input{std::move(read.leases), std::nullopt, std::time(nullptr)};
    if (auto backend = wgd::netd::open_backend(command.iface)) {
        if (auto device = (*backend)->read_device()) {
            std::vector<wgd::leased::PeerFacts> peers;
            for (auto& p : device->peers)
                peers.push_back({p.key, p.allowed4, p.allowed6});
            input.device = std::move(peers);
        }
    }
    std::string out =
        command.json ? wgd::leased::format_json(input) : wgd::leased::format_table(input);
    std::fputs(out.c_str(), stdout);
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    const wgd::Side side = wgd::Side::server;
    std::vector<std::string> args(argv + 1, argv + argc);
    std::optional<wgd::privsep::Role> role;
    if (!args.empty() && (role = wgd::privsep::parse_role_argument(args[0])))
        args.erase(args.begin());

    wgd::CliResult result = wgd::parse_command_line(side, args);
    if (auto status = wgd::answer_without_running(side, result))
        return *status;
    if (auto* show_command = std::get_if<wgd::ShowCommand>(&result))
        return show(*show_command);

    const auto& options = std::get<wgd::Options>(result);
    wgd::log_set_verbosity(options.verbosity);
    if (!role) {
        wgd::log_set_name(wgd::program_name(side));
        return wgd::netd::server_main(options, args);
    }
    wgd::log_set_name(wgd::program_name(side) + ": " + wgd::privsep::role_name(*role));
    switch (*role) {
    case wgd::privsep::Role::leased:
        return wgd::leased::server_main(options);
    case wgd::privsep::Role::protod:
        return wgd::protod::server_main(options);
    case wgd::privsep::Role::netd:
        break;
    }
    std::fprintf(stderr, "%s: netd is not a child role\n", wgd::program_name(side).c_str());
    return 1;
}
