// libFuzzer target for the response parser: split reads and round trip (codec_fuzz.hpp).
#include "fuzz/codec_fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace wgd::proto;
    return fuzzing::fuzz_codec<Response>(
        data, size, [](std::string_view text) { return parse_response(text); });
}
