// What both programs do around their own commands: take the role argument
// (netd starts a suite without one; its children get one), and once the
// options are parsed, run netd or become the role named.
#pragma once

#include "common/cli.hpp"
#include "common/log.hpp"
#include "privsep/spawn.hpp"

#include <unistd.h>

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

namespace wgd::programs {

struct Invocation {
    std::vector<std::string> args; // without the role argument
    std::optional<privsep::Role> role;
};

inline Invocation take_role(int argc, char** argv) {
    Invocation in{std::vector<std::string>(argv + 1, argv + argc), std::nullopt};
    if (!in.args.empty() && (in.role = privsep::parse_role_argument(in.args[0])))
        in.args.erase(in.args.begin());
    // netd (no role argument) keeps nothing that whoever started it leaked:
    // every descriptor above stderr goes before anything is opened. The
    // children get theirs placed by spawn_role, which closes the rest.
    if (!in.role)
        ::close_range(3, ~0u, 0);
    return in;
}

// The entry points of one side's three processes.
struct RoleMains {
    int (*netd)(const Options&, const std::vector<std::string>&);
    int (*leased)(const Options&);
    int (*protod)(const Options&);
};

inline int run_role(Side side, const Invocation& in, const Options& options,
                    const RoleMains& mains) {
    log_set_verbosity(options.verbosity);
    if (!in.role) {
        log_set_name(program_name(side));
        return mains.netd(options, in.args);
    }
    log_set_name(program_name(side) + ": " + privsep::role_name(*in.role));
    log_set_relayed(); // stderr is netd's relay
    switch (*in.role) {
    case privsep::Role::leased:
        return mains.leased(options);
    case privsep::Role::protod:
        return mains.protod(options);
    case privsep::Role::netd:
        break;
    }
    std::fprintf(stderr, "%s: netd is not a child role\n", program_name(side).c_str());
    return 1;
}

} // namespace wgd::programs
