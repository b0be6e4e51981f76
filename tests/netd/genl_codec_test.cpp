// The generic netlink codec against byte layouts built by hand from
// linux/wireguard.h (the kernel module does not exist on these machines, so
// these bytes stand in for the kernel). Nothing here uses libmnl or netd's
// encoder to make the expected bytes.
#include "netd/genl_codec.hpp"

#include <gtest/gtest.h>

#include <array>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/wireguard.h>
#include <sys/socket.h>

#include <cstring>
#include <map>

using namespace wgd;
using namespace wgd::netd;

namespace {

using Bytes = std::vector<std::uint8_t>;

void append(Bytes& out, const void* p, std::size_t n) {
    const std::size_t at = out.size();
    out.resize(at + n);
    std::memcpy(out.data() + at, p, n);
}
void pad4(Bytes& out) {
    while (out.size() % 4)
        out.push_back(0);
}
// struct nlattr {u16 nla_len; u16 nla_type;} + payload + padding
Bytes attr(std::uint16_t type, const Bytes& payload) {
    Bytes out;
    const std::uint16_t len = static_cast<std::uint16_t>(4 + payload.size());
    append(out, &len, 2);
    append(out, &type, 2);
    out.insert(out.end(), payload.begin(), payload.end());
    pad4(out);
    return out;
}
Bytes u8(std::uint8_t v) {
    return Bytes{v};
}
Bytes u16(std::uint16_t v) {
    Bytes b(2);
    std::memcpy(b.data(), &v, 2);
    return b;
}
Bytes u32(std::uint32_t v) {
    Bytes b(4);
    std::memcpy(b.data(), &v, 4);
    return b;
}
Bytes cat(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const auto& p : parts)
        out.insert(out.end(), p.begin(), p.end());
    return out;
}
// nlmsghdr (16 bytes) + genlmsghdr (4 bytes) + attributes
Bytes message(std::uint16_t type, std::uint16_t flags, std::uint32_t seq, std::uint8_t cmd,
              const Bytes& attrs) {
    Bytes out;
    const std::uint32_t len = static_cast<std::uint32_t>(16 + 4 + attrs.size());
    const std::uint32_t pid = 0;
    append(out, &len, 4);
    append(out, &type, 2);
    append(out, &flags, 2);
    append(out, &seq, 4);
    append(out, &pid, 4);
    out.push_back(cmd);
    out.push_back(WG_GENL_VERSION);
    out.push_back(0);
    out.push_back(0);
    out.insert(out.end(), attrs.begin(), attrs.end());
    return out;
}
const nlmsghdr* hdr(const Bytes& b) {
    return reinterpret_cast<const nlmsghdr*>(b.data());
}

PublicKey key(std::uint8_t n) {
    PublicKey k;
    k.bytes.fill(n);
    return k;
}
Bytes key_bytes(std::uint8_t n) {
    return Bytes(32, n);
}
Bytes ip4_bytes(const char* s) {
    auto a = *parse_ip4(s);
    return Bytes(a.bytes.begin(), a.bytes.end());
}
Bytes ip6_bytes(const char* s) {
    auto a = *parse_ip6(s);
    return Bytes(a.bytes.begin(), a.bytes.end());
}

constexpr std::uint16_t kNested = NLA_F_NESTED; // the kernel marks its nests

