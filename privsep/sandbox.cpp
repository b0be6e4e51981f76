#include "privsep/sandbox.hpp"

#include "common/fd.hpp"

#include <cap-ng.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <pwd.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace wgd::privsep {

namespace {

// ---------------------------------------------------------------------------
// The allowlists, all in one place. Each line: syscall, which roles, which
// sides, why. To allow one more call for a role, add one line here.

enum : unsigned { kNetd = 1u << 0, kLeased = 1u << 1, kProtod = 1u << 2 };
constexpr unsigned kAllRoles = kNetd | kLeased | kProtod;
enum : unsigned { kServer = 1u << 0, kClient = 1u << 1 };
constexpr unsigned kBothSides = kServer | kClient;

struct Entry {
    const char* name;
    unsigned roles;
    unsigned sides;
    const char* why;
};

constexpr Entry kAllowlist[] = {
    // Every process: channels, logging, the event loop, the C/C++ runtime.
    {"read", kAllRoles, kBothSides, "signalfd, received stream sockets, UAPI replies"},
    {"write", kAllRoles, kBothSides, "log lines to stderr, stream sockets, UAPI requests"},
    {"readv", kAllRoles, kBothSides, "stdio and libstdc++ read with vectors"},
    {"writev", kAllRoles, kBothSides, "stdio and libstdc++ write with vectors"},
    {"close", kAllRoles, kBothSides, "close received, accepted and finished fds"},
    {"recvmsg", kAllRoles, kBothSides, "channel messages with SCM_RIGHTS; netlink replies"},
    {"sendmsg", kAllRoles, kBothSides, "channel messages with SCM_RIGHTS; netlink requests"},
    {"recvfrom", kAllRoles, kBothSides, "glibc recv() on sockets; libmnl's receive"},
    {"sendto", kAllRoles, kBothSides, "glibc send() on sockets; libmnl's send"},
    {"epoll_ctl", kAllRoles, kBothSides, "the event loop watches what each descriptor waits for"},
    {"epoll_wait", kAllRoles, kBothSides, "the event loop's wait"},
    {"epoll_pwait", kAllRoles, kBothSides, "glibc may implement epoll_wait with epoll_pwait"},
    {"poll", kAllRoles, kBothSides, "a channel waiting to pass a descriptor; a child's exit"},
    {"ppoll", kAllRoles, kBothSides, "glibc may implement poll() with ppoll"},
    {"clock_gettime", kAllRoles, kBothSides, "timers and lease times when vDSO is unavailable"},
    {"gettimeofday", kAllRoles, kBothSides, "time() fallback when vDSO is unavailable"},
    {"clock_nanosleep", kAllRoles, kBothSides, "sleeps (backoff); std::this_thread::sleep_for"},
    {"nanosleep", kAllRoles, kBothSides, "sleeps on older libc paths"},
    {"getpid", kAllRoles, kBothSides, "raise()/abort(); netlink port ids"},
    {"gettid", kAllRoles, kBothSides, "raise()/abort()"},
    {"exit", kAllRoles, kBothSides, "thread exit"},
    {"exit_group", kAllRoles, kBothSides, "process exit"},
    {"brk", kAllRoles, kBothSides, "malloc grows the heap"},
    {"mmap", kAllRoles, kBothSides, "malloc for large blocks"},
    {"munmap", kAllRoles, kBothSides, "free of large blocks"},
    {"mremap", kAllRoles, kBothSides, "realloc of large blocks"},
    {"madvise", kAllRoles, kBothSides, "free returns memory to the kernel"},
    {"rt_sigreturn", kAllRoles, kBothSides, "return from a signal handler"},
    {"rt_sigprocmask", kAllRoles, kBothSides, "abort() and signalfd setup mask signals"},
    {"rt_sigaction", kAllRoles, kBothSides, "abort() resets SIGABRT's handler"},
    {"futex", kAllRoles, kBothSides, "libstdc++ locks, static init, first exception"},
    {"getrandom", kAllRoles, kBothSides, "libsodium randombytes (aborts without it)"},
    {"fstat", kAllRoles, kBothSides, "stdio's first buffered output"},
    {"newfstatat", kAllRoles, kBothSides, "glibc implements fstat() with newfstatat"},
    {"lseek", kAllRoles, kBothSides, "stdio; offsets of handed-in files"},
    {"pread64", kAllRoles, kBothSides,
     "self-check reads /proc/self/status through an fd opened before the sandbox"},
    {"restart_syscall", kAllRoles, kBothSides, "the kernel restarts an interrupted sleep"},
    {"sigaltstack", kAllRoles, kBothSides, "sanitizer builds set up an alternate stack"},

    // protod: works only on sockets handed to it; creates none.
    {"accept", kProtod, kServer, "accept on the listening sockets handed in by netd"},
    {"accept4", kProtod, kServer, "accept with SOCK_NONBLOCK|SOCK_CLOEXEC"},
    {"getpeername", kProtod, kBothSides,
     "server: check source port 970 and link-local source; client: log the server"},
    {"getsockname", kProtod, kBothSides, "the local address of a connection (interface scope)"},
    {"setsockopt", kProtod, kBothSides,
     "per-connection options; client: SO_LINGER {1,0} so no TIME_WAIT holds port 970"},
    {"getsockopt", kProtod, kBothSides,
     "client: SO_ERROR once netd's connect completes; server: SO_PEERCRED of a control client"},
    {"shutdown", kProtod, kBothSides, "half-close after the last answer/request"},

    // leased on the server: the lease file, an fd handed in by netd.
    {"fdatasync", kLeased, kServer, "lease file durability before answering"},
    {"fsync", kLeased, kServer, "lease file durability (metadata after truncation)"},
    {"pwrite64", kLeased, kServer, "write lease records at an offset"},
    {"ftruncate", kLeased, kServer, "compaction rewrites a handed-in file in place"},

    // netd: netlink, the UAPI socket, the sockets it hands to protod, and its children.
    {"bind", kNetd, kBothSides,
     "netlink multicast groups; client socket to [fe80::X]:970; server listener"},
    {"setsockopt", kNetd, kBothSides,
     "netlink options (NETLINK_EXT_ACK, buffer sizes); SO_REUSEADDR, IPV6_V6ONLY, SO_BINDTODEVICE"},
    {"getsockopt", kNetd, kBothSides, "SO_ERROR after a non-blocking connect"},
    {"getsockname", kNetd, kBothSides, "libmnl reads its netlink port id"},
    {"getpeername", kNetd, kBothSides, "check the connected socket before handing it over"},
    {"wait4", kNetd, kBothSides, "reap children (waitpid)"},
    {"waitid", kNetd, kBothSides, "reap children"},
    {"signalfd4", kNetd, kBothSides, "SIGCHLD, SIGTERM and SIGINT as an fd in the event loop"},
};

// socket() for netd, by arguments; SOCK_CLOEXEC and SOCK_NONBLOCK are masked out of the type.
struct SocketRule {
    int domain;
    int type;
    int protocol;
    unsigned sides;
    const char* why;
};

constexpr SocketRule kNetdSockets[] = {
    {AF_NETLINK, SOCK_RAW, NETLINK_ROUTE, kBothSides, "rtnetlink: addresses, routes, links"},
    {AF_NETLINK, SOCK_RAW, NETLINK_GENERIC, kServer,
     "generic netlink: the kernel WireGuard backend (and the backend choice again after a failed "
     "read)"},
    // Only with the UAPI backend (kUapiOnly below), and then reaching
    // nothing but the UAPI sockets: netd is chrooted into their directory.
    {AF_UNIX, SOCK_STREAM, 0, kServer, "the UAPI socket IFACE.sock (wireguard-go restarted)"},
    // The server made its listener before the sandbox: only the client
    // connects to the server again and again.
    {AF_INET6, SOCK_STREAM, 0, kClient, "client: connection from [fe80::X]:970 to the server"},
    {AF_INET6, SOCK_STREAM, IPPROTO_TCP, kClient, "same, with the protocol spelled out"},
};

// connect() for netd, by address length (arg 2), since the address itself
// is out of a filter's reach. A path is resolved inside netd's chroot; an
// abstract unix name is not, and its length is the address length: netd's
// UAPI code always passes the whole sockaddr_un, so the only abstract names
// left in reach are those of the full 107 bytes. No other address family
// has a sockaddr of either length.
struct ConnectRule {
    socklen_t length;
    unsigned sides;
    bool uapi_only;
    const char* why;
};

constexpr ConnectRule kNetdConnects[] = {
    {sizeof(sockaddr_un), kServer, true,
     "the UAPI socket IFACE.sock, by path in netd's chroot (wireguard-go restarted)"},
    {sizeof(sockaddr_in6), kClient, false, "client: TCP connection to [fe80::%IFACE]:970"},
};

// RLIMIT_DATA (heap and private writable mappings) of netd, leased and
// protod. Measured peaks (make bench): netd's device copy about 100 B a peer
// (BM_DeviceMemory: 6.5 MB at 65,536 peers), leased's restart 275 B a peer
// (BM_RestartPeakMemory: 17.1 MB at 65,536 peers); protod holds at most
// 1,024 connections of at most 16 kB of buffers. The limits leave room for
// a few million peers and stop a process taken over from eating the host.
constexpr rlim_t kDataLimit[] = {512u << 20, 1024u << 20, 256u << 20};

// AddressSanitizer reserves terabytes of shadow memory up front, which no
// data limit admits; sanitizer builds (tests only) run without one.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif
#else
constexpr bool kAddressSanitizer = false;
#endif

// The fcntl commands the code uses after its sandbox (protod's O_NONBLOCK
// on handed-in sockets; FD_CLOEXEC for completeness). Never F_SETOWN or
// F_SETSIG (signals to others), F_DUPFD, locks, leases or F_NOTIFY.
constexpr int kFcntlCommands[] = {F_GETFL, F_SETFL, F_GETFD, F_SETFD};

unsigned role_bit(Role r) {
    switch (r) {
    case Role::netd:
        return kNetd;
    case Role::leased:
        return kLeased;
    case Role::protod:
        return kProtod;
    }
    return 0;
}

unsigned side_bit(Side s) {
    return s == Side::server ? kServer : kClient;
}

const char* domain_name(int d) {
    switch (d) {
    case AF_NETLINK:
        return "AF_NETLINK";
    case AF_UNIX:
        return "AF_UNIX";
    case AF_INET6:
        return "AF_INET6";
    }
    return "?";
}

std::string socket_condition(const SocketRule& r) {
    std::string proto = std::to_string(r.protocol);
    if (r.domain == AF_NETLINK)
        proto = r.protocol == NETLINK_ROUTE ? "NETLINK_ROUTE" : "NETLINK_GENERIC";
    else if (r.domain == AF_INET6 && r.protocol == IPPROTO_TCP)
        proto = "IPPROTO_TCP";
    std::string type = r.type == SOCK_RAW ? "SOCK_RAW" : "SOCK_STREAM";
    return std::string(domain_name(r.domain)) + ", " + type + "[|SOCK_CLOEXEC|SOCK_NONBLOCK], " +
           proto;
}

Result<void> fail(const std::string& what) {
    return failure(what + ": " + std::strerror(errno));
}

// ---------------------------------------------------------------------------

const char* default_empty_dir() {
    struct stat st;
    if (::stat("/var/empty", &st) == 0 && S_ISDIR(st.st_mode))
        return "/var/empty";
    return "/run/wg-dynamic/empty";
}

Result<void> prepare_empty_dir(const std::string& dir, bool create) {
    if (create) {
        // Only our own default path is created; a path given by the caller must exist.
        if (::mkdir("/run/wg-dynamic", 0755) < 0 && errno != EEXIST)
            return fail("mkdir /run/wg-dynamic");
        if (::mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST)
            return fail("mkdir " + dir);
    }
    struct stat st;
    if (::lstat(dir.c_str(), &st) < 0)
        return fail("stat " + dir);
    if (!S_ISDIR(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022) != 0)
        return failure(dir + " must be a directory owned by root, not writable by others");
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr)
        return fail("opendir " + dir);
    int entries = 0;
    while (dirent* e = ::readdir(d)) {
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
            ++entries;
    }
    ::closedir(d);
    if (entries != 0)
        return failure(dir + " is not empty");
    return {};
}

