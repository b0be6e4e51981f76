// rtnetlink against the real kernel, inside a network namespace per test.
#include "netd/rtnl.hpp"
#include "tests/lab/lab.hpp"

#include <gtest/gtest.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>

using namespace wgd;
using namespace wgd::netd;
using lab::sh;
using lab::sh_out;

namespace {

Prefix4 p4(const char* ip, int len) {
    return Prefix4{*parse_ip4(ip), static_cast<std::uint8_t>(len)};
}
Prefix6 p6(const char* ip, int len) {
    return Prefix6{*parse_ip6(ip), static_cast<std::uint8_t>(len)};
}

// A namespace with a veth pair vA/vB, both up.
struct VethLab {
    lab::Netns ns;
    std::string a = "vA", b = "vB";
    bool ok = false;
    VethLab() {
        ok = ns.ok() && sh("ip link add vA type veth peer name vB") == 0 &&
             sh("ip link set vA up && ip link set vB up") == 0;
    }
};

// Polls and reads events until `done` says the collected ones suffice.
bool wait_for(RtnlEvents& events, std::vector<RtnlEvent>& seen,
              const std::function<bool(const std::vector<RtnlEvent>&)>& done,
              bool* resync = nullptr) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (!done(seen)) {
        if (std::chrono::steady_clock::now() > deadline)
            return false;
        pollfd pfd{events.fd(), POLLIN, 0};
        ::poll(&pfd, 1, 100);
        auto batch = events.read();
        if (!batch)
            return false;
        if (resync && batch->resync_needed)
            *resync = true;
        for (auto& e : batch->events)
            seen.push_back(std::move(e));
    }
    return true;
}

bool has_route_event(const std::vector<RtnlEvent>& seen, const Prefix& prefix, bool added) {
    return std::any_of(seen.begin(), seen.end(), [&](const RtnlEvent& e) {
        const auto* r = std::get_if<RouteEvent>(&e);
        return r && r->prefix == prefix && r->added == added;
    });
}

bool has_addr(const std::vector<IfAddr>& addrs, const Prefix& prefix) {
    return std::any_of(addrs.begin(), addrs.end(),
                       [&](const IfAddr& a) { return a.prefix == prefix; });
}

} // namespace

TEST(RtnlKernel, LinkLookupReportsIndexKindStateAndMtu) {
    WGD_REQUIRE_ROOT();
    lab::Netns ns;
    ASSERT_TRUE(ns.ok());
    ASSERT_EQ(sh("ip link add vA mtu 1400 type veth peer name vB"), 0);
    auto rtnl = Rtnl::open();
    ASSERT_TRUE(rtnl) << rtnl.error().message;
    auto down = rtnl->link_by_name("vA");
    ASSERT_TRUE(down) << down.error().message;
    EXPECT_GT(down->ifindex, 0);
    EXPECT_EQ(down->name, "vA");
    EXPECT_EQ(down->kind, "veth");
    EXPECT_EQ(down->mtu, 1400u);
    EXPECT_FALSE(down->admin_up);
    EXPECT_FALSE(down->is_up());
    ASSERT_EQ(sh("ip link set vA up && ip link set vB up"), 0);
    auto up = rtnl->link_by_name("vA");
    ASSERT_TRUE(up);
    EXPECT_TRUE(up->admin_up);
    EXPECT_TRUE(up->is_up());
    EXPECT_EQ(up->ifindex, down->ifindex);
}

TEST(RtnlKernel, UnknownInterfaceIsENODEV) {
    WGD_REQUIRE_ROOT();
    lab::Netns ns;
    ASSERT_TRUE(ns.ok());
    auto rtnl = Rtnl::open();
    ASSERT_TRUE(rtnl);
    auto link = rtnl->link_by_name("nosuch0");
    ASSERT_FALSE(link);
    EXPECT_EQ(link.error().code, ENODEV);
}

TEST(RtnlKernel, WireguardGoInterfaceHasKindTun) {
    WGD_REQUIRE_ROOT();
    lab::Netns ns;
    ASSERT_TRUE(ns.ok());
    lab::WireguardGo wg(lab::unique_name("wk"));
    ASSERT_TRUE(wg.ok()) << "wireguard-go did not start";
    auto rtnl = Rtnl::open();
    ASSERT_TRUE(rtnl);
    auto link = rtnl->link_by_name(wg.ifname());
    ASSERT_TRUE(link) << link.error().message;
    EXPECT_EQ(link->kind, "tun");
    EXPECT_EQ(link->mtu, 1420u);
    EXPECT_FALSE(link->admin_up); // wireguard-go never raises it itself
}

