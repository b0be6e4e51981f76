// wg-dynamic-client: parse the command line and start the suite, or, when
// started by netd with a role argument, become that role.
#include "common/cli.hpp"
#include "common/log.hpp"
#include "leased/leased.hpp"
#include "netd/netd.hpp"
#include "privsep/spawn.hpp"
#include "protod/protod.hpp"
#include "role.hpp"

#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    const wgd::Side side = wgd::Side::client;
    const wgd::programs::Invocation in = wgd::programs::take_role(argc, argv);

    wgd::CliResult result = wgd::parse_command_line(side, in.args);
    if (auto status = wgd::answer_without_running(side, result))
        return *status;

    return wgd::programs::run_role(
        side, in, std::get<wgd::Options>(result),
        {wgd::netd::client_main, wgd::leased::client_main, wgd::protod::client_main});
}
