// Cost of the codec on the server's hot path: parsing a typical request and
// serialising a typical response.
#include "protod/codec.hpp"

#include <benchmark/benchmark.h>

#include <string_view>
#include <variant>

using namespace wgd::proto;

static void BM_ParseTypicalRequest(benchmark::State& state) {
    constexpr std::string_view bytes = "request_ip=1\nipv4=0.0.0.0/32\nipv6=::/128\n\n";
    for (auto _ : state) {
        RequestParser parser;
        parser.feed(bytes);
        auto result = parser.next();
        if (!std::holds_alternative<Request>(result))
            state.SkipWithError("typical request did not parse");
        benchmark::DoNotOptimize(result);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes.size()));
}
BENCHMARK(BM_ParseTypicalRequest);

static void BM_SerializeTypicalResponse(benchmark::State& state) {
    Response response;
    response.ipv4 = wgd::parse_ip4("192.168.47.11");
    response.ipv6 = wgd::parse_ip6("2001:db8::17");
    response.leasestart = 1764201600;
    response.leasetime = 3600;
    for (auto _ : state) {
        auto text = serialize(response);
        benchmark::DoNotOptimize(text);
    }
}
BENCHMARK(BM_SerializeTypicalResponse);
