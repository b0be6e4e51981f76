#include "netd/genl_codec.hpp"

#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/wireguard.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>

namespace wgd::netd::genl {
namespace {

nlmsghdr* put_genl_header(std::uint8_t* buf, std::uint16_t type, std::uint16_t flags,
                          std::uint32_t seq, std::uint8_t cmd, std::uint8_t version) {
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = flags;
    nlh->nlmsg_seq = seq;
    auto* g = static_cast<genlmsghdr*>(mnl_nlmsg_put_extra_header(nlh, sizeof(genlmsghdr)));
    g->cmd = cmd;
    g->version = version;
    return nlh;
}

template <std::size_t N>
struct Table {
    std::array<const nlattr*, N> at{};
};
template <std::size_t N>
int collect(const nlattr* attr, void* data) {
    auto* t = static_cast<Table<N>*>(data);
    if (mnl_attr_type_valid(attr, N - 1) >= 0)
        t->at[mnl_attr_get_type(attr)] = attr;
    return MNL_CB_OK;
}

Result<void> bad(const char* what) {
    return make_error(EBADMSG, std::string("genl: ") + what);
}

Result<void> decode_allowed_ip(const nlattr* nest, Peer& peer) {
    Table<WGALLOWEDIP_A_MAX + 2> t;
    if (mnl_attr_validate(nest, MNL_TYPE_NESTED) < 0 ||
        mnl_attr_parse_nested(nest, collect<WGALLOWEDIP_A_MAX + 2>, &t) < 0)
        return bad("malformed allowed IP");
    const nlattr* fam = t.at[WGALLOWEDIP_A_FAMILY];
    const nlattr* addr = t.at[WGALLOWEDIP_A_IPADDR];
    const nlattr* cidr = t.at[WGALLOWEDIP_A_CIDR_MASK];
    if (!fam || !addr || !cidr || mnl_attr_validate(fam, MNL_TYPE_U16) < 0 ||
        mnl_attr_validate(cidr, MNL_TYPE_U8) < 0)
        return bad("allowed IP without family, address or mask");
    const std::uint16_t family = mnl_attr_get_u16(fam);
    const std::uint8_t len = mnl_attr_get_u8(cidr);
    if (family == AF_INET) {
        if (mnl_attr_get_payload_len(addr) != 4 || len > 32)
            return bad("bad IPv4 allowed IP");
        Prefix4 p;
        std::memcpy(p.addr.bytes.data(), mnl_attr_get_payload(addr), 4);
        p.len = len;
        peer.allowed4.push_back(p);
    } else if (family == AF_INET6) {
        if (mnl_attr_get_payload_len(addr) != 16 || len > 128)
            return bad("bad IPv6 allowed IP");
        Prefix6 p;
        std::memcpy(p.addr.bytes.data(), mnl_attr_get_payload(addr), 16);
        p.len = len;
        peer.allowed6.push_back(p);
    } else {
        return bad("allowed IP of unknown family");
    }
    return {};
}

Result<void> decode_peer(const nlattr* nest, Device& device, bool first_in_message) {
    Table<WGPEER_A_MAX + 1> t;
    if (mnl_attr_validate(nest, MNL_TYPE_NESTED) < 0 ||
        mnl_attr_parse_nested(nest, collect<WGPEER_A_MAX + 1>, &t) < 0)
        return bad("malformed peer");
    const nlattr* key = t.at[WGPEER_A_PUBLIC_KEY];
    if (!key || mnl_attr_validate2(key, MNL_TYPE_BINARY, WG_KEY_LEN) < 0)
        return bad("peer without a 32-byte public key");
    PublicKey k;
    std::memcpy(k.bytes.data(), mnl_attr_get_payload(key), WG_KEY_LEN);
    // the kernel repeats a peer whose allowed IPs did not fit at the start
    // of the next message
    Peer* peer = nullptr;
    if (first_in_message && !device.peers.empty() && device.peers.back().key == k)
        peer = &device.peers.back();
    else {
        device.peers.push_back(Peer{k, {}, {}});
        peer = &device.peers.back();
    }
    if (const nlattr* ips = t.at[WGPEER_A_ALLOWEDIPS]) {
        if (mnl_attr_validate(ips, MNL_TYPE_NESTED) < 0)
            return bad("malformed allowed IPs");
        struct Ctx {
            Peer* peer;
            Result<void> result;
        } ctx{peer, {}};
        auto each = [](const nlattr* ip, void* data) -> int {
            auto* c = static_cast<Ctx*>(data);
            c->result = decode_allowed_ip(ip, *c->peer);
            return c->result ? MNL_CB_OK : MNL_CB_ERROR;
        };
        if (mnl_attr_parse_nested(ips, each, &ctx) < 0)
            return ctx.result ? bad("malformed allowed IPs") : ctx.result;
    }
    return {};
}

} // namespace

Removal removal_for_kernel(const std::string& release) {
    int major = 0, minor = 0;
    if (std::sscanf(release.c_str(), "%d.%d", &major, &minor) != 2)
        return Removal::transient_peer;
    return (major > 6 || (major == 6 && minor >= 16)) ? Removal::remove_flag
                                                      : Removal::transient_peer;
}

std::size_t build_get_family(std::span<std::uint8_t> buf, std::uint32_t seq) {
    std::memset(buf.data(), 0, 64);
    nlmsghdr* nlh = put_genl_header(buf.data(), GENL_ID_CTRL, NLM_F_REQUEST | NLM_F_ACK, seq,
                                    CTRL_CMD_GETFAMILY, 1);
    mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, WG_GENL_NAME);
    return nlh->nlmsg_len;
}