TEST(RtnlKernel, AddsAndRemovesHostAddresses) {
    WGD_REQUIRE_ROOT();
    VethLab lab;
    ASSERT_TRUE(lab.ok);
    auto rtnl = Rtnl::open();
    ASSERT_TRUE(rtnl);
    const int ifindex = rtnl->link_by_name("vA")->ifindex;
    const Prefix a4 = p4("192.0.2.10", 32);
    const Prefix a6 = p6("2001:db8::10", 128);
    ASSERT_TRUE(rtnl->add_address(ifindex, a4));
    auto added6 = rtnl->add_address(ifindex, a6);
    ASSERT_TRUE(added6) << added6.error().message;
    auto addrs = rtnl->addresses(ifindex);
    ASSERT_TRUE(addrs);
    ASSERT_TRUE(has_addr(*addrs, a4));
    ASSERT_TRUE(has_addr(*addrs, a6));
    for (const auto& a : *addrs) {
        EXPECT_EQ(a.ifindex, ifindex);
        if (a.prefix == a6) {
            EXPECT_TRUE(a.flags & IFA_F_NODAD);
            EXPECT_FALSE(a.flags & IFA_F_TENTATIVE);
            EXPECT_EQ(a.scope, RT_SCOPE_UNIVERSE);
        }
    }
    // the other end of the pair does not see them
    auto other = rtnl->addresses(rtnl->link_by_name("vB")->ifindex);
    ASSERT_TRUE(other);
    EXPECT_FALSE(has_addr(*other, a4));

    ASSERT_TRUE(rtnl->remove_address(ifindex, a4));
    ASSERT_TRUE(rtnl->remove_address(ifindex, a6));
    addrs = rtnl->addresses(ifindex);
    ASSERT_TRUE(addrs);
    EXPECT_FALSE(has_addr(*addrs, a4));
    EXPECT_FALSE(has_addr(*addrs, a6));
}

TEST(RtnlKernel, AddingAnExistingAddressIsEEXIST) {
    WGD_REQUIRE_ROOT();
    VethLab lab;
    ASSERT_TRUE(lab.ok);
    auto rtnl = Rtnl::open();
    ASSERT_TRUE(rtnl);
    const int ifindex = rtnl->link_by_name("vA")->ifindex;
    ASSERT_TRUE(rtnl->add_address(ifindex, p6("2001:db8::20", 128)));
    auto again = rtnl->add_address(ifindex, p6("2001:db8::20", 128));
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, EEXIST);
    ASSERT_TRUE(rtnl->add_address(ifindex, p4("192.0.2.20", 32)));
    auto again4 = rtnl->add_address(ifindex, p4("192.0.2.20", 32));
    ASSERT_FALSE(again4);
    EXPECT_EQ(again4.error().code, EEXIST);
}

TEST(RtnlKernel, RemovingAnAbsentAddressIsAnError) {
    WGD_REQUIRE_ROOT();
    VethLab lab;
    ASSERT_TRUE(lab.ok);
    auto rtnl = Rtnl::open();
    ASSERT_TRUE(rtnl);
    auto r = rtnl->remove_address(rtnl->link_by_name("vA")->ifindex, p4("192.0.2.30", 32));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EADDRNOTAVAIL);
}

TEST(RtnlKernel, RefusedAddressesSendNothing) {
    WGD_REQUIRE_ROOT();
    VethLab lab;
    ASSERT_TRUE(lab.ok);
    auto rtnl = Rtnl::open();
    ASSERT_TRUE(rtnl);
    const int ifindex = rtnl->link_by_name("vA")->ifindex;
    auto before = rtnl->addresses(ifindex);
    ASSERT_TRUE(before);
    const std::size_t sent = rtnl->messages_sent();
    const Prefix refused[] = {p4("192.0.2.0", 24),      p4("192.0.2.1", 31),   p6("2001:db8::", 64),
                              p6("fe80::99", 128),      p4("169.254.1.1", 32), p4("224.0.0.5", 32),
                              p6("ff02::1", 128),       p4("127.0.0.2", 32),   p6("::1", 128),
                              p4("255.255.255.255", 32)};
    for (const auto& prefix : refused) {
        auto add = rtnl->add_address(ifindex, prefix);
        EXPECT_FALSE(add);
        EXPECT_EQ(add.error().code, EINVAL);
        EXPECT_FALSE(rtnl->remove_address(ifindex, prefix));
    }
    EXPECT_EQ(rtnl->messages_sent(), sent) << "a refused order reached the kernel";
    auto after = rtnl->addresses(ifindex);
    ASSERT_TRUE(after);
    EXPECT_EQ(after->size(), before->size());
}

