#include "netd/device_view.hpp"

#include <algorithm>
#include <cstring>

namespace wgd::netd {

namespace {
bool by_key(const Peer& a, const Peer& b) {
    return a.key < b.key;
}
} // namespace

std::size_t DeviceView::Hash::operator()(const Ip6& a) const {
    std::uint64_t hi = 0, lo = 0;
    std::memcpy(&hi, a.bytes.data(), 8);
    std::memcpy(&lo, a.bytes.data() + 8, 8);
    return (hi * 0x9e3779b97f4a7c15ull) ^ (lo * 0xc2b2ae3d27d4eb4full);
}

DeviceView::DeviceView(Device device) : peers_(std::move(device.peers)) {
    std::sort(peers_.begin(), peers_.end(), by_key);
    for (std::uint32_t i = 0; i < peers_.size(); i++)
        index(i);
}

void DeviceView::index(std::uint32_t i) {
    for (const Prefix4& p : peers_[i].allowed4) {
        if (p.len < 32)
            wide4_.emplace_back(p, i);
        else if (is_leasable(p.addr))
            hosts4_[p.addr] = i;
    }
    for (const Prefix6& p : peers_[i].allowed6) {
        if (p.len < 128)
            wide6_.emplace_back(p, i);
        else if (is_leasable(p.addr))
            hosts6_[p.addr] = i;
    }
}

const Peer* DeviceView::find(const PublicKey& key) const {
    Peer probe{key, {}, {}};
    auto it = std::lower_bound(peers_.begin(), peers_.end(), probe, by_key);
    return it != peers_.end() && it->key == key ? &*it : nullptr;
}

template <class Ip, class Prefix>
bool DeviceView::held_by_other(const Ip& a, const PublicKey& key, const std::vector<Peer>& peers,
                               const std::unordered_map<Ip, std::uint32_t, Hash>& hosts,
                               const std::vector<std::pair<Prefix, std::uint32_t>>& wide) {
    if (auto it = hosts.find(a); it != hosts.end() && peers[it->second].key != key)
        return true;
    return std::any_of(wide.begin(), wide.end(), [&](const auto& entry) {
        return peers[entry.second].key != key && entry.first.contains(a);
    });
}

bool DeviceView::held_by_other(const Ip4& a, const PublicKey& key) const {
    return held_by_other(a, key, peers_, hosts4_, wide4_);
}

bool DeviceView::held_by_other(const Ip6& a, const PublicKey& key) const {
    return held_by_other(a, key, peers_, hosts6_, wide6_);
}

bool DeviceView::record(const PeerChange& change) {
    const Peer* found = find(change.key);
    if (!found)
        return false;
    const auto i = static_cast<std::uint32_t>(found - peers_.data());
    Peer& peer = peers_[i];
    apply_change(change, peer.allowed4, peer.allowed6);
    auto forget = [i](auto& hosts, const auto& a) {
        if (auto it = hosts.find(a); it != hosts.end() && it->second == i)
            hosts.erase(it);
    };
    for (const Ip4& a : change.remove4)
        forget(hosts4_, a);
    for (const Ip6& a : change.remove6)
        forget(hosts6_, a);
    // WireGuard moves an allowed IP to the peer it is added to.
    for (const Ip4& a : change.add4)
        if (is_leasable(a))
            hosts4_[a] = i;
    for (const Ip6& a : change.add6)
        if (is_leasable(a))
            hosts6_[a] = i;
    return true;
}

} // namespace wgd::netd