std::optional<std::uint16_t> parse_family_id(const nlmsghdr* nlh) {
    if (nlh->nlmsg_type != GENL_ID_CTRL || mnl_nlmsg_get_payload_len(nlh) < GENL_HDRLEN)
        return std::nullopt;
    Table<CTRL_ATTR_MAX + 1> t;
    if (mnl_attr_parse(nlh, GENL_HDRLEN, collect<CTRL_ATTR_MAX + 1>, &t) < 0)
        return std::nullopt;
    const nlattr* id = t.at[CTRL_ATTR_FAMILY_ID];
    if (!id || mnl_attr_validate(id, MNL_TYPE_U16) < 0)
        return std::nullopt;
    return mnl_attr_get_u16(id);
}

std::size_t build_get_device(std::span<std::uint8_t> buf, std::uint16_t family_id,
                             std::uint32_t seq, const std::string& ifname) {
    std::memset(buf.data(), 0, 64);
    nlmsghdr* nlh = put_genl_header(buf.data(), family_id, NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP,
                                    seq, WG_CMD_GET_DEVICE, WG_GENL_VERSION);
    mnl_attr_put_strz(nlh, WGDEVICE_A_IFNAME, ifname.c_str());
    return nlh->nlmsg_len;
}

void DeviceDumpDecoder::keep_only(std::vector<PublicKey> keys) {
    keep_ = std::move(keys);
    std::sort(keep_.begin(), keep_.end());
    filtering_ = true;
}

// A dropped peer that the next message continues is decoded there as a new
// peer and dropped again: nothing needs to wait.
void DeviceDumpDecoder::drop_others() {
    Peers& peers = device_.peers;
    peers.erase(std::remove_if(peers.begin(), peers.end(),
                               [&](const Peer& p) {
                                   return !std::binary_search(keep_.begin(), keep_.end(), p.key);
                               }),
                peers.end());
}

void DeviceDumpDecoder::stream_to(DeviceSink& sink) {
    sink_ = &sink;
    sink.start();
}

void DeviceDumpDecoder::hand_over(std::size_t keep_last) {
    if (!sink_)
        return;
    Peers& peers = device_.peers;
    while (peers.size() > keep_last) {
        sink_->peer(std::move(peers.front()));
        peers.pop_front();
    }
}

