// The permission tables netd enforces, read as data.
#include "privsep/tables.hpp"

#include "privsep/messages.hpp"

#include <gtest/gtest.h>

using namespace wgd;
using namespace wgd::privsep;
namespace t = wgd::privsep::tables;

TEST(Tables, ServerNetdTakesClaimsOnlyBeforeTheFirstOrder) {
    const Acceptance& a = t::server_netd_from_leased();
    EXPECT_EQ(a.check(t::restoring, msg::claim_leases, false, 100), Verdict::accepted);
    EXPECT_EQ(a.check(t::serving, msg::claim_leases, false, 100), Verdict::wrong_state);
    EXPECT_EQ(a.check(t::serving, msg::apply_allowed_ips, false, 100), Verdict::accepted);
    EXPECT_EQ(a.check(t::restoring, msg::apply_allowed_ips, false, 100), Verdict::accepted);
}

TEST(Tables, ServerNetdRefusesWhatLeasedNeverSendsAndBodiesOverTheLimit) {
    const Acceptance& a = t::server_netd_from_leased();
    for (std::uint16_t type : {msg::allowed_ips_applied, msg::peers_chunk, msg::pools_snapshot,
                               msg::lease_answers, msg::address_order, msg::stop})
        EXPECT_EQ(a.check(t::serving, type, false, 0), Verdict::unknown_type) << type;
    EXPECT_EQ(a.check(t::serving, msg::refresh_peers, false, 1), Verdict::too_large);
    EXPECT_EQ(a.check(t::serving, msg::refresh_peers, true, 0), Verdict::fd_unexpected);
    const std::size_t claims =
        msg::encode(msg::ClaimLeases{std::vector<msg::LeaseClaim>(msg::kMaxClaimsPerMessage)})
            .size();
    EXPECT_EQ(a.check(t::restoring, msg::claim_leases, false, claims), Verdict::accepted);
    EXPECT_EQ(a.check(t::restoring, msg::claim_leases, false, claims + 1), Verdict::too_large);
}

TEST(Tables, RefreshIsActedOnAtMostOnceASecond) {
    EXPECT_EQ(t::server_netd_from_leased().min_interval_ms(msg::refresh_peers), 1000u);
    EXPECT_EQ(t::server_netd_from_leased().min_interval_ms(msg::apply_allowed_ips), 0u);
}

TEST(Tables, ClientNetdTakesExactlyTheLargestBodiesLeasedEncodes) {
    const Acceptance& a = t::client_netd_from_leased();
    const auto exchange = msg::encode(msg::ExchangeRequest{Ip4{}, Ip6{}});
    const auto order = msg::encode(msg::AddressOrder{true, Ip4{}, std::nullopt});
    EXPECT_EQ(a.check(0, msg::exchange_request, false, exchange.size()), Verdict::accepted);
    EXPECT_EQ(a.check(0, msg::exchange_request, false, exchange.size() + 1), Verdict::too_large);
    EXPECT_EQ(a.check(0, msg::address_order, false, order.size()), Verdict::accepted);
    EXPECT_EQ(a.check(0, msg::claim_leases, false, 0), Verdict::unknown_type);
}
