#include "tests/system/suite.hpp"

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <sstream>

namespace wgd::lab {

std::string binary(const std::string& name) {
    return std::string(WGD_BINARY_DIR) + "/" + name;
}

std::string read_file(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

std::vector<pid_t> children_of(pid_t parent) {
    std::vector<pid_t> out;
    DIR* d = opendir("/proc");
    if (!d)
        return out;
    while (dirent* e = readdir(d)) {
        pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
        if (pid <= 0)
            continue;
        std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
        auto close_paren = stat.rfind(')');
        if (close_paren == std::string::npos)
            continue;
        std::istringstream rest(stat.substr(close_paren + 2));
        char state;
        pid_t ppid = 0;
        rest >> state >> ppid;
        if (ppid == parent)
            out.push_back(pid);
    }
    closedir(d);
    return out;
}

bool process_alive(pid_t pid) {
    return kill(pid, 0) == 0;
}

std::string hex_of(const std::vector<std::uint8_t>& bytes) {
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (std::uint8_t c : bytes) {
        s += digits[c >> 4];
        s += digits[c & 15];
    }
    return s;
}

bool process_running(pid_t pid) {
    const std::string status = read_file("/proc/" + std::to_string(pid) + "/status");
    const auto at = status.find("State:");
    if (at == std::string::npos)
        return false;
    const std::string state = status.substr(at, status.find('\n', at) - at);
    return state.find('Z') == std::string::npos;
}

int wait_exit(pid_t pid, int timeout_ms) {
    int status = 0;
    bool done = eventually(
        [&] {
            pid_t r = waitpid(pid, &status, WNOHANG);
            return r == pid;
        },
        timeout_ms);
    return done ? status : -1;
}

ServerRun start_server(Lab& lab, const std::vector<std::string>& extra_args) {
    ServerRun run;
    run.log = lab.state_dir + "/server.log";
    std::vector<std::string> args{"-f", "--state-dir", lab.state_dir};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    args.push_back(lab.server_iface);
    run.pid = lab.start(lab.server_ns, binary("wg-dynamic-server"), args, run.log);
    return run;
}

Exchange request(Lab& lab, int client, const std::string& body) {
    const LabClient& c = lab.clients.at(static_cast<std::size_t>(client));
    return exchange(c.ns, c.iface, c.lladdr, body);
}

bool wait_until_serving(Lab& lab, int client, int timeout_ms) {
    return eventually(
        [&] {
            // An invalid request: answered with errno=1, changes nothing.
            Exchange ex = request(lab, client, "request_ip=1\nipv4=10.0.0.1/24\n\n");
            return ex.connected && ex.reply.find("errno=") != std::string::npos;
        },
        timeout_ms);
}

} // namespace wgd::lab
