// Allowed-IP changes per second through the UAPI backend, against a real
// wireguard-go with 10,000 peers in a namespace this benchmark makes (root
// only). Each iteration adds one IPv4 /32 and one IPv6 /128 to each of N
// peers in one batch, then removes them again in one batch (a removal reads
// the device and replaces the peers' lists: wireguard-go 0.0.20220316 has
// no single-entry removal).
#include "netd/wireguard.hpp"
#include "tests/netd/lab.hpp"

#include <benchmark/benchmark.h>

#include <cstdio>
#include <memory>
#include <random>
#include <sstream>

using namespace wgd;
using namespace wgd::netd;

namespace {

constexpr int kPeers = 10000;

struct Lab {
    testlab::Netns ns;
    std::unique_ptr<testlab::WireguardGo> wg;
    std::vector<PublicKey> keys;
    bool ok = false;

    Lab() {
        if (!ns.ok())
            return;
        wg = std::make_unique<testlab::WireguardGo>(testlab::unique_name("wb"));
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
            ok = testlab::sh("wg setconf " + wg->ifname() + " " + path) == 0;
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
    if (!testlab::is_root()) {
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

BENCHMARK(BM_UapiAllowedIpChanges)
    ->Arg(100)
    ->Arg(1000)
    ->Arg(10000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

} // namespace
