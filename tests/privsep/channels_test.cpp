// The channels' declaration read as data: the acceptance built from its rows,
// the dispatch it drives, the descriptors of each child, and the channel map
// that DESIGN.md keeps.
#include "privsep/channels.hpp"

#include "privsep/messages.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using namespace wgd;
using namespace wgd::privsep;
namespace ch = wgd::privsep::channels;
namespace st = wgd::privsep::channels::states;

namespace {

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// The fenced block that follows `marker` in DESIGN.md.
std::string design_block_after(const std::string& marker) {
    const std::string design = read_file(std::string(WGD_SOURCE_DIR) + "/DESIGN.md");
    auto at = design.find(marker);
    if (at == std::string::npos)
        return "(no '" + marker + "' in DESIGN.md)";
    auto open = design.find("```\n", at);
    if (open == std::string::npos)
        return "(no fenced block after '" + marker + "')";
    open += 4;
    auto close = design.find("```\n", open);
    return design.substr(open, close - open);
}

std::string direction_name(const ch::DirectionInfo& d) {
    return std::string(d.side == Side::server ? "server " : "client ") + role_name(d.from) +
           " -> " + role_name(d.to);
}

std::vector<ch::DirectionInfo> all_directions() {
    std::vector<ch::DirectionInfo> out;
    for (Side side : {Side::server, Side::client})
        for (const ch::ChannelInfo& c : ch::channels(side)) {
            out.push_back(c.a_to_b);
            out.push_back(c.b_to_a);
        }
    return out;
}

Message message(std::uint16_t type, std::vector<std::uint8_t> body = {}, std::uint32_t id = 0) {
    Message m;
    m.type = type;
    m.id = id;
    m.body = std::move(body);
    return m;
}

// A handler of server_leased_to_netd that records what it was called with.
struct LeasedToNetd {
    std::vector<std::string> calls;
    void on(msg::ClaimLeases& c, Message& m) {
        calls.push_back("claims " + std::to_string(c.claims.size()) + " id " +
                        std::to_string(m.id));
    }
    void on(msg::RefreshPeers&, Message&) { calls.push_back("refresh"); }
    void on(msg::ApplyAllowedIps& o, Message& m) {
        calls.push_back("order " + std::to_string(o.changes.size()) + " id " +
                        std::to_string(m.id));
    }
};

// Handlers that return false stop their loop (protod's).
struct NetdToProtod {
    bool result = true;
    int calls = 0;
    bool on(msg::ExchangeRequest&, Message&) {
        calls++;
        return result;
    }
};

// One overload short of server_leased_to_netd: dispatch refuses it at compile time.
struct WithoutRefresh {
    void on(msg::ClaimLeases&, Message&) {}
    void on(msg::ApplyAllowedIps&, Message&) {}
};

} // namespace

static_assert(ch::handles_all<ch::server_leased_to_netd, LeasedToNetd>);
static_assert(!ch::handles_all<ch::server_leased_to_netd, WithoutRefresh>,
              "a receiver without a handler for a row must not compile");
static_assert(ch::handles_all<ch::client_leased_to_protod, NetdToProtod>,
              "a direction without rows takes any handler");

TEST(ChannelMap, DesignMdShowsTheMapRenderedFromTheDeclaration) {
    const std::string rendered =
        ch::render_channel_map(Side::server) + "\n" + ch::render_channel_map(Side::client);
    EXPECT_EQ(design_block_after("<!-- channel map: render_channel_map() -->"), rendered)
        << "DESIGN.md's channel map differs from privsep/channels.hpp; the map as the code "
           "declares it:\n"
        << rendered;
}

TEST(ChannelMap, NamesEveryRowOfEveryDirection) {
    for (Side side : {Side::server, Side::client}) {
        const std::string map = ch::render_channel_map(side);
        for (const ch::ChannelInfo& c : ch::channels(side))
            for (const auto* d : {&c.a_to_b, &c.b_to_a})
                for (const ch::RowInfo& r : d->rows)
                    EXPECT_NE(map.find(std::string(" ") + r.name + " "), std::string::npos)
                        << r.name << " in " << direction_name(*d);
    }
}

TEST(Channels, EveryMessageTypeTravelsExactlyTheDirectionsDeclaredForIt) {
    // The only types that two directions carry: the client's exchange goes
    // leased -> netd -> protod, and its result comes to leased from protod,
    // or from netd when no socket could be made.
    const std::map<std::uint16_t, std::set<std::string>> shared{
        {msg::exchange_request, {"client leased -> netd", "client netd -> protod"}},
        {msg::exchange_result, {"client netd -> leased", "client protod -> leased"}},
    };
    std::map<std::uint16_t, std::set<std::string>> carried;
    for (const ch::DirectionInfo& d : all_directions()) {
        std::set<std::uint16_t> in_this;
        for (const ch::RowInfo& r : d.rows) {
            EXPECT_TRUE(in_this.insert(r.type).second)
                << "type " << r.type << " has two rows in " << direction_name(d);
            carried[r.type].insert(direction_name(d));
        }
    }
    for (std::uint16_t type = msg::query_leases; type <= msg::renew; type++) {
        ASSERT_TRUE(carried.count(type)) << "type " << type << " travels no channel";
        if (carried[type].size() > 1) {
            ASSERT_TRUE(shared.count(type))
                << "type " << type << " is carried by " << carried[type].size() << " directions";
            EXPECT_EQ(carried[type], shared.at(type)) << "type " << type;
        }
    }
    EXPECT_EQ(carried.size(), std::size_t(msg::renew));
}

