#include "netd/validate.hpp"

#include <algorithm>
#include <cerrno>
#include <map>
#include <set>

namespace wgd::netd {
namespace {

// Who holds which address: exact host entries in a map, the (few) wider
// prefixes in a list, so a batch of 10,000 changes costs O(n log n).
struct Owners {
    std::map<Ip4, const PublicKey*> host4;
    std::map<Ip6, const PublicKey*> host6;
    std::vector<std::pair<Prefix4, const PublicKey*>> wide4;
    std::vector<std::pair<Prefix6, const PublicKey*>> wide6;

    explicit Owners(const Device& device) {
        for (const auto& peer : device.peers) {
            for (const auto& p : peer.allowed4) {
                if (p.len == 32)
                    host4.emplace(p.addr, &peer.key);
                else
                    wide4.emplace_back(p, &peer.key);
            }
            for (const auto& p : peer.allowed6) {
                if (p.len == 128)
                    host6.emplace(p.addr, &peer.key);
                else
                    wide6.emplace_back(p, &peer.key);
            }
        }
    }

    template <class Ip, class Host, class Wide>
    static bool other_holds(const Ip& a, const PublicKey& key, const Host& host, const Wide& wide) {
        if (auto it = host.find(a); it != host.end() && *it->second != key)
            return true;
        return std::any_of(wide.begin(), wide.end(), [&](const auto& entry) {
            return *entry.second != key && entry.first.contains(a);
        });
    }
    bool other_holds(const Ip4& a, const PublicKey& key) const {
        return other_holds(a, key, host4, wide4);
    }
    bool other_holds(const Ip6& a, const PublicKey& key) const {
        return other_holds(a, key, host6, wide6);
    }
};

bool in_pools(const Ip4& a, const Pools& pools) {
    return std::any_of(pools.v4.begin(), pools.v4.end(),
                       [&](const Prefix4& p) { return p.contains(a); });
}
bool in_pools(const Ip6& a, const Pools& pools) {
    return std::any_of(pools.v6.begin(), pools.v6.end(),
                       [&](const Prefix6& p) { return p.contains(a); });
}

std::string peer_name(const PublicKey& key) {
    return "peer " + to_base64(key);
}

template <class Ip>
Result<void> check_family(const PeerChange& change, const std::vector<Ip>& adds,
                          const std::vector<Ip>& removes, const Pools& pools, const Owners& owners,
                          std::set<Ip>& added_in_batch) {
    for (const auto& a : removes) {
        if (!is_leasable(a))
            return make_error(EINVAL, "refused: " + peer_name(change.key) + ": removing " +
                                          to_string(a) + ", which is not global unicast" +
                                          " (link-local entries are never removed)");
        if (std::find(adds.begin(), adds.end(), a) != adds.end())
            return make_error(EINVAL, "refused: " + peer_name(change.key) + ": " + to_string(a) +
                                          " both added and removed");
    }
    for (const auto& a : adds) {
        if (!is_leasable(a))
            return make_error(EINVAL, "refused: " + peer_name(change.key) + ": adding " +
                                          to_string(a) + ", which is not global unicast");
        if (!in_pools(a, pools))
            return make_error(EINVAL, "refused: " + peer_name(change.key) + ": " + to_string(a) +
                                          " is outside every pool");
        if (owners.other_holds(a, change.key))
            return make_error(EEXIST, "refused: " + peer_name(change.key) + ": " + to_string(a) +
                                          " is an allowed IP of another peer");
        if (!added_in_batch.insert(a).second)
            return make_error(EEXIST, "refused: " + to_string(a) + " added twice in one batch");
    }
    return {};
}

} // namespace

Result<void> validate_interface(int configured_ifindex, int order_ifindex) {
    if (configured_ifindex <= 0 || order_ifindex != configured_ifindex)
        return make_error(ENODEV, "refused: order for interface index " +
                                      std::to_string(order_ifindex) + ", not the configured " +
                                      std::to_string(configured_ifindex));
    return {};
}

Result<void> validate_address_order(int configured_ifindex, int order_ifindex,
                                    const Prefix& prefix) {
    if (auto r = validate_interface(configured_ifindex, order_ifindex); !r)
        return r;
    return check_address_order(prefix);
}

Result<void> validate_peer_changes(const Device& device, const Pools& pools,
                                   std::span<const PeerChange> changes) {
    std::set<PublicKey> existing;
    for (const auto& p : device.peers)
        existing.insert(p.key);
    const Owners owners(device);
    std::set<PublicKey> seen;
    std::set<Ip4> added4;
    std::set<Ip6> added6;
    for (const auto& change : changes) {
        if (!existing.count(change.key))
            return make_error(ENOENT, "refused: no " + peer_name(change.key) +
                                          " (peers are never created)");
        if (!seen.insert(change.key).second)
            return make_error(EINVAL, "refused: " + peer_name(change.key) + " twice in one batch");
        if (auto r = check_family(change, change.add4, change.remove4, pools, owners, added4); !r)
            return r;
        if (auto r = check_family(change, change.add6, change.remove6, pools, owners, added6); !r)
            return r;
    }
    return {};
}

} // namespace wgd::netd
