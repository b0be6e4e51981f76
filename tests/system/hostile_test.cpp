// Hostile input: a catalogue of bad and odd requests, each sent by a
// real peer through the tunnel from port 970 to the real server suite. A
// refused request must get errno 1 or 2 and a closed connection, or no answer
// at all, and change no lease and no allowed IP; a legal but odd one must get a
// correct grant. After every case a good peer is still served.
#include "common/addr.hpp"
#include "tests/system/change_budget.hpp"
#include "tests/system/suite.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>

using namespace wgd;
using namespace wgd::lab;

namespace {

enum class Expect { invalid, unsupported, grant, no_answer };

struct Outcome {
    std::string reply;
    std::string own_ips;   // the sending peer's allowed IPs after the case
    std::string other_ips; // the other peer's allowed IPs after the case
};

struct HostileCase {
    std::string name;
    std::string bytes;
    Expect expect;
    // Extra checks of a grant; empty: the default checks only.
    std::function<void(const Outcome&)> check = {};
    int source_port = 970;
    bool half_close = false;
};

std::string strip_len(const std::string& v) {
    return v.substr(0, v.find('/'));
}

bool in_pool4(const std::string& v) {
    auto ip = parse_ip4(strip_len(v));
    return ip && Prefix4{*parse_ip4("10.77.0.0"), 24}.contains(*ip) && v.ends_with("/32") &&
           strip_len(v) != "10.77.0.0" && strip_len(v) != "10.77.0.1" &&
           strip_len(v) != "10.77.0.255";
}

bool in_pool6(const std::string& v) {
    auto ip = parse_ip6(strip_len(v));
    return ip && Prefix6{*parse_ip6("2001:db8:77::"), 64}.contains(*ip) && v.ends_with("/128") &&
           strip_len(v) != "2001:db8:77::" && strip_len(v) != "2001:db8:77::1";
}

std::set<std::string> words(const std::string& s) {
    std::istringstream in(s);
    std::set<std::string> out;
    for (std::string w; in >> w;)
        out.insert(w);
    return out;
}

std::string request(const std::string& lines) {
    return "request_ip=1\n" + lines + "\n";
}

// The catalogue. `other4`/`other6` are the other peer's leased addresses.
std::vector<HostileCase> catalogue(const std::string& own_ll, const std::string& other4,
                                   const std::string& other6) {
    using namespace std::string_literals;
    std::vector<HostileCase> t;
    auto invalid = [&](std::string name, std::string bytes) {
        t.push_back({std::move(name), std::move(bytes), Expect::invalid});
    };
    auto unsupported = [&](std::string name, std::string bytes) {
        t.push_back({std::move(name), std::move(bytes), Expect::unsupported});
    };
    auto grant = [&](std::string name, std::string bytes,
                     std::function<void(const Outcome&)> check = {}) {
        t.push_back({std::move(name), std::move(bytes), Expect::grant, std::move(check)});
    };

    // Malformed lines.
    invalid("line_without_equals", request("ipv4\n"));
    invalid("empty_key", request("=10.77.0.5/32\n"));
    invalid("empty_key_as_command", "=1\n\n");
    invalid("nul_in_known_value", request("ipv4=10.77.0.5\0/32\n"s));
    invalid("nul_in_unknown_value", request("comment=a\0b\n"s));
    invalid("nul_in_command", "request_ip\0=1\n\n"s);
    invalid("nul_alone", std::string(1, '\0') + "\n\n");
    invalid("crlf_line_ends", "request_ip=1\r\nipv4=0.0.0.0/32\r\n\r\n");
    invalid("cr_in_known_value", request("ipv4=0.0.0.0/32\r\n"));
    invalid("upper_case_key", request("IPV4=0.0.0.0/32\n"));
    invalid("upper_case_command", "REQUEST_IP=1\n\n");
    invalid("space_in_key", request("ipv4 =0.0.0.0/32\n"));
    invalid("dash_in_key", request("lease-time=5\n"));
    invalid("non_ascii_key", request("ipv\xc3\xa4"
                                     "4=0.0.0.0/32\n"));
    invalid("over_long_line", request("comment=" + std::string(4096 - 8, 'a') + "\n"));
    {
        std::string big = "request_ip=1\n";
        for (int i = 0; big.size() <= 8192; i++)
            big += "k" + std::to_string(i) + "=" + std::string(60, 'v') + "\n";
        invalid("over_long_message", big + "\n");
        invalid("over_long_message_without_end", big);
        std::string many = "request_ip=1\n";
        for (int i = 0; many.size() <= 8192; i++)
            many += "u" + std::to_string(i) + "=\n";
        invalid("huge_number_of_unknown_keys_over_the_limit", many + "\n");
    }
    {
        std::mt19937 rng(10);
        std::string garbage;
        for (int i = 0; i < 9000; i++)
            garbage += static_cast<char>(rng() & 0xff);
        invalid("binary_garbage", garbage);
        std::string printable;
        for (int i = 0; i < 9000; i++)
            printable += static_cast<char>('!' + rng() % 90);
        invalid("printable_garbage_without_newline", printable);
    }
    invalid("tls_client_hello", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"s + "\n\n");
    invalid("http_get", "GET / HTTP/1.1\r\nHost: fe80::\r\n\r\n");
    invalid("empty_message", "\n");
    invalid("only_empty_lines", "\n\n\n\n");
    invalid("address_line_before_command", "ipv4=0.0.0.0/32\nrequest_ip=1\n\n");
    invalid("version_empty", "request_ip=\n\n");
    invalid("version_leading_zero", "request_ip=01\n\n");
    invalid("version_with_sign", "request_ip=+1\n\n");
    invalid("version_with_space", "request_ip= 1\n\n");
    // Repeated keys and mixed dialects.
    invalid("repeated_command", "request_ip=1\nrequest_ip=1\n\n");
    invalid("repeated_ipv4", request("ipv4=0.0.0.0/32\nipv4=0.0.0.0/32\n"));
    invalid("repeated_ipv6", request("ipv6=::/128\nipv6=::/128\n"));
    invalid("repeated_leasestart", request("leasestart=0\nleasestart=0\n"));
    invalid("repeated_leasetime", request("leasetime=0\nleasetime=0\n"));
    invalid("ip_twice_for_one_family", request("ip=0.0.0.0/32\nip=0.0.0.0/32\n"));
    invalid("both_dialects", request("ip=0.0.0.0/32\nipv6=::/128\n"));
    invalid("both_dialects_modern_first", request("ipv4=0.0.0.0/32\nip=::/128\n"));
    // Prefix lengths other than /32 and /128.
    for (int len = 0; len <= 33; len++)
        if (len != 32)
            invalid("ipv4_prefix_length_" + std::to_string(len),
                    request("ipv4=10.77.0.5/" + std::to_string(len) + "\n"));
    invalid("ipv4_prefix_length_empty", request("ipv4=10.77.0.5/\n"));
    invalid("ipv4_prefix_length_leading_zero", request("ipv4=10.77.0.5/032\n"));
    invalid("ipv4_prefix_length_negative", request("ipv4=10.77.0.5/-32\n"));
    for (const char* len : {"0", "1", "64", "96", "120", "127", "129", "0128", "255"})
        invalid(std::string("ipv6_prefix_length_") + len,
                request("ipv6=2001:db8:77::5/" + std::string(len) + "\n"));
    invalid("legacy_ipv4_prefix_length_24", request("ip=10.77.0.5/24\n"));
    invalid("legacy_ipv6_prefix_length_64", request("ip=2001:db8:77::5/64\n"));
    invalid("unspecified_ipv4_length_0", request("ipv4=0.0.0.0/0\n"));
    invalid("unspecified_ipv4_length_24", request("ipv4=0.0.0.0/24\n"));
    invalid("unspecified_ipv6_length_0", request("ipv6=::/0\n"));
    invalid("unspecified_ipv6_length_64", request("ipv6=::/64\n"));
    // Addresses that are never leasable.
    invalid("ipv4_mapped_ipv6", request("ipv6=::ffff:10.77.0.5/128\n"));
    invalid("ipv4_mapped_ipv6_legacy", request("ip=::ffff:10.77.0.5\n"));
    invalid("ipv4_compatible_ipv6", request("ipv6=::10.77.0.5/128\n"));
    invalid("link_local_ipv6", request("ipv6=fe80::5/128\n"));
    invalid("own_link_local_identity", request("ipv6=" + own_ll + "/128\n"));
    invalid("server_link_local", request("ipv6=fe80::/128\n"));
    invalid("link_local_ipv4", request("ipv4=169.254.1.1/32\n"));
    invalid("multicast_ipv4", request("ipv4=224.0.0.1/32\n"));
    invalid("multicast_ipv4_ssdp", request("ipv4=239.255.255.250/32\n"));
    invalid("multicast_ipv6", request("ipv6=ff02::1/128\n"));
    invalid("multicast_ipv6_legacy", request("ip=ff05::2\n"));
    invalid("loopback_ipv4", request("ipv4=127.0.0.1/32\n"));
    invalid("loopback_ipv6", request("ipv6=::1/128\n"));
    invalid("limited_broadcast", request("ipv4=255.255.255.255/32\n"));
    invalid("this_network_ipv4", request("ipv4=0.1.2.3/32\n"));
    // Malformed addresses.
    invalid("ipv4_three_octets", request("ipv4=10.77.0/32\n"));
    invalid("ipv4_octet_256", request("ipv4=10.77.0.256/32\n"));
    invalid("ipv4_leading_zero_octet", request("ipv4=010.77.0.5/32\n"));
    invalid("ipv4_key_with_ipv6_address", request("ipv4=2001:db8:77::5/32\n"));
    invalid("ipv6_key_with_ipv4_address", request("ipv6=10.77.0.5/128\n"));
    invalid("ipv6_triple_colon", request("ipv6=2001:db8:::5/128\n"));
    invalid("ipv6_with_zone", request("ipv6=2001:db8:77::5%1/128\n"));
    invalid("ipv4_empty_value", request("ipv4=\n"));
    invalid("ipv6_empty_value", request("ipv6=\n"));
    invalid("ipv4_leading_space", request("ipv4= 10.77.0.5/32\n"));
    invalid("ipv4_hostname", request("ipv4=localhost/32\n"));

    // Unsupported protocol.
    unsupported("version_2", "request_ip=2\n\n");
    unsupported("version_huge", "request_ip=99999999999999999999999\n\n");
    unsupported("version_2_with_address", "request_ip=2\nipv4=10.77.0.5/32\n\n");
    unsupported("unknown_command", "release_ip=1\n\n");
    unsupported("unknown_key_as_command", "hello=world\n\n");

    // Legal but odd: a correct grant.
    auto both_in_pools = [](const Outcome& o) {
        EXPECT_TRUE(in_pool4(field(o.reply, "ipv4"))) << o.reply;
        EXPECT_TRUE(in_pool6(field(o.reply, "ipv6"))) << o.reply;
    };
    grant("any_without_prefix_length", request("ipv4=0.0.0.0\nipv6=::\n"), both_in_pools);
    grant("addresses_far_outside_the_pools",
          request("ipv4=198.51.100.7/32\nipv6=2001:db8:ffff::7/128\n"), both_in_pools);
    grant("another_peers_addresses", request("ipv4=" + other4 + "\nipv6=" + other6 + "\n"),
          [=](const Outcome& o) {
              EXPECT_NE(field(o.reply, "ipv4"), other4);
              EXPECT_NE(field(o.reply, "ipv6"), other6);
              EXPECT_TRUE(in_pool4(field(o.reply, "ipv4"))) << o.reply;
              EXPECT_NE(o.other_ips.find(other4), std::string::npos) << o.other_ips;
              EXPECT_NE(o.other_ips.find(other6), std::string::npos) << o.other_ips;
          });
    grant("servers_own_and_pool_edge_addresses",
          request("ipv4=10.77.0.1/32\nipv6=2001:db8:77::1/128\n"), both_in_pools);
    grant("pool_network_address", request("ipv4=10.77.0.0/32\n"),
          [](const Outcome& o) { EXPECT_TRUE(in_pool4(field(o.reply, "ipv4"))) << o.reply; });
    grant("pool_broadcast_address", request("ipv4=10.77.0.255/32\n"),
          [](const Outcome& o) { EXPECT_TRUE(in_pool4(field(o.reply, "ipv4"))) << o.reply; });
    grant("lease_fields_of_the_prototype_client", request("leasestart=0\nleasetime=0\n"),
          [=](const Outcome& o) {
              both_in_pools(o);
              // Ignored, not taken for a lease of 0 s: the whole leasetime,
              // or what is left of it when the stored lease is repeated.
              const long leasetime = std::atol(field(o.reply, "leasetime").c_str());
              EXPECT_GT(leasetime, 1800) << o.reply;
              EXPECT_LE(leasetime, 3600) << o.reply;
              EXPECT_NE(field(o.reply, "leasestart"), "0") << o.reply;
          });
    grant("errno_and_errmsg_in_a_request_are_unknown_keys", request("errno=1\nerrmsg=x\n"),
          both_in_pools);
    grant("unknown_key_with_cr_in_its_value", request("comment=a\rb\n"), both_in_pools);
    {
        std::string many;
        for (int i = 0; many.size() < 7000; i++)
            many += "x" + std::to_string(i) + "=\n";
        grant("many_unknown_keys_within_the_limit", request(many), both_in_pools);
    }
    grant("line_of_exactly_4096_bytes", request("comment=" + std::string(4096 - 9, 'a') + "\n"),
          both_in_pools);
    grant("legacy_dialect_both_families", request("ip=0.0.0.0\nip=::\n"), [=](const Outcome& o) {
        EXPECT_EQ(o.reply.find("request_ip="), std::string::npos) << o.reply;
        EXPECT_EQ(field(o.reply, "ipv4"), "") << o.reply;
        std::istringstream lines(o.reply);
        int ip_lines = 0;
        for (std::string line; std::getline(lines, line);)
            if (line.rfind("ip=", 0) == 0) {
                ++ip_lines;
                auto v = line.substr(3);
                EXPECT_TRUE(in_pool4(v) || in_pool6(v)) << v;
            }
        EXPECT_EQ(ip_lines, 2) << o.reply;
    });
    grant("ipv6_only_releases_ipv4", request("ipv6=::/128\n"), [](const Outcome& o) {
        EXPECT_TRUE(in_pool6(field(o.reply, "ipv6"))) << o.reply;
        EXPECT_EQ(field(o.reply, "ipv4"), "");
    });

    // No answer: the peer gives up, or it is not allowed to talk.
    auto no_answer = [&](std::string name, std::string bytes, int port, bool half_close) {
        HostileCase c{std::move(name), std::move(bytes), Expect::no_answer};
        c.source_port = port;
        c.half_close = half_close;
        t.push_back(std::move(c));
    };
    no_answer("no_terminating_empty_line_then_close", request("ipv4=0.0.0.0/32"), 970, true);
    no_answer("half_a_line_then_close", "request_ip=1\nipv4=10.7", 970, true);
    no_answer("connect_then_close", "", 970, true);
    no_answer("good_request_from_port_971", request(""), 971, false);
    no_answer("good_request_from_port_4970", request(""), 4970, false);
    return t;
}

class Hostile : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!running_as_root())
            GTEST_SKIP() << "system tests need root (network namespaces, wireguard-go)";
    }
};

