// Helpers for system tests of the daemons: their processes, logs and lease
// exchanges, on top of the lab.
#pragma once

#include "tests/lab/lab.hpp"

#include <sys/types.h>

#include <string>
#include <vector>

namespace wgd::lab {

std::string binary(const std::string& name); // WGD_BINARY_DIR/name
std::vector<pid_t> children_of(pid_t parent);
std::string read_file(const std::string& path);
// Bytes as lowercase hex, two digits each (the hostile scripts' frames).
std::string hex_of(const std::vector<std::uint8_t>& bytes);
bool process_alive(pid_t pid);
// Running, as opposed to gone or a zombie (reaped by whoever adopted it,
// which in a container may take its time).
bool process_running(pid_t pid);
// Waits for pid (a child of the test) to exit; its status, or -1 on timeout.
int wait_exit(pid_t pid, int timeout_ms);

// A server daemon in the lab's server namespace.
struct ServerRun {
    pid_t pid = -1;
    std::string log;
};
ServerRun start_server(Lab& lab, const std::vector<std::string>& extra_args = {});
// Sends an invalid request (no side effect) until the server answers.
bool wait_until_serving(Lab& lab, int client = 0, int timeout_ms = 10000);

// One request from client i; returns the reply.
Exchange request(Lab& lab, int client, const std::string& body = "request_ip=1\n\n");

} // namespace wgd::lab
