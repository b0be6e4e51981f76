#include "netd/nl_io.hpp"

#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <sys/socket.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace wgd::netd::nl {

long recv_from_kernel(int fd, std::span<std::uint8_t> buf, bool nonblocking) {
    for (;;) {
        sockaddr_nl from{};
        iovec iov{buf.data(), buf.size()};
        msghdr msg{};
        msg.msg_name = &from;
        msg.msg_namelen = sizeof(from);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        const long n = ::recvmsg(fd, &msg, nonblocking ? MSG_DONTWAIT : 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (msg.msg_flags & MSG_TRUNC) {
            errno = ENOSPC;
            return -1;
        }
        if (msg.msg_namelen != sizeof(from) || from.nl_family != AF_NETLINK || from.nl_pid != 0)
            continue; // not the kernel: another process cannot speak for it
        return n;
    }
}

Result<void> exchange(mnl_socket* sock, std::span<const std::uint8_t> request,
                      const OnMessage& on_message, bool* interrupted) {
    if (request.size() < sizeof(nlmsghdr))
        return make_error(EINVAL, "netlink request too short");
    nlmsghdr req_hdr;
    std::memcpy(&req_hdr, request.data(), sizeof(req_hdr));
    const std::uint32_t seq = req_hdr.nlmsg_seq;
    const std::uint32_t portid = mnl_socket_get_portid(sock);
    if (mnl_socket_sendto(sock, request.data(), request.size()) < 0)
        return make_error(errno, std::string("netlink send: ") + std::strerror(errno));

    // nullopt: keep reading; a value: the exchange is over with that result
    auto handle = [&](const nlmsghdr* nlh) -> std::optional<Result<void>> {
        if (nlh->nlmsg_seq != seq || nlh->nlmsg_pid != portid)
            return std::nullopt; // a late answer to an earlier, abandoned request
        if ((nlh->nlmsg_flags & NLM_F_DUMP_INTR) && interrupted)
            *interrupted = true;
        if (nlh->nlmsg_type == NLMSG_ERROR) {
            if (mnl_nlmsg_get_payload_len(nlh) < sizeof(nlmsgerr))
                return Result<void>(make_error(EBADMSG, "truncated netlink error message"));
            const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
            if (err->error == 0)
                return Result<void>();
            const int code =
                err->error == INT_MIN ? EPROTO : (err->error < 0 ? -err->error : err->error);
            return Result<void>(make_error(code, std::strerror(code)));
        }
        if (nlh->nlmsg_type == NLMSG_DONE)
            return Result<void>();
        if (nlh->nlmsg_type < NLMSG_MIN_TYPE)
            return std::nullopt; // NLMSG_NOOP, NLMSG_OVERRUN
        if (auto r = on_message(nlh); !r)
            return r;
        return std::nullopt;
    };
    std::vector<std::uint8_t> buf(kRecvBufferSize);
    for (;;) {
        const long n = recv_from_kernel(mnl_socket_get_fd(sock), buf, false);
        if (n < 0)
            return make_error(errno, std::string("netlink receive: ") + std::strerror(errno));
        std::optional<Result<void>> finished;
        for_each_message(std::span<const std::uint8_t>(buf.data(), static_cast<std::size_t>(n)),
                         [&](const nlmsghdr* nlh) {
                             finished = handle(nlh);
                             return !finished;
                         });
        if (finished)
            return *finished;
    }
}

} // namespace wgd::netd::nl
