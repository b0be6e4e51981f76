// netd's benchmarks.
// BM_UapiAllowedIpChanges: allowed-IP changes per second through the UAPI
// backend, against a real wireguard-go with 10,000 peers in a namespace this
// benchmark makes (root only). Each iteration adds one IPv4 /32 and one IPv6
// /128 to each of N peers in one batch, then removes them again in one batch
// (a removal reads the device and replaces the peers' lists: wireguard-go
// 0.0.20220316 has no single-entry removal).
// BM_DeviceMemory: the heap netd's copy of a device of N peers costs, per
// peer, at each step of a read and at the peaks (the target: netd under
// 16 MiB at 100,000 peers).
#include "netd/device_view.hpp"
#include "netd/validate.hpp"
#include "netd/wireguard.hpp"
#include "tests/lab/lab.hpp"

#include <benchmark/benchmark.h>
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>
#include <random>
#include <sstream>

// Every allocation through operator new is counted, so that the peak of a
// step (a vector that doubles holds old and new blocks for a moment) is seen,
// not only the bytes in use between steps that mallinfo2 gives.
namespace {
std::atomic<std::size_t> g_live{0};
std::atomic<std::size_t> g_peak{0};

void* counted_alloc(std::size_t size) {
    void* p = std::malloc(size == 0 ? 1 : size);
    if (!p)
        throw std::bad_alloc();
    const std::size_t live = g_live += malloc_usable_size(p);
    std::size_t peak = g_peak.load();
    while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {
    }
    return p;
}
void counted_free(void* p) {
    if (!p)
        return;
    g_live -= malloc_usable_size(p);
    std::free(p);
}
} // namespace

void* operator new(std::size_t size) {
    return counted_alloc(size);
}
void* operator new[](std::size_t size) {
    return counted_alloc(size);
}
void operator delete(void* p) noexcept {
    counted_free(p);
}
void operator delete[](void* p) noexcept {
    counted_free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    counted_free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    counted_free(p);
}

using namespace wgd;
using namespace wgd::netd;

namespace {

constexpr int kPeers = 10000;

struct Lab {
    lab::Netns ns;
    std::unique_ptr<lab::WireguardGo> wg;
    std::vector<PublicKey> keys;
    bool ok = false;

    Lab() {
        if (!ns.ok())
            return;
        wg = std::make_unique<lab::WireguardGo>(lab::unique_name("wb"));
        if (!wg->ok())
            return;
        std::mt19937_64 rng(std::random_device{}());
        std::ostringstream conf;
        conf << "[Interface]\nListenPort = 0\n";
        for (int i = 0; i < kPeers; ++i) {
            PublicKey k;
            for (auto& b : k.bytes)
                b = static_cast<std::uint8_t>(rng());
            keys.push_back(k);
            Ip6 ll = *parse_ip6("fe80::");
            ll.bytes[14] = static_cast<std::uint8_t>((i + 1) >> 8);
            ll.bytes[15] = static_cast<std::uint8_t>(i + 1);
            conf << "[Peer]\nPublicKey = " << to_base64(k) << "\nAllowedIPs = " << to_string(ll)
                 << "/128\n";
        }
        const std::string path = "/tmp/wgd-bench-" + wg->ifname() + ".conf";
        if (FILE* f = std::fopen(path.c_str(), "w")) {
            const std::string text = conf.str();
            std::fwrite(text.data(), 1, text.size(), f);
            std::fclose(f);
            ok = lab::sh("wg setconf " + wg->ifname() + " " + path) == 0;
            ::unlink(path.c_str());
        }
    }
};

Lab* lab() {
    static std::unique_ptr<Lab> instance = std::make_unique<Lab>();
    return instance.get();
}

std::vector<PeerChange> batch(const std::vector<PublicKey>& keys, int n, bool add) {
    std::vector<PeerChange> out;
    out.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
        const Ip4 a4{
            {10, 80, static_cast<std::uint8_t>(i / 250), static_cast<std::uint8_t>(1 + i % 250)}};
        Ip6 a6 = *parse_ip6("2001:db8:80::");
        a6.bytes[14] = static_cast<std::uint8_t>((i + 1) >> 8);
        a6.bytes[15] = static_cast<std::uint8_t>(i + 1);
        PeerChange c{keys[static_cast<std::size_t>(i)], {}, {}, {}, {}};
        if (add) {
            c.add4.push_back(a4);
            c.add6.push_back(a6);
        } else {
            c.remove4.push_back(a4);
            c.remove6.push_back(a6);
        }
        out.push_back(std::move(c));
    }
    return out;
}

