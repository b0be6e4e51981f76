// The pure rtnetlink decoders and builders, on messages built by hand.
#include "netd/nl_io.hpp"
#include "netd/rtnl.hpp"

#include <gtest/gtest.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <libmnl/libmnl.h>

#include <algorithm>
#include <cstring>

using namespace wgd;
using namespace wgd::netd;

namespace {

using Bytes = std::vector<std::uint8_t>;

void append(Bytes& out, const void* p, std::size_t n) {
    const std::size_t at = out.size();
    out.resize(at + n);
    std::memcpy(out.data() + at, p, n);
    out.resize((out.size() + 3) & ~std::size_t{3}, 0);
}
Bytes attr(std::uint16_t type, const void* p, std::size_t n) {
    Bytes out(4);
    const std::uint16_t len = static_cast<std::uint16_t>(4 + n);
    std::memcpy(out.data(), &len, 2);
    std::memcpy(out.data() + 2, &type, 2);
    append(out, p, n);
    return out;
}
template <class Header>
Bytes message(std::uint16_t type, const Header& h, std::initializer_list<Bytes> attrs) {
    Bytes body;
    append(body, &h, sizeof(h));
    for (const auto& a : attrs)
        body.insert(body.end(), a.begin(), a.end());
    nlmsghdr nlh{};
    nlh.nlmsg_len = static_cast<std::uint32_t>(sizeof(nlh) + body.size());
    nlh.nlmsg_type = type;
    Bytes out;
    append(out, &nlh, sizeof(nlh));
    out.insert(out.end(), body.begin(), body.end());
    return out;
}
const nlmsghdr* hdr(const Bytes& b) {
    return reinterpret_cast<const nlmsghdr*>(b.data());
}

Bytes route(std::uint8_t family, const Bytes& dst, std::uint8_t dst_len, std::uint32_t oif,
            std::uint8_t table = RT_TABLE_MAIN, std::uint8_t type = RTN_UNICAST,
            const Bytes& gateway = {}) {
    rtmsg r{};
    r.rtm_family = family;
    r.rtm_dst_len = dst_len;
    r.rtm_table = table;
    r.rtm_type = type;
    r.rtm_protocol = RTPROT_BOOT;
    Bytes oif_attr = attr(RTA_OIF, &oif, 4);
    Bytes dst_attr = attr(RTA_DST, dst.data(), dst.size());
    if (gateway.empty())
        return message(RTM_NEWROUTE, r, {dst_attr, oif_attr});
    return message(RTM_NEWROUTE, r,
                   {dst_attr, oif_attr, attr(RTA_GATEWAY, gateway.data(), gateway.size())});
}
Bytes v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
    return Bytes{a, b, c, d};
}
Bytes v6(const char* s) {
    auto a = *parse_ip6(s);
    return Bytes(a.bytes.begin(), a.bytes.end());
}

bool pool(const Bytes& m, int ifindex) {
    auto r = parse_route(hdr(m));
    return r && route_is_pool(*r, ifindex);
}

} // namespace

TEST(RtnlCodec, RouteOverTheInterfaceWithoutGatewayIsAPool) {
    const Bytes m = route(AF_INET, v4(10, 9, 0, 77), 24, 5);
    auto r = parse_route(hdr(m));
    ASSERT_TRUE(r);
    EXPECT_EQ(std::get<Prefix4>(r->dst), (Prefix4{*parse_ip4("10.9.0.0"), 24})) << "masked";
    EXPECT_TRUE(route_is_pool(*r, 5));
    EXPECT_FALSE(route_is_pool(*r, 6)) << "other interface";
    EXPECT_TRUE(pool(route(AF_INET6, v6("2001:db8:9::"), 64, 5), 5));
}

