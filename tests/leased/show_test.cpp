#include "leased/lease_file.hpp"
#include "leased/show.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

using namespace wgd;
using namespace wgd::leased;

namespace {

PublicKey key(std::uint8_t seed) {
    PublicKey k;
    k.bytes.fill(seed);
    return k;
}

LeaseRecord lease(std::uint8_t seed, const char* v4, const char* v6, std::int64_t start,
                  std::int64_t expiry) {
    LeaseRecord r;
    r.peer = key(seed);
    if (v4)
        r.ipv4 = *parse_ip4(v4);
    if (v6)
        r.ipv6 = *parse_ip6(v6);
    r.start_wall = start;
    r.expiry_wall = expiry;
    return r;
}

std::string run(const std::string& command) {
    std::string out;
    FILE* p = popen(command.c_str(), "r");
    char buf[4096];
    std::size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0)
        out.append(buf, n);
    int status = pclose(p);
    return out + "exit=" + std::to_string(WEXITSTATUS(status));
}

} // namespace

TEST(Show, TableListsLiveLeasesWithTimeLeftAndHidesExpiredOnes) {
    ShowInput in;
    in.now_wall = 1000;
    in.leases = {lease(1, "10.77.0.9", "2001:db8::9", 900, 1000 + 3599),
                 lease(2, "10.77.0.10", nullptr, 100, 999)}; // expired
    std::string t = format_table(in);
    EXPECT_NE(t.find(to_base64(key(1))), std::string::npos) << t;
    EXPECT_NE(t.find("10.77.0.9/32"), std::string::npos);
    EXPECT_NE(t.find("2001:db8::9/128"), std::string::npos);
    EXPECT_NE(t.find("59m 59s"), std::string::npos) << t;
    EXPECT_EQ(t.find(to_base64(key(2))), std::string::npos) << t;
}

TEST(Show, DeviceAddsLinkLocalIdentitiesAndMarksReservations) {
    ShowInput in;
    in.now_wall = 1000;
    in.leases = {lease(1, "10.77.0.9", nullptr, 900, 4600)};
    in.device = std::vector<PeerFacts>{
        {key(1), {{*parse_ip4("10.77.0.9"), 32}}, {{*parse_ip6("fe80::1234"), 128}}},
        {key(3), {{*parse_ip4("10.77.0.50"), 32}}, {{*parse_ip6("fe80::99"), 128}}},
    };
    std::string t = format_table(in);
    EXPECT_NE(t.find("fe80::1234"), std::string::npos) << t;
    EXPECT_NE(t.find("10.77.0.50/32"), std::string::npos) << t;
    EXPECT_NE(t.find("reserved"), std::string::npos) << t;
    // The lease of peer 1 is not listed again as its reservation.
    EXPECT_EQ(t.find("10.77.0.9/32"), t.rfind("10.77.0.9/32"));
    std::string j = format_json(in);
    EXPECT_NE(j.find("\"reserved\": true"), std::string::npos) << j;
    EXPECT_NE(j.find("\"link_local\": \"fe80::99\""), std::string::npos) << j;
}

TEST(Show, JsonCarriesEveryFieldOfALease) {
    ShowInput in;
    in.now_wall = 1000;
    in.leases = {lease(1, "10.77.0.9", "2001:db8::9", 900, 4600)};
    std::string j = format_json(in);
    for (std::string want :
         {"\"peer\": \"" + to_base64(key(1)) + "\"", std::string("\"link_local\": null"),
          std::string("\"ipv4\": \"10.77.0.9/32\""), std::string("\"ipv6\": \"2001:db8::9/128\""),
          std::string("\"leasestart\": 900"), std::string("\"expires\": 4600"),
          std::string("\"seconds_left\": 3600"), std::string("\"reserved\": false")})
        EXPECT_NE(j.find(want), std::string::npos) << want << "\n" << j;
    EXPECT_EQ(format_json(ShowInput{}), "[]\n");
}

TEST(Show, CommandReadsALeaseFileMadeByTheTestAndNeverWritesIt) {
    char dir[] = "/tmp/wgd-show-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir));
    std::string d = dir;
    {
        UniqueFd a(open((d + "/wgx0.leases.0").c_str(), O_RDWR | O_CREAT, 0600));
        UniqueFd b(open((d + "/wgx0.leases.1").c_str(), O_RDWR | O_CREAT, 0600));
        Result<OpenedLeaseFile> f = LeaseFile::open(std::move(a), std::move(b), "wgx0");
        ASSERT_TRUE(f) << f.error().message;
        std::int64_t now = time(nullptr);
        ASSERT_EQ(f->file.append({lease(7, "10.9.0.7", "2001:db8:9::7", now, now + 600)}), 0);
        ASSERT_EQ(f->file.sync(), 0);
    }
    // A torn tail that replay would cut: show must leave it in place.
    ASSERT_EQ(std::system(("printf 'torn' >> " + d + "/wgx0.leases.0").c_str()), 0);
    std::string before = run("md5sum " + d + "/wgx0.leases.0");
    std::string bin = std::string(WGD_BINARY_DIR) + "/wg-dynamic-server";
    std::string table = run(bin + " show wgx0 --state-dir " + d);
    EXPECT_NE(table.find("10.9.0.7/32"), std::string::npos) << table;
    EXPECT_NE(table.find(to_base64(key(7))), std::string::npos) << table;
    EXPECT_NE(table.find("exit=0"), std::string::npos);
    std::string json = run(bin + " show wgx0 --json --state-dir " + d);
    EXPECT_NE(json.find("\"ipv6\": \"2001:db8:9::7/128\""), std::string::npos) << json;
    EXPECT_EQ(run("md5sum " + d + "/wgx0.leases.0"), before);
    std::string none = run(bin + " show wgy0 --state-dir " + d + " 2>&1");
    EXPECT_NE(none.find("no lease file for wgy0"), std::string::npos) << none;
    EXPECT_NE(none.find("exit=1"), std::string::npos);
    std::system(("rm -rf " + d).c_str());
}