Bytes allowed4(const char* ip, std::uint8_t cidr, std::uint16_t nest_flag = kNested) {
    return attr(0 | nest_flag, cat({attr(WGALLOWEDIP_A_FAMILY, u16(AF_INET)),
                                    attr(WGALLOWEDIP_A_IPADDR, ip4_bytes(ip)),
                                    attr(WGALLOWEDIP_A_CIDR_MASK, u8(cidr))}));
}
Bytes allowed6(const char* ip, std::uint8_t cidr, std::uint16_t nest_flag = kNested) {
    return attr(0 | nest_flag, cat({attr(WGALLOWEDIP_A_FAMILY, u16(AF_INET6)),
                                    attr(WGALLOWEDIP_A_IPADDR, ip6_bytes(ip)),
                                    attr(WGALLOWEDIP_A_CIDR_MASK, u8(cidr))}));
}
Bytes dump_peer(std::uint8_t k, const Bytes& allowed_ips) {
    return attr(0 | kNested,
                cat({attr(WGPEER_A_PUBLIC_KEY, key_bytes(k)), attr(WGPEER_A_RX_BYTES, Bytes(8, 0)),
                     attr(WGPEER_A_ALLOWEDIPS | kNested, allowed_ips)}));
}
Bytes dump_message(const Bytes& peers, bool first) {
    Bytes attrs = attr(WGDEVICE_A_IFNAME, Bytes{'w', 'g', '0', 0});
    if (first)
        attrs =
            cat({attr(WGDEVICE_A_IFINDEX, u32(7)), attrs, attr(WGDEVICE_A_LISTEN_PORT, u16(51820)),
                 attr(WGDEVICE_A_PRIVATE_KEY, Bytes(32, 9))});
    attrs = cat({attrs, attr(WGDEVICE_A_PEERS | kNested, peers)});
    return message(0x1c, NLM_F_MULTI, 1, WG_CMD_GET_DEVICE, attrs);
}

std::vector<std::string> texts(const Peer& p) {
    std::vector<std::string> out;
    for (const auto& a : p.allowed4)
        out.push_back(to_string(a));
    for (const auto& a : p.allowed6)
        out.push_back(to_string(a));
    return out;
}

} // namespace

TEST(GenlDecode, ReadsOneMessageDevice) {
    const Bytes m =
        dump_message(cat({dump_peer(1, cat({allowed6("fe80::1", 128), allowed4("10.77.0.5", 32)})),
                          dump_peer(2, cat({allowed4("10.1.0.0", 16)}))}),
                     true);
    genl::DeviceDumpDecoder d;
    ASSERT_TRUE(d.feed(hdr(m)));
    const Device& dev = d.device();
    EXPECT_EQ(dev.listen_port, 51820);
    ASSERT_EQ(dev.peers.size(), 2u);
    EXPECT_EQ(dev.peers[0].key, key(1));
    EXPECT_EQ(texts(dev.peers[0]), (std::vector<std::string>{"10.77.0.5/32", "fe80::1/128"}));
    EXPECT_EQ(dev.peers[1].key, key(2));
    EXPECT_EQ(texts(dev.peers[1]), (std::vector<std::string>{"10.1.0.0/16"}));
}

namespace {
// Three dump messages: peer 1, then peer 2 continued over all three, then peer 3.
std::array<Bytes, 3> dump_with_peer_2_continued() {
    return {dump_message(
                cat({dump_peer(1, allowed4("10.77.0.1", 32)),
                     dump_peer(2, cat({allowed4("10.77.0.2", 32), allowed4("10.77.0.3", 32)}))}),
                true),
            dump_message(dump_peer(2, allowed6("2001:db8::2", 128)), false),
            dump_message(cat({dump_peer(2, allowed6("2001:db8::3", 128)),
                              dump_peer(3, allowed4("10.77.0.4", 32))}),
                         false)};
}
} // namespace

TEST(GenlDecode, CoalescesAPeerContinuedInTheNextMessages) {
    const auto [m1, m2, m3] = dump_with_peer_2_continued();
    genl::DeviceDumpDecoder d;
    ASSERT_TRUE(d.feed(hdr(m1)));
    ASSERT_TRUE(d.feed(hdr(m2)));
    ASSERT_TRUE(d.feed(hdr(m3)));
    const Device& dev = d.device();
    ASSERT_EQ(dev.peers.size(), 3u);
    EXPECT_EQ(texts(dev.peers[1]),
              (std::vector<std::string>{"10.77.0.2/32", "10.77.0.3/32", "2001:db8::2/128",
                                        "2001:db8::3/128"}));
    EXPECT_EQ(dev.peers[2].key, key(3));
    EXPECT_EQ(dev.listen_port, 51820);
}

namespace {
// Keeps what a streaming decoder hands over, and how often it started.
struct Taken final : DeviceSink {
    int starts = 0;
    std::vector<Peer> peers;
    void start() override {
        starts++;
        peers.clear();
    }
    void peer(Peer&& p) override { peers.push_back(std::move(p)); }
};
} // namespace

