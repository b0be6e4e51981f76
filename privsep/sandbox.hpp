// The sandbox of each process of the suite: user, chroot, capabilities,
// rlimits, no_new_privs and a seccomp allowlist (default: kill the process),
// then a self-check that refuses to run if any of it did not take.
//
// protod and leased (enter_sandbox), in this order:
//   1. open /proc/self/status (kept for the self-check), tzset()
//   2. resolve the user (getpwnam, before chroot); refuse uid 0
//   3. chroot into an empty directory, chdir("/")      (still root)
//   4. clear the capability bounding set                (needs CAP_SETPCAP)
//   5. setgroups, setresgid, setresuid to the user; clear every capability set
//   6. rlimits: RLIMIT_NPROC 0, RLIMIT_CORE 0, RLIMIT_FSIZE 0 (protod),
//      RLIMIT_NOFILE (if asked)
//   7. PR_SET_NO_NEW_PRIVS, then the seccomp filter of the role and side
//   8. self-check through the fd of step 1 (pread is in every allowlist)
// netd (enter_netd_sandbox): stays uid 0, chroots into the UAPI sockets'
// directory (UAPI backend) or the empty directory, keeps exactly
// CAP_NET_ADMIN, CAP_NET_BIND_SERVICE and CAP_KILL (effective + permitted:
// CAP_KILL only for the kernel's delivery of the children's parent-death
// signal; no call in netd's filter sends a signal to another process), bounding,
// inheritable and ambient sets empty, not dumpable, RLIMIT_DATA, then steps
// 7 and 8. Every role: RLIMIT_DATA, tgkill only to itself, fcntl only with
// the commands the code uses.
//
// The empty directory is /var/empty when it exists, else /run/wg-dynamic/empty,
// created root-owned, mode 0755. It must be owned by root, not writable by
// group or others, and empty; otherwise the sandbox is refused.
//
// Every process waits in privsep::Loop (epoll_wait), whose epoll descriptor
// is made before the sandbox; poll() is left for a channel waiting to pass a
// descriptor and for a child's exit. select is not allowed.
#pragma once

#include "common/result.hpp"

#include "common/cli.hpp"

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wgd::privsep {

enum class Role { netd, leased, protod };
const char* role_name(Role r);

struct SandboxSpec {
    Role role = Role::protod; // protod or leased
    Side side = Side::server;
    std::string user = "nobody";
    std::string empty_dir; // empty: /var/empty or /run/wg-dynamic/empty (see above)
    // 0 leaves RLIMIT_NOFILE alone; protod on the server needs about 1100.
    std::uint64_t max_open_files = 0;
    // 0 leaves RLIMIT_FSIZE alone (protod's is 0 whatever this says). Else
    // the largest file the process may write; SIGXFSZ is ignored, so a write
    // past it fails with EFBIG instead of killing the process.
    std::uint64_t max_file_bytes = 0;
};

// For protod and leased. On failure the process is half-sandboxed: exit.
Result<void> enter_sandbox(const SandboxSpec& spec);
// For netd. chroot: into uapi_dir when the UAPI backend serves IFACE (the
// only host path netd still reaches: wireguard-go re-creates its socket
// there when it restarts), else into the empty directory. uapi_dir empty:
// no AF_UNIX socket in the filter either.
struct NetdSandbox {
    bool chroot = true;
    std::string uapi_dir;
};
Result<void> enter_netd_sandbox(Side side, const NetdSandbox& how = {});

// Only the seccomp step (7) with PR_SET_NO_NEW_PRIVS; for tests and tools.
// uapi (netd only): AF_UNIX sockets for the UAPI backend.
Result<void> apply_seccomp_filter(Role role, Side side, bool uapi = true);

// The allowlist, for documentation and tests: one line per syscall.
struct AllowedSyscall {
    const char* name;
    const char* why;
    std::string condition; // empty: any arguments; else the argument filter
};
std::vector<AllowedSyscall> allowlist(Role role, Side side, bool uapi = true);

// What /proc/PID/status says about a process's confinement.
struct SandboxState {
    std::uint32_t uid[4] = {0, 0, 0, 0}; // real, effective, saved, filesystem
    int seccomp = -1;
    int no_new_privs = -1;
    std::uint64_t cap_inh = 0, cap_prm = 0, cap_eff = 0, cap_bnd = 0, cap_amb = 0;
};
std::optional<SandboxState> parse_sandbox_state(std::string_view proc_status_text);
std::optional<SandboxState> read_sandbox_state(pid_t pid);

// The capability mask netd keeps: CAP_NET_ADMIN | CAP_NET_BIND_SERVICE | CAP_KILL.
std::uint64_t netd_capabilities();
// Pure: does this state match the row of `role`? Says what differs if not.
Result<void> check_sandbox_state(Role role, const SandboxState& state);
// Reads an fd of /proc/self/status opened before the sandbox and checks it.
Result<void> verify_sandbox(Role role, int proc_self_status_fd);

} // namespace wgd::privsep