TEST(Channels, EachReceiverAcceptsItsRowsAndRefusesEveryOtherType) {
    for (const ch::DirectionInfo& d : all_directions()) {
        const Acceptance a = ch::acceptance_of(d);
        std::set<std::uint16_t> rows;
        for (const ch::RowInfo& r : d.rows) {
            rows.insert(r.type);
            for (std::uint32_t state = 0; state < ch::kMaxStates; state++) {
                const bool in = (r.states >> state) & 1;
                EXPECT_EQ(a.check(state, r.type, r.fd, r.max_body),
                          in ? Verdict::accepted : Verdict::wrong_state)
                    << direction_name(d) << " " << r.name << " state " << state;
            }
        }
        for (std::uint16_t type = 0; type <= msg::renew + 1; type++) {
            if (!rows.count(type)) {
                EXPECT_EQ(a.check(0, type, false, 0), Verdict::unknown_type)
                    << direction_name(d) << " type " << type;
            }
        }
    }
}

TEST(Channels, EachChildHoldsItsDescriptorsAtDistinctFixedNumbers) {
    struct Expected {
        Side side;
        Role child;
        std::vector<int> numbers;
    };
    const std::vector<Expected> expected{
        {Side::server, Role::leased, {3, 4, 5, 6}},
        {Side::server, Role::protod, {3, 4, 5}},
        {Side::client, Role::leased, {3, 4}},
        {Side::client, Role::protod, {3, 4}},
    };
    for (const Expected& e : expected) {
        std::vector<int> numbers;
        std::set<int> distinct;
        for (const ch::ChildFd& f : ch::child_fds(e.side, e.child)) {
            numbers.push_back(f.number);
            distinct.insert(f.number);
            EXPECT_GE(f.number, 3) << f.what; // 0, 1, 2: /dev/null and the log relay
        }
        EXPECT_EQ(distinct.size(), numbers.size()) << role_name(e.child);
        EXPECT_EQ(numbers, e.numbers) << role_name(e.child);
    }
    // netd holds its ends as objects; every other end is a child's.
    for (Side side : {Side::server, Side::client})
        for (const ch::ChannelInfo& c : ch::channels(side)) {
            EXPECT_EQ(c.a.fd == ch::kHeldByNetd, c.a.role == Role::netd);
            EXPECT_EQ(c.b.fd == ch::kHeldByNetd, c.b.role == Role::netd);
            EXPECT_NE(c.a.role, c.b.role);
        }
}

TEST(ServerNetdTable, TakesClaimsOnlyBeforeTheFirstOrder) {
    const Acceptance& a = ch::acceptance<ch::server_leased_to_netd>();
    EXPECT_EQ(a.check(st::restoring, msg::claim_leases, false, 100), Verdict::accepted);
    EXPECT_EQ(a.check(st::serving, msg::claim_leases, false, 100), Verdict::wrong_state);
    EXPECT_EQ(a.check(st::serving, msg::apply_allowed_ips, false, 100), Verdict::accepted);
    EXPECT_EQ(a.check(st::restoring, msg::apply_allowed_ips, false, 100), Verdict::accepted);
}

TEST(ServerNetdTable, RefusesWhatLeasedNeverSendsAndBodiesOverTheLimit) {
    const Acceptance& a = ch::acceptance<ch::server_leased_to_netd>();
    for (std::uint16_t type : {msg::allowed_ips_applied, msg::peers_chunk, msg::pools_snapshot,
                               msg::lease_answers, msg::address_order, msg::stop})
        EXPECT_EQ(a.check(st::serving, type, false, 0), Verdict::unknown_type) << type;
    EXPECT_EQ(a.check(st::serving, msg::refresh_peers, false, 1), Verdict::too_large);
    EXPECT_EQ(a.check(st::serving, msg::refresh_peers, true, 0), Verdict::fd_unexpected);
    const std::size_t claims =
        msg::encode(msg::ClaimLeases{std::vector<msg::LeaseClaim>(msg::kMaxClaimsPerMessage)})
            .size();
    EXPECT_EQ(a.check(st::restoring, msg::claim_leases, false, claims), Verdict::accepted);
    EXPECT_EQ(a.check(st::restoring, msg::claim_leases, false, claims + 1), Verdict::too_large);
}