TEST(RtnlCodec, GatewayOtherTableLocalTypeLinkLocalAndMulticastAreNoPools) {
    EXPECT_FALSE(pool(
        route(AF_INET, v4(10, 8, 0, 0), 24, 5, RT_TABLE_MAIN, RTN_UNICAST, v4(10, 0, 0, 1)), 5));
    EXPECT_FALSE(pool(route(AF_INET, v4(10, 8, 0, 0), 24, 5, 100), 5));
    EXPECT_FALSE(pool(route(AF_INET, v4(10, 8, 0, 1), 32, 5, RT_TABLE_LOCAL, RTN_LOCAL), 5));
    EXPECT_FALSE(pool(route(AF_INET, v4(10, 8, 0, 0), 24, 5, RT_TABLE_MAIN, RTN_BLACKHOLE), 5));
    EXPECT_FALSE(pool(route(AF_INET6, v6("fe80::"), 64, 5), 5));
    EXPECT_FALSE(pool(route(AF_INET6, v6("ff00::"), 8, 5), 5));
    EXPECT_FALSE(pool(route(AF_INET, v4(224, 1, 0, 0), 16, 5), 5));
    EXPECT_FALSE(pool(route(AF_INET, v4(169, 254, 0, 0), 16, 5), 5));
    // the line: just outside link-local and multicast
    EXPECT_TRUE(pool(route(AF_INET6, v6("fec0::"), 10, 5), 5));
    EXPECT_TRUE(pool(route(AF_INET, v4(223, 255, 0, 0), 16, 5), 5));
}

TEST(RtnlCodec, MalformedRoutesAreRejected) {
    EXPECT_FALSE(parse_route(hdr(route(AF_INET, v4(10, 9, 0, 0), 33, 5))));
    EXPECT_FALSE(parse_route(hdr(route(AF_INET, v6("2001:db8::"), 24, 5)))) << "16-byte IPv4 dst";
    EXPECT_FALSE(parse_route(hdr(route(AF_INET6, v4(10, 9, 0, 0), 24, 5))));
    Bytes m = route(AF_INET, v4(10, 9, 0, 0), 24, 5);
    std::uint32_t short_len = sizeof(nlmsghdr) + 4; // less than struct rtmsg
    std::memcpy(m.data(), &short_len, 4);
    EXPECT_FALSE(parse_route(hdr(m)));
    const std::uint16_t two_bytes = 7;
    rtmsg r{};
    r.rtm_family = AF_INET;
    r.rtm_dst_len = 24;
    r.rtm_table = RT_TABLE_MAIN;
    r.rtm_type = RTN_UNICAST;
    EXPECT_FALSE(parse_route(hdr(message(
        RTM_NEWROUTE, r, {attr(RTA_DST, "\x0a\x09\x00\x00", 4), attr(RTA_OIF, &two_bytes, 2)}))))
        << "2-byte RTA_OIF";
}

// The routes the client keeps across an address removal: unicast routes of
// any table through its interface, not the kernel's own, not clones.
TEST(RtnlCodec, SavedRoutesAreUnicastRoutesOfAnyTableThroughTheInterface) {
    EXPECT_TRUE(save_route(hdr(route(AF_INET, v4(10, 77, 0, 0), 24, 5)), 5));
    EXPECT_TRUE(save_route(hdr(route(AF_INET, v4(0, 0, 0, 0), 0, 5, 200)), 5)) << "other table";
    EXPECT_TRUE(save_route(
        hdr(route(AF_INET, v4(10, 99, 0, 0), 16, 5, RT_TABLE_MAIN, RTN_UNICAST, v4(10, 77, 0, 1))),
        5))
        << "through a gateway";
    EXPECT_TRUE(save_route(hdr(route(AF_INET6, v6("2001:db8::"), 64, 5)), 5));
    EXPECT_FALSE(save_route(hdr(route(AF_INET, v4(10, 77, 0, 0), 24, 6)), 5)) << "other interface";
    EXPECT_FALSE(save_route(hdr(route(AF_INET, v4(10, 77, 0, 0), 24, 5)), 0));
    EXPECT_FALSE(
        save_route(hdr(route(AF_INET, v4(10, 8, 0, 1), 32, 5, RT_TABLE_LOCAL, RTN_LOCAL)), 5));
    EXPECT_FALSE(
        save_route(hdr(route(AF_INET, v4(10, 8, 0, 0), 24, 5, RT_TABLE_MAIN, RTN_BLACKHOLE)), 5));
    Bytes kernel = route(AF_INET, v4(10, 77, 0, 0), 24, 5);
    reinterpret_cast<rtmsg*>(kernel.data() + sizeof(nlmsghdr))->rtm_protocol = RTPROT_KERNEL;
    EXPECT_FALSE(save_route(hdr(kernel), 5)) << "an address's own route goes with the address";
    Bytes cloned = route(AF_INET6, v6("2001:db8::1"), 128, 5);
    reinterpret_cast<rtmsg*>(cloned.data() + sizeof(nlmsghdr))->rtm_flags = RTM_F_CLONED;
    EXPECT_FALSE(save_route(hdr(cloned), 5));
    Bytes deleted = route(AF_INET, v4(10, 77, 0, 0), 24, 5);
    reinterpret_cast<nlmsghdr*>(deleted.data())->nlmsg_type = RTM_DELROUTE;
    EXPECT_FALSE(save_route(hdr(deleted), 5));
}