Result<void> set_limit(int resource, rlim_t value, const char* name) {
    rlimit lim{value, value};
    if (::setrlimit(resource, &lim) < 0)
        return fail(std::string("setrlimit ") + name);
    return {};
}

Result<void> set_data_limit(rlim_t value) {
    if (kAddressSanitizer)
        return {};
    return set_limit(RLIMIT_DATA, value, "RLIMIT_DATA");
}

UniqueFd open_own_status() {
    return UniqueFd(::open("/proc/self/status", O_RDONLY | O_CLOEXEC));
}

} // namespace

const char* role_name(Role r) {
    switch (r) {
    case Role::netd:
        return "netd";
    case Role::leased:
        return "leased";
    case Role::protod:
        return "protod";
    }
    return "?";
}

std::vector<AllowedSyscall> allowlist(Role role, Side side, bool uapi) {
    std::vector<AllowedSyscall> out;
    for (const Entry& e : kAllowlist) {
        if ((e.roles & role_bit(role)) && (e.sides & side_bit(side)))
            out.push_back({e.name, e.why, {}});
    }
    out.push_back({"tgkill", "raise()/abort() deliver the signal to ourselves",
                   "tgid == own pid (no signal to any other process)"});
    out.push_back({"fcntl", "O_NONBLOCK on handed-in sockets; FD_CLOEXEC",
                   "cmd in F_GETFL, F_SETFL, F_GETFD, F_SETFD"});
    if (role == Role::netd) {
        for (const SocketRule& r : kNetdSockets) {
            if ((r.sides & side_bit(side)) && (uapi || r.domain != AF_UNIX))
                out.push_back({"socket", r.why, socket_condition(r)});
        }
        for (const ConnectRule& r : kNetdConnects) {
            if ((r.sides & side_bit(side)) && (uapi || !r.uapi_only))
                out.push_back(
                    {"connect", r.why, "addrlen == " + std::to_string(unsigned(r.length))});
        }
    }
    return out;
}

