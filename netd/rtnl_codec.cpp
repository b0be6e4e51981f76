// Pure rtnetlink message building and parsing (no sockets).
#include "netd/rtnl.hpp"

#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

namespace wgd::netd {
namespace {

// Collects the attributes of one level into a table indexed by type,
// dropping unknown types; each known type is then checked by its user.
template <std::size_t N>
struct AttrTable {
    std::array<const nlattr*, N> at{};
};

template <std::size_t N>
int collect_attr(const nlattr* attr, void* data) {
    auto* table = static_cast<AttrTable<N>*>(data);
    if (mnl_attr_type_valid(attr, N - 1) < 0)
        return MNL_CB_OK; // newer kernels add attributes: ignore what we do not know
    table->at[mnl_attr_get_type(attr)] = attr;
    return MNL_CB_OK;
}

template <std::size_t N>
bool collect(const nlmsghdr* nlh, std::size_t header_size, AttrTable<N>& table) {
    if (nlh->nlmsg_len < MNL_NLMSG_HDRLEN ||
        mnl_nlmsg_get_payload_len(nlh) < MNL_ALIGN(header_size))
        return false;
    return mnl_attr_parse(nlh, MNL_ALIGN(header_size), collect_attr<N>, &table) >= 0;
}

template <std::size_t N>
bool collect_nested(const nlattr* nest, AttrTable<N>& table) {
    return mnl_attr_parse_nested(nest, collect_attr<N>, &table) >= 0;
}

bool valid_u32(const nlattr* a) {
    return !a || mnl_attr_validate(a, MNL_TYPE_U32) >= 0;
}
bool valid_u8(const nlattr* a) {
    return !a || mnl_attr_validate(a, MNL_TYPE_U8) >= 0;
}
bool valid_strz(const nlattr* a) {
    if (!a)
        return true;
    if (mnl_attr_validate(a, MNL_TYPE_NUL_STRING) < 0)
        return false;
    // mnl checks the last byte only; a name is one C string of sane length
    const auto len = mnl_attr_get_payload_len(a);
    return len >= 1 && len <= 64 && std::strlen(mnl_attr_get_str(a)) + 1 <= len;
}

std::optional<Prefix> prefix_from(std::uint8_t family, const nlattr* a, std::uint8_t len,
                                  bool mask) {
    if (family == AF_INET) {
        if (len > 32 || !a || mnl_attr_get_payload_len(a) != 4)
            return std::nullopt;
        Prefix4 p;
        std::memcpy(p.addr.bytes.data(), mnl_attr_get_payload(a), 4);
        p.len = len;
        return mask ? Prefix{p.masked()} : Prefix{p};
    }
    if (family == AF_INET6) {
        if (len > 128 || !a || mnl_attr_get_payload_len(a) != 16)
            return std::nullopt;
        Prefix6 p;
        std::memcpy(p.addr.bytes.data(), mnl_attr_get_payload(a), 16);
        p.len = len;
        return mask ? Prefix{p.masked()} : Prefix{p};
    }
    return std::nullopt;
}

} // namespace

std::optional<LinkInfo> parse_link(const nlmsghdr* nlh) {
    if (nlh->nlmsg_type != RTM_NEWLINK && nlh->nlmsg_type != RTM_DELLINK)
        return std::nullopt;
    AttrTable<IFLA_MAX + 1> tb;
    if (!collect(nlh, sizeof(ifinfomsg), tb))
        return std::nullopt;
    const auto* ifm = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(nlh));
    if (ifm->ifi_index <= 0)
        return std::nullopt;
    if (!valid_strz(tb.at[IFLA_IFNAME]) || !valid_u32(tb.at[IFLA_MTU]) ||
        !valid_u8(tb.at[IFLA_OPERSTATE]))
        return std::nullopt;
    LinkInfo info;
    info.ifindex = ifm->ifi_index;
    info.admin_up = (ifm->ifi_flags & IFF_UP) != 0;
    info.running = (ifm->ifi_flags & IFF_RUNNING) != 0;
    if (tb.at[IFLA_IFNAME])
        info.name = mnl_attr_get_str(tb.at[IFLA_IFNAME]);
    if (tb.at[IFLA_MTU])
        info.mtu = mnl_attr_get_u32(tb.at[IFLA_MTU]);
    if (tb.at[IFLA_OPERSTATE])
        info.oper_state = mnl_attr_get_u8(tb.at[IFLA_OPERSTATE]);
    if (const nlattr* linkinfo = tb.at[IFLA_LINKINFO]) {
        if (mnl_attr_validate(linkinfo, MNL_TYPE_NESTED) < 0)
            return std::nullopt;
        AttrTable<IFLA_INFO_MAX + 1> li;
        if (!collect_nested(linkinfo, li) || !valid_strz(li.at[IFLA_INFO_KIND]))
            return std::nullopt;
        if (li.at[IFLA_INFO_KIND])
            info.kind = mnl_attr_get_str(li.at[IFLA_INFO_KIND]);
    }
    return info;
}

