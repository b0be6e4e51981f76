// The command line of SPEC.md ("Command line"), parsed without side effects
// so that every rule is tested directly.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace wgd {

enum class Side { server, client };

// The sandboxed processes' user: its own system user (`make install` creates
// it from a sysusers.d file), so that they share a uid with no other daemon.
// Where it does not exist and --user was not given, nobody, with a warning.
inline constexpr const char* kDefaultUser = "_wg-dynamic";
inline constexpr const char* kFallbackUser = "nobody";

struct Options {
    std::string iface;
    bool foreground = false;
    int verbosity = 0;
    std::string user = kDefaultUser;
    bool user_given = false;                       // --user on the command line
    std::uint32_t leasetime = 3600;                // server only
    std::string state_dir = "/var/lib/wg-dynamic"; // server only
    // --check: run every precondition, print what would be served, write
    // nothing, exit 0 or 1.
    bool check = false;
};

struct ShowCommand { // wg-dynamic-server show IFACE [--json | --metrics] [--state-dir DIR]
    std::string iface;
    bool json = false;
    bool metrics = false;
    std::string state_dir = "/var/lib/wg-dynamic";
};

struct MonitorCommand { // wg-dynamic-server monitor IFACE [--json]
    std::string iface;
    bool json = false;
};

struct RevokeCommand { // wg-dynamic-server revoke IFACE PEER-KEY|ADDRESS
    std::string iface;
    std::string target; // as given: checked by the control request's parser
};

struct HelpRequested {};
struct VersionRequested {};
struct UsageError {
    std::string message; // one line, no trailing newline
};

using CliResult = std::variant<Options, ShowCommand, MonitorCommand, RevokeCommand, HelpRequested,
                               VersionRequested, UsageError>;

// args excludes argv[0].
CliResult parse_command_line(Side side, const std::vector<std::string>& args);

std::string usage_text(Side side);

// What both mains do before running anything: print usage (exit 0),
// the version (exit 0) or a one-line usage error (exit 1). nullopt: the
// result is a command to run.
std::optional<int> answer_without_running(Side side, const CliResult& result);
std::string program_name(Side side);

// --leasetime: a whole number of seconds, or of seconds, minutes, hours or
// days with the unit s, m, h or d (90s, 30m, 1h, 7d), from 1 s to 7 days.
// nullopt for zero, more than 7 days, an overflow or anything else.
std::optional<std::uint32_t> parse_leasetime(const std::string& text);

// Linux interface names: 1 to 15 bytes, no '/', no whitespace, not "." or "..".
bool is_valid_ifname(const std::string& name);

} // namespace wgd