Result<void> apply_seccomp_filter(Role role, Side side, bool uapi) {
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return fail("PR_SET_NO_NEW_PRIVS");
    scmp_filter_ctx ctx = ::seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (ctx == nullptr)
        return failure("seccomp_init failed");
    struct Release {
        scmp_filter_ctx c;
        ~Release() { ::seccomp_release(c); }
    } release{ctx};
    // A binary tree over the syscall numbers instead of a linear list: every
    // system call of every sandboxed process runs this filter (about 50
    // rules; protod makes a dozen calls per request).
    if (int rc = ::seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2); rc < 0)
        return failure(std::string("seccomp optimisation attribute: ") + std::strerror(-rc));

    for (const Entry& e : kAllowlist) {
        if (!(e.roles & role_bit(role)) || !(e.sides & side_bit(side)))
            continue;
        int nr = ::seccomp_syscall_resolve_name(e.name);
        if (nr == __NR_SCMP_ERROR)
            continue; // not a syscall on this architecture (e.g. poll on arm64)
        int rc = ::seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
        if (rc < 0)
            return failure(std::string("seccomp rule for ") + e.name + ": " + std::strerror(-rc));
    }
    const scmp_datum_t low32 = 0xffffffffu;
    // Signals only to ourselves: arg 0 of tgkill is the thread group.
    {
        const scmp_arg_cmp own{0, SCMP_CMP_MASKED_EQ, low32, scmp_datum_t(::getpid())};
        if (int rc = ::seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1, &own);
            rc < 0)
            return failure(std::string("seccomp rule for tgkill: ") + std::strerror(-rc));
    }
    for (int cmd : kFcntlCommands) {
        const scmp_arg_cmp c{1, SCMP_CMP_MASKED_EQ, low32, scmp_datum_t(cmd)};
        if (int rc = ::seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, SCMP_SYS(fcntl), 1, &c); rc < 0)
            return failure(std::string("seccomp rule for fcntl: ") + std::strerror(-rc));
    }
    if (role == Role::netd) {
        const scmp_datum_t type_mask = low32 & ~scmp_datum_t(SOCK_CLOEXEC | SOCK_NONBLOCK);
        for (const SocketRule& r : kNetdSockets) {
            if (!(r.sides & side_bit(side)) || (!uapi && r.domain == AF_UNIX))
                continue;
            const scmp_arg_cmp args[3] = {
                {0, SCMP_CMP_MASKED_EQ, low32, scmp_datum_t(r.domain)},
                {1, SCMP_CMP_MASKED_EQ, type_mask, scmp_datum_t(r.type)},
                {2, SCMP_CMP_MASKED_EQ, low32, scmp_datum_t(r.protocol)},
            };
            int rc = ::seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 3, args);
            if (rc < 0)
                return failure(std::string("seccomp rule for socket: ") + std::strerror(-rc));
        }
        for (const ConnectRule& r : kNetdConnects) {
            if (!(r.sides & side_bit(side)) || (!uapi && r.uapi_only))
                continue;
            const scmp_arg_cmp len{2, SCMP_CMP_MASKED_EQ, low32, scmp_datum_t(r.length)};
            int rc = ::seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, SCMP_SYS(connect), 1, &len);
            if (rc < 0)
                return failure(std::string("seccomp rule for connect: ") + std::strerror(-rc));
        }
    }
    int rc = ::seccomp_load(ctx);
    if (rc < 0)
        return failure(std::string("seccomp_load: ") + std::strerror(-rc));
    return {};
}