std::optional<IfAddr> parse_addr(const nlmsghdr* nlh) {
    if (nlh->nlmsg_type != RTM_NEWADDR && nlh->nlmsg_type != RTM_DELADDR)
        return std::nullopt;
    AttrTable<IFA_MAX + 1> tb;
    if (!collect(nlh, sizeof(ifaddrmsg), tb))
        return std::nullopt;
    const auto* ifa = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(nlh));
    if (!valid_u32(tb.at[IFA_FLAGS]))
        return std::nullopt;
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's
    // on point-to-point links and equals IFA_LOCAL otherwise.
    const nlattr* addr = tb.at[IFA_LOCAL] ? tb.at[IFA_LOCAL] : tb.at[IFA_ADDRESS];
    auto prefix = prefix_from(ifa->ifa_family, addr, ifa->ifa_prefixlen, false);
    if (!prefix || ifa->ifa_index == 0)
        return std::nullopt;
    IfAddr out;
    out.ifindex = static_cast<int>(ifa->ifa_index);
    out.prefix = *prefix;
    out.scope = ifa->ifa_scope;
    out.flags = tb.at[IFA_FLAGS] ? mnl_attr_get_u32(tb.at[IFA_FLAGS]) : ifa->ifa_flags;
    return out;
}

std::optional<RouteInfo> parse_route(const nlmsghdr* nlh) {
    if (nlh->nlmsg_type != RTM_NEWROUTE && nlh->nlmsg_type != RTM_DELROUTE)
        return std::nullopt;
    AttrTable<RTA_MAX + 1> tb;
    if (!collect(nlh, sizeof(rtmsg), tb))
        return std::nullopt;
    const auto* rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(nlh));
    if (!valid_u32(tb.at[RTA_OIF]) || !valid_u32(tb.at[RTA_TABLE]))
        return std::nullopt;
    std::optional<Prefix> dst;
    if (tb.at[RTA_DST]) {
        dst = prefix_from(rtm->rtm_family, tb.at[RTA_DST], rtm->rtm_dst_len, true);
    } else if (rtm->rtm_dst_len == 0) { // a default route carries no RTA_DST
        if (rtm->rtm_family == AF_INET)
            dst = Prefix{Prefix4{{}, 0}};
        else if (rtm->rtm_family == AF_INET6)
            dst = Prefix{Prefix6{{}, 0}};
    }
    if (!dst)
        return std::nullopt;
    if (tb.at[RTA_GATEWAY] &&
        mnl_attr_get_payload_len(tb.at[RTA_GATEWAY]) != (rtm->rtm_family == AF_INET ? 4u : 16u))
        return std::nullopt;
    RouteInfo r;
    r.dst = *dst;
    r.table = tb.at[RTA_TABLE] ? mnl_attr_get_u32(tb.at[RTA_TABLE]) : rtm->rtm_table;
    r.type = rtm->rtm_type;
    r.scope = rtm->rtm_scope;
    r.protocol = rtm->rtm_protocol;
    r.flags = rtm->rtm_flags;
    r.oif = tb.at[RTA_OIF] ? static_cast<int>(mnl_attr_get_u32(tb.at[RTA_OIF])) : 0;
    r.has_gateway = tb.at[RTA_GATEWAY] || tb.at[RTA_VIA] || tb.at[RTA_MULTIPATH];
    return r;
}

bool route_is_pool(const RouteInfo& route, int ifindex) {
    if (route.table != RT_TABLE_MAIN || route.type != RTN_UNICAST || route.oif != ifindex ||
        ifindex <= 0 || route.has_gateway || (route.flags & RTM_F_CLONED))
        return false;
    if (const auto* p4 = std::get_if<Prefix4>(&route.dst)) {
        const std::uint8_t first = p4->addr.bytes[0];
        const bool multicast = (first & 0xf0) == 224 && p4->len >= 4;
        const bool link_local = first == 169 && p4->addr.bytes[1] == 254 && p4->len >= 16;
        return !multicast && !link_local;
    }
    const auto& p6 = std::get<Prefix6>(route.dst);
    const bool multicast = p6.addr.bytes[0] == 0xff && p6.len >= 8;
    const bool link_local = p6.addr.is_link_local() && p6.len >= 10;
    return !multicast && !link_local;
}