// netd's refresh takes the peers one by one: each must come whole, once,
// only when no later message can continue it.
TEST(GenlDecode, StreamedPeersComeWholeOnceAndOnlyWhenNoMessageCanContinueThem) {
    const auto [m1, m2, m3] = dump_with_peer_2_continued();
    genl::DeviceDumpDecoder whole;
    for (const Bytes* m : {&m1, &m2, &m3})
        ASSERT_TRUE(whole.feed(hdr(*m)));
    Taken taken;
    genl::DeviceDumpDecoder d;
    d.stream_to(taken);
    EXPECT_EQ(taken.starts, 1);
    ASSERT_TRUE(d.feed(hdr(m1)));
    ASSERT_EQ(taken.peers.size(), 1u) << "peer 2 may go on in the next message";
    ASSERT_TRUE(d.feed(hdr(m2)));
    ASSERT_TRUE(d.feed(hdr(m3)));
    ASSERT_EQ(taken.peers.size(), 2u) << "peer 3 may go on in the next message";
    d.finish();
    EXPECT_TRUE(d.device().peers.empty()) << "the decoder keeps no peer";
    ASSERT_EQ(taken.peers.size(), whole.device().peers.size());
    for (std::size_t i = 0; i < taken.peers.size(); i++) {
        EXPECT_EQ(taken.peers[i].key, whole.device().peers[i].key) << i;
        EXPECT_EQ(texts(taken.peers[i]), texts(whole.device().peers[i])) << i;
    }
}

TEST(GenlDecode, RefusesMalformedAttributes) {
    auto decode = [](const Bytes& peers) {
        const Bytes m = dump_message(peers, true);
        genl::DeviceDumpDecoder d;
        return d.feed(hdr(m)).has_value();
    };
    EXPECT_TRUE(decode(dump_peer(1, allowed4("10.0.0.1", 32))));
    // a 31-byte key
    EXPECT_FALSE(decode(attr(kNested, attr(WGPEER_A_PUBLIC_KEY, Bytes(31, 1)))));
    // no key
    EXPECT_FALSE(
        decode(attr(kNested, attr(WGPEER_A_ALLOWEDIPS | kNested, allowed4("10.0.0.1", 32)))));
    EXPECT_FALSE(decode(dump_peer(1, allowed4("10.0.0.1", 33))));
    EXPECT_FALSE(decode(dump_peer(1, allowed6("2001:db8::1", 129))));
    // IPv4 family with a 16-byte address
    EXPECT_FALSE(
        decode(dump_peer(1, attr(kNested, cat({attr(WGALLOWEDIP_A_FAMILY, u16(AF_INET)),
                                               attr(WGALLOWEDIP_A_IPADDR, ip6_bytes("2001:db8::1")),
                                               attr(WGALLOWEDIP_A_CIDR_MASK, u8(32))})))));
    // no family
    EXPECT_FALSE(
        decode(dump_peer(1, attr(kNested, cat({attr(WGALLOWEDIP_A_IPADDR, ip4_bytes("10.0.0.1")),
                                               attr(WGALLOWEDIP_A_CIDR_MASK, u8(32))})))));
    // family u16 given as u8
    EXPECT_FALSE(
        decode(dump_peer(1, attr(kNested, cat({attr(WGALLOWEDIP_A_FAMILY, u8(AF_INET)),
                                               attr(WGALLOWEDIP_A_IPADDR, ip4_bytes("10.0.0.1")),
                                               attr(WGALLOWEDIP_A_CIDR_MASK, u8(32))})))));
    // truncated message: the header claims more than there is
    Bytes m = dump_message(dump_peer(1, allowed4("10.0.0.1", 32)), true);
    m.resize(18);
    std::uint32_t len = 18;
    std::memcpy(m.data(), &len, 4);
    genl::DeviceDumpDecoder d;
    EXPECT_FALSE(d.feed(hdr(m)));
}

TEST(GenlEncode, GetDeviceIsADumpRequestByName) {
    std::array<std::uint8_t, 64> buf{};
    const std::size_t len = genl::build_get_device(buf, 0x1c, 9, "wg0");
    const Bytes expected =
        message(0x1c, NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP, 9, WG_CMD_GET_DEVICE,
                attr(WGDEVICE_A_IFNAME, Bytes{'w', 'g', '0', 0}));
    EXPECT_EQ(Bytes(buf.begin(), buf.begin() + len), expected);
}