Result<void> enter_sandbox(const SandboxSpec& spec) {
    if (spec.role == Role::netd)
        return failure("enter_sandbox is for protod and leased; netd uses enter_netd_sandbox");
    const pid_t parent = ::getppid();
    UniqueFd status = open_own_status();
    if (!status)
        return fail("open /proc/self/status");
    // localtime_r would open /etc/localtime later: read the zone now.
    ::tzset();

    errno = 0;
    passwd* pw = ::getpwnam(spec.user.c_str());
    if (pw == nullptr)
        return failure("unknown user " + spec.user);
    const uid_t uid = pw->pw_uid;
    const gid_t gid = pw->pw_gid;
    if (uid == 0 || gid == 0)
        return failure("user " + spec.user + " is root or in group root; refusing");

    const bool use_default = spec.empty_dir.empty();
    const std::string dir = use_default ? default_empty_dir() : spec.empty_dir;
    if (auto o = prepare_empty_dir(dir, use_default && dir != "/var/empty"); !o)
        return o;
    if (::chroot(dir.c_str()) < 0)
        return fail("chroot " + dir);
    if (::chdir("/") < 0)
        return fail("chdir /");

    // Drop the bounding set while CAP_SETPCAP is still held, then every
    // group and id, keeping no capability across the switch.
    ::capng_clear(CAPNG_SELECT_ALL);
    int rc = ::capng_change_id(int(uid), int(gid),
                               capng_flags_t(CAPNG_DROP_SUPP_GRP | CAPNG_CLEAR_BOUNDING));
    if (rc != 0)
        return failure("capng_change_id failed (" + std::to_string(rc) + ")");
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (::getresuid(&ru, &eu, &su) < 0 || ::getresgid(&rg, &eg, &sg) < 0)
        return fail("getresuid");
    if (ru != uid || eu != uid || su != uid || rg != gid || eg != gid || sg != gid)
        return failure("user switch did not take");
    if (::getgroups(0, nullptr) != 0)
        return failure("supplementary groups remain");
    if (::setresuid(0, 0, 0) == 0)
        return failure("could switch back to root");
    ::capng_clear(CAPNG_SELECT_CAPS);
    if (::capng_apply(CAPNG_SELECT_CAPS) != 0)
        return failure("capng_apply failed");
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
        return fail("clear ambient capabilities");
    // The uid change cleared the parent-death signal set at spawn: set it
    // again, now as this uid. The kernel sends it with the dying parent's
    // credentials, which is why netd keeps CAP_KILL (and no call to use it).
    // A parent that died before this point would never send it: check.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        return fail("PR_SET_PDEATHSIG");
    if (::getppid() != parent)
        return failure("the parent process is gone");
    if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        return fail("PR_SET_DUMPABLE");

    if (auto o = set_limit(RLIMIT_NPROC, 0, "RLIMIT_NPROC"); !o)
        return o;
    if (auto o = set_data_limit(kDataLimit[spec.role == Role::leased ? 1 : 2]); !o)
        return o;
    if (auto o = set_limit(RLIMIT_CORE, 0, "RLIMIT_CORE"); !o)
        return o;
    if (spec.role == Role::protod) {
        if (auto o = set_limit(RLIMIT_FSIZE, 0, "RLIMIT_FSIZE"); !o)
            return o;
    } else if (spec.max_file_bytes != 0) {
        if (::signal(SIGXFSZ, SIG_IGN) == SIG_ERR)
            return fail("ignore SIGXFSZ");
        if (auto o = set_limit(RLIMIT_FSIZE, spec.max_file_bytes, "RLIMIT_FSIZE"); !o)
            return o;
    }
    if (spec.max_open_files != 0) {
        if (auto o = set_limit(RLIMIT_NOFILE, spec.max_open_files, "RLIMIT_NOFILE"); !o)
            return o;
    }

    if (auto o = apply_seccomp_filter(spec.role, spec.side); !o)
        return o;
    return verify_sandbox(spec.role, status.get());
}

