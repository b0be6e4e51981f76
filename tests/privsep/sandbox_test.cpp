// The real filters on the real kernel: every test applies a sandbox in a
// forked child, then tries something and looks at how the child ended.
#include "privsep/sandbox.hpp"
#include "tests/privsep/recv_within.hpp"

#include "privsep/channel.hpp"
#include "tests/privsep/child.hpp"

#include <fcntl.h>
#include <grp.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <sys/ptrace.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include <gtest/gtest.h>

using namespace wgd;
using namespace wgd::privsep;
using namespace wgd::privsep::testing;

namespace {

int forbidden_openat() {
    return ::syscall(SYS_openat, AT_FDCWD, "/proc/self/status", O_RDONLY) >= 0 ? 0 : 2;
}

int forbidden_execve() {
    char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
    ::execve("/bin/true", argv, nullptr);
    return 2;
}

int forbidden_ptrace() {
    ::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
    return 2;
}

// Exit 0 when socket() succeeds, 3 when it fails without killing us.
int try_socket(int domain, int type, int protocol) {
    int fd = ::socket(domain, type, protocol);
    if (fd < 0)
        return 3;
    ::close(fd);
    return 0;
}

template <class Then>
int with_filter(Role role, Side side, Then then) {
    return wait_status_of([&] {
        if (!apply_seccomp_filter(role, side).has_value())
            return 100;
        return then();
    });
}

template <class Then>
int in_sandbox(Role role, Side side, Then then) {
    return wait_status_of([&] {
        auto o = role == Role::netd ? enter_netd_sandbox(side)
                                    : enter_sandbox(SandboxSpec{role, side, "nobody", "", 0});
        if (!o.has_value()) {
            std::fprintf(stderr, "sandbox: %s\n", o.error().message.c_str());
            return 100;
        }
        return then();
    });
}

const Side kSides[] = {Side::server, Side::client};
const Role kRoles[] = {Role::netd, Role::leased, Role::protod};

const char* side_name(Side s) {
    return s == Side::server ? "server" : "client";
}

} // namespace

TEST(SeccompFilter, EveryRoleAndSideIsKilledBySigsysOnForbiddenCalls) {
    for (Role role : kRoles) {
        for (Side side : kSides) {
            SCOPED_TRACE(std::string(role_name(role)) + " " + side_name(side));
            EXPECT_TRUE(killed_by(with_filter(role, side, forbidden_openat), SIGSYS));
            EXPECT_TRUE(killed_by(with_filter(role, side, forbidden_execve), SIGSYS));
            EXPECT_TRUE(killed_by(with_filter(role, side, forbidden_ptrace), SIGSYS));
            EXPECT_TRUE(killed_by(with_filter(role, side, [] { return int(::fork()); }), SIGSYS));
        }
    }
}

TEST(SeccompFilter, RuntimeBasicsStayAllowed) {
    for (Role role : kRoles) {
        for (Side side : kSides) {
            SCOPED_TRACE(std::string(role_name(role)) + " " + side_name(side));
            int status = with_filter(role, side, [] {
                // malloc small and large, stdio, time, randomness, a C++ exception
                std::vector<char> big(8 << 20, 1);
                std::string s(100, 'x');
                struct timespec ts;
                ::clock_gettime(CLOCK_MONOTONIC, &ts);
                char rnd[16];
                if (::getrandom(rnd, sizeof rnd, 0) != sizeof rnd)
                    return 4;
                try {
                    throw std::runtime_error("allowed");
                } catch (const std::exception&) {
                }
                std::fprintf(stderr, "%s", "");
                return big[100] == 1 && s.size() == 100 ? 0 : 5;
            });
            EXPECT_TRUE(exited_ok(status)) << describe_status(status);
        }
    }
}

TEST(SeccompFilter, ProtodAndLeasedCreateNoSocket) {
    for (Role role : {Role::protod, Role::leased}) {
        for (Side side : kSides) {
            SCOPED_TRACE(std::string(role_name(role)) + " " + side_name(side));
            EXPECT_TRUE(killed_by(
                with_filter(role, side, [] { return try_socket(AF_INET6, SOCK_STREAM, 0); }),
                SIGSYS));
            EXPECT_TRUE(killed_by(
                with_filter(role, side, [] { return try_socket(AF_UNIX, SOCK_STREAM, 0); }),
                SIGSYS));
        }
    }
}