TEST(ServerNetdTable, RefreshIsActedOnAtMostOnceASecond) {
    const Acceptance& a = ch::acceptance<ch::server_leased_to_netd>();
    EXPECT_EQ(a.min_interval_ms(msg::refresh_peers), 1000u);
    EXPECT_EQ(a.min_interval_ms(msg::apply_allowed_ips), 0u);
}

TEST(ClientNetdTable, TakesExactlyTheLargestBodiesLeasedEncodes) {
    const Acceptance& a = ch::acceptance<ch::client_leased_to_netd>();
    const auto exchange = msg::encode(msg::ExchangeRequest{Ip4{}, Ip6{}});
    const auto order = msg::encode(msg::AddressOrder{true, Ip4{}, std::nullopt});
    EXPECT_EQ(a.check(0, msg::exchange_request, false, exchange.size()), Verdict::accepted);
    EXPECT_EQ(a.check(0, msg::exchange_request, false, exchange.size() + 1), Verdict::too_large);
    EXPECT_EQ(a.check(0, msg::address_order, false, order.size()), Verdict::accepted);
    EXPECT_EQ(a.check(0, msg::claim_leases, false, 0), Verdict::unknown_type);
}

TEST(Dispatch, CallsTheRowsHandlerWithTheDecodedStructAndTheMessagesId) {
    LeasedToNetd h;
    msg::ClaimLeases claims{{msg::LeaseClaim{}, msg::LeaseClaim{}}};
    Message m = message(msg::claim_leases, msg::encode(claims), 7);
    EXPECT_TRUE(ch::dispatch<ch::server_leased_to_netd>(st::restoring, m, h));
    Message refresh = message(msg::refresh_peers);
    EXPECT_TRUE(ch::dispatch<ch::server_leased_to_netd>(st::serving, refresh, h));
    msg::ApplyAllowedIps order{{PeerChange{}}};
    Message o = message(msg::apply_allowed_ips, msg::encode(order), 9);
    EXPECT_TRUE(ch::dispatch<ch::server_leased_to_netd>(st::serving, o, h));
    EXPECT_EQ(h.calls, (std::vector<std::string>{"claims 2 id 7", "refresh", "order 1 id 9"}));
}

TEST(Dispatch, ReportsAViolationWithoutCallingTheHandler) {
    LeasedToNetd h;
    Message unknown = message(999);
    EXPECT_FALSE(
        ch::dispatch<ch::server_leased_to_netd>(st::serving, unknown, h, ch::OnViolation::report));
    Message late_claims = message(msg::claim_leases, msg::encode(msg::ClaimLeases{}));
    EXPECT_FALSE(ch::dispatch<ch::server_leased_to_netd>(st::serving, late_claims, h,
                                                         ch::OnViolation::report));
    Message bad_body = message(msg::apply_allowed_ips, {1, 2, 3});
    EXPECT_FALSE(
        ch::dispatch<ch::server_leased_to_netd>(st::serving, bad_body, h, ch::OnViolation::report));
    EXPECT_TRUE(h.calls.empty());
}

TEST(Dispatch, PassesOnWhatABoolHandlerReturns) {
    NetdToProtod h;
    Message m = message(msg::exchange_request, msg::encode(msg::ExchangeRequest{}));
    m.fd = UniqueFd(::dup(0));
    ASSERT_TRUE(m.fd.valid());
    EXPECT_TRUE(ch::dispatch<ch::client_netd_to_protod>(0, m, h, ch::OnViolation::report));
    h.result = false;
    EXPECT_FALSE(ch::dispatch<ch::client_netd_to_protod>(0, m, h, ch::OnViolation::report));
    EXPECT_EQ(h.calls, 2);
    Message without_fd = message(msg::exchange_request, msg::encode(msg::ExchangeRequest{}));
    EXPECT_FALSE(
        ch::dispatch<ch::client_netd_to_protod>(0, without_fd, h, ch::OnViolation::report));
    EXPECT_EQ(h.calls, 2);
}

TEST(Dispatch, AMessageOutsideTheTableEndsTheProcessWithTheViolationLogged) {
    LeasedToNetd h;
    Message m = message(999);
    EXPECT_EXIT(ch::dispatch<ch::server_leased_to_netd>(st::serving, m, h),
                ::testing::ExitedWithCode(1),
                "protocol violation by leased: type 999 in state 1: unknown message type");
}

TEST(Dispatch, ABodyTheDecoderRefusesEndsTheProcessWithTheRowsWords) {
    LeasedToNetd h;
    Message m = message(msg::claim_leases, {1});
    EXPECT_EXIT(ch::dispatch<ch::server_leased_to_netd>(st::restoring, m, h),
                ::testing::ExitedWithCode(1), "leased sent malformed lease claims");
}
