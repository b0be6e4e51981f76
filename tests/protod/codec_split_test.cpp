// The parser's outcome must not depend on how the bytes were split between
// reads, and whatever parses must serialise and parse again to the same value.
#include "codec_samples.hpp"
#include "protod/codec.hpp"

#include <gtest/gtest.h>

#include <string>
#include <variant>
#include <vector>

using namespace wgd::proto;
using codec_samples::Sample;

namespace {

// Everything next() yields for the stream, as comparable text, fed in `pieces`.
template <class Message>
std::vector<std::string> outcomes(const std::vector<std::string_view>& pieces) {
    Parser<Message> parser;
    std::vector<std::string> seen;
    auto drain = [&] {
        for (;;) {
            auto result = parser.next();
            if (std::holds_alternative<NeedMore>(result))
                return;
            if (auto* error = std::get_if<ParseError>(&result)) {
                seen.push_back("error " + std::to_string(error->errnum()));
                return;
            }
            const auto& message = std::get<Message>(result);
            seen.push_back(serialize(message) +
                           (message.dialect == Dialect::legacy ? " legacy" : " modern"));
        }
    };
    for (auto piece : pieces) {
        while (!piece.empty()) {
            piece.remove_prefix(parser.feed(piece));
            drain();
            if (!seen.empty() && seen.back().starts_with("error"))
                return seen;
        }
    }
    seen.push_back("left " + std::to_string(parser.buffered()));
    return seen;
}

template <class Message>
void expect_split_independent(const Sample& sample) {
    const std::string_view bytes = sample.bytes;
    const auto whole = outcomes<Message>({bytes});
    ASSERT_FALSE(whole.empty());
    if (sample.errnum == 0)
        EXPECT_FALSE(whole.front().starts_with("error")) << sample.name;
    else
        EXPECT_EQ(whole.back(), "error " + std::to_string(sample.errnum)) << sample.name;

    std::vector<std::string_view> bytewise;
    for (std::size_t i = 0; i < bytes.size(); ++i)
        bytewise.push_back(bytes.substr(i, 1));
    EXPECT_EQ(outcomes<Message>(bytewise), whole) << sample.name << " byte by byte";
    for (std::size_t cut = 0; cut <= bytes.size(); ++cut)
        EXPECT_EQ(outcomes<Message>({bytes.substr(0, cut), bytes.substr(cut)}), whole)
            << sample.name << " cut at " << cut;
}

template <class Message, class Parse>
void expect_round_trip(const Sample& sample, Parse parse) {
    auto first = parse(sample.bytes);
    if (sample.errnum != 0) {
        ASSERT_TRUE(std::holds_alternative<ParseError>(first)) << sample.name;
        EXPECT_EQ(std::get<ParseError>(first).errnum(), sample.errnum) << sample.name;
        return;
    }
    ASSERT_TRUE(std::holds_alternative<Message>(first)) << sample.name;
    const auto text = serialize(std::get<Message>(first));
    auto second = parse(text);
    ASSERT_TRUE(std::holds_alternative<Message>(second)) << sample.name << ": " << text;
    EXPECT_EQ(std::get<Message>(second), std::get<Message>(first)) << sample.name;
    EXPECT_EQ(serialize(std::get<Message>(second)), text) << sample.name;
}

} // namespace

TEST(CodecSplit, EveryRequestSampleHasTheSameOutcomeInAnySplit) {
    for (const auto& sample : codec_samples::requests())
        expect_split_independent<Request>(sample);
}

TEST(CodecSplit, EveryResponseSampleHasTheSameOutcomeInAnySplit) {
    for (const auto& sample : codec_samples::responses())
        expect_split_independent<Response>(sample);
}

TEST(CodecSplit, AllRequestSamplesPipelinedHaveTheSameOutcomeInAnySplit) {
    std::string stream;
    for (const auto& sample : codec_samples::requests())
        if (sample.errnum == 0)
            stream += sample.bytes;
    stream += "request_ip=2\n\n";
    expect_split_independent<Request>({"pipelined", stream, 2});
}

TEST(CodecSplit, AllResponseSamplesPipelinedHaveTheSameOutcomeInAnySplit) {
    std::string stream;
    for (const auto& sample : codec_samples::responses())
        if (sample.errnum == 0)
            stream += sample.bytes;
    stream += "request_ip=1\n\n";
    expect_split_independent<Response>({"pipelined", stream, 1});
}

TEST(CodecSplit, LimitsHoldInAnySplit) {
    const std::string long_line = "x=" + std::string(4094, 'a') + "\n"; // 4097 bytes
    expect_split_independent<Request>({"line_4097", "request_ip=1\n" + long_line + "\n", 1});
    const std::string ok_line = "x=" + std::string(4093, 'a') + "\n"; // 4096 bytes
    expect_split_independent<Request>({"line_4096", "request_ip=1\n" + ok_line + "\n", 0});
}

TEST(CodecRoundTrip, EveryValidRequestSerialisesAndParsesToTheSameValue) {
    for (const auto& sample : codec_samples::requests())
        expect_round_trip<Request>(sample, [](std::string_view b) { return parse_request(b); });
}

TEST(CodecRoundTrip, EveryValidResponseSerialisesAndParsesToTheSameValue) {
    for (const auto& sample : codec_samples::responses())
        expect_round_trip<Response>(sample, [](std::string_view b) { return parse_response(b); });
}