Result<void> DeviceDumpDecoder::feed(const nlmsghdr* nlh) {
    Result<void> fed = decode(nlh);
    if (fed && filtering_)
        drop_others();
    if (fed)
        hand_over(1);
    return fed;
}

void DeviceDumpDecoder::finish() {
    hand_over(0);
}

Result<void> DeviceDumpDecoder::decode(const nlmsghdr* nlh) {
    if (nlh->nlmsg_len < MNL_NLMSG_HDRLEN || mnl_nlmsg_get_payload_len(nlh) < GENL_HDRLEN)
        return bad("truncated message");
    const auto* g = static_cast<const genlmsghdr*>(mnl_nlmsg_get_payload(nlh));
    if (g->cmd != WG_CMD_GET_DEVICE)
        return bad("not a device message");
    Table<WGDEVICE_A_MAX + 1> t;
    if (mnl_attr_parse(nlh, GENL_HDRLEN, collect<WGDEVICE_A_MAX + 1>, &t) < 0)
        return bad("malformed device attributes");
    if (const nlattr* port = t.at[WGDEVICE_A_LISTEN_PORT]) {
        if (mnl_attr_validate(port, MNL_TYPE_U16) < 0)
            return bad("bad listen port");
        device_.listen_port = mnl_attr_get_u16(port);
    }
    if (const nlattr* peers = t.at[WGDEVICE_A_PEERS]) {
        if (mnl_attr_validate(peers, MNL_TYPE_NESTED) < 0)
            return bad("malformed peers");
        struct Ctx {
            Device* device;
            bool first;
            Result<void> result;
        } ctx{&device_, true, {}};
        auto each = [](const nlattr* peer, void* data) -> int {
            auto* c = static_cast<Ctx*>(data);
            c->result = decode_peer(peer, *c->device, c->first);
            c->first = false;
            return c->result ? MNL_CB_OK : MNL_CB_ERROR;
        };
        if (mnl_attr_parse_nested(peers, each, &ctx) < 0)
            return ctx.result ? bad("malformed peers") : ctx.result;
    }
    return {};
}

namespace {

// One allowed-IP entry as it goes on the wire.
struct Entry {
    std::uint16_t family;
    std::array<std::uint8_t, 16> addr{};
    std::uint8_t cidr;
    bool remove;
};

class SetWriter {
  public:
    SetWriter(std::uint16_t family, std::uint32_t seq, const std::string& ifname, std::size_t max)
        : family_(family), seq_(seq), ifname_(ifname), max_(max) {}

    // A peer that exists, updated: its entries, in as many messages as needed.
    Result<void> peer(const PublicKey& key, const std::vector<Entry>& entries) {
        std::size_t next = 0;
        for (;;) {
            if (!nlh_)
                open_message();
            const std::size_t put = peer_fragment(key, WGPEER_F_UPDATE_ONLY, entries, next, max_);
            if (put == 0 && next < entries.size()) {
                if (peers_in_message_ == 0)
                    return make_error(EMSGSIZE, "genl: one allowed IP does not fit a message");
                close_message();
                continue;
            }
            if (next == entries.size())
                return {};
            close_message(); // the rest of this peer goes into the next message
        }
    }

    // The transient peer: in messages of their own, each creating it with
    // some of the entries and removing it again at its end.
    Result<void> transient(const PublicKey& key, const std::vector<Entry>& entries) {
        // What the removal at the end takes: the peer's nest, key and flags.
        constexpr std::size_t kRemoval = MNL_ATTR_HDRLEN + MNL_ALIGN(MNL_ATTR_HDRLEN + WG_KEY_LEN) +
                                         MNL_ALIGN(MNL_ATTR_HDRLEN + sizeof(std::uint32_t));
        std::size_t next = 0;
        while (next < entries.size()) {
            if (nlh_)
                close_message();
            open_message();
            if (peer_fragment(key, 0, entries, next, max_ - kRemoval) == 0)
                return make_error(EMSGSIZE, "genl: one allowed IP does not fit a message");
            nlattr* gone = mnl_attr_nest_start(nlh_, 0);
            mnl_attr_put(nlh_, WGPEER_A_PUBLIC_KEY, WG_KEY_LEN, key.bytes.data());
            mnl_attr_put_u32(nlh_, WGPEER_A_FLAGS, WGPEER_F_REMOVE_ME);
            mnl_attr_nest_end(nlh_, gone);
            close_message();
        }
        return {};
    }

