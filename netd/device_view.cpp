#include "netd/device_view.hpp"

#include <sys/random.h>

#include <algorithm>
#include <chrono>

namespace wgd::netd {

std::uint64_t address_hash_key() {
    static const std::uint64_t key = [] {
        std::uint64_t k = 0;
        if (::getrandom(&k, sizeof k, 0) != sizeof k) // never short for 8 bytes
            k = static_cast<std::uint64_t>(
                std::chrono::steady_clock::now().time_since_epoch().count());
        return k;
    }();
    return key;
}

namespace {

bool by_key(const Peer& a, const Peer& b) {
    return a.key < b.key;
}

bool is_host(const Prefix4& p) {
    return p.len == 32;
}
bool is_host(const Prefix6& p) {
    return p.len == 128;
}
const Allowed4& allowed(const Peer& p, const Ip4&) {
    return p.allowed4;
}
const Allowed6& allowed(const Peer& p, const Ip6&) {
    return p.allowed6;
}
Allowed4& allowed(Peer& p, const Ip4&) {
    return p.allowed4;
}
Allowed6& allowed(Peer& p, const Ip6&) {
    return p.allowed6;
}

// The HostIndex question: does peers[i] hold a as a host entry?
struct Holds {
    const Peers& peers;
    template <class Ip>
    bool operator()(std::uint32_t i, const Ip& a) const {
        const auto& list = allowed(peers[i], a);
        return std::any_of(list.begin(), list.end(),
                           [&](const auto& p) { return is_host(p) && p.addr == a; });
    }
};

} // namespace

DeviceView::DeviceView(Device device) : peers_(std::move(device.peers)) {
    std::sort(peers_.begin(), peers_.end(), by_key);
    for (std::uint32_t i = 0; i < peers_.size(); i++) {
        for (const Prefix4& p : peers_[i].allowed4)
            if (!is_host(p))
                wide4_.emplace_back(p, i);
        for (const Prefix6& p : peers_[i].allowed6)
            if (!is_host(p))
                wide6_.emplace_back(p, i);
    }
    reindex();
}

void DeviceView::reindex(std::size_t spare) {
    std::size_t count4 = 0, count6 = 0;
    for (const Peer& peer : peers_) {
        for (const Prefix4& p : peer.allowed4)
            count4 += is_host(p) && is_leasable(p.addr);
        for (const Prefix6& p : peer.allowed6)
            count6 += is_host(p) && is_leasable(p.addr);
    }
    hosts4_.reset(count4 + spare);
    hosts6_.reset(count6 + spare);
    const Holds holds{peers_};
    for (std::uint32_t i = 0; i < peers_.size(); i++) {
        for (const Prefix4& p : peers_[i].allowed4)
            if (is_host(p) && is_leasable(p.addr))
                hosts4_.assign(p.addr, i, holds);
        for (const Prefix6& p : peers_[i].allowed6)
            if (is_host(p) && is_leasable(p.addr))
                hosts6_.assign(p.addr, i, holds);
    }
}

std::uint32_t DeviceView::position(const PublicKey& key) const {
    auto it = std::lower_bound(peers_.begin(), peers_.end(), key,
                               [](const Peer& p, const PublicKey& k) { return p.key < k; });
    return it != peers_.end() && it->key == key ? static_cast<std::uint32_t>(it - peers_.begin())
                                                : kNoPeer;
}

const Peer* DeviceView::find(const PublicKey& key) const {
    const std::uint32_t i = position(key);
    return i == kNoPeer ? nullptr : &peers_[i];
}

template <class Ip, class Prefix>
bool DeviceView::held_by_other(const Ip& a, const PublicKey& key, const Peers& peers,
                               const HostIndex<Ip>& hosts,
                               const std::vector<std::pair<Prefix, std::uint32_t>>& wide) {
    if (const std::uint32_t i = hosts.find(a, Holds{peers});
        i != HostIndex<Ip>::kNone && peers[i].key != key)
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

namespace {

// Before a change is applied: takes a away from the peer that holds it, if
// another (WireGuard moves it), and says whether peer still has to be
// indexed under a.
template <class Ip>
bool take_over(Peers& peers, HostIndex<Ip>& hosts, const Ip& a, std::uint32_t peer) {
    const Holds holds{peers};
    if (holds(peer, a))
        return false; // held and indexed already
    if (const std::uint32_t before = hosts.find(a, holds); before != HostIndex<Ip>::kNone) {
        hosts.erase(a, before, holds); // while it still holds a: found through it
        auto& list = allowed(peers[before], a);
        list.erase(std::remove_if(list.begin(), list.end(),
                                  [&](const auto& p) { return is_host(p) && p.addr == a; }),
                   list.end());
    }
    return true;
}

} // namespace

bool DeviceView::record(const PeerChange& change) {
    const std::uint32_t i = position(change.key);
    if (i == kNoPeer)
        return false;
    const Holds holds{peers_};
    // Index changes around the lists' change: an entry is found through its
    // peer, so it is forgotten while the peer still holds the address and
    // assigned once it does.
    std::vector<Ip4> new4;
    std::vector<Ip6> new6;
    for (const Ip4& a : change.add4)
        if (is_leasable(a) && take_over(peers_, hosts4_, a, i))
            new4.push_back(a);
    for (const Ip6& a : change.add6)
        if (is_leasable(a) && take_over(peers_, hosts6_, a, i))
            new6.push_back(a);
    for (const Ip4& a : change.remove4)
        if (is_leasable(a) && holds(i, a))
            hosts4_.erase(a, i, holds);
    for (const Ip6& a : change.remove6)
        if (is_leasable(a) && holds(i, a))
            hosts6_.erase(a, i, holds);
    apply_change(change, peers_[i].allowed4, peers_[i].allowed6);
    bool full = false;
    for (const Ip4& a : new4)
        full = (holds(i, a) && !hosts4_.assign(a, i, holds)) || full;
    for (const Ip6& a : new6)
        full = (holds(i, a) && !hosts6_.assign(a, i, holds)) || full;
    if (full) // the peers hold every address already: index them all again
        reindex(std::max(peers_.size() / 16, std::size_t{64}));
    return true;
}

} // namespace wgd::netd