TEST(GenlEncode, SetDeviceWithRemoveFlagMatchesHandBuiltBytes) {
    std::vector<PeerChange> changes{
        PeerChange{key(1), {*parse_ip4("10.77.0.9")}, {}, {}, {*parse_ip6("2001:db8::7")}}};
    auto msgs =
        genl::build_set_device(0x1c, 5, "wg0", Device{}, changes, genl::Removal::remove_flag, {});
    ASSERT_TRUE(msgs) << msgs.error().message;
    ASSERT_EQ(msgs->size(), 1u);
    // libmnl, like the kernel, marks nests with NLA_F_NESTED
    const Bytes remove6 =
        attr(kNested, cat({attr(WGALLOWEDIP_A_FAMILY, u16(AF_INET6)),
                           attr(WGALLOWEDIP_A_IPADDR, ip6_bytes("2001:db8::7")),
                           attr(WGALLOWEDIP_A_CIDR_MASK, u8(128)),
                           attr(4 /* WGALLOWEDIP_A_FLAGS */, u32(1 /* REMOVE_ME */))}));
    const Bytes peer =
        attr(kNested,
             cat({attr(WGPEER_A_PUBLIC_KEY, key_bytes(1)),
                  attr(WGPEER_A_FLAGS, u32(WGPEER_F_UPDATE_ONLY)),
                  attr(WGPEER_A_ALLOWEDIPS | kNested, cat({remove6, allowed4("10.77.0.9", 32)}))}));
    const Bytes expected = message(0x1c, NLM_F_REQUEST | NLM_F_ACK, 5, WG_CMD_SET_DEVICE,
                                   cat({attr(WGDEVICE_A_IFNAME, Bytes{'w', 'g', '0', 0}),
                                        attr(WGDEVICE_A_PEERS | kNested, peer)}));
    EXPECT_EQ((*msgs)[0], expected);
}

// Kernels before 6.16: the removed address goes to a transient peer made and
// removed in a message of its own, ahead of the peer's additions; an
// address the peer no longer holds (10.77.0.6) is not taken from anyone.
TEST(GenlEncode, SetDeviceWithTransientPeerMatchesHandBuiltBytes) {
    Device current;
    current.peers.push_back(Peer{key(1),
                                 {{*parse_ip4("10.77.0.5"), 32}, {*parse_ip4("10.1.0.0"), 16}},
                                 {{*parse_ip6("fe80::1"), 128}}});
    std::vector<PeerChange> changes{PeerChange{key(1),
                                               {*parse_ip4("10.77.0.9")},
                                               {*parse_ip4("10.77.0.5"), *parse_ip4("10.77.0.6")},
                                               {},
                                               {}}};
    auto msgs = genl::build_set_device(0x1c, 5, "wg0", current, changes,
                                       genl::Removal::transient_peer, key(9));
    ASSERT_TRUE(msgs) << msgs.error().message;
    ASSERT_EQ(msgs->size(), 2u);
    const Bytes made =
        attr(kNested, cat({attr(WGPEER_A_PUBLIC_KEY, key_bytes(9)), attr(WGPEER_A_FLAGS, u32(0)),
                           attr(WGPEER_A_ALLOWEDIPS | kNested, allowed4("10.77.0.5", 32))}));
    const Bytes gone = attr(kNested, cat({attr(WGPEER_A_PUBLIC_KEY, key_bytes(9)),
                                          attr(WGPEER_A_FLAGS, u32(WGPEER_F_REMOVE_ME))}));
    EXPECT_EQ((*msgs)[0], message(0x1c, NLM_F_REQUEST | NLM_F_ACK, 5, WG_CMD_SET_DEVICE,
                                  cat({attr(WGDEVICE_A_IFNAME, Bytes{'w', 'g', '0', 0}),
                                       attr(WGDEVICE_A_PEERS | kNested, cat({made, gone}))})));
    const Bytes peer =
        attr(kNested, cat({attr(WGPEER_A_PUBLIC_KEY, key_bytes(1)),
                           attr(WGPEER_A_FLAGS, u32(WGPEER_F_UPDATE_ONLY)),
                           attr(WGPEER_A_ALLOWEDIPS | kNested, allowed4("10.77.0.9", 32))}));
    EXPECT_EQ((*msgs)[1], message(0x1c, NLM_F_REQUEST | NLM_F_ACK, 6, WG_CMD_SET_DEVICE,
                                  cat({attr(WGDEVICE_A_IFNAME, Bytes{'w', 'g', '0', 0}),
                                       attr(WGDEVICE_A_PEERS | kNested, peer)})));
}

