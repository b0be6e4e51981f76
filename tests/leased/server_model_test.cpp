// The lease table against a reference model written straight from SPEC's
// rules: thousands of random operation sequences on a small pool must agree
// on every outcome.
#include "leased/server.hpp"
#include "tests/leased/server_helpers.hpp"

#include <gtest/gtest.h>

#include <map>
#include <set>

using namespace wgd;
using namespace wgd::leased;

namespace {

struct Model {
    std::multiset<Prefix4> pools;
    std::map<int, std::set<std::uint32_t>> statics; // per peer, static /32s
    std::uint32_t own = 0;
    struct Lease {
        std::uint32_t addr;
        std::uint64_t expiry;
    };
    std::map<int, Lease> leases;

    bool covered(std::uint32_t a) const {
        for (auto& p : pools)
            if (p.contains(Ip4::from_u32(a)))
                return true;
        return false;
    }
    bool free(std::uint32_t a) const {
        bool in = false;
        for (auto& p : pools)
            if (p.contains(Ip4::from_u32(a))) {
                in = true;
                const auto base = p.masked().addr.to_u32();
                const auto last = base | (p.len == 0 ? ~0u : ~(~0u << (32 - p.len)));
                if (a == base || (p.len < 31 && a == last))
                    return false;
            }
        if (!in || a == own)
            return false;
        for (auto& [n, s] : statics)
            if (s.count(a))
                return false;
        for (auto& [n, l] : leases)
            if (l.addr == a)
                return false;
        return true;
    }
    std::optional<std::uint32_t> reservation(int n) const {
        auto it = statics.find(n);
        if (it == statics.end())
            return std::nullopt;
        for (auto a : it->second)
            if (covered(a))
                return a;
        return std::nullopt;
    }
};

PublicKey key(int n) {
    PublicKey k;
    k.bytes[0] = static_cast<std::uint8_t>(n);
    return k;
}

} // namespace

