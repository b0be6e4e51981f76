#include "common/cli.hpp"

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
            "  -v, --verbose          more log detail (repeatable): -v debug lines, -vv also "
            "every request and answer\n"
            "      --user NAME        unprivileged user for the sandboxed processes\n"
            "                         (default: _wg-dynamic, which `make install` creates;\n"
            "                         nobody where it is missing)\n"
            "  -h, --help             usage, exit 0\n"
            "  -V, --version          version, exit 0\n"
            "      --check            check the preconditions, print what would be served, "
            "exit 0 or 1\n";
    if (side == Side::server)
        text += "      --leasetime TIME   lease length: seconds, or with a unit (90s, 30m, 1h, "
                "7d); default 1h\n"
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

std::optional<std::uint32_t> parse_leasetime(const std::string& text) {
    // A week at most: beyond it an address outlives any sensible outage by
    // far, and a lease of 0 would be over before it is used.
    constexpr std::uint64_t max_leasetime = 7 * 24 * 3600;
    if (text.empty())
        return std::nullopt;
    std::uint64_t unit = 1;
    std::size_t digits = text.size();
    switch (text.back()) {
    case 's':
        digits--;
        break;
    case 'm':
        unit = 60;
        digits--;
        break;
    case 'h':
        unit = 3600;
        digits--;
        break;
    case 'd':
        unit = 24 * 3600;
        digits--;
        break;
    default:
        break;
    }
    std::uint64_t v = 0;
    const char* first = text.data();
    auto [end, ec] = std::from_chars(first, first + digits, v);
    if (digits == 0 || ec != std::errc() || end != first + digits || v == 0 ||
        v > max_leasetime / unit)
        return std::nullopt;
    return static_cast<std::uint32_t>(v * unit);
}

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
        } else if (arg == "--check") {
            opts.check = true;
        } else if (arg == "--user" || arg.rfind("--user=", 0) == 0) {
            if (!value_of("--user", value) || value.empty())
                return UsageError{"--user needs a user name"};
            opts.user = value;
            opts.user_given = true;
        } else if (server && (arg == "--leasetime" || arg.rfind("--leasetime=", 0) == 0)) {
            if (!value_of("--leasetime", value))
                return UsageError{"--leasetime needs a time (seconds, or 90s, 30m, 1h, 7d)"};
            auto seconds = parse_leasetime(value);
            if (!seconds)
                return UsageError{"--leasetime must be a whole number of seconds, minutes (m), "
                                  "hours (h) or days (d) from 1s to 7d, not '" +
                                  value + "'"};
            opts.leasetime = *seconds;
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
    if (!command.empty() && opts.check)
        return UsageError{"--check is not for '" + command + "'"};
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