    std::vector<std::vector<std::uint8_t>> finish() {
        if (nlh_)
            close_message();
        return std::move(messages_);
    }

  private:
    void open_message() {
        buf_.assign(max_, 0);
        nlh_ = put_genl_header(buf_.data(), family_, NLM_F_REQUEST | NLM_F_ACK, seq_++,
                               WG_CMD_SET_DEVICE, WG_GENL_VERSION);
        mnl_attr_put_strz(nlh_, WGDEVICE_A_IFNAME, ifname_.c_str());
        peers_ = mnl_attr_nest_start(nlh_, WGDEVICE_A_PEERS);
        peers_in_message_ = 0;
    }
    void close_message() {
        mnl_attr_nest_end(nlh_, peers_);
        messages_.emplace_back(buf_.begin(), buf_.begin() + nlh_->nlmsg_len);
        nlh_ = nullptr;
    }
    // One peer's nest with entries from `next` on, as many as fit in
    // `limit` bytes; how many it put (0: nothing of the peer was put).
    std::size_t peer_fragment(const PublicKey& key, std::uint32_t flags,
                              const std::vector<Entry>& entries, std::size_t& next,
                              std::size_t limit) {
        nlattr* peer_nest = mnl_attr_nest_start_check(nlh_, limit, 0);
        nlattr* ips = nullptr;
        if (peer_nest &&
            mnl_attr_put_check(nlh_, limit, WGPEER_A_PUBLIC_KEY, WG_KEY_LEN, key.bytes.data()) &&
            mnl_attr_put_u32_check(nlh_, limit, WGPEER_A_FLAGS, flags))
            ips = mnl_attr_nest_start_check(nlh_, limit, WGPEER_A_ALLOWEDIPS);
        std::size_t put = 0;
        while (ips && next < entries.size() && put_entry(entries[next], limit)) {
            ++next;
            ++put;
        }
        if (!ips || (put == 0 && !entries.empty())) {
            if (peer_nest)
                mnl_attr_nest_cancel(nlh_, peer_nest);
            return 0;
        }
        mnl_attr_nest_end(nlh_, ips);
        mnl_attr_nest_end(nlh_, peer_nest);
        ++peers_in_message_;
        return put == 0 ? 1 : put; // a peer without entries was put all the same
    }
    bool put_entry(const Entry& e, std::size_t limit) {
        nlattr* nest = mnl_attr_nest_start_check(nlh_, limit, 0);
        if (!nest)
            return false;
        const std::size_t alen = e.family == AF_INET ? 4 : 16;
        if (!mnl_attr_put_u16_check(nlh_, limit, WGALLOWEDIP_A_FAMILY, e.family) ||
            !mnl_attr_put_check(nlh_, limit, WGALLOWEDIP_A_IPADDR, alen, e.addr.data()) ||
            !mnl_attr_put_u8_check(nlh_, limit, WGALLOWEDIP_A_CIDR_MASK, e.cidr) ||
            (e.remove &&
             !mnl_attr_put_u32_check(nlh_, limit, kAllowedIpAttrFlags, kAllowedIpRemoveMe))) {
            mnl_attr_nest_cancel(nlh_, nest);
            return false;
        }
        mnl_attr_nest_end(nlh_, nest);
        return true;
    }

