// The one test lab: real network namespaces and real WireGuard for the tests
// that need the kernel (tests/netd, tests/privsep, tests/system, the load
// generator and the netd benchmark). Everything made is removed by the
// destructors, also when a test fails half-way.
//
// Two shapes. `Netns` + `WireguardGo`: a namespace entered by the calling
// thread (the test body, its sockets and the commands it runs live there)
// with wireguard-go processes in it, for netd's code called directly.
// `Lab`: a server namespace and N client namespaces joined by veth to a
// bridge-less star (one veth per client), each with a WireGuard interface,
// fresh keys, fe80::/64 on the server and fe80::X/128 on each client, for
// the daemons run as programs.
//
// The interfaces are wireguard-go's, or the kernel's when the environment
// says WGD_LAB_WIREGUARD=kernel (make check-kernel sets it inside its QEMU
// guests, whose kernels have the wireguard module): the daemons then talk to
// them through the generic netlink backend.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace wgd::lab {

bool running_as_root();

enum class Wireguard { userspace, kernel };
// From WGD_LAB_WIREGUARD: "kernel" or, by default, wireguard-go.
Wireguard lab_wireguard();
// Runs a shell command; returns its exit status (-1 if it did not exit).
int sh(const std::string& command);
// Runs a shell command and returns its standard output.
std::string sh_out(const std::string& command);
// A name no parallel run uses: prefix + pid + a per-process counter.
std::string unique_name(const std::string& prefix);

// A fresh network namespace that the calling thread enters; on scope exit
// the thread goes back to its namespace and this one is deleted.
class Netns {
  public:
    Netns();
    ~Netns();
    Netns(const Netns&) = delete;
    Netns& operator=(const Netns&) = delete;
    bool ok() const { return entered_; }
    const std::string& name() const { return name_; }

  private:
    std::string name_;
    int original_ = -1;
    bool created_ = false;
    bool entered_ = false;
};

// `wireguard-go -f IFNAME` in the calling thread's namespace, stopped on
// scope exit; ok() once its UAPI socket exists.
class WireguardGo {
  public:
    explicit WireguardGo(std::string ifname);
    ~WireguardGo();
    WireguardGo(const WireguardGo&) = delete;
    WireguardGo& operator=(const WireguardGo&) = delete;
    bool ok() const { return ready_; }
    const std::string& ifname() const { return ifname_; }
    std::string socket_path() const { return "/var/run/wireguard/" + ifname_ + ".sock"; }

  private:
    std::string ifname_;
    pid_t pid_ = -1;
    bool ready_ = false;
};

struct LabClient {
    std::string ns;      // network namespace
    std::string iface;   // its WireGuard interface
    std::string lladdr;  // fe80::X, its identity on the server
    std::string pubkey;  // base64
    std::string privkey; // base64
    pid_t wg_pid = -1;   // its wireguard-go, -1 with kernel WireGuard
};

struct LabOptions {
    int clients = 1;
    bool pools = true;              // 10.77.0.0/24 and 2001:db8:77::/64 on the server
    bool client_adds_lladdr = true; // fe80::X/128 on the client interface
};

class Lab {
  public:
    explicit Lab(LabOptions options = {});
    ~Lab();
    Lab(const Lab&) = delete;
    Lab& operator=(const Lab&) = delete;

    const std::string& id() const { return id_; }
    std::string server_ns;
    std::string server_iface;
    std::string server_pubkey;
    std::string state_dir; // a fresh temporary directory for lease files
    std::vector<LabClient> clients;

    // Runs a command in a namespace.
    int in(const std::string& ns, const std::string& command) const;
    std::string out(const std::string& ns, const std::string& command) const;
    // `wg show IFACE allowed-ips` on the server as "pubkey\tips" lines.
    std::string server_allowed_ips() const;
    // The allowed IPs of one peer on the server, space separated, sorted.
    std::string allowed_ips_of(const std::string& pubkey) const;

    // Stops the server's wireguard-go (SIGTERM by its pid: the interface
    // goes away) or deletes its kernel interface, makes a new one with the
    // same name and key, and puts back
    // what an operator's configuration would: listen port, peers with their
    // link-local /128 only, fe80::/64, the pools' addresses, link up.
    void restart_server_wireguard();

    // Starts a daemon from the build directory inside a namespace, in the
    // foreground (-f), with its stderr captured to a file; returns its pid.
    pid_t start(const std::string& ns, const std::string& binary,
                const std::vector<std::string>& args, const std::string& log_path);

    // Where wireguard-go's output goes; kept only if it exits on its own.
    static std::string wireguard_go_log(const std::string& iface);

  private:
    std::string id_;
    pid_t server_wg_pid_ = -1;
    std::string server_privkey_;
    bool pools_ = true;
    std::vector<pid_t> daemons_;
    bool ok_ = false;
    // A WireGuard interface named iface in ns: wireguard-go's (its pid) or
    // the kernel's (-1).
    pid_t make_wireguard(const std::string& ns, const std::string& iface);
    void teardown();
};

// One protocol exchange from a client namespace: binds [lladdr%iface]:port,
// connects to [fe80::%iface]:970, sends `request`, and reads until the peer
// closes, `wait_ms` passes, or (when stop_at_message) one complete message
// ("\n\n") arrived. Returns what was read; `closed` tells whether the server
// closed the connection. With half_close the client shuts down its sending
// side after the request (a client that gives up before the empty line).
struct Exchange {
    bool connected = false;
    bool closed = false;
    std::string reply;
    int error = 0; // errno of a failed connect
};
Exchange exchange(const std::string& ns, const std::string& iface, const std::string& lladdr,
                  const std::string& request, int source_port = 970, int wait_ms = 3000,
                  bool stop_at_message = true, bool half_close = false);

// Waits until `predicate` holds or `timeout_ms` passes.
template <class Predicate>
bool eventually(Predicate predicate, int timeout_ms = 5000);

// Reads the value of `key=` from a protocol message, "" when absent.
std::string field(const std::string& message, const std::string& key);

} // namespace wgd::lab

#include <chrono>
#include <thread>

template <class Predicate>
bool wgd::lab::eventually(Predicate predicate, int timeout_ms) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
        if (predicate())
            return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return predicate();
}

// For a gtest body that needs root (namespaces, rtnetlink, wireguard-go,
// chroot, user switch, capabilities): skipped, with the reason, otherwise.
#define WGD_REQUIRE_ROOT()                                                                         \
    do {                                                                                           \
        if (!::wgd::lab::running_as_root())                                                        \
            GTEST_SKIP() << "needs root (namespaces, WireGuard, sandboxes)";                       \
    } while (0)