TEST(RtnlKernel, PoolsAreTheInterfacesDirectUnicastMainTableRoutes) {
    WGD_REQUIRE_ROOT();
    VethLab lab;
    ASSERT_TRUE(lab.ok);
    ASSERT_EQ(sh("ip addr add 10.200.0.1/24 dev vA && ip addr add 2001:db8:77::1/64 dev vA"
                 " && ip addr add 10.201.0.1/24 dev vB"),
              0);
    ASSERT_EQ(sh("ip route add 10.9.0.0/24 dev vA"                    // pool
                 " && ip -6 route add 2001:db8:9::/64 dev vA"         // pool
                 " && ip route add 10.8.0.0/24 via 10.200.0.2 dev vA" // gateway
                 " && ip route add 10.7.0.0/24 dev vB"                // other interface
                 " && ip route add 10.6.0.0/24 dev vA table 100"      // other table
                 " && ip route add local 10.5.0.0/24 dev vA"          // local table
                 " && ip route add 224.1.0.0/16 dev vA"               // multicast
                 " && ip route add 169.254.0.0/16 dev vA"             // link-local
                 " && ip -6 route add fe80::/64 dev vA metric 50"     // link-local
                 " && ip route add blackhole 10.4.0.0/24"),           // no interface
              0);
    auto rtnl = Rtnl::open();
    ASSERT_TRUE(rtnl);
    auto pools = rtnl->pools(rtnl->link_by_name("vA")->ifindex);
    ASSERT_TRUE(pools) << pools.error().message;
    auto v4 = pools->v4;
    auto v6 = pools->v6;
    std::sort(v4.begin(), v4.end());
    std::sort(v6.begin(), v6.end());
    EXPECT_EQ(v4, (std::vector<Prefix4>{p4("10.9.0.0", 24), p4("10.200.0.0", 24)}));
    EXPECT_EQ(v6, (std::vector<Prefix6>{p6("2001:db8:9::", 64), p6("2001:db8:77::", 64)}));
}

// The kernel deletes every IPv4 route through an interface, in every table,
// with its last IPv4 address; the saved routes bring them back as they were.
TEST(RtnlKernel, RoutesSavedBeforeTheLastIpv4AddressGoesArePutBackAsTheyWere) {
    WGD_REQUIRE_ROOT();
    VethLab lab;
    ASSERT_TRUE(lab.ok);
    ASSERT_EQ(sh("ip route add 10.77.0.0/24 dev vA"
                 " && ip route add 10.99.0.0/16 via 10.77.0.1 dev vA metric 7"
                 " && ip route add default dev vA table 51820"
                 " && ip route add 10.7.0.0/24 dev vB"),
              0);
    auto rtnl = Rtnl::open();
    ASSERT_TRUE(rtnl);
    const int ifindex = rtnl->link_by_name("vA")->ifindex;
    const Prefix lease = p4("10.77.0.9", 32);
    ASSERT_TRUE(rtnl->add_address(ifindex, lease));
    const std::string listing = "ip -4 route show table all dev vA | grep -v '^local\\|^broadcast'"
                                " | sed 's/ src [0-9.]*//' | sort";
    const std::string before = sh_out(listing);
    auto saved = rtnl->routes_through(ifindex, AF_INET);
    ASSERT_TRUE(saved) << saved.error().message;
    EXPECT_EQ(saved->size(), 3u);
    ASSERT_TRUE(rtnl->remove_address(ifindex, lease));
    auto after = rtnl->routes_through(ifindex, AF_INET);
    ASSERT_TRUE(after);
    EXPECT_TRUE(after->empty()) << "the kernel flushed them (what the client must undo)";
    auto missing = routes_to_restore(*saved, *after);
    ASSERT_EQ(missing.size(), 3u);
    for (const SavedRoute& r : missing)
        EXPECT_TRUE(rtnl->add_route(r)) << describe(r);
    EXPECT_EQ(sh_out(listing), before);
    EXPECT_EQ(rtnl->add_route(missing[0]).error().code, EEXIST);
    EXPECT_NE(sh_out("ip route show dev vB"), "") << "other interfaces untouched";
}

TEST(RtnlEventsKernel, RouteAddedAndRemovedAreSeenFilteredToPools) {
    WGD_REQUIRE_ROOT();
    VethLab lab;
    ASSERT_TRUE(lab.ok);
    ASSERT_EQ(sh("ip addr add 10.200.0.1/24 dev vA"), 0);
    auto rtnl = Rtnl::open();
    ASSERT_TRUE(rtnl);
    const int ifindex = rtnl->link_by_name("vA")->ifindex;
    auto events = RtnlEvents::open(ifindex);
    ASSERT_TRUE(events) << events.error().message;
    ASSERT_EQ(sh("ip route add 10.8.0.0/24 via 10.200.0.2 dev vA && ip route add 10.7.0.0/24 dev vB"
                 " && ip route add 10.9.0.0/24 dev vA && ip -6 route add 2001:db8:9::/64 dev vA"),
              0);
    std::vector<RtnlEvent> seen;
    ASSERT_TRUE(wait_for(*events, seen, [](const auto& s) {
        return has_route_event(s, p4("10.9.0.0", 24), true) &&
               has_route_event(s, p6("2001:db8:9::", 64), true);
    }));
    EXPECT_FALSE(has_route_event(seen, p4("10.8.0.0", 24), true)) << "gateway route is no pool";
    EXPECT_FALSE(has_route_event(seen, p4("10.7.0.0", 24), true)) << "other interface";
    ASSERT_EQ(sh("ip route del 10.9.0.0/24 dev vA && ip -6 route del 2001:db8:9::/64 dev vA"), 0);
    ASSERT_TRUE(wait_for(*events, seen, [](const auto& s) {
        return has_route_event(s, p4("10.9.0.0", 24), false) &&
               has_route_event(s, p6("2001:db8:9::", 64), false);
    }));
}

