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
    for (Peer& p : peers_)
        p.lease = 0;
    rewide();
    reindex();
}

void DeviceView::rewide() {
    wide4_.clear();
    wide6_.clear();
    for (std::uint32_t i = 0; i < peers_.size(); i++) {
        for (const Prefix4& p : peers_[i].allowed4)
            if (!is_host(p))
                wide4_.emplace_back(p, i);
        for (const Prefix6& p : peers_[i].allowed6)
            if (!is_host(p))
                wide6_.emplace_back(p, i);
    }
}

// ---- leases

namespace {

// Position of a as a host entry in list, or list.size().
template <class List, class Ip>
std::size_t host_position(const List& list, const Ip& a) {
    for (std::size_t k = 0; k < list.size(); k++)
        if (is_host(list[k]) && list[k].addr == a)
            return k;
    return list.size();
}

} // namespace

DeviceView::Lease DeviceView::lease_at(std::uint32_t i) const {
    const Peer& peer = peers_[i];
    Lease out;
    const std::uint8_t at4 = peer.lease & 0x0f, at6 = peer.lease >> 4;
    const Lease* far = nullptr;
    if (at4 == kElsewhere || at6 == kElsewhere) {
        auto it = far_.find(peer.key);
        far = it == far_.end() ? nullptr : &it->second;
    }
    if (at4 == kElsewhere)
        out.ipv4 = far ? far->ipv4 : std::nullopt;
    else if (at4 != 0 && at4 - 1u < peer.allowed4.size())
        out.ipv4 = peer.allowed4[at4 - 1u].addr;
    if (at6 == kElsewhere)
        out.ipv6 = far ? far->ipv6 : std::nullopt;
    else if (at6 != 0 && at6 - 1u < peer.allowed6.size())
        out.ipv6 = peer.allowed6[at6 - 1u].addr;
    return out;
}

void DeviceView::mark_lease(std::uint32_t i, const Lease& lease, bool keep_missing) {
    Peer& peer = peers_[i];
    Lease far;
    auto nibble = [&](const auto& list, const auto& a, auto& far_slot) -> std::uint8_t {
        if (!a)
            return 0;
        const std::size_t k = host_position(list, *a);
        const bool held = k < list.size();
        if (held && k < kInPeer)
            return static_cast<std::uint8_t>(k + 1);
        if (!held && !keep_missing)
            return 0;
        far_slot = a;
        return kElsewhere;
    };
    const std::uint8_t at4 = nibble(peer.allowed4, lease.ipv4, far.ipv4);
    const std::uint8_t at6 = nibble(peer.allowed6, lease.ipv6, far.ipv6);
    peer.lease = static_cast<std::uint8_t>(at4 | at6 << 4);
    if (far.empty()) {
        if (!far_.empty())
            far_.erase(peer.key);
    } else
        far_[peer.key] = far;
}

DeviceView::Lease DeviceView::lease(const PublicKey& key) const {
    const std::uint32_t i = position(key);
    return i == kNoPeer ? Lease{} : lease_at(i);
}

bool DeviceView::set_lease(const PublicKey& key, const Lease& lease) {
    return set_lease_at(position(key), lease);
}

bool DeviceView::set_lease_at(std::uint32_t i, const Lease& lease) {
    if (i == kNoPeer)
        return false;
    const Peer& peer = peers_[i];
    if ((lease.ipv4 && host_position(peer.allowed4, *lease.ipv4) == peer.allowed4.size()) ||
        (lease.ipv6 && host_position(peer.allowed6, *lease.ipv6) == peer.allowed6.size()))
        return false;
    mark_lease(i, lease, false);
    return true;
}

std::size_t DeviceView::lease_count() const {
    return static_cast<std::size_t>(
        std::count_if(peers_.begin(), peers_.end(), [](const Peer& p) { return p.lease != 0; }));
}

// ---- refresh

// The sink a read feeds: peers of the view are updated where they are
// (their lists replaced, their leases marked again), new ones wait in
// fresh_, and seen_ says which of the view's peers the read showed.
class DeviceView::Refresh final : public DeviceSink {
  public:
    explicit Refresh(DeviceView& view) : view_(view) {}

    void start() override {
        fresh_ = Peers();
        seen_.assign(view_.peers_.size(), false);
    }
    void peer(Peer&& peer) override {
        const std::uint32_t i = view_.position(peer.key);
        if (i == kNoPeer) {
            peer.lease = 0;
            fresh_.push_back(std::move(peer));
            return;
        }
        Peer& held = view_.peers_[i];
        const Lease lease = view_.lease_at(i);
        held.allowed4 = std::move(peer.allowed4);
        held.allowed6 = std::move(peer.allowed6);
        view_.mark_lease(i, lease, true);
        seen_[i] = true;
    }