TEST(ServerModel, AgreesWithTheSpecRulesOverRandomOperationSequences) {
    const std::uint32_t base = Ip4{{10, 0, 0, 0}}.to_u32(); // space: 10.0.0.0/28
    int sequences = 0;
    for (std::uint64_t seed = 1; seed <= 2000; seed++) {
        DeterministicRandom ops(seed * 7919);
        DeterministicRandom rng(seed);
        FakeClock clock(1764201600, 5000);
        const std::uint32_t leasetime = 100;
        // No budget of changes: the model has none (budget_test.cpp).
        LeaseServer server(rng, clock, leasetime, ChangeRate{1, 0});
        Model model;

        const int peers = 2 + static_cast<int>(ops.uniform(4));
        std::vector<PeerFacts> facts;
        for (int n = 1; n <= peers; n++) {
            PeerFacts f{key(n), {}, {}};
            Ip6 ll{};
            ll.bytes[0] = 0xfe, ll.bytes[1] = 0x80, ll.bytes[15] = static_cast<std::uint8_t>(n);
            f.allowed6.push_back({ll, 128});
            if (ops.uniform(4) == 0) {
                auto a = base + static_cast<std::uint32_t>(ops.uniform(16));
                bool taken = false;
                for (auto& [m, s] : model.statics)
                    taken = taken || s.count(a);
                if (!taken) {
                    f.allowed4.push_back({Ip4::from_u32(a), 32});
                    model.statics[n].insert(a);
                }
            }
            facts.push_back(f);
        }
        set_peers(server, facts);
        model.own = base + 1;
        server.set_own_addresses({Ip4::from_u32(model.own)}, {});
        auto random_prefix = [&] {
            unsigned len = 28 + static_cast<unsigned>(ops.uniform(4));
            return Prefix4{Ip4::from_u32(base + static_cast<std::uint32_t>(ops.uniform(16))),
                           static_cast<std::uint8_t>(len)}
                .masked();
        };
        auto p = Prefix4{Ip4::from_u32(base), 28};
        server.add_prefix(p);
        model.pools.insert(p);

        for (int step = 0; step < 60; step++) {
            SCOPED_TRACE("seed " + std::to_string(seed) + " step " + std::to_string(step));
            const auto op = ops.uniform(9);
            if (op <= 4) { // a request
                const int n = 1 + static_cast<int>(ops.uniform(static_cast<std::uint64_t>(peers)));
                Want w;
                std::optional<std::uint32_t> requested;
                switch (op) {
                case 0:
                    w.v4 = Want::Kind::Any;
                    break;
                case 1: // its own
                    w.v4 = Want::Kind::Specific;
                    if (model.leases.count(n))
                        requested = model.leases[n].addr;
                    else if (model.reservation(n))
                        requested = *model.reservation(n);
                    else
                        requested = base + static_cast<std::uint32_t>(ops.uniform(16));
                    break;
                case 2: { // another's, or any address at all
                    w.v4 = Want::Kind::Specific;
                    const int m =
                        1 + static_cast<int>(ops.uniform(static_cast<std::uint64_t>(peers)));
                    if (m != n && model.leases.count(m))
                        requested = model.leases[m].addr;
                    else
                        requested = base + static_cast<std::uint32_t>(ops.uniform(16));
                    break;
                }
                case 3: // release
                    break;
                case 4:
                    w.no_address_key = true;
                    break;
                }
                if (requested)
                    w.ipv4 = Ip4::from_u32(*requested);
                auto plan = server.plan(key(n), w);
                ASSERT_TRUE(plan);

                // The model's answer.
                const bool asked = op != 3 && !(op == 4 && model.pools.empty());
                std::optional<std::uint32_t> expect;
                bool expect_random = false;
                std::optional<std::uint32_t> lease;
                if (model.leases.count(n))
                    lease = model.leases[n].addr;
                bool reserved_requested =
                    requested && model.statics[n].count(*requested) && model.covered(*requested);
                if (asked) {
                    if (requested && lease == requested)
                        expect = lease;
                    else if (reserved_requested)
                        expect = requested;
                    else if (model.reservation(n))
                        expect = model.reservation(n);
                    else if (lease)
                        expect = lease;
                    else
                        expect_random = true;
                }
                if (expect_random) {
                    bool any_free = false;
                    for (std::uint32_t a = base; a < base + 16; a++)
                        any_free = any_free || (model.free(a) && a != requested);
                    ASSERT_EQ(plan->ipv4.has_value(), any_free);
                    if (plan->ipv4) {
                        ASSERT_TRUE(model.free(plan->ipv4->to_u32()));
                        ASSERT_NE(plan->ipv4->to_u32(), requested);
                    }
                } else {
                    ASSERT_EQ(plan->ipv4.has_value(), expect.has_value());
                    if (expect) {
                        ASSERT_EQ(plan->ipv4->to_u32(), *expect);
                    }
                }
                ASSERT_EQ(plan->error, asked && !plan->ipv4 ? kErrnoUnavailable : kErrnoSuccess);
                const bool dynamic = plan->ipv4 && !model.statics[n].count(plan->ipv4->to_u32());
                std::vector<Ip4> adds, removes;
                if (dynamic && lease != plan->ipv4->to_u32())
                    adds.push_back(*plan->ipv4);
                if (lease && (!dynamic || *lease != plan->ipv4->to_u32()))
                    removes.push_back(Ip4::from_u32(*lease));
                ASSERT_EQ(plan->changes.add4, adds);
                ASSERT_EQ(plan->changes.remove4, removes);

                const bool abort_it = ops.uniform(8) == 0;
                if (plan->unchanged) {
                    // The same lease with more than half its time left, or
                    // none: not pending, and the expiry does not move.
                    ASSERT_TRUE(plan->changes.empty());
                    ASSERT_EQ(lease.has_value(), dynamic);
                    if (lease) {
                        ASSERT_GT(model.leases[n].expiry, clock.boot_ms() + leasetime * 500ull);
                    }
                    ASSERT_FALSE(server.commit(*plan));
                } else if (abort_it) {
                    server.abort(*plan);
                } else {
                    ASSERT_TRUE(server.commit(*plan));
                    if (dynamic)
                        model.leases[n] = {plan->ipv4->to_u32(),
                                           clock.boot_ms() + leasetime * 1000ull};
                    else
                        model.leases.erase(n);
                }
            } else if (op == 5) { // time passes, leases expire
                clock.advance_ms(ops.uniform(60000));
                auto events = server.expire(clock.boot_ms());
                std::set<PublicKey> expired, model_expired;
                for (auto& r : events.records)
                    expired.insert(r.peer);
                for (auto it = model.leases.begin(); it != model.leases.end();)
                    if (it->second.expiry <= clock.boot_ms()) {
                        model_expired.insert(key(it->first));
                        it = model.leases.erase(it);
                    } else {
                        ++it;
                    }
                ASSERT_EQ(expired, model_expired);
            } else if (op == 6) {
                auto pfx = random_prefix();
                server.add_prefix(pfx);
                model.pools.insert(pfx);
            } else { // remove a prefix (an existing one most of the time)
                auto pfx = random_prefix();
                if (!model.pools.empty() && ops.uniform(4) != 0) {
                    auto it = model.pools.begin();
                    std::advance(it, static_cast<long>(ops.uniform(model.pools.size())));
                    pfx = *it;
                }
                auto events = server.remove_prefix(pfx);
                std::set<std::uint32_t> revoked, model_revoked;
                for (auto& ch : events.changes)
                    for (const Ip4& a : ch.remove4)
                        revoked.insert(a.to_u32());
                if (model.pools.count(pfx)) {
                    model.pools.erase(model.pools.find(pfx));
                    for (auto it = model.leases.begin(); it != model.leases.end();)
                        if (!model.covered(it->second.addr)) {
                            model_revoked.insert(it->second.addr);
                            it = model.leases.erase(it);
                        } else {
                            ++it;
                        }
                }
                ASSERT_EQ(revoked, model_revoked);
            }

            // The whole state agrees.
            std::map<PublicKey, std::uint32_t> live, model_live;
            for (auto& r : server.live_records())
                live[r.peer] = r.ipv4->to_u32();
            for (auto& [n, l] : model.leases)
                model_live[key(n)] = l.addr;
            ASSERT_EQ(live, model_live);
            std::uint64_t model_free = 0;
            for (std::uint32_t a = base; a < base + 16; a++) {
                ASSERT_EQ(server.pool4().is_free(Ip4::from_u32(a)), model.free(a)) << a - base;
                model_free += model.free(a);
            }
            ASSERT_EQ(server.pool4().free_count(), model_free);
            auto next = server.next_expiry();
            std::optional<std::uint64_t> model_next;
            for (auto& [n, l] : model.leases)
                if (!model_next || l.expiry < *model_next)
                    model_next = l.expiry;
            ASSERT_EQ(next, model_next);
        }
        sequences++;
    }
    EXPECT_EQ(sequences, 2000);
}