void add_pool(Pools& pools, const Prefix& prefix) {
    if (const auto* p4 = std::get_if<Prefix4>(&prefix))
        pools.v4.push_back(*p4);
    else
        pools.v6.push_back(std::get<Prefix6>(prefix));
}

bool SavedRoute::same_route(const SavedRoute& other) const {
    return info.table == other.info.table && info.dst == other.info.dst &&
           info.type == other.info.type && tos == other.tos && priority == other.priority;
}

std::string describe(const SavedRoute& route) {
    std::string text = std::visit([](const auto& p) { return to_string(p); }, route.info.dst);
    if (route.info.has_gateway)
        text += " via a gateway";
    text += " table " + std::to_string(route.info.table);
    if (route.priority != 0)
        text += " metric " + std::to_string(route.priority);
    return text;
}

std::optional<SavedRoute> save_route(const nlmsghdr* nlh, int ifindex) {
    if (nlh->nlmsg_type != RTM_NEWROUTE || ifindex <= 0)
        return std::nullopt;
    auto info = parse_route(nlh);
    if (!info || info->oif != ifindex || info->type != RTN_UNICAST ||
        (info->flags & RTM_F_CLONED) || info->protocol == RTPROT_KERNEL)
        return std::nullopt;
    AttrTable<RTA_MAX + 1> tb;
    if (!collect(nlh, sizeof(rtmsg), tb) || tb.at[RTA_MULTIPATH] || !valid_u32(tb.at[RTA_PRIORITY]))
        return std::nullopt;
    const auto* rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(nlh));
    if (rtm->rtm_family != AF_INET && rtm->rtm_family != AF_INET6)
        return std::nullopt;
    SavedRoute saved;
    saved.info = *info;
    saved.tos = rtm->rtm_tos;
    saved.priority = tb.at[RTA_PRIORITY] ? mnl_attr_get_u32(tb.at[RTA_PRIORITY]) : 0;
    saved.request.assign(nlh->nlmsg_len + 64, 0);
    nlmsghdr* out = mnl_nlmsg_put_header(saved.request.data());
    out->nlmsg_type = RTM_NEWROUTE;
    out->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    auto* r = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(out, sizeof(rtmsg)));
    *r = *rtm;
    r->rtm_flags &= RTNH_F_ONLINK; // the rest describes state, not the route
    for (int type : {RTA_DST, RTA_SRC, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_METRICS,
                     RTA_TABLE, RTA_PREF, RTA_VIA})
        if (const nlattr* a = tb.at[static_cast<std::size_t>(type)])
            mnl_attr_put(out, static_cast<std::uint16_t>(type), mnl_attr_get_payload_len(a),
                         mnl_attr_get_payload(a));
    mnl_attr_put_u32(out, RTA_OIF, static_cast<std::uint32_t>(ifindex));
    saved.request.resize(out->nlmsg_len);
    return saved;
}

std::vector<SavedRoute> routes_to_restore(const std::vector<SavedRoute>& before,
                                          const std::vector<SavedRoute>& after) {
    std::vector<SavedRoute> missing;
    for (const SavedRoute& r : before)
        if (std::none_of(after.begin(), after.end(),
                         [&](const SavedRoute& a) { return a.same_route(r); }))
            missing.push_back(r);
    std::stable_partition(missing.begin(), missing.end(),
                          [](const SavedRoute& r) { return !r.info.has_gateway; });
    return missing;
}

Result<void> check_address_order(const Prefix& prefix) {
    if (const auto* p4 = std::get_if<Prefix4>(&prefix)) {
        if (p4->len != 32)
            return make_error(EINVAL, "refused: " + to_string(*p4) + " is not a /32");
        if (!is_leasable(p4->addr))
            return make_error(EINVAL, "refused: " + to_string(*p4) + " is not global unicast");
        return {};
    }
    const auto& p6 = std::get<Prefix6>(prefix);
    if (p6.len != 128)
        return make_error(EINVAL, "refused: " + to_string(p6) + " is not a /128");
    if (!is_leasable(p6.addr))
        return make_error(EINVAL, "refused: " + to_string(p6) + " is not global unicast");
    return {};
}

