// libFuzzer: the generic netlink WireGuard device dump decoder, fed a
// buffer of messages (one dump, possibly a peer continued across messages).
// Fed again streaming (DeviceDumpDecoder::stream_to), the peers it hands
// over, then any it kept, must be exactly the peers of the whole decode.
#include "netd/genl_codec.hpp"

#include "netd/nl_io.hpp"

#include <libmnl/libmnl.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

struct Taken final : wgd::netd::DeviceSink {
    std::vector<wgd::netd::Peer> peers;
    void start() override { peers.clear(); }
    void peer(wgd::netd::Peer&& p) override { peers.push_back(std::move(p)); }
};

bool same_peer(const wgd::netd::Peer& a, const wgd::netd::Peer& b) {
    return a.key == b.key && a.allowed4 == b.allowed4 && a.allowed6 == b.allowed6;
}

} // namespace

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
    Taken taken;
    wgd::netd::genl::DeviceDumpDecoder streaming;
    streaming.stream_to(taken);
    wgd::netd::nl::for_each_message(
        buf, [&](const nlmsghdr* nlh) { return streaming.feed(nlh).has_value(); });
    streaming.finish();
    for (auto& peer : streaming.take().peers)
        taken.peers.push_back(std::move(peer));
    if (taken.peers.size() != device.peers.size() ||
        !std::equal(taken.peers.begin(), taken.peers.end(), device.peers.begin(), same_peer))
        __builtin_trap();
    // whatever decoded must re-encode without trouble
    std::vector<wgd::PeerChange> changes;
    for (const auto& peer : device.peers)
        changes.push_back(wgd::PeerChange{peer.key, {}, {wgd::Ip4{{10, 0, 0, 1}}}, {}, {}});
    (void)wgd::netd::genl::build_set_device(0x1c, 1, "wg0", device, changes,
                                            wgd::netd::genl::Removal::transient_peer, {});
    return 0;
}