Result<void> enter_netd_sandbox(Side side, const NetdSandbox& how) {
    UniqueFd status = open_own_status();
    if (!status)
        return fail("open /proc/self/status");
    ::tzset();
    if (::geteuid() != 0)
        return failure("netd must run as root");
    // No host path but the UAPI sockets' directory (UAPI backend), or none
    // at all: while CAP_SYS_CHROOT is still held.
    if (how.chroot) {
        std::string dir = how.uapi_dir;
        if (dir.empty()) {
            dir = default_empty_dir();
            if (auto o = prepare_empty_dir(dir, dir != "/var/empty"); !o)
                return o;
        }
        if (::chroot(dir.c_str()) < 0)
            return fail("chroot " + dir);
        if (::chdir("/") < 0)
            return fail("chdir /");
    }

    ::capng_clear(CAPNG_SELECT_ALL);
    // CAP_KILL only so that the kernel may deliver the children's
    // parent-death signal across their uid when netd dies; netd's filter
    // has no call that sends a signal to another process.
    if (::capng_updatev(CAPNG_ADD, capng_type_t(CAPNG_EFFECTIVE | CAPNG_PERMITTED), CAP_NET_ADMIN,
                        CAP_NET_BIND_SERVICE, CAP_KILL, -1) != 0)
        return failure("capng_updatev failed");
    // Bounding set first (needs CAP_SETPCAP), then the capability sets.
    if (::capng_apply(CAPNG_SELECT_BOUNDS) != 0)
        return failure("clearing the bounding set failed");
    if (::capng_apply(CAPNG_SELECT_CAPS) != 0)
        return failure("capng_apply failed");
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
        return fail("clear ambient capabilities");
    if (auto o = set_limit(RLIMIT_CORE, 0, "RLIMIT_CORE"); !o)
        return o;
    // Not dumpable: no ptrace attach and /proc/PID owned by root, even by a
    // process of netd's uid.
    if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        return fail("PR_SET_DUMPABLE");

    if (auto o = set_data_limit(kDataLimit[0]); !o)
        return o;

    if (auto o = apply_seccomp_filter(Role::netd, side, !how.uapi_dir.empty()); !o)
        return o;
    return verify_sandbox(Role::netd, status.get());
}

