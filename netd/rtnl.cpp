// rtnetlink socket I/O: moves the messages of rtnl_codec.cpp.
#include "netd/rtnl.hpp"
#include "netd/nl_io.hpp"

#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

namespace wgd::netd {
namespace {

constexpr int kDumpAttempts = 10;

Error errno_error(const char* what) {
    const int code = errno;
    return make_error(code, std::string(what) + ": " + std::strerror(code));
}

} // namespace

Rtnl::Rtnl(mnl_socket* sock) : sock_(sock) {}
Rtnl::Rtnl(Rtnl&& other) noexcept
    : sock_(std::exchange(other.sock_, nullptr)), seq_(other.seq_), sent_(other.sent_) {}
Rtnl& Rtnl::operator=(Rtnl&& other) noexcept {
    if (this != &other) {
        if (sock_)
            mnl_socket_close(sock_);
        sock_ = std::exchange(other.sock_, nullptr);
        seq_ = other.seq_;
        sent_ = other.sent_;
    }
    return *this;
}
Rtnl::~Rtnl() {
    if (sock_)
        mnl_socket_close(sock_);
}

Result<Rtnl> Rtnl::open() {
    mnl_socket* sock = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    if (!sock)
        return errno_error("rtnetlink socket");
    Rtnl rtnl(sock);
    if (mnl_socket_bind(sock, 0, MNL_SOCKET_AUTOPID) < 0)
        return errno_error("rtnetlink bind");
    rtnl.seq_ = static_cast<std::uint32_t>(::getpid()) << 8;
    return rtnl;
}

Result<void> Rtnl::request(std::span<const std::uint8_t> message, const OnMessage& on_message) {
    ++sent_;
    return nl::exchange(sock_, message, on_message, nullptr);
}

Result<void> Rtnl::dump(std::uint16_t type, std::uint8_t family, const OnMessage& on_message,
                        const std::function<void()>& reset) {
    for (int attempt = 0; attempt < kDumpAttempts; ++attempt) {
        std::array<std::uint8_t, 64> buf{};
        const std::size_t len = build_dump_request(buf, ++seq_, type, family);
        bool interrupted = false;
        reset();
        ++sent_;
        if (auto r = nl::exchange(sock_, std::span(buf.data(), len), on_message, &interrupted); !r)
            return r;
        if (!interrupted)
            return {};
    }
    return make_error(EAGAIN, "rtnetlink dump kept changing (NLM_F_DUMP_INTR)");
}

Result<LinkInfo> Rtnl::link_by_name(const std::string& ifname) {
    std::array<std::uint8_t, 128> buf{};
    auto len = build_link_request(buf, ++seq_, ifname);
    if (!len)
        return len.error();
    std::optional<LinkInfo> found;
    auto r = request(std::span(buf.data(), *len), [&](const nlmsghdr* nlh) -> Result<void> {
        if (auto link = parse_link(nlh))
            found = std::move(link);
        return {};
    });
    if (!r) {
        if (r.error().code == ENODEV)
            return make_error(ENODEV, "no interface " + ifname);
        return r.error();
    }
    if (!found)
        return make_error(EBADMSG, "no valid link message for " + ifname);
    return *found;
}

Result<std::vector<IfAddr>> Rtnl::addresses(int ifindex) {
    std::vector<IfAddr> out;
    auto r = dump(
        RTM_GETADDR, AF_UNSPEC,
        [&](const nlmsghdr* nlh) -> Result<void> {
            if (auto a = parse_addr(nlh); a && a->ifindex == ifindex)
                out.push_back(*a);
            return {};
        },
        [&] { out.clear(); });
    if (!r)
        return r.error();
    return out;
}

Result<Pools> Rtnl::pools(int ifindex) {
    Pools pools;
    auto r = dump(
        RTM_GETROUTE, AF_UNSPEC,
        [&](const nlmsghdr* nlh) -> Result<void> {
            if (auto route = parse_route(nlh); route && route_is_pool(*route, ifindex))
                add_pool(pools, route->dst);
            return {};
        },
        [&] { pools = Pools{}; });
    if (!r)
        return r.error();
    return pools;
}

Result<std::vector<SavedRoute>> Rtnl::routes_through(int ifindex, std::uint8_t family) {
    std::vector<SavedRoute> routes;
    auto r = dump(
        RTM_GETROUTE, family,
        [&](const nlmsghdr* nlh) -> Result<void> {
            if (auto route = save_route(nlh, ifindex))
                routes.push_back(std::move(*route));
            return {};
        },
        [&] { routes.clear(); });
    if (!r)
        return r.error();
    return routes;
}

Result<void> Rtnl::add_route(const SavedRoute& route) {
    std::vector<std::uint8_t> buf = route.request;
    if (buf.size() < sizeof(nlmsghdr))
        return make_error(EINVAL, "empty route request");
    reinterpret_cast<nlmsghdr*>(buf.data())->nlmsg_seq = ++seq_;
    auto r = request(buf, [](const nlmsghdr*) -> Result<void> { return {}; });
    if (!r && r.error().code == EEXIST)
        return make_error(EEXIST, "route already there");
    return r;
}

Result<void> Rtnl::add_address(int ifindex, const Prefix& prefix) {
    std::array<std::uint8_t, 256> buf{};
    auto len = build_addr_request(buf, ++seq_, AddrOp::add, ifindex, prefix);
    if (!len)
        return len.error(); // refused before anything reaches the kernel
    auto r =
        request(std::span(buf.data(), *len), [](const nlmsghdr*) -> Result<void> { return {}; });
    if (!r && r.error().code == EEXIST)
        return make_error(EEXIST, "address already on the interface");
    return r;
}

Result<void> Rtnl::remove_address(int ifindex, const Prefix& prefix) {
    std::array<std::uint8_t, 256> buf{};
    auto len = build_addr_request(buf, ++seq_, AddrOp::remove, ifindex, prefix);
    if (!len)
        return len.error();
    return request(std::span(buf.data(), *len), [](const nlmsghdr*) -> Result<void> { return {}; });
}

// ---- events

RtnlEvents::RtnlEvents(mnl_socket* sock, int ifindex) : sock_(sock), ifindex_(ifindex) {}
RtnlEvents::RtnlEvents(RtnlEvents&& other) noexcept
    : sock_(std::exchange(other.sock_, nullptr)), ifindex_(other.ifindex_) {}
RtnlEvents& RtnlEvents::operator=(RtnlEvents&& other) noexcept {
    if (this != &other) {
        if (sock_)
            mnl_socket_close(sock_);
        sock_ = std::exchange(other.sock_, nullptr);
        ifindex_ = other.ifindex_;
    }
    return *this;
}
RtnlEvents::~RtnlEvents() {
    if (sock_)
        mnl_socket_close(sock_);
}

int RtnlEvents::fd() const {
    return mnl_socket_get_fd(sock_);
}

Result<RtnlEvents> RtnlEvents::open(int ifindex) {
    mnl_socket* sock = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (!sock)
        return errno_error("rtnetlink event socket");
    RtnlEvents events(sock, ifindex);
    const unsigned groups = (1u << (RTNLGRP_LINK - 1)) | (1u << (RTNLGRP_IPV4_IFADDR - 1)) |
                            (1u << (RTNLGRP_IPV6_IFADDR - 1)) | (1u << (RTNLGRP_IPV4_ROUTE - 1)) |
                            (1u << (RTNLGRP_IPV6_ROUTE - 1));
    // a bigger queue makes ENOBUFS (and the re-dump it costs) rarer
    const int rcvbuf = 1 << 20;
    ::setsockopt(mnl_socket_get_fd(sock), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (mnl_socket_bind(sock, groups, MNL_SOCKET_AUTOPID) < 0)
        return errno_error("rtnetlink event bind");
    return events;
}

Result<RtnlEvents::Batch> RtnlEvents::read() {
    Batch batch;
    std::vector<std::uint8_t> buf(nl::kRecvBufferSize);
    for (;;) {
        const long n = nl::recv_from_kernel(fd(), buf, true);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return batch;
            if (errno == ENOBUFS) {
                batch.resync_needed = true;
                continue;
            }
            return errno_error("rtnetlink event receive");
        }
        nl::for_each_message(std::span<const std::uint8_t>(buf.data(), static_cast<std::size_t>(n)),
                             [&](const nlmsghdr* nlh) {
                                 if (auto ev = parse_event(nlh, ifindex_))
                                     batch.events.push_back(std::move(*ev));
                                 return true;
                             });
    }
}

} // namespace wgd::netd