TEST(RtnlEventsKernel, AddressAddedAndRemovedAreSeen) {
    WGD_REQUIRE_ROOT();
    VethLab lab;
    ASSERT_TRUE(lab.ok);
    auto rtnl = Rtnl::open();
    ASSERT_TRUE(rtnl);
    const int ifindex = rtnl->link_by_name("vA")->ifindex;
    auto events = RtnlEvents::open(ifindex);
    ASSERT_TRUE(events);
    const Prefix a = p6("2001:db8::44", 128);
    ASSERT_TRUE(rtnl->add_address(ifindex, a));
    auto addr_event = [&](bool added) {
        return [&, added](const std::vector<RtnlEvent>& s) {
            return std::any_of(s.begin(), s.end(), [&](const RtnlEvent& e) {
                const auto* ae = std::get_if<AddrEvent>(&e);
                return ae && ae->addr.prefix == a && ae->added == added;
            });
        };
    };
    std::vector<RtnlEvent> seen;
    ASSERT_TRUE(wait_for(*events, seen, addr_event(true)));
    ASSERT_TRUE(rtnl->remove_address(ifindex, a));
    ASSERT_TRUE(wait_for(*events, seen, addr_event(false)));
}

TEST(RtnlEventsKernel, LinkDownUpAndDeleteAreSeen) {
    WGD_REQUIRE_ROOT();
    VethLab lab;
    ASSERT_TRUE(lab.ok);
    auto rtnl = Rtnl::open();
    ASSERT_TRUE(rtnl);
    const int ifindex = rtnl->link_by_name("vA")->ifindex;
    auto events = RtnlEvents::open(ifindex);
    ASSERT_TRUE(events);
    auto link_state = [&](bool up, bool deleted) {
        return [=](const std::vector<RtnlEvent>& s) {
            return std::any_of(s.begin(), s.end(), [&](const RtnlEvent& e) {
                const auto* le = std::get_if<LinkEvent>(&e);
                return le && le->link.is_up() == up && le->deleted == deleted &&
                       le->link.ifindex == ifindex;
            });
        };
    };
    std::vector<RtnlEvent> seen;
    ASSERT_EQ(sh("ip link set vA down"), 0);
    ASSERT_TRUE(wait_for(*events, seen, link_state(false, false)));
    seen.clear();
    ASSERT_EQ(sh("ip link set vA up"), 0);
    ASSERT_TRUE(wait_for(*events, seen, link_state(true, false)));
    seen.clear();
    ASSERT_EQ(sh("ip link del vA"), 0);
    ASSERT_TRUE(wait_for(*events, seen, link_state(false, true)));
}

TEST(RtnlEventsKernel, OverflowAsksForResync) {
    WGD_REQUIRE_ROOT();
    VethLab lab;
    ASSERT_TRUE(lab.ok);
    auto rtnl = Rtnl::open();
    ASSERT_TRUE(rtnl);
    auto events = RtnlEvents::open(rtnl->link_by_name("vA")->ifindex);
    ASSERT_TRUE(events);
    // far more route events than the socket queue holds, none read meanwhile
    const std::string batch = "/tmp/wgd-netd-routes-" + std::to_string(::getpid());
    {
        FILE* f = std::fopen(batch.c_str(), "w");
        ASSERT_NE(f, nullptr);
        for (int i = 0; i < 20000; ++i)
            std::fprintf(f, "route add 10.%d.%d.0/24 dev vA\n", 100 + i / 256, i % 256);
        std::fclose(f);
    }
    const int status = sh("ip -batch " + batch);
    ::unlink(batch.c_str());
    ASSERT_EQ(status, 0);
    bool resync = false;
    std::vector<RtnlEvent> seen;
    wait_for(
        *events, seen, [&](const auto&) { return resync; }, &resync);
    EXPECT_TRUE(resync);
    // the re-dump is complete even though events were lost
    auto pools = rtnl->pools(rtnl->link_by_name("vA")->ifindex);
    ASSERT_TRUE(pools);
    EXPECT_EQ(pools->v4.size(), 20000u);
}