// Per side: the server made its listener before the filter, so no AF_INET6;
// only the server's netd talks to WireGuard after it (UAPI or genl).
TEST(SeccompFilter, NetdSocketArgumentsAreFilteredOnBothSidesOfTheLine) {
    constexpr unsigned kServerOnly = 1, kClientOnly = 2, kBoth = 3, kNone = 0;
    struct Case {
        int domain, type, protocol;
        unsigned sides;
    };
    const Case cases[] = {
        {AF_NETLINK, SOCK_RAW, NETLINK_ROUTE, kBoth},
        {AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE, kBoth},
        {AF_NETLINK, SOCK_RAW, NETLINK_GENERIC, kServerOnly},
        {AF_NETLINK, SOCK_RAW, NETLINK_AUDIT, kNone},
        {AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER, kNone},
        {AF_NETLINK, SOCK_DGRAM, NETLINK_ROUTE, kNone},
        {AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, kServerOnly},
        {AF_UNIX, SOCK_DGRAM, 0, kNone},
        {AF_UNIX, SOCK_SEQPACKET, 0, kNone},
        {AF_INET6, SOCK_STREAM | SOCK_NONBLOCK, 0, kClientOnly},
        {AF_INET6, SOCK_STREAM, IPPROTO_TCP, kClientOnly},
        {AF_INET6, SOCK_DGRAM, 0, kNone},
        {AF_INET6, SOCK_RAW, IPPROTO_ICMPV6, kNone},
        {AF_INET, SOCK_STREAM, 0, kNone},
        {AF_PACKET, SOCK_RAW, 0, kNone},
    };
    for (Side side : kSides) {
        const unsigned bit = side == Side::server ? kServerOnly : kClientOnly;
        for (const Case& c : cases) {
            SCOPED_TRACE(std::string(side_name(side)) + " domain " + std::to_string(c.domain) +
                         " type " + std::to_string(c.type) + " protocol " +
                         std::to_string(c.protocol));
            int status = with_filter(Role::netd, side,
                                     [&] { return try_socket(c.domain, c.type, c.protocol); });
            if (c.sides & bit)
                EXPECT_TRUE(exited_ok(status)) << describe_status(status);
            else
                EXPECT_TRUE(killed_by(status, SIGSYS)) << describe_status(status);
        }
    }
}

TEST(SeccompFilter, NetdWithTheKernelBackendCreatesNoUnixSocket) {
    int status = wait_status_of([] {
        if (!apply_seccomp_filter(Role::netd, Side::server, false).has_value())
            return 10;
        return try_socket(AF_UNIX, SOCK_STREAM, 0);
    });
    EXPECT_TRUE(killed_by(status, SIGSYS)) << describe_status(status);
}

// No process of the suite signals another: tgkill only to its own thread
// group, no kill, no fcntl(F_SETOWN) (SIGIO to a chosen process).
TEST(SeccompFilter, EveryRoleSignalsOnlyItself) {
    for (Role role : {Role::netd, Role::leased, Role::protod})
        for (Side side : kSides) {
            SCOPED_TRACE(std::string(role_name(role)) + " " + side_name(side));
            // Ourselves: allowed (a blocked signal, so the call returns).
            EXPECT_TRUE(exited_ok(with_filter(role, side, [] {
                sigset_t set;
                sigemptyset(&set);
                sigaddset(&set, SIGUSR1);
                sigprocmask(SIG_BLOCK, &set, nullptr);
                return ::syscall(SYS_tgkill, ::getpid(), ::gettid(), SIGUSR1) == 0 ? 0 : 5;
            })));
            // The parent (the test): refused by the filter, whatever the uid.
            const pid_t parent = ::getpid();
            EXPECT_TRUE(killed_by(
                with_filter(
                    role, side,
                    [parent] { return ::syscall(SYS_tgkill, parent, parent, 0) == 0 ? 0 : 5; }),
                SIGSYS));
            EXPECT_TRUE(
                killed_by(with_filter(role, side, [parent] { return ::kill(parent, 0); }), SIGSYS));
            // Every other call that sends a signal: none is allowed (netd
            // holds CAP_KILL, so its filter is all that stands here).
            for (long call :
                 {long(SYS_tkill), long(SYS_rt_sigqueueinfo), long(SYS_rt_tgsigqueueinfo),
                  long(SYS_pidfd_open), long(SYS_pidfd_send_signal)}) {
                SCOPED_TRACE(call);
                EXPECT_TRUE(
                    killed_by(with_filter(role, side,
                                          [parent, call] {
                                              siginfo_t info{};
                                              return int(::syscall(call, parent, parent, &info, 0));
                                          }),
                              SIGSYS));
            }
            EXPECT_TRUE(killed_by(
                with_filter(role, side, [parent] { return ::fcntl(0, F_SETOWN, parent); }),
                SIGSYS));
            EXPECT_TRUE(exited_ok(with_filter(role, side, [] {
                int flags = ::fcntl(0, F_GETFL);
                return flags >= 0 && ::fcntl(0, F_SETFL, flags) == 0 ? 0 : 5;
            })));
        }
}

