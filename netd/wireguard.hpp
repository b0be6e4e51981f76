// WireGuard for netd: read a device's peers and their allowed IPs, and add or
// remove single /32 and /128 allowed IPs of existing peers. Two backends,
// chosen like wireguard-tools does: the UAPI socket of a userspace
// implementation (wireguard-go) when one answers, else the kernel's generic
// netlink family "wireguard".
#pragma once

#include "netd/result.hpp"
#include "privsep/addr.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace wgd::netd {

struct Peer {
    PublicKey key;
    std::vector<Prefix4> allowed4;
    std::vector<Prefix6> allowed6;
};

struct Device {
    std::uint16_t listen_port = 0;
    std::vector<Peer> peers;
    // nullptr when the device has no such peer. Linear: callers that look
    // up many keys build their own index.
    const Peer* find(const PublicKey& key) const;
};

// Changes to one existing peer's allowed IPs: /32 and /128 entries only.
struct PeerChange {
    PublicKey key;
    std::vector<Ip4> add4, remove4;
    std::vector<Ip6> add6, remove6;
};

class WgBackend {
  public:
    virtual ~WgBackend() = default;
    virtual Result<Device> read_device() = 0;
    // Applies the whole batch; peers are never created (update-only). The
    // batch is expected to have passed validate_peer_changes().
    virtual Result<void> apply(std::span<const PeerChange> changes) = 0;
    virtual std::string_view name() const = 0; // "uapi" or "genl"
};

struct BackendOptions {
    // Where userspace implementations put IFACE.sock (tests use their own).
    std::string uapi_dir = "/var/run/wireguard";
};

// UAPI when uapi_dir/IFACE.sock exists and accepts a connection, otherwise
// generic netlink (fails with ENODEV/ENOENT when there is no kernel family).
Result<std::unique_ptr<WgBackend>> open_backend(const std::string& ifname,
                                                const BackendOptions& options = {});
std::unique_ptr<WgBackend> make_uapi_backend(const std::string& socket_path);
Result<std::unique_ptr<WgBackend>> make_genl_backend(const std::string& ifname);

// ---- UAPI text protocol (pure)

// Parses the answer to "get=1\n\n" (up to and including its blank line):
// the device's peers and allowed IPs; a non-zero errno= (either sign) is an
// Error. Keys are hex; unknown keys are ignored.
Result<Device> parse_uapi_get(std::string_view reply);
// Parses the answer to a set: "errno=N\n\n".
Result<void> parse_uapi_errno(std::string_view reply);
// The "set=1" request for a batch, one operation: update_only=true for each
// peer; a peer with removals gets replace_allowed_ips=true and its full new
// list (current minus removals plus additions), since wireguard-go
// 0.0.20220316 has no single-entry removal; a peer with additions only gets
// just the new allowed_ip= lines. ENOENT when a peer is not in `current`.
Result<std::string> build_uapi_set(const Device& current, std::span<const PeerChange> changes);

// The new allowed-IP lists of a peer after a change (order kept, the
// additions appended, duplicates dropped). Shared by both backends.
void apply_change(const PeerChange& change, std::vector<Prefix4>& allowed4,
                  std::vector<Prefix6>& allowed6);

} // namespace wgd::netd