Result<std::size_t> build_addr_request(std::span<std::uint8_t> buf, std::uint32_t seq, AddrOp op,
                                       int ifindex, const Prefix& prefix) {
    if (auto ok = check_address_order(prefix); !ok)
        return ok.error();
    if (ifindex <= 0)
        return make_error(ENODEV, "refused: no interface index");
    if (buf.size() < 256)
        return make_error(ENOBUFS, "buffer too small");
    std::memset(buf.data(), 0, 256);
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
    nlh->nlmsg_type = op == AddrOp::add ? RTM_NEWADDR : RTM_DELADDR;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    if (op == AddrOp::add)
        nlh->nlmsg_flags |= NLM_F_CREATE | NLM_F_EXCL;
    nlh->nlmsg_seq = seq;
    auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
    ifa->ifa_index = static_cast<std::uint32_t>(ifindex);
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    if (const auto* p4 = std::get_if<Prefix4>(&prefix)) {
        ifa->ifa_family = AF_INET;
        ifa->ifa_prefixlen = 32;
        mnl_attr_put(nlh, IFA_LOCAL, 4, p4->addr.bytes.data());
        mnl_attr_put(nlh, IFA_ADDRESS, 4, p4->addr.bytes.data());
    } else {
        const auto& p6 = std::get<Prefix6>(prefix);
        ifa->ifa_family = AF_INET6;
        ifa->ifa_prefixlen = 128;
        mnl_attr_put(nlh, IFA_ADDRESS, 16, p6.addr.bytes.data());
        if (op == AddrOp::add) {
            // a leased address is unique by construction: no duplicate
            // address detection delay before it can be used
            ifa->ifa_flags = IFA_F_NODAD;
            mnl_attr_put_u32(nlh, IFA_FLAGS, IFA_F_NODAD);
        }
    }
    return std::size_t{nlh->nlmsg_len};
}

Result<std::size_t> build_link_request(std::span<std::uint8_t> buf, std::uint32_t seq,
                                       const std::string& ifname) {
    if (ifname.empty() || ifname.size() >= IFNAMSIZ || ifname.find('\0') != std::string::npos)
        return make_error(EINVAL, "invalid interface name");
    if (buf.size() < 128)
        return make_error(ENOBUFS, "buffer too small");
    std::memset(buf.data(), 0, 128);
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
    nlh->nlmsg_type = RTM_GETLINK;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    nlh->nlmsg_seq = seq;
    mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg));
    mnl_attr_put_strz(nlh, IFLA_IFNAME, ifname.c_str());
    return std::size_t{nlh->nlmsg_len};
}

std::size_t build_dump_request(std::span<std::uint8_t> buf, std::uint32_t seq, std::uint16_t type,
                               std::uint8_t family) {
    std::memset(buf.data(), 0, 64);
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = seq;
    // rtmsg is the larger of the two family headers; both start with the family
    auto* rtm = static_cast<rtmsg*>(
        mnl_nlmsg_put_extra_header(nlh, type == RTM_GETROUTE ? sizeof(rtmsg) : sizeof(ifaddrmsg)));
    rtm->rtm_family = family;
    return nlh->nlmsg_len;
}

std::optional<RtnlEvent> parse_event(const nlmsghdr* nlh, int ifindex) {
    switch (nlh->nlmsg_type) {
    case RTM_NEWLINK:
    case RTM_DELLINK: {
        auto link = parse_link(nlh);
        if (!link || link->ifindex != ifindex)
            return std::nullopt;
        return LinkEvent{*link, nlh->nlmsg_type == RTM_DELLINK};
    }
    case RTM_NEWADDR:
    case RTM_DELADDR: {
        auto addr = parse_addr(nlh);
        if (!addr || addr->ifindex != ifindex)
            return std::nullopt;
        return AddrEvent{*addr, nlh->nlmsg_type == RTM_NEWADDR};
    }
    case RTM_NEWROUTE:
    case RTM_DELROUTE: {
        auto route = parse_route(nlh);
        if (!route || !route_is_pool(*route, ifindex))
            return std::nullopt;
        return RouteEvent{route->dst, nlh->nlmsg_type == RTM_NEWROUTE};
    }
    default:
        return std::nullopt;
    }
}

} // namespace wgd::netd