TEST(SeccompFilter, ProtodServerMayAcceptButClientMayNot) {
    auto accept_on_bad_fd = [] { return ::accept(-1, nullptr, nullptr) < 0 ? 0 : 6; };
    EXPECT_TRUE(exited_ok(with_filter(Role::protod, Side::server, accept_on_bad_fd)));
    EXPECT_TRUE(killed_by(with_filter(Role::protod, Side::client, accept_on_bad_fd), SIGSYS));
}

TEST(SeccompFilter, OnlyServerLeasedSyncsAndWritesAtOffsets) {
    auto sync_bad_fd = [] { return ::fdatasync(-1) < 0 ? 0 : 6; };
    EXPECT_TRUE(exited_ok(with_filter(Role::leased, Side::server, sync_bad_fd)));
    EXPECT_TRUE(killed_by(with_filter(Role::leased, Side::client, sync_bad_fd), SIGSYS));
    EXPECT_TRUE(killed_by(with_filter(Role::protod, Side::server, sync_bad_fd), SIGSYS));
}

TEST(Sandbox, ProtodAndLeasedEnterTheirSandboxAndPassTheSelfCheck) {
    WGD_REQUIRE_ROOT();
    for (Role role : {Role::protod, Role::leased}) {
        for (Side side : kSides) {
            SCOPED_TRACE(std::string(role_name(role)) + " " + side_name(side));
            int status = in_sandbox(role, side, [] {
                // In the empty chroot, as nobody: nothing above "/" is reachable.
                return ::access("/etc/passwd", F_OK) < 0 ? 0 : 7;
            });
            // access() is not allowed either: the filter kills before the chroot answers.
            EXPECT_TRUE(killed_by(status, SIGSYS)) << describe_status(status);
            status = in_sandbox(role, side, [] { return 0; });
            EXPECT_TRUE(exited_ok(status)) << describe_status(status);
            status = in_sandbox(role, side, forbidden_openat);
            EXPECT_TRUE(killed_by(status, SIGSYS)) << describe_status(status);
        }
    }
}

TEST(Sandbox, RootAsTheUnprivilegedUserIsRefused) {
    WGD_REQUIRE_ROOT();
    int status = wait_status_of([] {
        auto o = enter_sandbox(SandboxSpec{Role::protod, Side::server, "root", "", 0});
        return o.has_value() ? 1 : 0;
    });
    EXPECT_TRUE(exited_ok(status)) << describe_status(status);
}

TEST(Sandbox, ProtodCannotGrowAHandedInFile) {
    WGD_REQUIRE_ROOT();
    char path[] = "/tmp/wgd-privsep-fsize-XXXXXX";
    int raw = ::mkstemp(path);
    ASSERT_GE(raw, 0);
    UniqueFd file(raw);
    ::unlink(path);
    // Writing through a handed-in file must fail: RLIMIT_FSIZE 0 sends SIGXFSZ.
    int status = in_sandbox(Role::protod, Side::server, [&] {
        return ::pwrite(file.get(), "x", 1, 0) < 0 ? 0 : 8; // pwrite64 not allowed for protod
    });
    EXPECT_TRUE(killed_by(status, SIGSYS)) << describe_status(status);
    status = in_sandbox(Role::protod, Side::server,
                        [&] { return ::write(file.get(), "x", 1) < 0 ? 0 : 8; });
    EXPECT_TRUE(killed_by(status, SIGXFSZ)) << describe_status(status);
}

