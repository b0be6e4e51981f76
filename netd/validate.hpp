// Order validation: the security boundary between leased (untrusted, may be
// compromised) and the kernel. Pure: checks orders against the current
// device snapshot and pools; the caller applies a batch only when the whole
// batch passes, so a refused batch changes nothing.
#pragma once

#include "netd/device_view.hpp"
#include "netd/result.hpp"
#include "netd/rtnl.hpp"
#include "netd/wireguard.hpp"

#include <span>

namespace wgd::netd {

// The order names the configured interface (ENODEV otherwise).
Result<void> validate_interface(int configured_ifindex, int order_ifindex);

// An address order (client side): the configured interface, a /32 or /128
// global unicast address.
Result<void> validate_address_order(int configured_ifindex, int order_ifindex,
                                    const Prefix& prefix);

// A batch of allowed-IP changes (server side). Refused (EINVAL/ENOENT/EEXIST)
// when any change: names a peer absent from `device` (peers are never
// created) or a peer twice; removes an address that is not global unicast
// (link-local fe80::/10 and 169.254/16 above all); adds an address that is
// not global unicast, lies outside every pool, or lies inside an allowed IP
// of another peer (WireGuard would move or shadow it), or that two changes
// of the batch add; adds and removes the same address. Removing an address
// the peer does not hold as a /32 or /128 is allowed and changes nothing.
Result<void> validate_peer_changes(const DeviceView& view, const Pools& pools,
                                   std::span<const PeerChange> changes);
// The same against a device read just now (indexes it first: O(peers)).
Result<void> validate_peer_changes(const Device& device, const Pools& pools,
                                   std::span<const PeerChange> changes);

} // namespace wgd::netd