TEST(GenlEncode, RemovalOfAPeerNotOnTheDeviceIsRefused) {
    std::vector<PeerChange> changes{PeerChange{key(1), {}, {*parse_ip4("10.77.0.5")}, {}, {}}};
    auto msgs = genl::build_set_device(0x1c, 5, "wg0", Device{}, changes,
                                       genl::Removal::transient_peer, key(9));
    ASSERT_FALSE(msgs);
    EXPECT_EQ(msgs.error().code, ENOENT);
}

TEST(GenlEncode, RemovePeerMessageMatchesHandBuiltBytes) {
    const Bytes gone = attr(kNested, cat({attr(WGPEER_A_PUBLIC_KEY, key_bytes(9)),
                                          attr(WGPEER_A_FLAGS, u32(WGPEER_F_REMOVE_ME))}));
    EXPECT_EQ(genl::build_remove_peer(0x1c, 8, "wg0", key(9)),
              message(0x1c, NLM_F_REQUEST | NLM_F_ACK, 8, WG_CMD_SET_DEVICE,
                      cat({attr(WGDEVICE_A_IFNAME, Bytes{'w', 'g', '0', 0}),
                           attr(WGDEVICE_A_PEERS | kNested, gone)})));
}

namespace {

// A hand-written walker over set messages: peer key -> (flags of each
// fragment, entries as "ip/cidr" with "-" for removals).
struct Seen {
    std::vector<std::uint32_t> flags;
    std::vector<std::string> entries;
};
std::vector<std::pair<std::uint16_t, Bytes>> walk(const std::uint8_t* p, std::size_t n) {
    std::vector<std::pair<std::uint16_t, Bytes>> out;
    std::size_t off = 0;
    while (off + 4 <= n) {
        std::uint16_t len, type;
        std::memcpy(&len, p + off, 2);
        std::memcpy(&type, p + off + 2, 2);
        EXPECT_GE(len, 4);
        EXPECT_LE(off + len, n);
        if (len < 4 || off + len > n)
            break;
        out.emplace_back(type & NLA_TYPE_MASK, Bytes(p + off + 4, p + off + len));
        off += (len + 3u) & ~3u;
    }
    return out;
}
void collect(const Bytes& msg, std::map<PublicKey, Seen>& seen, std::uint32_t& seq) {
    std::uint32_t len, mseq;
    std::memcpy(&len, msg.data(), 4);
    std::memcpy(&mseq, msg.data() + 8, 4);
    EXPECT_EQ(len, msg.size());
    EXPECT_EQ(mseq, seq++);
    for (auto& [type, payload] : walk(msg.data() + 20, msg.size() - 20)) {
        if (type != WGDEVICE_A_PEERS)
            continue;
        for (auto& [ptype, peer] : walk(payload.data(), payload.size())) {
            PublicKey k;
            Seen* s = nullptr;
            for (auto& [atype, a] : walk(peer.data(), peer.size())) {
                if (atype == WGPEER_A_PUBLIC_KEY) {
                    std::memcpy(k.bytes.data(), a.data(), 32);
                    s = &seen[k];
                } else if (atype == WGPEER_A_FLAGS) {
                    std::uint32_t f;
                    std::memcpy(&f, a.data(), 4);
                    s->flags.push_back(f);
                } else if (atype == WGPEER_A_ALLOWEDIPS) {
                    for (auto& [etype, e] : walk(a.data(), a.size())) {
                        std::string text;
                        bool remove = false;
                        int cidr = -1;
                        for (auto& [ftype, f] : walk(e.data(), e.size())) {
                            if (ftype == WGALLOWEDIP_A_IPADDR) {
                                if (f.size() == 4) {
                                    Ip4 a4;
                                    std::memcpy(a4.bytes.data(), f.data(), 4);
                                    text = to_string(a4);
                                } else {
                                    Ip6 a6;
                                    std::memcpy(a6.bytes.data(), f.data(), 16);
                                    text = to_string(a6);
                                }
                            } else if (ftype == WGALLOWEDIP_A_CIDR_MASK) {
                                cidr = f[0];
                            } else if (ftype == 4) {
                                remove = true;
                            }
                        }
                        s->entries.push_back((remove ? "-" : "") + text + "/" +
                                             std::to_string(cidr));
                    }
                }
            }
        }
    }
}

} // namespace