TEST(Sandbox, LeasedServerWritesAndSyncsAHandedInFile) {
    WGD_REQUIRE_ROOT();
    char path[] = "/tmp/wgd-privsep-lease-XXXXXX";
    int raw = ::mkstemp(path);
    ASSERT_GE(raw, 0);
    UniqueFd file(raw);
    int status = in_sandbox(Role::leased, Side::server, [&] {
        if (::pwrite(file.get(), "lease\n", 6, 0) != 6 || ::fdatasync(file.get()) != 0 ||
            ::fsync(file.get()) != 0)
            return 9;
        char back[6];
        return ::pread(file.get(), back, 6, 0) == 6 && std::memcmp(back, "lease\n", 6) == 0 ? 0
                                                                                            : 10;
    });
    EXPECT_TRUE(exited_ok(status)) << describe_status(status);
    char back[6] = {};
    EXPECT_EQ(::pread(file.get(), back, 6, 0), 6);
    EXPECT_EQ(std::string(back, 6), "lease\n");
    ::unlink(path);
}

namespace {

// One RTM_GETLINK dump over rtnetlink; 0 when an answer came back.
int rtnetlink_dump_works() {
    int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
        return 11;
    struct {
        nlmsghdr nh;
        ifinfomsg ifi;
    } req{};
    req.nh.nlmsg_len = sizeof req;
    req.nh.nlmsg_type = RTM_GETLINK;
    req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.nh.nlmsg_seq = 1;
    req.ifi.ifi_family = AF_UNSPEC;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(fd, &req, sizeof req, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0)
        return 12;
    char buf[16384];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    ::close(fd);
    if (n < ssize_t(sizeof(nlmsghdr)))
        return 13;
    auto* nh = reinterpret_cast<nlmsghdr*>(buf);
    return nh->nlmsg_type == RTM_NEWLINK || nh->nlmsg_type == NLMSG_DONE ? 0 : 14;
}

// Binding port 970 needs CAP_NET_BIND_SERVICE.
int bind_privileged_port_on_loopback() {
    int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 15;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    a.sin6_port = htons(970);
    int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    int err = errno;
    ::close(fd);
    if (rc == 0)
        return 0;
    return err == EADDRINUSE ? 0 : 16; // someone else holds it: still not EACCES
}

} // namespace

TEST(Sandbox, NetdKeepsRtnetlinkAndPort970) {
    WGD_REQUIRE_ROOT();
    for (Side side : kSides) {
        SCOPED_TRACE(side_name(side));
        int status = in_sandbox(Role::netd, side, rtnetlink_dump_works);
        EXPECT_TRUE(exited_ok(status)) << describe_status(status);
        // The client's netd binds port 970 for each exchange; the server's
        // made its listener before the sandbox and creates no more.
        status = in_sandbox(Role::netd, side, bind_privileged_port_on_loopback);
        if (side == Side::client)
            EXPECT_TRUE(exited_ok(status)) << describe_status(status);
        else
            EXPECT_TRUE(killed_by(status, SIGSYS)) << describe_status(status);
        status = in_sandbox(Role::netd, side,
                            [] { return try_socket(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT); });
        EXPECT_TRUE(killed_by(status, SIGSYS)) << describe_status(status);
        status = in_sandbox(Role::netd, side, forbidden_openat);
        EXPECT_TRUE(killed_by(status, SIGSYS)) << describe_status(status);
    }
}

