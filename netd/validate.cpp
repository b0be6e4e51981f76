#include "netd/validate.hpp"

#include <algorithm>
#include <cerrno>
#include <set>

namespace wgd::netd {
namespace {

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
                          const std::vector<Ip>& removes, const Pools& pools,
                          const DeviceView& view, std::set<Ip>& added_in_batch) {
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
        if (view.held_by_other(a, change.key))
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

Result<void> validate_peer_changes(const DeviceView& view, const Pools& pools,
                                   std::span<const PeerChange> changes) {
    std::set<PublicKey> seen;
    std::set<Ip4> added4;
    std::set<Ip6> added6;
    for (const auto& change : changes) {
        if (!view.find(change.key))
            return make_error(ENOENT, "refused: no " + peer_name(change.key) +
                                          " (peers are never created)");
        if (!seen.insert(change.key).second)
            return make_error(EINVAL, "refused: " + peer_name(change.key) + " twice in one batch");
        if (auto r = check_family(change, change.add4, change.remove4, pools, view, added4); !r)
            return r;
        if (auto r = check_family(change, change.add6, change.remove6, pools, view, added6); !r)
            return r;
    }
    return {};
}

Result<void> validate_peer_changes(const Device& device, const Pools& pools,
                                   std::span<const PeerChange> changes) {
    return validate_peer_changes(DeviceView(device), pools, changes);
}

} // namespace wgd::netd
