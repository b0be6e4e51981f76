// Netlink socket plumbing shared by rtnetlink and generic netlink: receive
// only what the kernel sent, walk a buffer of messages, and read the acks.
// Internal to netd.
#pragma once

#include "netd/result.hpp"

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

enum class Step { more, done };

// What a request/answer exchange does with each answer message (neither
// error nor done). Returning an Error aborts the exchange.
using OnMessage = std::function<Result<void>(const nlmsghdr*)>;

// Sends `request` and reads answers until the ack or NLMSG_DONE; an error
// ack becomes Error{errno}. interrupted is set when a dump message carried
// NLM_F_DUMP_INTR (the caller re-dumps).
Result<void> exchange(mnl_socket* sock, std::span<const std::uint8_t> request,
                      const OnMessage& on_message, bool* interrupted);

} // namespace wgd::netd::nl