namespace {

// Runs a sandboxed child that waits on a pipe, reads its /proc/PID/status
// from outside, then lets it go.
std::optional<SandboxState> state_of_sandboxed_child(Role role, Side side, int& status) {
    int ready[2], go[2];
    if (::pipe2(ready, O_CLOEXEC) < 0 || ::pipe2(go, O_CLOEXEC) < 0)
        return std::nullopt;
    std::fflush(nullptr);
    pid_t pid = ::fork();
    if (pid == 0) {
        ::close(go[1]); // else the read below never sees EOF
        ::close(ready[0]);
        auto o = role == Role::netd ? enter_netd_sandbox(side)
                                    : enter_sandbox(SandboxSpec{role, side, "nobody", "", 0});
        char c = o.has_value() ? 'y' : 'n';
        (void)!::write(ready[1], &c, 1);
        (void)!::read(go[0], &c, 1);
        ::_exit(o.has_value() ? 0 : 1);
    }
    ::close(ready[1]);
    ::close(go[0]);
    char c = 0;
    std::optional<SandboxState> state;
    if (::read(ready[0], &c, 1) == 1 && c == 'y')
        state = read_sandbox_state(pid);
    ::close(go[1]);
    ::close(ready[0]);
    ::waitpid(pid, &status, 0);
    return state;
}

} // namespace

TEST(Sandbox, ProcStatusOfSandboxedChildrenShowsTheirRow) {
    WGD_REQUIRE_ROOT();
    for (Role role : kRoles) {
        for (Side side : kSides) {
            SCOPED_TRACE(std::string(role_name(role)) + " " + side_name(side));
            int status = 0;
            auto s = state_of_sandboxed_child(role, side, status);
            ASSERT_TRUE(s);
            EXPECT_TRUE(exited_ok(status)) << describe_status(status);
            EXPECT_EQ(s->seccomp, 2);
            EXPECT_EQ(s->no_new_privs, 1);
            // netd: CAP_KILL (5), CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12).
            const std::uint64_t caps = role == Role::netd ? 0x1420u : 0u;
            EXPECT_EQ(s->cap_eff, caps);
            EXPECT_EQ(s->cap_prm, caps);
            EXPECT_EQ(s->cap_inh, 0u);
            EXPECT_EQ(s->cap_bnd, 0u);
            EXPECT_EQ(s->cap_amb, 0u);
            for (int i = 0; i < 4; ++i)
                EXPECT_EQ(s->uid[i], role == Role::netd ? 0u : 65534u) << "uid field " << i;
            EXPECT_TRUE(check_sandbox_state(role, *s).has_value());
        }
    }
}

TEST(Sandbox, UnsandboxedTestProcessFailsTheCheckForEveryRole) {
    auto s = read_sandbox_state(::getpid());
    ASSERT_TRUE(s);
    for (Role role : kRoles) {
        auto o = check_sandbox_state(role, *s);
        EXPECT_FALSE(o.has_value());
        EXPECT_NE(o.error().message.find("Seccomp="), std::string::npos) << o.error().message;
    }
}

TEST(Sandbox, FdPassingWorksAcrossASandboxedChannel) {
    WGD_REQUIRE_ROOT();
    auto [parent_end, child_end] = make_channel_pair();
    ASSERT_TRUE(parent_end && child_end);
    int p[2];
    ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
    UniqueFd pipe_r(p[0]), pipe_w(p[1]);
    std::fflush(nullptr);
    pid_t pid = ::fork();
    if (pid == 0) {
        parent_end.reset();
        pipe_r.reset();
        pipe_w.reset();
        Channel ch(std::move(child_end));
        if (!enter_sandbox(SandboxSpec{Role::protod, Side::server, "nobody", "", 0}).has_value())
            ::_exit(100);
        auto r = wgd::privsep::testing::recv_within(ch, 5000);
        auto* m = std::get_if<Message>(&r);
        if (m == nullptr || !m->fd.valid())
            ::_exit(20);
        if (::write(m->fd.get(), "from the sandbox", 16) != 16)
            ::_exit(21);
        // Hand the same fd back: sandboxed sending of SCM_RIGHTS.
        const std::uint8_t body[] = {'o', 'k'};
        ::_exit(ch.send(2, m->id + 1, body, m->fd.get()) ? 0 : 22);
    }
    child_end.reset();
    Channel ch(std::move(parent_end));
    ASSERT_TRUE(ch.send(1, 41, {}, pipe_w.get()));
    pipe_w.reset();
    auto r = wgd::privsep::testing::recv_within(ch, 5000);
    ASSERT_TRUE(std::holds_alternative<Message>(r));
    Message& m = std::get<Message>(r);
    EXPECT_EQ(m.type, 2);
    EXPECT_EQ(m.id, 42u);
    ASSERT_TRUE(m.fd.valid());
    char buf[32] = {};
    EXPECT_EQ(::read(pipe_r.get(), buf, 16), 16);
    EXPECT_STREQ(buf, "from the sandbox");
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(exited_ok(status)) << describe_status(status);
}

