// Netlink socket plumbing shared by rtnetlink and generic netlink: receive
// only what the kernel sent, walk a buffer of messages, and read the acks.
// Internal to netd.
#pragma once

#include "common/result.hpp"

#include <linux/netlink.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>

struct nlmsghdr;
struct mnl_socket;

namespace wgd::netd::nl {

// 64 KiB: larger than any message the kernel writes into one datagram.
inline constexpr std::size_t kRecvBufferSize = 65536;

// recv() of one datagram from the kernel (port 0); datagrams from other
// ports are dropped. Returns bytes or -1 with errno (EAGAIN, ENOBUFS ...).
long recv_from_kernel(int fd, std::span<std::uint8_t> buf, bool nonblocking);

// Calls f(nlh) for each whole message of buf until f returns false. Safe on
// hostile lengths (libmnl's mnl_nlmsg_ok trusts an nlmsg_len above INT_MAX).
// buf must be 4-byte aligned, as the kernel's datagrams are.
template <class F>
void for_each_message(std::span<const std::uint8_t> buf, F f) {
    std::size_t off = 0;
    while (buf.size() - off >= sizeof(nlmsghdr)) {
        const auto* nlh = reinterpret_cast<const nlmsghdr*>(buf.data() + off);
        const std::size_t len = nlh->nlmsg_len;
        if (len < sizeof(nlmsghdr) || len > buf.size() - off)
            return;
        if (!f(nlh))
            return;
        const std::size_t aligned = NLMSG_ALIGN(len);
        if (aligned >= buf.size() - off)
            return;
        off += aligned;
    }
}

// What a request/answer exchange does with each answer message (neither
// error nor done). Returning an Error aborts the exchange.
using OnMessage = std::function<Result<void>(const nlmsghdr*)>;

// Sends `request` and reads answers until the ack or NLMSG_DONE; an error
// ack becomes Error{errno}. interrupted is set when a dump message carried
// NLM_F_DUMP_INTR (the caller re-dumps).
Result<void> exchange(mnl_socket* sock, std::span<const std::uint8_t> request,
                      const OnMessage& on_message, bool* interrupted);

} // namespace wgd::netd::nl