// ---------------------------------------------------------------------------

std::optional<SandboxState> parse_sandbox_state(std::string_view text) {
    SandboxState s;
    unsigned seen = 0;
    enum : unsigned {
        kUid = 1,
        kSeccomp = 2,
        kNnp = 4,
        kInh = 8,
        kPrm = 16,
        kEff = 32,
        kBnd = 64,
        kAmb = 128
    };
    auto parse_hex = [](std::string_view v, std::uint64_t& out) {
        if (v.empty() || v.size() > 16)
            return false;
        std::uint64_t x = 0;
        for (char c : v) {
            int d;
            if (c >= '0' && c <= '9')
                d = c - '0';
            else if (c >= 'a' && c <= 'f')
                d = c - 'a' + 10;
            else
                return false;
            x = (x << 4) | std::uint64_t(d);
        }
        out = x;
        return true;
    };
    auto parse_dec = [](std::string_view v, std::uint64_t& out) {
        if (v.empty() || v.size() > 10)
            return false;
        std::uint64_t x = 0;
        for (char c : v) {
            if (c < '0' || c > '9')
                return false;
            x = x * 10 + std::uint64_t(c - '0');
        }
        out = x;
        return true;
    };
    while (!text.empty()) {
        std::size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        std::size_t colon = line.find(':');
        if (colon == std::string_view::npos)
            continue;
        std::string_view key = line.substr(0, colon);
        std::string_view value = line.substr(colon + 1);
        while (!value.empty() && (value.front() == '\t' || value.front() == ' '))
            value.remove_prefix(1);
        std::uint64_t n = 0;
        if (key == "Uid") {
            for (int i = 0; i < 4; ++i) {
                std::size_t end = value.find_first_of("\t ");
                if (!parse_dec(value.substr(0, end), n))
                    return std::nullopt;
                s.uid[i] = std::uint32_t(n);
                value = end == std::string_view::npos ? std::string_view() : value.substr(end + 1);
            }
            seen |= kUid;
        } else if (key == "Seccomp") {
            if (!parse_dec(value, n))
                return std::nullopt;
            s.seccomp = int(n);
            seen |= kSeccomp;
        } else if (key == "NoNewPrivs") {
            if (!parse_dec(value, n))
                return std::nullopt;
            s.no_new_privs = int(n);
            seen |= kNnp;
        } else if (key == "CapInh") {
            if (!parse_hex(value, s.cap_inh))
                return std::nullopt;
            seen |= kInh;
        } else if (key == "CapPrm") {
            if (!parse_hex(value, s.cap_prm))
                return std::nullopt;
            seen |= kPrm;
        } else if (key == "CapEff") {
            if (!parse_hex(value, s.cap_eff))
                return std::nullopt;
            seen |= kEff;
        } else if (key == "CapBnd") {
            if (!parse_hex(value, s.cap_bnd))
                return std::nullopt;
            seen |= kBnd;
        } else if (key == "CapAmb") {
            if (!parse_hex(value, s.cap_amb))
                return std::nullopt;
            seen |= kAmb;
        }
    }
    if (seen != 255)
        return std::nullopt;
    return s;
}