// The request re-creates that route on that interface: the header as
// dumped, the defining attributes, RTA_OIF, and nothing else.
TEST(RtnlCodec, SavedRouteRequestRecreatesTheRouteOnTheInterfaceOnly) {
    rtmsg r{};
    r.rtm_family = AF_INET;
    r.rtm_dst_len = 0;
    r.rtm_table = RT_TABLE_COMPAT;
    r.rtm_type = RTN_UNICAST;
    r.rtm_protocol = RTPROT_BOOT;
    r.rtm_scope = RT_SCOPE_LINK;
    r.rtm_flags = RTNH_F_LINKDOWN | RTNH_F_ONLINK;
    const std::uint32_t oif = 5, table = 51820, metric = 7;
    const rta_cacheinfo cache{};
    const Bytes dumped =
        message(RTM_NEWROUTE, r,
                {attr(RTA_TABLE, &table, 4), attr(RTA_PRIORITY, &metric, 4), attr(RTA_OIF, &oif, 4),
                 attr(RTA_CACHEINFO, &cache, sizeof cache)});
    auto saved = save_route(hdr(dumped), 5);
    ASSERT_TRUE(saved);
    EXPECT_EQ(saved->info.table, 51820u);
    EXPECT_EQ(saved->priority, 7u);
    const nlmsghdr* req = reinterpret_cast<const nlmsghdr*>(saved->request.data());
    ASSERT_EQ(req->nlmsg_len, saved->request.size());
    EXPECT_EQ(req->nlmsg_type, RTM_NEWROUTE);
    EXPECT_EQ(req->nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
    const auto* out = reinterpret_cast<const rtmsg*>(saved->request.data() + sizeof(nlmsghdr));
    EXPECT_EQ(out->rtm_flags, unsigned{RTNH_F_ONLINK}) << "state flags dropped";
    EXPECT_EQ(out->rtm_scope, RT_SCOPE_LINK);
    EXPECT_EQ(out->rtm_protocol, RTPROT_BOOT);
    struct Seen {
        std::vector<std::uint16_t> types;
        std::uint32_t oif = 0, table = 0;
    } seen;
    mnl_attr_parse(
        req, sizeof(rtmsg),
        [](const nlattr* a, void* data) {
            auto* s = static_cast<Seen*>(data);
            s->types.push_back(mnl_attr_get_type(a));
            if (mnl_attr_get_type(a) == RTA_OIF)
                s->oif = mnl_attr_get_u32(a);
            if (mnl_attr_get_type(a) == RTA_TABLE)
                s->table = mnl_attr_get_u32(a);
            return MNL_CB_OK;
        },
        &seen);
    std::sort(seen.types.begin(), seen.types.end());
    EXPECT_EQ(seen.types, (std::vector<std::uint16_t>{RTA_OIF, RTA_PRIORITY, RTA_TABLE}))
        << "no RTA_CACHEINFO";
    const std::uint32_t req_oif = seen.oif, req_table = seen.table;
    EXPECT_EQ(req_oif, 5u);
    EXPECT_EQ(req_table, 51820u);
}

TEST(RtnlCodec, RoutesToRestoreAreThoseGoneGatewaysLast) {
    auto saved = [](const Bytes& m) { return *save_route(hdr(m), 5); };
    const SavedRoute via = saved(
        route(AF_INET, v4(10, 99, 0, 0), 16, 5, RT_TABLE_MAIN, RTN_UNICAST, v4(10, 77, 0, 1)));
    const SavedRoute link = saved(route(AF_INET, v4(10, 77, 0, 0), 24, 5));
    const SavedRoute full = saved(route(AF_INET, v4(0, 0, 0, 0), 0, 5, 200));
    const SavedRoute kept = saved(route(AF_INET, v4(10, 1, 0, 0), 16, 5));
    auto missing = routes_to_restore({via, link, full, kept}, {kept});
    ASSERT_EQ(missing.size(), 3u);
    EXPECT_TRUE(missing[0].same_route(link));
    EXPECT_TRUE(missing[1].same_route(full));
    EXPECT_TRUE(missing[2].same_route(via)) << "a gateway needs its link route back first";
    EXPECT_TRUE(routes_to_restore({link, full}, {full, link}).empty());
    EXPECT_FALSE(full.same_route(saved(route(AF_INET, v4(0, 0, 0, 0), 0, 5, 201))));
}

TEST(RtnlCodec, AddressMessagePrefersIfaLocal) {
    ifaddrmsg ifa{};
    ifa.ifa_family = AF_INET;
    ifa.ifa_prefixlen = 32;
    ifa.ifa_index = 5;
    const Bytes local = v4(192, 0, 2, 1), peer = v4(192, 0, 2, 2);
    const std::uint32_t flags = IFA_F_PERMANENT | IFA_F_NODAD;
    auto a =
        parse_addr(hdr(message(RTM_NEWADDR, ifa,
                               {attr(IFA_ADDRESS, peer.data(), 4), attr(IFA_LOCAL, local.data(), 4),
                                attr(IFA_FLAGS, &flags, 4)})));
    ASSERT_TRUE(a);
    EXPECT_EQ(a->ifindex, 5);
    EXPECT_EQ(std::get<Prefix4>(a->prefix), (Prefix4{*parse_ip4("192.0.2.1"), 32}));
    EXPECT_EQ(a->flags, flags);
    auto ev = parse_event(hdr(message(RTM_DELADDR, ifa, {attr(IFA_LOCAL, local.data(), 4)})), 5);
    ASSERT_TRUE(ev);
    EXPECT_FALSE(std::get<AddrEvent>(*ev).added);
    EXPECT_FALSE(parse_event(hdr(message(RTM_DELADDR, ifa, {attr(IFA_LOCAL, local.data(), 4)})), 6))
        << "other interface";
}

TEST(RtnlCodec, AddressRequestBytes) {
    std::array<std::uint8_t, 256> buf{};
    auto len = build_addr_request(buf, 42, AddrOp::add, 5, Prefix6{*parse_ip6("2001:db8::5"), 128});
    ASSERT_TRUE(len);
    const auto* nlh = reinterpret_cast<const nlmsghdr*>(buf.data());
    EXPECT_EQ(nlh->nlmsg_len, *len);
    EXPECT_EQ(nlh->nlmsg_type, RTM_NEWADDR);
    EXPECT_EQ(nlh->nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
    EXPECT_EQ(nlh->nlmsg_seq, 42u);
    ifaddrmsg ifa;
    std::memcpy(&ifa, buf.data() + sizeof(nlmsghdr), sizeof(ifa));
    EXPECT_EQ(ifa.ifa_family, AF_INET6);
    EXPECT_EQ(ifa.ifa_prefixlen, 128);
    EXPECT_EQ(ifa.ifa_index, 5u);
    // the decoder of our own request sees the same address and IFA_F_NODAD
    auto back = parse_addr(nlh);
    ASSERT_TRUE(back);
    EXPECT_EQ(std::get<Prefix6>(back->prefix), (Prefix6{*parse_ip6("2001:db8::5"), 128}));
    EXPECT_TRUE(back->flags & IFA_F_NODAD);
    // refusals build nothing
    EXPECT_FALSE(build_addr_request(buf, 1, AddrOp::add, 5, Prefix6{*parse_ip6("2001:db8::"), 64}));
    EXPECT_FALSE(build_addr_request(buf, 1, AddrOp::add, 0, Prefix4{*parse_ip4("192.0.2.1"), 32}));
}

TEST(NetlinkWalk, StopsAtHostileLengths) {
    Bytes two = route(AF_INET, v4(10, 9, 0, 0), 24, 5);
    const std::size_t first = two.size();
    Bytes second = route(AF_INET, v4(10, 8, 0, 0), 24, 5);
    two.insert(two.end(), second.begin(), second.end());
    int seen = 0;
    nl::for_each_message(two, [&](const nlmsghdr*) { return ++seen > 0; });
    EXPECT_EQ(seen, 2);
    const std::uint32_t huge = 0xfffffff0u;
    std::memcpy(two.data() + first, &huge, 4);
    seen = 0;
    nl::for_each_message(two, [&](const nlmsghdr*) { return ++seen > 0; });
    EXPECT_EQ(seen, 1);
}