    std::uint16_t family_;
    std::uint32_t seq_;
    std::string ifname_;
    std::size_t max_;
    std::vector<std::uint8_t> buf_;
    nlmsghdr* nlh_ = nullptr;
    nlattr* peers_ = nullptr;
    std::size_t peers_in_message_ = 0;
    std::vector<std::vector<std::uint8_t>> messages_;
};

Entry entry(const Ip4& a, std::uint8_t cidr, bool remove) {
    Entry e{AF_INET, {}, cidr, remove};
    std::memcpy(e.addr.data(), a.bytes.data(), 4);
    return e;
}
Entry entry(const Ip6& a, std::uint8_t cidr, bool remove) {
    Entry e{AF_INET6, {}, cidr, remove};
    std::memcpy(e.addr.data(), a.bytes.data(), 16);
    return e;
}

} // namespace

Result<std::vector<std::vector<std::uint8_t>>>
build_set_device(std::uint16_t family_id, std::uint32_t seq, const std::string& ifname,
                 const Device& current, std::span<const PeerChange> changes, Removal removal,
                 const PublicKey& transient, std::size_t max_message) {
    if (ifname.empty() || ifname.size() > 15)
        return make_error(EINVAL, "invalid interface name");
    if (max_message < 256 || max_message > 65536)
        return make_error(EINVAL, "bad message size");
    std::map<PublicKey, const Peer*> index;
    for (const auto& p : current.peers)
        index.emplace(p.key, &p);
    SetWriter writer(family_id, seq, ifname, max_message);
    if (removal == Removal::transient_peer) {
        std::vector<Entry> moved;
        for (const auto& change : changes) {
            if (change.remove4.empty() && change.remove6.empty())
                continue;
            auto it = index.find(change.key);
            if (it == index.end())
                return make_error(ENOENT, "no peer " + to_base64(change.key));
            const Peer& held = *it->second;
            for (const auto& a : change.remove4)
                if (std::find(held.allowed4.begin(), held.allowed4.end(), Prefix4{a, 32}) !=
                    held.allowed4.end())
                    moved.push_back(entry(a, 32, false));
            for (const auto& a : change.remove6)
                if (std::find(held.allowed6.begin(), held.allowed6.end(), Prefix6{a, 128}) !=
                    held.allowed6.end())
                    moved.push_back(entry(a, 128, false));
        }
        if (auto r = writer.transient(transient, moved); !r)
            return r.error();
    }
    for (const auto& change : changes) {
        std::vector<Entry> entries;
        if (removal == Removal::remove_flag) {
            for (const auto& a : change.remove4)
                entries.push_back(entry(a, 32, true));
            for (const auto& a : change.remove6)
                entries.push_back(entry(a, 128, true));
        }
        for (const auto& a : change.add4)
            entries.push_back(entry(a, 32, false));
        for (const auto& a : change.add6)
            entries.push_back(entry(a, 128, false));
        if (entries.empty())
            continue;
        if (auto r = writer.peer(change.key, entries); !r)
            return r.error();
    }
    return writer.finish();
}

std::vector<std::uint8_t> build_remove_peer(std::uint16_t family_id, std::uint32_t seq,
                                            const std::string& ifname, const PublicKey& key) {
    std::vector<std::uint8_t> buf(256, 0);
    nlmsghdr* nlh = put_genl_header(buf.data(), family_id, NLM_F_REQUEST | NLM_F_ACK, seq,
                                    WG_CMD_SET_DEVICE, WG_GENL_VERSION);
    mnl_attr_put_strz(nlh, WGDEVICE_A_IFNAME, ifname.c_str());
    nlattr* peers = mnl_attr_nest_start(nlh, WGDEVICE_A_PEERS);
    nlattr* peer = mnl_attr_nest_start(nlh, 0);
    mnl_attr_put(nlh, WGPEER_A_PUBLIC_KEY, WG_KEY_LEN, key.bytes.data());
    mnl_attr_put_u32(nlh, WGPEER_A_FLAGS, WGPEER_F_REMOVE_ME);
    mnl_attr_nest_end(nlh, peer);
    mnl_attr_nest_end(nlh, peers);
    buf.resize(nlh->nlmsg_len);
    return buf;
}

} // namespace wgd::netd::genl
