// libFuzzer: the UAPI reply parsers (the answers of wireguard-go to get and
// set), and the set request built from whatever parsed. The get answer is
// also fed in three pieces, cut where the first two bytes say: it must give
// exactly what the whole input gives. Parsed again keeping only every other
// peer's key (UapiGetParser::keep_only), it must give those peers of the
// whole device, or the same error. Parsed streaming (stream_to), the peers
// handed over must be those of the whole device, with the same verdict.
#include "netd/wireguard.hpp"

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <vector>

namespace {

bool same_device(const wgd::netd::Device& a, const wgd::netd::Device& b) {
    if (a.listen_port != b.listen_port || a.peers.size() != b.peers.size())
        return false;
    for (std::size_t i = 0; i < a.peers.size(); ++i)
        if (a.peers[i].key != b.peers[i].key || a.peers[i].allowed4 != b.peers[i].allowed4 ||
            a.peers[i].allowed6 != b.peers[i].allowed6)
            return false;
    return true;
}

wgd::Result<wgd::netd::Device> parse_in_three(std::string_view text) {
    const std::size_t first =
        text.empty() ? 0 : static_cast<std::uint8_t>(text[0]) % (text.size() + 1);
    const std::size_t second =
        text.size() < 2 ? first
                        : first + static_cast<std::uint8_t>(text[1]) % (text.size() - first + 1);
    wgd::netd::UapiGetParser parser;
    for (const auto piece :
         {text.substr(0, first), text.substr(first, second - first), text.substr(second)}) {
        if (!parser.feed(piece))
            break;
    }
    return parser.take();
}

// Keeps the keys of peers 0, 2, 4... of `whole` and parses text again.
void check_keep_only(std::string_view text, const wgd::Result<wgd::netd::Device>& whole) {
    std::vector<wgd::PublicKey> keys;
    if (whole)
        for (std::size_t i = 0; i < whole->peers.size(); i += 2)
            keys.push_back(whole->peers[i].key);
    wgd::netd::UapiGetParser parser;
    parser.keep_only(keys);
    (void)parser.feed(text);
    auto kept = parser.take();
    if (kept.has_value() != whole.has_value())
        __builtin_trap();
    if (!kept) {
        if (kept.error().code != whole.error().code ||
            kept.error().message != whole.error().message)
            __builtin_trap();
        return;
    }
    wgd::netd::Device expected;
    expected.listen_port = whole->listen_port;
    for (const auto& peer : whole->peers)
        if (std::find(keys.begin(), keys.end(), peer.key) != keys.end())
            expected.peers.push_back(peer);
    if (!same_device(expected, *kept))
        __builtin_trap();
}

struct Taken final : wgd::netd::DeviceSink {
    wgd::netd::Device device;
    void start() override { device.peers.clear(); }
    void peer(wgd::netd::Peer&& p) override { device.peers.push_back(std::move(p)); }
};

void check_streamed(std::string_view text, const wgd::Result<wgd::netd::Device>& whole) {
    Taken taken;
    wgd::netd::UapiGetParser parser;
    parser.stream_to(taken);
    (void)parser.feed(text);
    auto rest = parser.take();
    if (rest.has_value() != whole.has_value())
        __builtin_trap();
    if (!rest) {
        if (rest.error().code != whole.error().code ||
            rest.error().message != whole.error().message)
            __builtin_trap();
        return;
    }
    if (!rest->peers.empty())
        __builtin_trap();
    taken.device.listen_port = rest->listen_port;
    if (!same_device(taken.device, whole.value()))
        __builtin_trap();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    (void)wgd::netd::parse_uapi_errno(text);
    auto device = wgd::netd::parse_uapi_get(text);
    auto pieces = parse_in_three(text);
    if (device.has_value() != pieces.has_value())
        __builtin_trap();
    check_streamed(text, device);
    if (!device) {
        check_keep_only(text, device);
        if (device.error().code != pieces.error().code ||
            device.error().message != pieces.error().message)
            __builtin_trap();
        return 0;
    }
    if (!same_device(*device, *pieces))
        __builtin_trap();
    check_keep_only(text, device);
    std::vector<wgd::PeerChange> changes;
    for (const auto& peer : device->peers) {
        wgd::PeerChange change{peer.key, {}, {}, {}, {}};
        if (!peer.allowed4.empty())
            change.remove4.push_back(peer.allowed4.front().addr);
        if (!peer.allowed6.empty())
            change.remove6.push_back(peer.allowed6.front().addr);
        changes.push_back(change);
    }
    (void)wgd::netd::build_uapi_set(*device, changes, {});
    return 0;
}
