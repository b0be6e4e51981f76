// leased: allocation rate, memory per lease, lease-file replay and durable
// group-commit rate. `make bench` runs each 5 times; read the medians.
#include "leased/lease_file.hpp"
#include "leased/malloc_tuning.hpp"
#include "leased/pool.hpp"
#include "leased/server.hpp"
#include "privsep/messages.hpp"
#include "tests/leased/server_helpers.hpp"

#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>

using namespace wgd;
using namespace wgd::leased;

namespace {

Prefix4 p4(const char* text, int len) {
    return Prefix4{*parse_ip4(text), static_cast<std::uint8_t>(len)};
}
Prefix6 p6(const char* text, int len) {
    return Prefix6{*parse_ip6(text), static_cast<std::uint8_t>(len)};
}

PublicKey key(std::uint32_t n) {
    PublicKey k;
    for (int i = 0; i < 4; i++)
        k.bytes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(n >> (8 * i));
    k.bytes[31] = 1;
    return k;
}

template <class Pool>
void allocate_batches(benchmark::State& state, Pool& pool, std::size_t batch) {
    SodiumRandom rng;
    std::vector<std::remove_reference_t<decltype(*pool.allocate(rng))>> held;
    held.reserve(batch);
    for (auto _ : state) {
        auto a = pool.allocate(rng);
        if (!a) {
            state.SkipWithError("pool exhausted");
            break;
        }
        held.push_back(*a);
        if (held.size() == batch) { // keep the fill level: give them back, untimed
            state.PauseTiming();
            for (auto& h : held)
                pool.release(h);
            held.clear();
            state.ResumeTiming();
        }
    }
    for (auto& h : held)
        pool.release(h);
    state.SetItemsProcessed(state.iterations());
}

// Pools kept across repetitions: filling one with 1,000,000 leases takes a while.
template <class Pool, class Prefix>
Pool& filled_pool(const Prefix& prefix, std::size_t leases) {
    static std::map<std::pair<Prefix, std::size_t>, std::unique_ptr<Pool>> cache;
    auto& slot = cache[{prefix, leases}];
    if (!slot) {
        slot = std::make_unique<Pool>();
        slot->add_prefix(prefix);
        DeterministicRandom rng(1);
        for (std::size_t i = 0; i < leases; i++)
            slot->allocate(rng);
    }
    return *slot;
}

void BM_Allocate_Ipv4Slash8(benchmark::State& state) {
    auto& pool = filled_pool<Pool4>(p4("10.0.0.0", 8), static_cast<std::size_t>(state.range(0)));
    allocate_batches(state, pool, 4096);
}
BENCHMARK(BM_Allocate_Ipv4Slash8)->Arg(0)->Arg(1000000)->ArgName("leases");

void BM_Allocate_Ipv6Slash64(benchmark::State& state) {
    auto& pool = filled_pool<Pool6>(p6("2001:db8::", 64), static_cast<std::size_t>(state.range(0)));
    allocate_batches(state, pool, 4096);
}
BENCHMARK(BM_Allocate_Ipv6Slash64)->Arg(0)->Arg(1000000)->ArgName("leases");

// A /16 at 99% full against the same /16 empty: the cost must not depend on it.
void BM_Allocate_Ipv4Slash16(benchmark::State& state) {
    const std::size_t usable = 65534;
    const std::size_t leases = usable * static_cast<std::size_t>(state.range(0)) / 100;
    auto& pool = filled_pool<Pool4>(p4("10.1.0.0", 16), leases);
    allocate_batches(state, pool, 256);
}
BENCHMARK(BM_Allocate_Ipv4Slash16)->Arg(0)->Arg(99)->ArgName("percent_full");

// Bytes in use from malloc: small blocks in the arena (uordblks) and large
// ones (big vectors, hash tables) that malloc maps on their own (hblkhd).
std::size_t malloc_in_use() {
    const struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

// Bytes per lease at 1,000,000 peers each holding an IPv4 and an IPv6 lease:
// the pools alone, and the whole table (pools, peers, indexes), by mallinfo2.
void BM_MemoryPerLease(benchmark::State& state) {
    const std::uint32_t peers = 1000000;
    for (auto _ : state) {
        const std::size_t before = malloc_in_use();
        {
            DeterministicRandom rng(3);
            FakeClock clock(1764201600, 1000);
            auto server = std::make_unique<LeaseServer>(rng, clock, 3600);
            server->add_prefix(p4("10.0.0.0", 8));
            server->add_prefix(p6("2001:db8::", 64));
            std::vector<PeerFacts> facts;
            facts.reserve(peers);
            for (std::uint32_t n = 0; n < peers; n++)
                facts.push_back(PeerFacts{key(n), {}, {}});
            set_peers(*server, facts);
            facts.clear();
            facts.shrink_to_fit();
            const std::size_t peers_only = malloc_in_use() - before;
            Want w;
            w.v4 = w.v6 = Want::Kind::Any;
            for (std::uint32_t n = 0; n < peers; n++)
                server->commit(*server->plan(key(n), w));
            const std::size_t total = malloc_in_use() - before;
            const double leases = 2.0 * peers;
            state.counters["pool_bytes_per_lease"] =
                static_cast<double>(server->pool4().memory_bytes() +
                                    server->pool6().memory_bytes()) /
                leases;
            state.counters["pool4_bytes_per_lease"] =
                static_cast<double>(server->pool4().memory_bytes()) / peers;
            state.counters["pool6_bytes_per_lease"] =
                static_cast<double>(server->pool6().memory_bytes()) / peers;
            state.counters["table_bytes_per_lease"] =
                static_cast<double>(total - peers_only) / leases;
            state.counters["total_bytes_per_peer"] = static_cast<double>(total) / peers;
            state.counters["peer_bytes_per_peer"] = static_cast<double>(peers_only) / peers;
        }
    }
}
// One run: the figure is deterministic and the run is long.
BENCHMARK(BM_MemoryPerLease)->Iterations(1)->Repetitions(1)->Unit(benchmark::kMillisecond);

// Full decisions: plan + commit of a new lease (IPv4 and IPv6) per item.
// Each peer is granted and released again and again on a clock that does
// not move, so the per-peer budget of changes is off (ChangeRate{1, 0}): it
// would otherwise turn the benchmark into one of refusals.
void BM_PlanAndCommit(benchmark::State& state) {
    SodiumRandom rng;
    FakeClock clock(1764201600, 1000);
    LeaseServer server(rng, clock, 3600, ChangeRate{1, 0});
    server.add_prefix(p4("10.0.0.0", 8));
    server.add_prefix(p6("2001:db8::", 64));
    const std::uint32_t peers = 100000;
    std::vector<PeerFacts> facts;
    for (std::uint32_t n = 0; n < peers; n++)
        facts.push_back(PeerFacts{key(n), {}, {}});
    set_peers(server, facts);
    Want any, none;
    any.v4 = any.v6 = Want::Kind::Any;
    std::uint32_t n = 0;
    for (auto _ : state) {
        server.commit(*server.plan(key(n), any));
        if (++n == peers) {
            state.PauseTiming();
            for (n = 0; n < peers; n++)
                server.commit(*server.plan(key(n), none));
            n = 0;
            state.ResumeTiming();
        }
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PlanAndCommit);

// The decisions part of a restart: the first view of the peers (their
// leased addresses already in their allowed IPs, as WireGuard kept them) and
// the replayed records, until every lease is back. wgd-load measures the
// whole restart; this isolates leased's share of it.
void BM_RestartTable(benchmark::State& state) {
    const auto peers = static_cast<std::uint32_t>(state.range(0));
    std::vector<PeerFacts> facts;
    std::vector<LeaseRecord> records;
    for (std::uint32_t n = 0; n < peers; n++) {
        Ip6 ll{}, a6{};
        ll.bytes[0] = 0xfe, ll.bytes[1] = 0x80;
        a6.bytes[0] = 0x20, a6.bytes[1] = 0x01, a6.bytes[2] = 0x0d, a6.bytes[3] = 0xb8;
        for (int i = 0; i < 4; i++) {
            ll.bytes[static_cast<std::size_t>(12 + i)] =
                static_cast<std::uint8_t>((n + 1) >> (24 - 8 * i));
            a6.bytes[static_cast<std::size_t>(12 + i)] =
                static_cast<std::uint8_t>((n + 7) >> (24 - 8 * i));
        }
        const Ip4 a4 = Ip4::from_u32(0x0a000000u + 7 + n);
        facts.push_back(PeerFacts{key(n), {{a4, 32}}, {{ll, 128}, {a6, 128}}});
        records.push_back(LeaseRecord{key(n), a4, a6, 1764201600, 1764201600 + 3600});
    }
    std::size_t restored = 0;
    for (auto _ : state) {
        DeterministicRandom rng(5);
        FakeClock clock(1764201600, 1000);
        LeaseServer server(rng, clock, 3600);
        server.add_prefix(p4("10.0.0.0", 8));
        server.add_prefix(p6("2001:db8::", 64));
        if (state.range(1) != 0) {
            server.expect_restore(records); // as leased does before the first view
            set_peers(server, facts);
            server.restore_expected();
        } else {
            set_peers(server, facts);
            restore(server, records);
        }
        restored = server.lease_count();
    }
    if (restored != 2u * peers)
        state.SkipWithError("restore lost leases");
    state.counters["leases"] = static_cast<double>(restored);
}
BENCHMARK(BM_RestartTable)
    ->ArgsProduct({{10000, 65536}, {0, 1}})
    ->ArgNames({"peers", "expected"})
    ->Unit(benchmark::kMillisecond);

// On a real disk (/var/tmp, not a tmpfs /tmp): fdatasync must reach it.
struct TempFiles {
    std::string dir;
    TempFiles() {
        std::string tmpl = "/var/tmp/wgd-bench-XXXXXX";
        dir = ::mkdtemp(tmpl.data());
    }
    ~TempFiles() { std::filesystem::remove_all(dir); }
    UniqueFd open(int i) const {
        return UniqueFd(::open((dir + "/wg0.leases." + std::to_string(i)).c_str(),
                               O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    }
};

LeaseRecord record(std::uint32_t n) {
    Ip6 v6{};
    v6.bytes[0] = 0x20, v6.bytes[1] = 0x01;
    for (int i = 0; i < 4; i++)
        v6.bytes[static_cast<std::size_t>(12 + i)] = static_cast<std::uint8_t>(n >> (8 * i));
    return LeaseRecord{key(n), Ip4::from_u32(0x0a000000u + n), v6, 1764201600, 1764205200};
}

// kB of one /proc/self/status field (VmRSS, VmHWM).
long status_kb(const char* field) {
    std::ifstream in("/proc/self/status");
    std::string line;
    const std::string prefix = std::string(field) + ":";
    while (std::getline(in, line))
        if (line.compare(0, prefix.size(), prefix) == 0)
            return std::stol(line.substr(prefix.size()));
    return -1;
}

// The peers netd shows leased after a restart: each keeps its link-local
// identity and the two leased addresses that WireGuard held on to.
PeerFacts restart_facts(std::uint32_t n) {
    const LeaseRecord r = record(n + 1);
    Ip6 ll{};
    ll.bytes[0] = 0xfe, ll.bytes[1] = 0x80;
    for (int i = 0; i < 4; i++)
        ll.bytes[static_cast<std::size_t>(12 + i)] = static_cast<std::uint8_t>((n + 1) >> (8 * i));
    return PeerFacts{r.peer, {{*r.ipv4, 32}}, {{ll, 128}, {*r.ipv6, 128}}};
}

// What a phase of leased costs as a process sees it, measured in a child
// whose peak is reset first (so that nothing the benchmark holds counts) and
// whose malloc is set as leased's: its peak and what stays, over where it
// started, and the leases it holds. The phase calls `measured(leases)` while
// what it built is still alive.
struct ChildMemory {
    long peak_kb = 0;
    long after_kb = 0;
    long leases = 0;
};

template <class Phase>
std::optional<ChildMemory> measure_in_child(Phase phase) {
    int fds[2];
    if (::pipe(fds) != 0)
        return std::nullopt;
    pid_t child = ::fork();
    if (child == 0) {
        {
            std::ofstream reset("/proc/self/clear_refs");
            reset << "5"; // VmHWM := VmRSS
        }
        map_big_blocks_on_their_own(); // as leased does
        const long start_kb = status_kb("VmRSS");
        ChildMemory m;
        phase([&](std::size_t leases) {
            m.leases = static_cast<long>(leases);
            m.after_kb = status_kb("VmRSS") - start_kb;
            m.peak_kb = status_kb("VmHWM") - start_kb;
        });
        (void)!::write(fds[1], &m, sizeof m);
        ::_exit(0);
    }
    ::close(fds[1]);
    ChildMemory m;
    const bool got = ::read(fds[0], &m, sizeof m) == sizeof m;
    ::close(fds[0]);
    int status = 0;
    ::waitpid(child, &status, 0);
    return got ? std::optional(m) : std::nullopt;
}

// Each of `peers` holds an IPv4 and an IPv6 lease at the end of the phase.
void report_memory(benchmark::State& state, const std::optional<ChildMemory>& m,
                   std::uint32_t peers, const char* lost) {
    if (!m)
        return;
    if (m->leases != 2l * peers)
        state.SkipWithError(lost);
    state.counters["peak_MB"] = static_cast<double>(m->peak_kb) / 1024.0;
    state.counters["after_MB"] = static_cast<double>(m->after_kb) / 1024.0;
    state.counters["peak_B_per_peer"] = static_cast<double>(m->peak_kb) * 1024.0 / peers;
}

// leased's share of a restart as a process sees it: how much resident
// memory it gains, at its peak, from the lease file's replay through the
// first view of the peers (as netd's PeersChunk messages, 512 peers at a
// time, decoded) to the restored table. Run in a child whose peak is reset
// first, so that nothing the benchmark itself holds is counted. The
// sequence is leased/server_main.cpp's; keep them alike.
void BM_RestartPeakMemory(benchmark::State& state) {
    const auto peers = static_cast<std::uint32_t>(state.range(0));
    TempFiles files;
    {
        auto opened = LeaseFile::open(files.open(0), files.open(1), "wg0");
        std::vector<LeaseRecord> batch;
        for (std::uint32_t n = 0; n < peers; n++) {
            batch.push_back(record(n + 1));
            if (batch.size() == 4096 || n + 1 == peers) {
                opened->file.append(batch);
                batch.clear();
            }
        }
        opened->file.sync();
    }
    malloc_trim(0);
    std::optional<ChildMemory> m;
    for (auto _ : state) {
        m = measure_in_child([&](auto measured) {
            auto opened =
                LeaseFile::open(files.open(0), files.open(1), "wg0", LeaseFile::Replay::index);
            DeterministicRandom rng(5);
            FakeClock clock(1764201600, 1000);
            LeaseServer server(rng, clock, 3600);
            server.expect_restore(std::move(opened->index));
            server.add_prefix(p4("10.0.0.0", 8));
            server.add_prefix(p6("2001::", 64));
            server.begin_peers();
            std::vector<PeerFacts> group;
            for (std::uint32_t n = 0; n < peers; n++) {
                group.push_back(restart_facts(n));
                if (group.size() < 512 && n + 1 < peers)
                    continue;
                for (const msg::PeersChunk& chunk : msg::split_peers(group)) {
                    auto decoded = msg::decode_peers_chunk(msg::encode(chunk));
                    std::vector<PeerFacts> peers_of_chunk;
                    for (auto& p : decoded->peers)
                        peers_of_chunk.push_back(
                            {p.key, std::move(p.allowed4), std::move(p.allowed6)});
                    server.add_peers(peers_of_chunk);
                }
                group.clear();
            }
            server.end_peers();
            server.restore_expected();
            // The claims for netd, from the table (send_claims_for).
            std::size_t claims = 0;
            server.for_each_live_record([&](const LeaseRecord&) { claims++; });
            benchmark::DoNotOptimize(claims);
            measured(server.lease_count());
        });
        if (!m) {
            state.SkipWithError("the child did not report");
            break;
        }
    }
    report_memory(state, m, peers, "restore lost leases");
}
BENCHMARK(BM_RestartPeakMemory)
    ->Arg(65536)
    ->Arg(100000)
    ->ArgName("peers")
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

// leased's share of its first hours as a process sees it: the view of
// 100,000 peers (link-locals only, as netd's chunks bring them), then a
// grant of an IPv4 and an IPv6 lease to each, planned and committed in
// batches as leased does, measured in a child whose peak is reset first.
void BM_GrantsPeakMemory(benchmark::State& state) {
    const auto peers = static_cast<std::uint32_t>(state.range(0));
    std::optional<ChildMemory> m;
    for (auto _ : state) {
        m = measure_in_child([&](auto measured) {
            DeterministicRandom rng(5);
            FakeClock clock(1764201600, 1000);
            LeaseServer server(rng, clock, 3600);
            server.add_prefix(p4("10.0.0.0", 8));
            server.add_prefix(p6("2001::", 64));
            server.begin_peers();
            std::vector<PeerFacts> chunk;
            for (std::uint32_t n = 0; n < peers; n++) {
                PeerFacts f = restart_facts(n);
                f.allowed4.clear();
                f.allowed6.resize(1); // the link-local only
                chunk.push_back(std::move(f));
                if (chunk.size() == 512 || n + 1 == peers) {
                    server.add_peers(chunk);
                    chunk.clear();
                }
            }
            server.end_peers();
            Want w;
            w.v4 = w.v6 = Want::Kind::Any;
            std::vector<Plan> batch;
            for (std::uint32_t n = 0; n < peers; n++) {
                if (auto plan = server.plan(restart_facts(n).key, w))
                    batch.push_back(*plan);
                if (batch.size() == 1000 || n + 1 == peers) {
                    for (const Plan& plan : batch)
                        server.commit(plan);
                    batch.clear();
                }
            }
            measured(server.lease_count());
        });
        if (!m) {
            state.SkipWithError("the child did not report");
            break;
        }
    }
    report_memory(state, m, peers, "grants lost leases");
}
BENCHMARK(BM_GrantsPeakMemory)
    ->Arg(65536)
    ->Arg(100000)
    ->ArgName("peers")
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

void BM_Replay1MLeases(benchmark::State& state) {
    static TempFiles files;
    static bool written = false;
    if (!written) {
        auto opened = LeaseFile::open(files.open(0), files.open(1), "wg0");
        std::vector<LeaseRecord> batch;
        for (std::uint32_t n = 0; n < 1000000; n++) {
            batch.push_back(record(n));
            if (batch.size() == 4096) {
                opened->file.append(batch);
                batch.clear();
            }
        }
        opened->file.append(batch);
        opened->file.sync();
        written = true;
    }
    std::size_t leases = 0;
    for (auto _ : state) {
        auto opened = LeaseFile::open(files.open(0), files.open(1), "wg0");
        leases = opened->leases.size();
        benchmark::DoNotOptimize(opened->leases.data());
    }
    if (leases != 1000000)
        state.SkipWithError("replay lost leases");
    state.counters["leases"] = static_cast<double>(leases);
}
BENCHMARK(BM_Replay1MLeases)->Unit(benchmark::kMillisecond)->Iterations(3);

// Durable grants: batches of 64 records, one fdatasync per batch.
void BM_DurableGrantsGroupCommit64(benchmark::State& state) {
    TempFiles files;
    auto opened = LeaseFile::open(files.open(0), files.open(1), "wg0");
    std::vector<LeaseRecord> batch;
    std::uint32_t n = 0;
    for (auto _ : state) {
        batch.clear();
        for (int i = 0; i < 64; i++)
            batch.push_back(record(n++ % 100000));
        if (opened->file.append(batch) != 0 || opened->file.sync() != 0) {
            state.SkipWithError("write failed");
            break;
        }
        if (opened->file.compaction_due(100000)) {
            std::vector<LeaseRecord> live;
            for (std::uint32_t i = 0; i < 100000; i++)
                live.push_back(record(i));
            opened->file.start_compaction(std::move(live));
        }
        if (opened->file.compacting())
            opened->file.compaction_step(64); // one batch of compaction per group commit
    }
    state.SetItemsProcessed(state.iterations() * 64);
}
BENCHMARK(BM_DurableGrantsGroupCommit64)->UseRealTime();

// The floor under the figure above: one append of the same size and one
// fdatasync on the same disk, without the lease file. Grants per second with
// 64 per sync cannot exceed 64 / (this time).
void BM_FdatasyncFloor(benchmark::State& state) {
    TempFiles files;
    UniqueFd fd = files.open(0);
    const std::vector<char> bytes(64 * sizeof(LeaseRecord), 'x');
    for (auto _ : state) {
        if (::write(fd.get(), bytes.data(), bytes.size()) < 0 || ::fdatasync(fd.get()) != 0) {
            state.SkipWithError("write failed");
            break;
        }
    }
    state.SetItemsProcessed(state.iterations() * 64);
}
BENCHMARK(BM_FdatasyncFloor)->UseRealTime();

// The same into space already written (zeros), as the lease file appends
// into the zeros it writes ahead: the file's size does not change, so
// fdatasync need not write the inode.
void BM_FdatasyncIntoWrittenSpace(benchmark::State& state) {
    TempFiles files;
    UniqueFd fd = files.open(0);
    const std::vector<char> bytes(64 * sizeof(LeaseRecord), 'x');
    const std::vector<char> zeros(bytes.size() * 4096, 0);
    if (::write(fd.get(), zeros.data(), zeros.size()) < 0 || ::fsync(fd.get()) != 0)
        state.SkipWithError("write failed");
    std::size_t i = 0;
    for (auto _ : state) {
        const auto at = static_cast<off_t>((i++ % 4096) * bytes.size());
        if (::pwrite(fd.get(), bytes.data(), bytes.size(), at) < 0 || ::fdatasync(fd.get()) != 0) {
            state.SkipWithError("write failed");
            break;
        }
    }
    state.SetItemsProcessed(state.iterations() * 64);
}
BENCHMARK(BM_FdatasyncIntoWrittenSpace)->UseRealTime();

} // namespace