namespace {

std::optional<std::string> read_all(int fd) {
    std::string text;
    char buf[4096];
    off_t off = 0;
    for (;;) {
        ssize_t n = ::pread(fd, buf, sizeof buf, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return std::nullopt;
        if (n == 0)
            return text;
        text.append(buf, std::size_t(n));
        off += n;
        if (text.size() > (1u << 20))
            return std::nullopt;
    }
}

} // namespace

std::optional<SandboxState> read_sandbox_state(pid_t pid) {
    std::string path = "/proc/" + std::to_string(pid) + "/status";
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        return std::nullopt;
    auto text = read_all(fd.get());
    if (!text)
        return std::nullopt;
    return parse_sandbox_state(*text);
}

std::uint64_t netd_capabilities() {
    return (std::uint64_t(1) << CAP_NET_ADMIN) | (std::uint64_t(1) << CAP_NET_BIND_SERVICE) |
           (std::uint64_t(1) << CAP_KILL);
}

Result<void> check_sandbox_state(Role role, const SandboxState& s) {
    auto hex = [](std::uint64_t v) {
        char b[20];
        std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
        return std::string(b);
    };
    const std::uint64_t caps = role == Role::netd ? netd_capabilities() : 0;
    std::string why;
    if (s.seccomp != 2)
        why += " Seccomp=" + std::to_string(s.seccomp) + " (want 2);";
    if (s.no_new_privs != 1)
        why += " NoNewPrivs=" + std::to_string(s.no_new_privs) + " (want 1);";
    if (s.cap_eff != caps)
        why += " CapEff=" + hex(s.cap_eff) + " (want " + hex(caps) + ");";
    if (s.cap_prm != caps)
        why += " CapPrm=" + hex(s.cap_prm) + " (want " + hex(caps) + ");";
    if (s.cap_inh != 0)
        why += " CapInh=" + hex(s.cap_inh) + " (want 0);";
    if (s.cap_bnd != 0)
        why += " CapBnd=" + hex(s.cap_bnd) + " (want 0);";
    if (s.cap_amb != 0)
        why += " CapAmb=" + hex(s.cap_amb) + " (want 0);";
    if (role == Role::netd) {
        if (s.uid[1] != 0)
            why += " effective uid " + std::to_string(s.uid[1]) + " (want 0);";
    } else {
        for (std::uint32_t u : s.uid) {
            if (u == 0) {
                why += " a uid is 0 (want the unprivileged user);";
                break;
            }
        }
    }
    if (why.empty())
        return {};
    why.pop_back();
    return failure(std::string(role_name(role)) + " is not sandboxed as it must be:" + why);
}

Result<void> verify_sandbox(Role role, int proc_self_status_fd) {
    auto text = read_all(proc_self_status_fd);
    if (!text)
        return fail("read /proc/self/status");
    auto state = parse_sandbox_state(*text);
    if (!state)
        return failure("cannot parse /proc/self/status");
    return check_sandbox_state(role, *state);
}

} // namespace wgd::privsep
