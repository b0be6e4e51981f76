// Generic netlink messages of the kernel's "wireguard" family, pure: the
// controller lookup, the device dump decoder (peers continued across
// messages) and the set-device encoder (split by size like wireguard-tools).
#pragma once

#include "common/result.hpp"
#include "netd/wireguard.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

struct nlmsghdr;

namespace wgd::netd::genl {

// Linux 6.16 added single-entry removal of allowed IPs; Debian 12's
// linux/wireguard.h predates it, so the two values are defined here (they
// are part of the kernel's stable UAPI: enum wgallowedip_attribute and
// enum wgallowedip_flag).
inline constexpr std::uint16_t kAllowedIpAttrFlags = 4; // WGALLOWEDIP_A_FLAGS, NLA_U32
inline constexpr std::uint32_t kAllowedIpRemoveMe = 1;  // WGALLOWEDIP_F_REMOVE_ME

// Kernels older than 6.16 ignore the unknown flags attribute and would add
// instead of remove. There the addresses to remove go to a transient peer
// that the same message creates and then removes: adding an allowed IP that
// a peer holds moves it to the new one, and the kernel applies a message
// whole under its device lock, so the peer's other allowed IPs are never
// rewritten and an operator's change to them at the same moment is kept.
enum class Removal { remove_flag, transient_peer };
Removal removal_for_kernel(const std::string& release); // uname -r

// wireguard-tools sizes its messages by the page size (at most 8 KiB).
inline constexpr std::size_t kMaxMessage = 4096;

std::size_t build_get_family(std::span<std::uint8_t> buf, std::uint32_t seq);
std::optional<std::uint16_t> parse_family_id(const nlmsghdr* nlh);

std::size_t build_get_device(std::span<std::uint8_t> buf, std::uint16_t family_id,
                             std::uint32_t seq, const std::string& ifname);

// Feed every message of one WG_CMD_GET_DEVICE dump, in order.
class DeviceDumpDecoder {
  public:
    // Before the first feed: keep only the peers whose key is in `keys`; the
    // others are decoded (a bad dump is refused alike) and dropped after each
    // message, so a removal's read holds its peers, not the whole device.
    void keep_only(std::vector<PublicKey> keys);
    // Before the first feed: each complete peer goes to sink (start() first)
    // instead of into the Device. A peer is complete once a later one
    // begins (the kernel continues a peer at the start of the next message),
    // the last one at finish().
    void stream_to(DeviceSink& sink);
    Result<void> feed(const nlmsghdr* nlh);
    // After the dump's last message: hands the last peer to the sink.
    void finish();
    const Device& device() const { return device_; }
    Device take() { return std::move(device_); }

  private:
    void drop_others(); // the peers not kept
    Result<void> decode(const nlmsghdr* nlh);
    void hand_over(std::size_t keep_last); // all peers but the last keep_last, to sink_

    DeviceSink* sink_ = nullptr;
    Device device_;
    std::vector<PublicKey> keep_; // sorted
    bool filtering_ = false;
};

// WG_CMD_SET_DEVICE messages (NLM_F_REQUEST|NLM_F_ACK, seq, seq+1, ...) for
// a batch: every peer with WGPEER_F_UPDATE_ONLY; each message at most
// max_message bytes; a peer whose entries do not fit continues in the next
// message. With transient_peer, the removals come first: messages that each
// create the peer `transient` (no flags) with some of the addresses to
// remove and end with that peer and WGPEER_F_REMOVE_ME. Only addresses that
// `current` (read just before) shows on their peer are moved, so that an
// address already given to another peer stays there; `current` and
// `transient` (a fresh random key, no peer's) are needed only then.
Result<std::vector<std::vector<std::uint8_t>>>
build_set_device(std::uint16_t family_id, std::uint32_t seq, const std::string& ifname,
                 const Device& current, std::span<const PeerChange> changes, Removal removal,
                 const PublicKey& transient, std::size_t max_message = kMaxMessage);

// One WG_CMD_SET_DEVICE message that removes the peer `key` (if it exists):
// what is left of a transient peer when a message that made it failed.
std::vector<std::uint8_t> build_remove_peer(std::uint16_t family_id, std::uint32_t seq,
                                            const std::string& ifname, const PublicKey& key);

} // namespace wgd::netd::genl