TEST(GenlEncode, BigBatchIsSplitBySizeWithEveryEntryOnce) {
    std::vector<PeerChange> changes;
    for (int i = 0; i < 1000; ++i) {
        PublicKey k;
        k.bytes.fill(0);
        k.bytes[0] = static_cast<std::uint8_t>(i);
        k.bytes[1] = static_cast<std::uint8_t>(i >> 8);
        changes.push_back(PeerChange{
            k,
            {Ip4{{10, 77, static_cast<std::uint8_t>(i >> 8), static_cast<std::uint8_t>(i)}}},
            {Ip4{{10, 78, static_cast<std::uint8_t>(i >> 8), static_cast<std::uint8_t>(i)}}},
            {},
            {}});
    }
    auto msgs =
        genl::build_set_device(0x1c, 100, "wg0", Device{}, changes, genl::Removal::remove_flag, {});
    ASSERT_TRUE(msgs);
    EXPECT_GT(msgs->size(), 20u); // ~150 bytes a peer, 4 KiB a message
    std::map<PublicKey, Seen> seen;
    std::uint32_t seq = 100;
    for (const auto& m : *msgs) {
        EXPECT_LE(m.size(), genl::kMaxMessage);
        collect(m, seen, seq);
    }
    ASSERT_EQ(seen.size(), 1000u);
    for (const auto& c : changes) {
        const Seen& s = seen[c.key];
        EXPECT_EQ(s.entries, (std::vector<std::string>{"-" + to_string(c.remove4[0]) + "/32",
                                                       to_string(c.add4[0]) + "/32"}));
        for (auto f : s.flags)
            EXPECT_EQ(f, static_cast<std::uint32_t>(WGPEER_F_UPDATE_ONLY));
    }
}

// 500 removals do not fit one message: each message of the transient peer
// makes it and removes it, every removed address is moved once, and the
// peer itself is only updated, never has its list replaced.
TEST(GenlEncode, ManyRemovalsGoToTransientPeersEachMadeAndRemovedInOneMessage) {
    Device current;
    Peer big{key(7), {}, {}};
    for (int i = 0; i < 600; ++i)
        big.allowed4.push_back(
            {Ip4{{10, 1, static_cast<std::uint8_t>(i >> 8), static_cast<std::uint8_t>(i)}}, 32});
    current.peers.push_back(big);
    PeerChange change{key(7), {*parse_ip4("10.9.9.9")}, {}, {}, {}};
    for (int i = 0; i < 500; ++i)
        change.remove4.push_back(big.allowed4[static_cast<std::size_t>(i)].addr);
    std::vector<PeerChange> changes{change};
    auto msgs = genl::build_set_device(0x1c, 1, "wg0", current, changes,
                                       genl::Removal::transient_peer, key(9));
    ASSERT_TRUE(msgs);
    ASSERT_GT(msgs->size(), 2u);
    std::uint32_t seq = 1;
    std::vector<std::string> moved;
    for (std::size_t i = 0; i + 1 < msgs->size(); ++i) {
        const auto& m = (*msgs)[i];
        EXPECT_LE(m.size(), genl::kMaxMessage);
        std::map<PublicKey, Seen> seen;
        collect(m, seen, seq);
        ASSERT_EQ(seen.size(), 1u) << "message " << i;
        const Seen& t = seen[key(9)];
        EXPECT_EQ(t.flags, (std::vector<std::uint32_t>{0, WGPEER_F_REMOVE_ME})) << "message " << i;
        moved.insert(moved.end(), t.entries.begin(), t.entries.end());
    }
    std::map<PublicKey, Seen> last;
    collect(msgs->back(), last, seq);
    ASSERT_EQ(last.size(), 1u);
    EXPECT_EQ(last[key(7)].flags, (std::vector<std::uint32_t>{WGPEER_F_UPDATE_ONLY}));
    EXPECT_EQ(last[key(7)].entries, (std::vector<std::string>{"10.9.9.9/32"}));
    ASSERT_EQ(moved.size(), 500u);
    for (int i = 0; i < 500; ++i)
        EXPECT_EQ(moved[static_cast<std::size_t>(i)],
                  to_string(big.allowed4[static_cast<std::size_t>(i)].addr) + "/32");
}

