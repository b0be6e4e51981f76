// libFuzzer target for the request parser. The first byte seeds how the rest is
// split between feeds; the outcome must equal that of feeding it whole, and
// every request that parses must serialise and parse again to the same value.
#include "protod/codec.hpp"

#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <variant>
#include <vector>

using namespace wgd::proto;

namespace {

using Outcome = std::variant<Request, int>; // a message or the errno of the error

// Feeds the stream in pieces of the given sizes (cycled), collecting what next() yields.
std::vector<Outcome> run(std::span<const std::uint8_t> bytes,
                         const std::vector<std::size_t>& sizes) {
    RequestParser parser;
    std::vector<Outcome> seen;
    std::size_t piece = 0;
    while (!bytes.empty()) {
        auto chunk = bytes.first(std::min(bytes.size(), sizes[piece++ % sizes.size()]));
        while (!chunk.empty()) {
            const auto taken = parser.feed(chunk);
            chunk = chunk.subspan(taken);
            bytes = bytes.subspan(taken);
            if (parser.buffered() > max_message_bytes)
                std::abort();
            for (;;) {
                auto result = parser.next();
                if (std::holds_alternative<NeedMore>(result))
                    break;
                if (auto* error = std::get_if<ParseError>(&result)) {
                    seen.emplace_back(error->errnum());
                    return seen;
                }
                seen.emplace_back(std::get<Request>(std::move(result)));
            }
        }
    }
    seen.emplace_back(static_cast<int>(parser.buffered()) + 1000); // what was left over
    return seen;
}

void check_round_trip(const Request& message) {
    const auto text = serialize(message);
    auto again = parse_request(text);
    if (!std::holds_alternative<Request>(again) || !(std::get<Request>(again) == message))
        std::abort();
    if (serialize(std::get<Request>(again)) != text)
        std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0)
        return 0;
    const std::span<const std::uint8_t> bytes(data + 1, size - 1);
    const auto whole = run(bytes, {bytes.size() + 1});

    std::uint32_t state = data[0] * 2654435761u + 1;
    std::vector<std::size_t> sizes;
    for (int i = 0; i < 16; ++i) {
        state = state * 1664525u + 1013904223u;
        sizes.push_back(1 + (state >> 24) % (data[0] % 4 == 0 ? 4 : 64));
    }
    if (run(bytes, sizes) != whole)
        std::abort();

    for (const auto& outcome : whole)
        if (const auto* message = std::get_if<Request>(&outcome))
            check_round_trip(*message);
    return 0;
}
