// With every slot taken by silent connections, a new peer still
// gets in; the connection closed for it is the one quiet longest, and never
// one that is owed an answer or was active within evict_after_quiet.
#include "protod/connections.hpp"

#include <gtest/gtest.h>

#include <string_view>

using namespace wgd;
using namespace wgd::protod;
using namespace std::chrono_literals;

namespace {

const TimePoint t0 = TimePoint() + 1000h;

Ip6 ll(int i) {
    return parse_ip6("fe80::1:" + std::to_string(i)).value();
}

std::span<const std::uint8_t> bytes(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

Limits small() {
    Limits l;
    l.max_connections = 4;
    l.evict_after_quiet = 1000ms;
    return l;
}

} // namespace

TEST(Eviction, NothingIsEvictableWhileThereIsRoom) {
    ConnectionTable table(small());
    for (int i = 0; i < 3; ++i)
        table.open(ll(i), t0);
    EXPECT_FALSE(table.evictable(t0 + 1h).has_value());
}

TEST(Eviction, FullTableOfSilentConnectionsGivesUpTheOldestOnceQuietLongEnough) {
    ConnectionTable table(small());
    std::vector<ConnId> ids;
    for (int i = 0; i < 4; ++i)
        ids.push_back(*table.open(ll(i), t0 + std::chrono::milliseconds(i * 10)));
    EXPECT_FALSE(table.evictable(t0 + 500ms).has_value()) << "none quiet for a second yet";
    auto victim = table.evictable(t0 + 1005ms);
    ASSERT_TRUE(victim.has_value());
    EXPECT_EQ(*victim, ids[0]);
    // Bytes from the oldest make the next one the quietest.
    table.received(ids[0], bytes("request_ip=1\n"), t0 + 1005ms);
    EXPECT_EQ(table.evictable(t0 + 2000ms), ids[1]);
}

TEST(Eviction, ConnectionAwaitingItsAnswerIsNeverEvicted) {
    ConnectionTable table(small());
    std::vector<ConnId> ids;
    for (int i = 0; i < 4; ++i)
        ids.push_back(*table.open(ll(i), t0));
    for (ConnId id : ids)
        ASSERT_TRUE(table.received(id, bytes("request_ip=1\n\n"), t0).has_value());
    EXPECT_FALSE(table.evictable(t0 + 1h).has_value());
}

TEST(Eviction, ConnectionWithUnwrittenOutputIsNeverEvicted) {
    ConnectionTable table(small());
    std::vector<ConnId> ids;
    for (int i = 0; i < 4; ++i)
        ids.push_back(*table.open(ll(i), t0));
    // Invalid requests of peers: the error answer is queued, not yet written.
    for (ConnId id : ids) {
        ASSERT_TRUE(table.received(id, bytes("nonsense\n\n"), t0).has_value());
        ASSERT_TRUE(table.answered(id, msg::LeaseAnswer{}, t0));
    }
    for (ConnId id : ids)
        ASSERT_FALSE(table.pending_output(id).empty());
    EXPECT_FALSE(table.evictable(t0 + 1h).has_value());
}

TEST(Eviction, AfterEvictionTheNewConnectionFits) {
    ConnectionTable table(small());
    for (int i = 0; i < 4; ++i)
        table.open(ll(i), t0);
    ASSERT_FALSE(table.open(ll(9), t0 + 2s).has_value());
    auto victim = table.evictable(t0 + 2s);
    ASSERT_TRUE(victim.has_value());
    table.close(*victim);
    EXPECT_TRUE(table.open(ll(9), t0 + 2s).has_value());
    EXPECT_EQ(table.size(), 4u);
}
