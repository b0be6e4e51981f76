#include "privsep/cli.hpp"

#include <charconv>
#include <cstdio>

namespace wgd {

std::string program_name(Side side) {
    return side == Side::server ? "wg-dynamic-server" : "wg-dynamic-client";
}

std::string usage_text(Side side) {
    std::string name = program_name(side);
    std::string text = "Usage: " + name + " [options] IFACE\n";
    if (side == Side::server)
        text += "       " + name + " show IFACE [--json | --metrics] [--state-dir DIR]\n" +
                "       " + name + " monitor IFACE [--json]\n" + "       " + name +
                " revoke IFACE PEER-KEY|ADDRESS\n";
    text += side == Side::server
                ? "Hand out leases of one IPv4 /32 and one IPv6 /128 to the WireGuard peers of "
                  "IFACE.\n"
                : "Obtain, apply and renew a lease of addresses for the WireGuard interface "
                  "IFACE.\n";
    text += "\n"
            "  -f, --foreground       stay in the foreground, log to stderr\n"
            "  -v, --verbose          more log detail (repeatable)\n"
            "      --user NAME        unprivileged user for the sandboxed processes\n"
            "                         (default: _wg-dynamic, which `make install` creates;\n"
            "                         nobody where it is missing)\n"
            "  -h, --help             usage, exit 0\n"
            "  -V, --version          version, exit 0\n";
    if (side == Side::server)
        text += "      --leasetime SECS   lease length, default 3600\n"
                "      --state-dir DIR    lease files, default /var/lib/wg-dynamic\n"
                "      --json             (show, monitor) JSON for scripts\n"
                "      --metrics          (show only) Prometheus text format\n";
    return text;
}

std::optional<int> answer_without_running(Side side, const CliResult& result) {
    if (std::holds_alternative<HelpRequested>(result)) {
        std::fputs(usage_text(side).c_str(), stdout);
        return 0;
    }
    if (std::holds_alternative<VersionRequested>(result)) {
        std::printf("%s %s\n", program_name(side).c_str(), WGD_VERSION);
        return 0;
    }
    if (auto* err = std::get_if<UsageError>(&result)) {
        std::fprintf(stderr, "%s: %s\n", program_name(side).c_str(), err->message.c_str());
        return 1;
    }
    return std::nullopt;
}

bool is_valid_ifname(const std::string& name) {
    if (name.empty() || name.size() > 15 || name == "." || name == "..")
        return false;
    for (unsigned char c : name)
        if (c <= ' ' || c == '/' || c == ':' || c >= 0x7f)
            return false;
    return true;
}

namespace {

bool parse_leasetime(const std::string& text, std::uint32_t& out) {
    // One day is far beyond any sensible lease, but a week is allowed so
    // that an operator may trade churn for stability; 0 would mean "never
    // valid" and is refused.
    constexpr std::uint32_t max_leasetime = 7 * 24 * 3600;
    std::uint32_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size() || text.empty() || v == 0 ||
        v > max_leasetime)
        return false;
    out = v;
    return true;
}

} // namespace

CliResult parse_command_line(Side side, const std::vector<std::string>& args) {
    Options opts;
    ShowCommand show;
    bool is_show = false;
    bool json_seen = false;
    bool metrics_seen = false;
    std::vector<std::string> positional;
    const bool server = side == Side::server;

    // --help and --version answer whatever else the line holds, like most tools.
    for (const std::string& arg : args) {
        if (arg == "--")
            break;
        if (arg == "-h" || arg == "--help")
            return HelpRequested{};
        if (arg == "-V" || arg == "--version")
            return VersionRequested{};
    }

    for (std::size_t i = 0; i < args.size(); i++) {
        const std::string& arg = args[i];
        auto value_of = [&](const std::string& name, std::string& out) -> bool {
            // Accept both "--name VALUE" and "--name=VALUE".
            if (arg.size() > name.size() && arg.compare(0, name.size(), name) == 0 &&
                arg[name.size()] == '=') {
                out = arg.substr(name.size() + 1);
                return true;
            }
            if (arg == name && i + 1 < args.size()) {
                out = args[++i];
                return true;
            }
            return false;
        };
        std::string value;

        if (arg == "--") {
            positional.insert(positional.end(), args.begin() + i + 1, args.end());
            break;
        }
        if (arg == "-f" || arg == "--foreground") {
            opts.foreground = true;
        } else if (arg == "--verbose") {
            opts.verbosity++;
        } else if (arg.size() >= 2 && arg[0] == '-' && arg[1] != '-' &&
                   arg.find_first_not_of("fv", 1) == std::string::npos) {
            // Bundled short flags: -v, -vv, -fv.
            for (std::size_t k = 1; k < arg.size(); k++) {
                if (arg[k] == 'f')
                    opts.foreground = true;
                else
                    opts.verbosity++;
            }
        } else if (arg == "--user" || arg.rfind("--user=", 0) == 0) {
            if (!value_of("--user", value) || value.empty())
                return UsageError{"--user needs a user name"};
            opts.user = value;
            opts.user_given = true;
        } else if (server && (arg == "--leasetime" || arg.rfind("--leasetime=", 0) == 0)) {
            if (!value_of("--leasetime", value))
                return UsageError{"--leasetime needs a number of seconds"};
            if (!parse_leasetime(value, opts.leasetime))
                return UsageError{"--leasetime must be a whole number of seconds from 1 to 604800, "
                                  "not '" +
                                  value + "'"};
        } else if (server && (arg == "--state-dir" || arg.rfind("--state-dir=", 0) == 0)) {
            if (!value_of("--state-dir", value) || value.empty())
                return UsageError{"--state-dir needs a directory"};
            opts.state_dir = value;
            show.state_dir = value;
        } else if (server && arg == "--json") {
            json_seen = true;
        } else if (server && arg == "--metrics") {
            metrics_seen = true;
        } else if (!arg.empty() && arg[0] == '-') {
            return UsageError{"unknown option '" + arg + "' (see --help)"};
        } else {
            positional.push_back(arg);
        }
    }

    std::string command;
    if (server && !positional.empty() &&
        (positional[0] == "show" || positional[0] == "monitor" || positional[0] == "revoke")) {
        command = positional[0];
        is_show = command == "show";
        positional.erase(positional.begin());
    }
    if (json_seen && command != "show" && command != "monitor")
        return UsageError{"--json is only for 'show' and 'monitor'"};
    if (metrics_seen && !is_show)
        return UsageError{"--metrics is only for 'show'"};
    if (json_seen && metrics_seen)
        return UsageError{"--json and --metrics exclude each other"};
    if (command == "revoke") {
        if (positional.size() != 2)
            return UsageError{"revoke needs IFACE and a PEER-KEY or an ADDRESS (see --help)"};
        if (!is_valid_ifname(positional[0]))
            return UsageError{"'" + positional[0] + "' is not a valid interface name"};
        return RevokeCommand{positional[0], positional[1]};
    }
    if (positional.empty())
        return UsageError{"missing interface name (see --help)"};
    if (positional.size() > 1)
        return UsageError{"unexpected argument '" + positional[1] + "' (see --help)"};
    if (!is_valid_ifname(positional[0]))
        return UsageError{"'" + positional[0] + "' is not a valid interface name"};

    if (is_show) {
        show.iface = positional[0];
        show.json = json_seen;
        show.metrics = metrics_seen;
        return show;
    }
    if (command == "monitor")
        return MonitorCommand{positional[0], json_seen};
    opts.iface = positional[0];
    return opts;
}

} // namespace wgd
