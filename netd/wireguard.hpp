// WireGuard for netd: read a device's peers and their allowed IPs, and add or
// remove single /32 and /128 allowed IPs of existing peers. Two backends,
// chosen like wireguard-tools does: the UAPI socket of a userspace
// implementation (wireguard-go) when one answers, else the kernel's generic
// netlink family "wireguard".
#pragma once

#include "common/addr.hpp"
#include "common/peer.hpp"
#include "common/result.hpp"
#include "netd/inline_vector.hpp"

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace wgd::netd {

// A peer's allowed IPs, the usual ones inside the Peer (3 IPv4 cost no more
// room than 1: the heap pointer needs that much anyway).
using Allowed4 = InlineVector<Prefix4, 3>;
using Allowed6 = InlineVector<Prefix6, 2>;

struct Peer {
    PublicKey key;
    Allowed4 allowed4;
    Allowed6 allowed6;
    // Which host entries wg-dynamic leased, for netd's DeviceView only (the
    // backends leave it 0): a byte beside the peer it marks, where a set
    // keyed by the peers' 32-byte keys would hold every leased key twice.
    // Low nibble IPv4, high nibble IPv6 (device_view.hpp).
    std::uint8_t lease = 0;
    PeerFacts facts() const { return {key, allowed4.to_vector(), allowed6.to_vector()}; }
};

// A deque, not a vector: a read appends peers one by one without knowing how
// many will come, and a vector's doubling would hold the old and the new
// array at once (up to 3 copies of the device at netd's peak). Its blocks
// cost about 1.5 bytes a peer.
using Peers = std::deque<Peer>;

struct Device {
    std::uint16_t listen_port = 0;
    Peers peers;
    // nullptr when the device has no such peer. Linear: callers that look
    // up many keys build their own index.
    const Peer* find(const PublicKey& key) const;
};

// Takes a device's peers as a read decodes them, one at a time, each with
// all its allowed IPs: the reader keeps no copy of the device beside the
// taker's. The peers of an answer that fails in the end may have come
// already: the taker decides what they are worth once the read returns.
class DeviceSink {
  public:
    // A read (again): forget the peers since the last start. The generic
    // netlink dump starts over when the device changed under it.
    virtual void start() = 0;
    virtual void peer(Peer&& peer) = 0;

  protected:
    ~DeviceSink() = default;
};

class WgBackend {
  public:
    virtual ~WgBackend() = default;
    virtual Result<Device> read_device() = 0;
    // The same read as read_device, handed to sink peer by peer.
    virtual Result<void> stream_device(DeviceSink& sink) = 0;
    // Applies the whole batch; peers are never created (update-only). The
    // batch is expected to have passed OrderCheck (validate.hpp).
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

// Parses the answer to "get=1\n\n" as it arrives, in pieces of any size, so
// the whole answer (about 300 bytes a peer) is never held: only the current
// partial line and the Device being built. Any split of an answer gives the
// same Device, or the same Error, as the answer fed whole.
class UapiGetParser {
  public:
    // wireguard-go's longest line is about 100 bytes; a longer one is refused
    // (EBADMSG) rather than buffered.
    static constexpr std::size_t kMaxLine = 4096;

    // Consumes the next bytes. Fails (EBADMSG) as soon as they are known bad:
    // a malformed line, a line over kMaxLine, anything after the blank line.
    // An error is final: later feeds and take() answer it again.
    Result<void> feed(std::string_view bytes);
    // Before the first feed: keep only the peers whose key is in `keys`. The
    // others are still parsed (a bad answer is refused alike) but dropped: a
    // removal needs the lists of the peers it changes, not a second copy of
    // the device next to netd's own.
    void keep_only(std::vector<PublicKey> keys);
    // Before the first feed: each complete peer goes to sink (start() first)
    // instead of into the Device, which then holds at most the peer being
    // parsed. take() still says whether the answer was good.
    void stream_to(DeviceSink& sink);
    // True once the terminating blank line has been consumed: stop reading.
    bool done() const { return done_; }
    // At the end of the input: the device, or the first error, or the
    // non-zero errno= of the answer, or EBADMSG when the input stopped before
    // its blank line. Leaves the parser empty.
    Result<Device> take();

  private:
    Result<void> fail(std::string message);
    Result<void> parse_line(std::string_view line);
    void hand_over(); // the peers parsed so far, to sink_

    DeviceSink* sink_ = nullptr;
    Device device_;
    std::vector<PublicKey> keep_; // sorted; empty: keep every peer
    bool filtering_ = false;
    bool skipping_peer_ = false; // the current peer is not kept
    std::string partial_;        // the current line so far, at most kMaxLine bytes
    std::optional<int> errno_;
    std::optional<Error> error_;
    bool have_peer_ = false;
    bool done_ = false;
};

// The whole answer to "get=1\n\n" (up to and including its blank line) at
// once: the device's peers and allowed IPs; a non-zero errno= (either sign)
// is an Error. Keys are hex; unknown keys are ignored. Same rules as
// UapiGetParser, which it feeds.
Result<Device> parse_uapi_get(std::string_view reply);
// Parses the answer to a set: "errno=N\n\n".
Result<void> parse_uapi_errno(std::string_view reply);
// The "set=1" request for a batch, one operation: update_only=true for each
// peer, with its new allowed_ip= lines. wireguard-go 0.0.20220316 has no
// single-entry removal, so the removals come first: the peer `transient`
// (a fresh random key, no peer's) is created with the addresses to remove,
// which moves them off their peers, and is removed again (remove=true).
// wireguard-go applies one set whole under its configuration lock, so the
// peers' other allowed IPs are never rewritten and an operator's change to
// them at the same moment is kept. Only addresses that `current` (read just
// before) shows on their peer are moved, so that one already given to
// another peer stays there. ENOENT when a peer with removals is not in
// `current`.
Result<std::string> build_uapi_set(const Device& current, std::span<const PeerChange> changes,
                                   const PublicKey& transient);

// The new allowed-IP lists of a peer after a change (order kept, the
// additions appended, duplicates dropped). Shared by both backends.
void apply_change(const PeerChange& change, Allowed4& allowed4, Allowed6& allowed6);

} // namespace wgd::netd