void BM_UapiAllowedIpChanges(benchmark::State& state) {
    if (!lab::running_as_root()) {
        state.SkipWithError("needs root: network namespace and wireguard-go");
        return;
    }
    Lab* l = lab();
    if (!l->ok) {
        state.SkipWithError("lab setup failed (wireguard-go, wg setconf)");
        return;
    }
    const int n = static_cast<int>(state.range(0));
    const auto adds = batch(l->keys, n, true);
    const auto removes = batch(l->keys, n, false);
    auto backend = make_uapi_backend(l->wg->socket_path());
    for (auto _ : state) {
        if (auto r = backend->apply(adds); !r) {
            state.SkipWithError(r.error().message.c_str());
            return;
        }
        if (auto r = backend->apply(removes); !r) {
            state.SkipWithError(r.error().message.c_str());
            return;
        }
    }
    // 2 entries added and 2 removed per peer per iteration
    state.SetItemsProcessed(state.iterations() * n * 4);
    state.counters["changes_per_s"] = benchmark::Counter(
        static_cast<double>(state.iterations() * n * 4), benchmark::Counter::kIsRate);
}

// ---- BM_DeviceMemory

// Bytes in use from malloc: small blocks in the arena (uordblks) and large
// ones that malloc maps on their own (hblkhd).
std::size_t malloc_in_use() {
    const struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

// Live bytes and their peak since the last mark, relative to a baseline.
class HeapProbe {
  public:
    HeapProbe() : base_(g_live.load()), base_malloc_(malloc_in_use()) { mark(); }
    void mark() { g_peak = g_live.load(); }
    std::size_t live() const { return g_live.load() - base_; }
    std::size_t peak() const { return g_peak.load() - base_; }
    std::size_t malloc_live() const { return malloc_in_use() - base_malloc_; }

  private:
    std::size_t base_, base_malloc_;
};

std::uint64_t splitmix(std::uint64_t& x) {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

PublicKey bench_key(std::uint32_t i) {
    std::uint64_t state = i;
    PublicKey k;
    for (std::size_t w = 0; w < 4; w++) {
        const std::uint64_t v = splitmix(state);
        for (std::size_t b = 0; b < 8; b++)
            k.bytes[w * 8 + b] = static_cast<std::uint8_t>(v >> (8 * b));
    }
    return k;
}

// Peer i as a gateway's peer looks after its first leases: fe80::X/128, one
// /32 and one /128.
Ip6 bench_ll(std::uint32_t i) {
    Ip6 a = *parse_ip6("fe80::");
    for (int b = 0; b < 4; b++)
        a.bytes[static_cast<std::size_t>(15 - b)] = static_cast<std::uint8_t>((i + 1) >> (8 * b));
    return a;
}
Ip4 bench_ip4(std::uint32_t i) {
    return Ip4::from_u32((10u << 24) + i + 1);
}
Ip6 bench_ip6(std::uint32_t i) {
    Ip6 a = bench_ll(i);
    a.bytes[0] = 0x20, a.bytes[1] = 0x01, a.bytes[2] = 0x0d, a.bytes[3] = 0xb8;
    return a;
}

// Writes wireguard-go's answer to "get=1" for n peers and hands it on in
// 4 KiB pieces, as the UAPI backend reads it: the whole text (about 400
// bytes a peer) is never held, so it does not weigh in the figures.
template <class Sink>
void generate_uapi_get(std::uint32_t n, Sink sink) {
    constexpr std::size_t kPiece = 4096;
    std::string buf;
    buf.reserve(2 * kPiece);
    auto flush = [&](bool all) {
        while (buf.size() >= kPiece || (all && !buf.empty())) {
            const std::size_t len = std::min(kPiece, buf.size());
            sink(std::string_view(buf.data(), len));
            buf.erase(0, len);
        }
    };
    buf += "private_key=" + std::string(64, '1') + "\nlisten_port=51820\n";
    for (std::uint32_t i = 0; i < n; i++) {
        buf += "public_key=" + to_hex(bench_key(i)) + "\npreshared_key=" + std::string(64, '0') +
               "\nprotocol_version=1\nendpoint=10.200.0.2:40000\nlast_handshake_time_sec=0\n"
               "last_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\n"
               "persistent_keepalive_interval=0\nallowed_ip=" +
               to_string(bench_ll(i)) + "/128\nallowed_ip=" + to_string(bench_ip4(i)) +
               "/32\nallowed_ip=" + to_string(bench_ip6(i)) + "/128\n";
        flush(false);
    }
    buf += "errno=0\n\n";
    flush(true);
}

Result<Device> parse_generated(std::uint32_t n, std::vector<PublicKey> only = {}) {
    UapiGetParser parser;
    if (!only.empty())
        parser.keep_only(std::move(only));
    generate_uapi_get(n, [&](std::string_view piece) { (void)parser.feed(piece); });
    return parser.take();
}

// Per peer, at each step of what netd does with a device of N peers:
//   parse_*: the Device after the answer was parsed (and its peak while
//     parsing);
//   view_*: the DeviceView after it was built and the Device dropped (the
//     copy netd keeps between reads), and the peak while building it;
//   leased_set: what the LeasedSet adds with every peer holding a leased
//     /32 and /128 (as netd records the orders it applied: marks in the
//     view's peers), and its peak;
//   refresh_peak: the peak of a periodic read, as ServerNetd::refresh_device
//     does it (the view refreshed in place from the streamed answer),
//     counted from before the first read (the kept view and its leases
//     included);
//   netd_B: what netd holds for its peers between reads, view and leases
//     (the process adds about 4.4 MB of libraries and stacks);
//   removal_peak: the peak while the UAPI backend reads the lists of the
//     peers of a batch of 512 removals, the view included.
// *_malloc figures are mallinfo2 (uordblks + hblkhd); the others count what
// went through operator new, which sees the peaks.
void BM_DeviceMemory(benchmark::State& state) {
    const auto n = static_cast<std::uint32_t>(state.range(0));
    for (auto _ : state) {
        HeapProbe probe;
        auto device = parse_generated(n);
        if (!device || device->peers.size() != n) {
            state.SkipWithError("the generated answer did not parse");
            return;
        }
        const double parse_live = static_cast<double>(probe.live());
        const double parse_malloc = static_cast<double>(probe.malloc_live());
        const double parse_peak = static_cast<double>(probe.peak());
        probe.mark();
        auto view = std::make_unique<DeviceView>(std::move(device.value()));
        device = Device{};
        const double view_live = static_cast<double>(probe.live());
        const double view_malloc = static_cast<double>(probe.malloc_live());
        const double view_peak = static_cast<double>(probe.peak());
        probe.mark();
        const std::size_t before_set = probe.live();
        LeasedSet leased(*view);
        for (std::uint32_t i = 0; i < n; i++)
            leased.record(PeerChange{bench_key(i), {bench_ip4(i)}, {}, {bench_ip6(i)}, {}});
        if (leased.size() != n)
            state.SkipWithError("the leases were not recorded");
        const double set_live = static_cast<double>(probe.live() - before_set);
        const double set_peak = static_cast<double>(probe.peak() - before_set);
        const double netd_live = static_cast<double>(probe.live());
        probe.mark();
        {
            // As ServerNetd::refresh_device with the UAPI backend.
            auto read = view->refresh([&](DeviceSink& sink) -> Result<void> {
                UapiGetParser parser;
                parser.stream_to(sink);
                generate_uapi_get(n, [&](std::string_view piece) { (void)parser.feed(piece); });
                auto taken = parser.take();
                if (!taken)
                    return taken.error();
                return {};
            });
            if (!read)
                state.SkipWithError("the refresh failed");
            leased.prune();
        }
        const double refresh_peak = static_cast<double>(probe.peak());
        if (leased.size() != n)
            state.SkipWithError("the refresh lost leases");
        probe.mark();
        {
            // A batch of 512 removals: the UAPI backend reads the lists of
            // those peers only, next to the view.
            std::vector<PublicKey> removing;
            for (std::uint32_t i = 0; i < 512; i++)
                removing.push_back(bench_key(i * (n / 512)));
            auto lists = parse_generated(n, std::move(removing));
            benchmark::DoNotOptimize(lists);
        }
        const double removal_peak = static_cast<double>(probe.peak());
        benchmark::DoNotOptimize(&view->peers());
        view.reset();
        const double per_peer = n;
        state.counters["parse_B"] = parse_live / per_peer;
        state.counters["parse_malloc_B"] = parse_malloc / per_peer;
        state.counters["parse_peak_B"] = parse_peak / per_peer;
        state.counters["view_B"] = view_live / per_peer;
        state.counters["view_malloc_B"] = view_malloc / per_peer;
        state.counters["view_peak_B"] = view_peak / per_peer;
        state.counters["leased_set_B"] = set_live / per_peer;
        state.counters["leased_set_peak_B"] = set_peak / per_peer;
        state.counters["refresh_peak_B"] = refresh_peak / per_peer;
        state.counters["netd_B"] = netd_live / per_peer;
        state.counters["removal_peak_B"] = removal_peak / per_peer;
    }
}

BENCHMARK(BM_DeviceMemory)->Arg(65536)->Arg(100000)->Iterations(1)->Unit(benchmark::kMillisecond);

// BM_ClaimLeases: netd taking the leases leased restores at start, one
// claim a peer (a /32 and a /128 each), against a view of N peers.
void BM_ClaimLeases(benchmark::State& state) {
    const auto n = static_cast<std::uint32_t>(state.range(0));
    auto device = parse_generated(n);
    const Scope scope{
        {{Prefix4{*parse_ip4("10.0.0.0"), 8}}, {Prefix6{*parse_ip6("2001:db8::"), 32}}}, {}, {}};
    for (auto _ : state) {
        state.PauseTiming();
        DeviceView view(*device);
        LeasedSet leased(view);
        state.ResumeTiming();
        for (std::uint32_t i = 0; i < n; i++)
            if (!leased.claim(scope, bench_key(i), bench_ip4(i), bench_ip6(i)))
                state.SkipWithError("a claim was refused");
    }
    state.SetItemsProcessed(state.iterations() * n);
}

BENCHMARK(BM_ClaimLeases)->Arg(100000)->Unit(benchmark::kMillisecond);

BENCHMARK(BM_UapiAllowedIpChanges)
    ->Arg(100)
    ->Arg(1000)
    ->Arg(10000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

} // namespace
