// Sample messages shared by the codec's tests: valid and invalid, both directions.
#pragma once

#include <string>
#include <vector>

namespace codec_samples {

using namespace std::string_literals;

struct Sample {
    std::string name;
    std::string bytes;
    int errnum; // 0: parses; 1 or 2: the parse error's errno
};

inline std::vector<Sample> requests() {
    return {
        {"seed_no_address", "request_ip=1\n\n", 0},
        {"spec_example", "request_ip=1\nipv4=192.168.47.11/32\nipv6=2001:db8::17/128\n\n", 0},
        {"any_both", "request_ip=1\nipv4=0.0.0.0/32\nipv6=::/128\n\n", 0},
        {"any_no_len", "request_ip=1\nipv4=0.0.0.0\nipv6=::\n\n", 0},
        {"only_ipv6", "request_ip=1\nipv6=2001:db8::17\n\n", 0},
        {"legacy_both", "request_ip=1\nip=192.0.2.7/32\nip=2001:db8::7/128\n\n", 0},
        {"legacy_prototype_client", "request_ip=1\nip=0.0.0.0\nleasestart=0\nleasetime=0\n\n", 0},
        {"unknown_key", "request_ip=1\nhostname=peer-1\nipv4=192.0.2.7\n\n", 0},
        {"no_command", "\n", 1},
        {"command_not_first", "ipv4=192.0.2.7/32\nrequest_ip=1\n\n", 1},
        {"unknown_command", "release_ip=1\n\n", 2},
        {"version_2", "request_ip=2\n\n", 2},
        {"version_leading_zero", "request_ip=01\n\n", 1},
        {"repeated_ipv4", "request_ip=1\nipv4=192.0.2.7\nipv4=192.0.2.8\n\n", 1},
        {"repeated_ip_family", "request_ip=1\nip=192.0.2.7\nip=192.0.2.8\n\n", 1},
        {"both_dialects", "request_ip=1\nip=192.0.2.7\nipv6=2001:db8::1\n\n", 1},
        {"prefix_24", "request_ip=1\nipv4=192.0.2.0/24\n\n", 1},
        {"link_local", "request_ip=1\nipv6=fe80::1/128\n\n", 1},
        {"any_short_prefix", "request_ip=1\nipv6=::/0\n\n", 1},
        {"upper_case_key", "request_ip=1\nIPV4=192.0.2.7\n\n", 1},
        {"no_equals", "request_ip=1\nipv4\n\n", 1},
        {"empty_key", "request_ip=1\n=192.0.2.7\n\n", 1},
        {"crlf", "request_ip=1\r\n\r\n\n", 1},
        {"nul", "request_ip=1\nipv4=192.0.2.7\0\n\n"s, 1},
    };
}

inline std::vector<Sample> responses() {
    return {
        {"spec_example",
         "request_ip=1\nipv4=192.168.47.11/32\nipv6=2001:db8::17/128\nleasestart=1764201600\n"
         "leasetime=3600\nerrno=0\n\n",
         0},
        {"legacy_success",
         "ip=192.0.2.7/32\nip=2001:db8::7/128\nleasestart=1\nleasetime=60\nerrno=0\n\n", 0},
        {"invalid_request", "request_ip=1\nerrno=1\nerrmsg=Invalid request\n\n", 0},
        {"partial",
         "request_ip=1\nipv4=192.0.2.7/32\nleasestart=5\nleasetime=60\nerrno=3\n"
         "errmsg=Chosen IP(s) unavailable\n\n",
         0},
        {"legacy_error", "errno=2\nerrmsg=Unsupported protocol\n\n", 0},
        {"unknown_key",
         "request_ip=1\nipv4=192.0.2.7/32\nleasestart=5\nleasetime=60\nserver=x\n"
         "errno=0\n\n",
         0},
        {"seed_no_errno", "request_ip=1\nipv4=192.168.47.11/32\n\n", 1},
        {"route", "request_ip=1\nipv4=10.0.0.0/24\nleasestart=5\nleasetime=60\nerrno=0\n\n", 1},
        {"link_local", "request_ip=1\nipv6=fe80::2/128\nleasestart=5\nleasetime=60\nerrno=0\n\n",
         1},
        {"any", "request_ip=1\nipv4=0.0.0.0/32\nleasestart=5\nleasetime=60\nerrno=0\n\n", 1},
        {"no_leasetime", "request_ip=1\nipv4=192.0.2.7/32\nleasestart=5\nerrno=0\n\n", 1},
        {"version_3", "request_ip=3\nerrno=0\n\n", 2},
        {"mixed_dialect",
         "ip=192.0.2.7/32\nipv6=2001:db8::7/128\nleasestart=1\nleasetime=60\n"
         "errno=0\n\n",
         1},
        {"negative_errno", "request_ip=1\nerrno=-1\n\n", 1},
        {"errmsg_cr", "request_ip=1\nerrno=1\nerrmsg=bad\r\n\n", 1},
        {"nul", "request_ip=1\0\nerrno=0\n\n"s, 1},
    };
}

} // namespace codec_samples
