// libFuzzer: the UAPI reply parsers (the answers of wireguard-go to get and
// set), and the set request built from whatever parsed.
#include "netd/wireguard.hpp"

#include <cstdint>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    (void)wgd::netd::parse_uapi_errno(text);
    auto device = wgd::netd::parse_uapi_get(text);
    if (!device)
        return 0;
    std::vector<wgd::netd::PeerChange> changes;
    for (const auto& peer : device->peers) {
        wgd::netd::PeerChange change{peer.key, {}, {}, {}, {}};
        if (!peer.allowed4.empty())
            change.remove4.push_back(peer.allowed4.front().addr);
        if (!peer.allowed6.empty())
            change.remove6.push_back(peer.allowed6.front().addr);
        changes.push_back(change);
    }
    (void)wgd::netd::build_uapi_set(*device, changes);
    return 0;
}