TEST(SandboxState, ParsesTheFieldsOfProcStatus) {
    const char* text = "Name:\tprotod\n"
                       "Uid:\t65534\t65534\t65534\t65533\n"
                       "Gid:\t65534\t65534\t65534\t65534\n"
                       "CapInh:\t0000000000000000\n"
                       "CapPrm:\t0000000000001400\n"
                       "CapEff:\t0000000000001000\n"
                       "CapBnd:\t000001fffeffffff\n"
                       "CapAmb:\t0000000000000002\n"
                       "NoNewPrivs:\t1\n"
                       "Seccomp:\t2\n"
                       "Seccomp_filters:\t1\n";
    auto s = parse_sandbox_state(text);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->uid[0], 65534u);
    EXPECT_EQ(s->uid[3], 65533u);
    EXPECT_EQ(s->cap_prm, 0x1400u);
    EXPECT_EQ(s->cap_eff, 0x1000u);
    EXPECT_EQ(s->cap_bnd, 0x1fffeffffffull);
    EXPECT_EQ(s->cap_amb, 2u);
    EXPECT_EQ(s->no_new_privs, 1);
    EXPECT_EQ(s->seccomp, 2);
}

TEST(SandboxState, MissingOrMalformedFieldIsNotAState) {
    EXPECT_FALSE(parse_sandbox_state("Uid:\t1\t1\t1\t1\nSeccomp:\t2\n"));
    EXPECT_FALSE(parse_sandbox_state("Uid:\t1\t1\t1\t1\nSeccomp:\t2\nNoNewPrivs:\t1\n"
                                     "CapInh:\t0\nCapPrm:\tzz\nCapEff:\t0\nCapBnd:\t0\n"
                                     "CapAmb:\t0\n"));
}

TEST(SandboxState, CheckNamesWhatDiffersFromTheRow) {
    SandboxState s;
    s.uid[0] = s.uid[1] = s.uid[2] = s.uid[3] = 65534;
    s.seccomp = 2;
    s.no_new_privs = 1;
    EXPECT_TRUE(check_sandbox_state(Role::protod, s).has_value());
    EXPECT_FALSE(check_sandbox_state(Role::netd, s).has_value()); // netd keeps two capabilities
    s.cap_bnd = 1;
    auto o = check_sandbox_state(Role::leased, s);
    EXPECT_NE(o.error().message.find("CapBnd"), std::string::npos) << o.error().message;
    s.cap_bnd = 0;
    s.uid[2] = 0;
    EXPECT_FALSE(check_sandbox_state(Role::leased, s).has_value());

    SandboxState n;
    n.seccomp = 2;
    n.no_new_privs = 1;
    n.cap_eff = n.cap_prm = netd_capabilities();
    EXPECT_TRUE(check_sandbox_state(Role::netd, n).has_value());
    n.cap_eff |= 1; // CAP_CHOWN too many
    EXPECT_FALSE(check_sandbox_state(Role::netd, n).has_value());
}

