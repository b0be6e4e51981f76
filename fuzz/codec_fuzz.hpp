// What both codec fuzz targets do, for either message type. The first byte
// seeds how the rest is split into reads: every split must give the same
// messages and errors as one read, and every message that parses must
// serialise and parse again to the same value and the same bytes.
#pragma once

#include "protod/codec.hpp"

#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <variant>
#include <vector>

namespace wgd::proto::fuzzing {

namespace detail {

template <class Message>
using Outcome = std::variant<Message, int>; // a message or the errno of the error

// Feeds the stream in pieces of the given sizes (cycled), collecting what next() yields.
template <class Message>
std::vector<Outcome<Message>> run(std::span<const std::uint8_t> bytes,
                                  const std::vector<std::size_t>& sizes) {
    Parser<Message> parser;
    std::vector<Outcome<Message>> seen;
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
                seen.emplace_back(std::get<Message>(std::move(result)));
            }
        }
    }
    seen.emplace_back(static_cast<int>(parser.buffered()) + 1000); // what was left over
    return seen;
}

template <class Message, class ParseWhole>
void check_round_trip(const Message& message, ParseWhole parse_whole) {
    const auto text = serialize(message);
    auto again = parse_whole(text);
    if (!std::holds_alternative<Message>(again) || !(std::get<Message>(again) == message))
        std::abort();
    if (serialize(std::get<Message>(again)) != text)
        std::abort();
}

} // namespace detail

// The whole target for one message type: parse_whole is parse_request or
// parse_response.
template <class Message, class ParseWhole>
int fuzz_codec(const std::uint8_t* data, std::size_t size, ParseWhole parse_whole) {
    if (size == 0)
        return 0;
    const std::span<const std::uint8_t> bytes(data + 1, size - 1);
    const auto whole = detail::run<Message>(bytes, {bytes.size() + 1});

    std::uint32_t state = data[0] * 2654435761u + 1;
    std::vector<std::size_t> sizes;
    for (int i = 0; i < 16; ++i) {
        state = state * 1664525u + 1013904223u;
        sizes.push_back(1 + (state >> 24) % (data[0] % 4 == 0 ? 4 : 64));
    }
    if (detail::run<Message>(bytes, sizes) != whole)
        std::abort();

    for (const auto& outcome : whole)
        if (const auto* message = std::get_if<Message>(&outcome))
            detail::check_round_trip(*message, parse_whole);
    return 0;
}

} // namespace wgd::proto::fuzzing