// Every peer's allowed IPs, in an order that does not depend on wireguard-go's.
std::map<std::string, std::set<std::string>> allowed_ips(const Lab& lab) {
    std::map<std::string, std::set<std::string>> out;
    std::istringstream lines(lab.server_allowed_ips());
    for (std::string line; std::getline(lines, line);) {
        auto tab = line.find('\t');
        if (tab != std::string::npos)
            out[line.substr(0, tab)] = words(line.substr(tab + 1));
    }
    return out;
}

std::string lease_files(const Lab& lab) {
    return read_file(lab.state_dir + "/" + lab.server_iface + ".leases.0") + "|" +
           read_file(lab.state_dir + "/" + lab.server_iface + ".leases.1");
}

} // namespace

TEST_F(Hostile, CatalogueOfBadRequestsIsRefusedWithoutSideEffectsAndOddOnesGetCorrectGrants) {
    UnlimitedChangeBudget unlimited; // each odd request's grant, one after the other
    Lab lab(LabOptions{2});
    ServerRun run = start_server(lab);
    ASSERT_TRUE(wait_until_serving(lab)) << read_file(run.log);
    const LabClient& self = lab.clients[0];
    const LabClient& other = lab.clients[1];
    Exchange other_lease = request(lab, 1);
    std::string other4 = field(other_lease.reply, "ipv4"),
                other6 = field(other_lease.reply, "ipv6");
    ASSERT_FALSE(other4.empty()) << other_lease.reply;
    ASSERT_EQ(field(request(lab, 0).reply, "errno"), "0");

    auto table = catalogue(self.lladdr, other4, other6);
    int refused = 0, granted = 0;
    std::chrono::milliseconds slowest_good{0};
    for (const HostileCase& c : table) {
        SCOPED_TRACE(c.name);
        const auto ips_before = allowed_ips(lab);
        const std::string leases_before = lease_files(lab);
        Exchange ex = exchange(self.ns, self.iface, self.lladdr, c.bytes, c.source_port, 3000, true,
                               c.half_close);
        ASSERT_TRUE(ex.connected) << "connect failed: errno " << ex.error;
        switch (c.expect) {
        case Expect::invalid:
        case Expect::unsupported: {
            const char* want = c.expect == Expect::invalid ? "1" : "2";
            EXPECT_EQ(field(ex.reply, "errno"), want) << ex.reply;
            EXPECT_EQ(field(ex.reply, "errmsg"),
                      c.expect == Expect::invalid ? "Invalid request" : "Unsupported protocol");
            EXPECT_EQ(field(ex.reply, "ipv4") + field(ex.reply, "ipv6") + field(ex.reply, "ip"), "")
                << ex.reply;
            EXPECT_TRUE(ex.closed) << "the connection stayed open after an error";
            break;
        }
        case Expect::no_answer:
            EXPECT_EQ(ex.reply, "");
            EXPECT_TRUE(ex.closed) << "the server did not close";
            break;
        case Expect::grant: {
            EXPECT_EQ(field(ex.reply, "errno"), "0") << ex.reply;
            EXPECT_FALSE(ex.closed);
            Outcome o{ex.reply, lab.allowed_ips_of(self.pubkey), lab.allowed_ips_of(other.pubkey)};
            // Exactly the granted addresses are added to this peer, nothing else.
            std::set<std::string> want{self.lladdr + "/128"};
            for (const char* key : {"ipv4", "ipv6"})
                if (!field(ex.reply, key).empty())
                    want.insert(field(ex.reply, key));
            std::istringstream lines(ex.reply);
            for (std::string line; std::getline(lines, line);)
                if (line.rfind("ip=", 0) == 0)
                    want.insert(line.substr(3));
            EXPECT_EQ(words(o.own_ips), want) << ex.reply;
            if (c.check)
                c.check(o);
            ++granted;
            break;
        }
        }
        if (c.expect != Expect::grant) {
            ++refused;
            EXPECT_EQ(allowed_ips(lab), ips_before);
            EXPECT_EQ(lease_files(lab), leases_before);
        }
        // A good peer is served right after.
        auto start = std::chrono::steady_clock::now();
        Exchange good =
            request(lab, 1, "request_ip=1\nipv4=" + other4 + "\nipv6=" + other6 + "\n\n");
        auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - start);
        slowest_good = std::max(slowest_good, took);
        ASSERT_EQ(field(good.reply, "ipv4"), other4) << good.reply << read_file(run.log);
        EXPECT_EQ(field(good.reply, "ipv6"), other6);
        // Put the sender back to a lease of both families for the next case.
        if (c.expect == Expect::grant) {
            ASSERT_EQ(field(request(lab, 0).reply, "errno"), "0");
        }
    }
    EXPECT_GE(refused + granted, 40);
    std::cout << "hostile catalogue: " << table.size() << " requests, " << refused << " refused, "
              << granted << " granted; slowest good answer after one " << slowest_good.count()
              << " ms\n";
    EXPECT_EQ(waitpid(run.pid, nullptr, WNOHANG), 0) << "the server died";
}