TEST(Allowlist, EverySyscallHasAReasonAndNetdSocketsAreConditional) {
    for (Role role : kRoles) {
        for (Side side : kSides) {
            for (const AllowedSyscall& a : allowlist(role, side)) {
                EXPECT_NE(std::string(a.why), "") << a.name;
                if (std::string(a.name) == "socket") {
                    EXPECT_FALSE(a.condition.empty());
                }
            }
        }
    }
    if (std::getenv("WGD_PRINT_ALLOWLIST")) {
        for (Role role : kRoles) {
            for (Side side : kSides) {
                std::printf("== %s %s\n", role_name(role), side_name(side));
                for (const AllowedSyscall& a : allowlist(role, side))
                    std::printf("  %-16s %s%s%s\n", a.name, a.condition.c_str(),
                                a.condition.empty() ? "" : ": ", a.why);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// End to end under the real sandboxes (chroot, uid, capabilities, limits and
// filter as each role enters them): what a process taken over can reach.

namespace {

// A unix stream listener; name starting with '\0' is abstract, bound with
// the length of its name only (as most programs bind theirs).
UniqueFd unix_listener(const std::string& name) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, name.data(), name.size());
    const socklen_t len =
        socklen_t(offsetof(sockaddr_un, sun_path) + name.size() + (name[0] == '\0' ? 0 : 1));
    if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), len) < 0 ||
        ::listen(fd.get(), 8) < 0)
        return UniqueFd();
    return fd;
}

// 0 when connected, 3 when refused by the kernel (not by the filter).
// full_length: the whole sockaddr_un, as netd's UAPI code passes it.
int connect_unix(const std::string& name, bool full_length) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 4;
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, name.data(), name.size());
    const socklen_t len =
        full_length
            ? socklen_t(sizeof a)
            : socklen_t(offsetof(sockaddr_un, sun_path) + name.size() + (name[0] == '\0' ? 0 : 1));
    int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), len);
    ::close(fd);
    return rc == 0 ? 0 : 3;
}

// A child of the test that waits to be killed, running as uid (its
// credentials are what a signal is checked against); returned once it
// runs as uid.
pid_t sleeper(uid_t uid) {
    int ready[2];
    if (::pipe2(ready, O_CLOEXEC) < 0)
        return -1;
    std::fflush(nullptr);
    pid_t pid = ::fork();
    if (pid == 0) {
        ::close(ready[0]);
        if (uid != 0 && (::setgroups(0, nullptr) < 0 || ::setresgid(uid, uid, uid) < 0 ||
                         ::setresuid(uid, uid, uid) < 0))
            ::_exit(1);
        ::close(ready[1]);
        for (;;)
            ::pause();
    }
    ::close(ready[1]);
    char c;
    // EOF: the child runs as uid (or is gone, which the tests then see).
    while (::read(ready[0], &c, 1) < 0 && errno == EINTR) {
    }
    ::close(ready[0]);
    return pid;
}

bool still_running(pid_t pid) {
    int status = 0;
    return ::waitpid(pid, &status, WNOHANG) == 0;
}

void end(pid_t pid) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
}

constexpr uid_t kNobody = 65534;

} // namespace

// The server netd with the UAPI backend reaches its UAPI sockets' directory
// and nothing else: a socket at another path is out of its chroot, and an
// abstract one (not a path, so no chroot holds it) is out of its filter.
TEST(NetdSandboxEndToEnd, ConnectsToNoUnixSocketButThoseInItsUapiDirectory) {
    WGD_REQUIRE_ROOT();
    char uapi_dir[] = "/tmp/wgd-uapi-XXXXXX";
    char other_dir[] = "/tmp/wgd-other-XXXXXX";
    ASSERT_NE(::mkdtemp(uapi_dir), nullptr);
    ASSERT_NE(::mkdtemp(other_dir), nullptr);
    const std::string uapi_sock = std::string(uapi_dir) + "/wg0.sock";
    const std::string other_sock = std::string(other_dir) + "/bus.sock";
    const std::string abstract = std::string(1, '\0') + "wgd-test-" + std::to_string(::getpid());
    UniqueFd l1 = unix_listener(uapi_sock), l2 = unix_listener(other_sock),
             l3 = unix_listener(abstract);
    ASSERT_TRUE(l1 && l2 && l3);

    auto netd = [&](auto then) {
        return wait_status_of([&] {
            auto o = enter_netd_sandbox(Side::server, NetdSandbox{true, uapi_dir});
            if (!o.has_value()) {
                std::fprintf(stderr, "sandbox: %s\n", o.error().message.c_str());
                return 100;
            }
            return then();
        });
    };
    // Control: every one of them is reachable without the sandbox.
    for (const std::string& name : {uapi_sock, other_sock, abstract}) {
        int status = wait_status_of([&] { return connect_unix(name, false); });
        EXPECT_TRUE(exited_ok(status)) << describe_status(status);
    }
    // Its own UAPI socket, by its path inside the chroot.
    int status = netd([] { return connect_unix("/wg0.sock", true); });
    EXPECT_TRUE(exited_ok(status)) << describe_status(status);
    // Another path: not there inside the chroot, the kernel refuses.
    status = netd([&] { return connect_unix(other_sock, true); });
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 3) << describe_status(status);
    // The abstract socket by its own name's length: the filter kills.
    status = netd([&] { return connect_unix(abstract, false); });
    EXPECT_TRUE(killed_by(status, SIGSYS)) << describe_status(status);
    // With the only length the filter admits, the name is another one.
    status = netd([&] { return connect_unix(abstract, true); });
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 3) << describe_status(status);

    l1.reset();
    l2.reset();
    ::unlink(uapi_sock.c_str());
    ::unlink(other_sock.c_str());
    ::rmdir(uapi_dir);
    ::rmdir(other_dir);
}

