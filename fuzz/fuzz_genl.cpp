// libFuzzer: the generic netlink WireGuard device dump decoder, fed a
// buffer of messages (one dump, possibly a peer continued across messages).
#include "netd/genl_codec.hpp"

#include "netd/nl_io.hpp"

#include <libmnl/libmnl.h>

#include <cstdint>
#include <cstring>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::vector<std::uint32_t> aligned((size + 3) / 4);
    if (size)
        std::memcpy(aligned.data(), data, size);
    wgd::netd::genl::DeviceDumpDecoder decoder;
    const std::span<const std::uint8_t> buf(reinterpret_cast<const std::uint8_t*>(aligned.data()),
                                            size);
    wgd::netd::nl::for_each_message(buf, [&](const nlmsghdr* nlh) {
        (void)wgd::netd::genl::parse_family_id(nlh);
        return decoder.feed(nlh).has_value();
    });
    const auto device = decoder.take();
    // whatever decoded must re-encode without trouble
    std::vector<wgd::PeerChange> changes;
    for (const auto& peer : device.peers)
        changes.push_back(wgd::PeerChange{peer.key, {}, {wgd::Ip4{{10, 0, 0, 1}}}, {}, {}});
    (void)wgd::netd::genl::build_set_device(0x1c, 1, "wg0", device, changes,
                                            wgd::netd::genl::Removal::transient_peer, {});
    return 0;
}