    // The read worked: the peers it did not show go, the new ones come in,
    // and a lease kept aside stays only where its peer holds it.
    void complete() {
        Peers& peers = view_.peers_;
        std::size_t kept = 0;
        for (std::size_t r = 0; r < peers.size(); r++) {
            if (r < seen_.size() && seen_[r]) {
                if (kept != r)
                    peers[kept] = std::move(peers[r]);
                kept++;
            } else {
                view_.far_.erase(peers[r].key);
            }
        }
        while (peers.size() > kept)
            peers.pop_back();
        seen_ = std::vector<bool>();
        const bool added = !fresh_.empty(); // else peers is still sorted
        if (peers.empty()) {
            peers.swap(fresh_);
        } else {
            // Moved over from the back, so that fresh_ frees its blocks as
            // peers_ takes the peers.
            while (!fresh_.empty()) {
                peers.push_back(std::move(fresh_.back()));
                fresh_.pop_back();
            }
        }
        fresh_ = Peers();
        if (added)
            std::sort(peers.begin(), peers.end(), by_key);
        std::vector<std::pair<PublicKey, Lease>> aside(view_.far_.begin(), view_.far_.end());
        view_.far_.clear();
        for (const auto& [key, lease] : aside) {
            const std::uint32_t i = view_.position(key);
            if (i == kNoPeer)
                continue;
            // The nibble of a family kept aside is re-marked from it; the
            // other family's mark is still right.
            Lease whole = view_.lease_at(i);
            if ((peers[i].lease & 0x0f) == kElsewhere)
                whole.ipv4 = lease.ipv4;
            if ((peers[i].lease >> 4) == kElsewhere)
                whole.ipv6 = lease.ipv6;
            view_.mark_lease(i, whole, false);
        }
    }
    // The read failed: the new peers are left out, every peer stays.
    void abandon() {
        fresh_ = Peers();
        seen_ = std::vector<bool>();
    }

  private:
    DeviceView& view_;
    Peers fresh_;
    std::vector<bool> seen_;
};

Result<void> DeviceView::refresh(const std::function<Result<void>(DeviceSink&)>& read) {
    // The indexes are built again at the end: freed meanwhile, so that
    // they do not weigh at the read's peak.
    hosts4_.reset(0);
    hosts6_.reset(0);
    wide4_ = {};
    wide6_ = {};
    Refresh refresh(*this);
    refresh.start();
    Result<void> r = read(refresh);
    if (r)
        refresh.complete();
    else
        refresh.abandon();
    rewide();
    reindex();
    return r;
}

Result<void> DeviceView::refresh(WgBackend& wg) {
    return refresh([&](DeviceSink& sink) { return wg.stream_device(sink); });
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

std::uint32_t DeviceView::index_of(const PublicKey& key) const {
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

// Before a change is applied: the peer losing a loses its lease of a too.
template <class Ip>
bool DeviceView::take_over(HostIndex<Ip>& hosts, const Ip& a, std::uint32_t peer) {
    const Holds holds{peers_};
    if (holds(peer, a))
        return false; // held and indexed already
    if (const std::uint32_t before = hosts.find(a, holds); before != HostIndex<Ip>::kNone) {
        hosts.erase(a, before, holds); // while it still holds a: found through it
        const Lease lease = lease_at(before);
        auto& list = allowed(peers_[before], a);
        list.erase(std::remove_if(list.begin(), list.end(),
                                  [&](const auto& p) { return is_host(p) && p.addr == a; }),
                   list.end());
        mark_lease(before, lease, false);
    }
    return true;
}

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
        if (is_leasable(a) && take_over(hosts4_, a, i))
            new4.push_back(a);
    for (const Ip6& a : change.add6)
        if (is_leasable(a) && take_over(hosts6_, a, i))
            new6.push_back(a);
    for (const Ip4& a : change.remove4)
        if (is_leasable(a) && holds(i, a))
            hosts4_.erase(a, i, holds);
    for (const Ip6& a : change.remove6)
        if (is_leasable(a) && holds(i, a))
            hosts6_.erase(a, i, holds);
    const Lease lease = lease_at(i);
    apply_change(change, peers_[i].allowed4, peers_[i].allowed6);
    mark_lease(i, lease, false);
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