// netd is uid 0 and holds CAP_KILL (for its children's parent-death
// signal), so the kernel alone would let it signal any process (the
// controls): under its real sandbox it signals none, neither a uid-0
// process nor one of its children's uid, by kill or by tgkill.
TEST(NetdSandboxEndToEnd, SignalsNoProcessOfUidZeroNorOfItsChildrensUid) {
    WGD_REQUIRE_ROOT();
    for (uid_t uid : {uid_t(0), kNobody}) {
        SCOPED_TRACE("target uid " + std::to_string(uid));
        const pid_t target = sleeper(uid);
        ASSERT_GT(target, 0);
        EXPECT_TRUE(exited_ok(wait_status_of([&] { return ::kill(target, 0) == 0 ? 0 : 5; })))
            << "control: a uid-0 process can signal it";
        for (Side side : kSides) {
            SCOPED_TRACE(side_name(side));
            int status = in_sandbox(Role::netd, side, [&] { return ::kill(target, SIGKILL); });
            EXPECT_TRUE(killed_by(status, SIGSYS)) << describe_status(status);
            status = in_sandbox(Role::netd, side, [&] {
                return int(::syscall(SYS_tgkill, target, target, SIGKILL));
            });
            EXPECT_TRUE(killed_by(status, SIGSYS)) << describe_status(status);
            status = in_sandbox(Role::netd, side, [] { return ::kill(-1, 0); });
            EXPECT_TRUE(killed_by(status, SIGSYS)) << describe_status(status);
            EXPECT_TRUE(still_running(target));
        }
        end(target);
    }
}

// protod and leased run as the same unprivileged user, so the kernel would
// let protod signal leased (the control); protod's filter does not.
TEST(ProtodSandboxEndToEnd, CannotSignalLeasedAProcessOfItsOwnUid) {
    WGD_REQUIRE_ROOT();
    const pid_t leased = sleeper(kNobody);
    ASSERT_GT(leased, 0);
    EXPECT_TRUE(exited_ok(wait_status_of([&] {
        if (::setgroups(0, nullptr) < 0 || ::setresgid(kNobody, kNobody, kNobody) < 0 ||
            ::setresuid(kNobody, kNobody, kNobody) < 0)
            return 6;
        return ::kill(leased, 0) == 0 ? 0 : 5;
    }))) << "control: a process of the same uid can signal it";
    for (Side side : kSides) {
        SCOPED_TRACE(side_name(side));
        int status = in_sandbox(Role::protod, side, [&] { return ::kill(leased, SIGKILL); });
        EXPECT_TRUE(killed_by(status, SIGSYS)) << describe_status(status);
        status = in_sandbox(Role::protod, side,
                            [&] { return int(::syscall(SYS_tgkill, leased, leased, SIGKILL)); });
        EXPECT_TRUE(killed_by(status, SIGSYS)) << describe_status(status);
        status = in_sandbox(Role::protod, side, [] { return ::kill(-1, 0); });
        EXPECT_TRUE(killed_by(status, SIGSYS)) << describe_status(status);
        EXPECT_TRUE(still_running(leased)) << "protod reached leased";
    }
    end(leased);
}
