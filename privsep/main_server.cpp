// wg-dynamic-server: parse the command line and start the suite.
#include "privsep/cli.hpp"

#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    const wgd::Side side = wgd::Side::server;
    std::vector<std::string> args(argv + 1, argv + argc);
    wgd::CliResult result = wgd::parse_command_line(side, args);
    if (std::holds_alternative<wgd::HelpRequested>(result)) {
        std::fputs(wgd::usage_text(side).c_str(), stdout);
        return 0;
    }
    if (std::holds_alternative<wgd::VersionRequested>(result)) {
        std::printf("%s %s\n", wgd::program_name(side).c_str(), WGD_VERSION);
        return 0;
    }
    if (auto* err = std::get_if<wgd::UsageError>(&result)) {
        std::fprintf(stderr, "%s: %s\n", wgd::program_name(side).c_str(), err->message.c_str());
        return 1;
    }
    std::fprintf(stderr, "%s: the daemon is not assembled yet\n", wgd::program_name(side).c_str());
    return 1;
}
