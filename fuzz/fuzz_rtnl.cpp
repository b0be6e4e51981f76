// libFuzzer: the rtnetlink decoders (links, addresses, routes, events, the
// routes the client keeps) on a buffer of netlink messages as the kernel
// would deliver it.
#include "netd/rtnl.hpp"

#include "netd/nl_io.hpp"

#include <libmnl/libmnl.h>

#include <cstdint>
#include <cstring>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // the kernel delivers aligned buffers; keep that property
    std::vector<std::uint32_t> aligned((size + 3) / 4);
    if (size)
        std::memcpy(aligned.data(), data, size);
    const std::span<const std::uint8_t> buf(reinterpret_cast<const std::uint8_t*>(aligned.data()),
                                            size);
    wgd::netd::nl::for_each_message(buf, [](const nlmsghdr* nlh) {
        (void)wgd::netd::parse_link(nlh);
        (void)wgd::netd::parse_addr(nlh);
        if (auto route = wgd::netd::parse_route(nlh))
            (void)wgd::netd::route_is_pool(*route, route->oif);
        for (int ifindex : {1, 2, 7}) {
            (void)wgd::netd::parse_event(nlh, ifindex);
            // A kept route's request is itself a well-formed netlink message.
            if (auto saved = wgd::netd::save_route(nlh, ifindex)) {
                const auto* req = reinterpret_cast<const nlmsghdr*>(saved->request.data());
                if (saved->request.size() < sizeof(nlmsghdr) ||
                    req->nlmsg_len != saved->request.size() || !wgd::netd::parse_route(req))
                    __builtin_trap();
            }
        }
        return true;
    });
    return 0;
}
