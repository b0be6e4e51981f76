// wg-dynamic-client: parse the command line and start the suite, or, when
// started by netd with a role argument, become that role.
#include "common/cli.hpp"
#include "common/log.hpp"
#include "leased/leased.hpp"
#include "netd/netd.hpp"
#include "privsep/spawn.hpp"
#include "protod/protod.hpp"

#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    const wgd::Side side = wgd::Side::client;
    std::vector<std::string> args(argv + 1, argv + argc);
    std::optional<wgd::privsep::Role> role;
    if (!args.empty() && (role = wgd::privsep::parse_role_argument(args[0])))
        args.erase(args.begin());
    // netd (no role argument) keeps nothing that whoever started it leaked:
    // every descriptor above stderr goes before anything is opened. The
    // children get theirs placed by spawn_role, which closes the rest.
    if (!role)
        ::close_range(3, ~0u, 0);

    wgd::CliResult result = wgd::parse_command_line(side, args);
    if (auto status = wgd::answer_without_running(side, result))
        return *status;

    const auto& options = std::get<wgd::Options>(result);
    wgd::log_set_verbosity(options.verbosity);
    if (!role) {
        wgd::log_set_name(wgd::program_name(side));
        return wgd::netd::client_main(options, args);
    }
    wgd::log_set_name(wgd::program_name(side) + ": " + wgd::privsep::role_name(*role));
    wgd::log_set_relayed(); // stderr is netd's relay
    switch (*role) {
    case wgd::privsep::Role::leased:
        return wgd::leased::client_main(options);
    case wgd::privsep::Role::protod:
        return wgd::protod::client_main(options);
    case wgd::privsep::Role::netd:
        break;
    }
    std::fprintf(stderr, "%s: netd is not a child role\n", wgd::program_name(side).c_str());
    return 1;
}