TEST(GenlEncode, RemovalModeFollowsTheKernelVersion) {
    EXPECT_EQ(genl::removal_for_kernel("6.16.0"), genl::Removal::remove_flag);
    EXPECT_EQ(genl::removal_for_kernel("6.18.44-fc-v782"), genl::Removal::remove_flag);
    EXPECT_EQ(genl::removal_for_kernel("7.0.1"), genl::Removal::remove_flag);
    EXPECT_EQ(genl::removal_for_kernel("6.15.9"), genl::Removal::transient_peer);
    EXPECT_EQ(genl::removal_for_kernel("6.1.0-57-cloud-amd64"), genl::Removal::transient_peer);
    EXPECT_EQ(genl::removal_for_kernel("5.10.0-30-amd64"), genl::Removal::transient_peer);
    EXPECT_EQ(genl::removal_for_kernel("garbage"), genl::Removal::transient_peer);
}

TEST(GenlFamily, ParsesTheControllersFamilyId) {
    const Bytes reply = message(
        GENL_ID_CTRL, 0, 1, CTRL_CMD_NEWFAMILY,
        cat({attr(CTRL_ATTR_FAMILY_ID, u16(0x1c)),
             attr(CTRL_ATTR_FAMILY_NAME, Bytes{'w', 'i', 'r', 'e', 'g', 'u', 'a', 'r', 'd', 0})}));
    EXPECT_EQ(genl::parse_family_id(hdr(reply)), std::optional<std::uint16_t>(0x1c));
    const Bytes bad =
        message(GENL_ID_CTRL, 0, 1, CTRL_CMD_NEWFAMILY, attr(CTRL_ATTR_FAMILY_ID, u8(1)));
    EXPECT_FALSE(genl::parse_family_id(hdr(bad)));
}

// A removal's read keeps the peers it changes, also one the dump continues
// across messages, and drops the others as it goes.
TEST(GenlDecode, KeepOnlyKeepsThosePeersWholeAcrossMessages) {
    const auto [m1, m2, m3] = dump_with_peer_2_continued();
    for (std::uint8_t kept : {1, 2, 3}) {
        genl::DeviceDumpDecoder d;
        d.keep_only({key(kept), key(9)});
        ASSERT_TRUE(d.feed(hdr(m1)));
        ASSERT_TRUE(d.feed(hdr(m2)));
        // the others are dropped as they come: peer 3 is not there yet
        EXPECT_EQ(d.device().peers.size(), kept == 3 ? 0u : 1u) << int(kept);
        ASSERT_TRUE(d.feed(hdr(m3)));
        const Device dev = d.take();
        ASSERT_EQ(dev.peers.size(), 1u) << int(kept);
        EXPECT_EQ(dev.peers[0].key, key(kept));
        if (kept == 2) {
            EXPECT_EQ(texts(dev.peers[0]),
                      (std::vector<std::string>{"10.77.0.2/32", "10.77.0.3/32", "2001:db8::2/128",
                                                "2001:db8::3/128"}));
        }
    }
}

TEST(GenlDecode, KeepOnlyStillRefusesABadPeerItWouldDrop) {
    const Bytes m = dump_message(
        cat({dump_peer(1, allowed4("10.0.0.1", 33)), dump_peer(2, allowed4("10.0.0.2", 32))}),
        true);
    genl::DeviceDumpDecoder d;
    d.keep_only({key(2)});
    EXPECT_FALSE(d.feed(hdr(m)));
}
