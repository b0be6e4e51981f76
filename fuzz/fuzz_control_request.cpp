// The control socket's request parser (privsep/control.hpp) on arbitrary
// bytes, as protod runs it on a client's: whatever parses is written back by
// format_request and parses again to the same request.
#include "privsep/control.hpp"

#include <cstdlib>
#include <string_view>

using namespace wgd::control;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    std::size_t end = request_end(text);
    if (end == 0 || end > size)
        return 0;
    auto parsed = parse_request(text.substr(0, end));
    auto* request = std::get_if<Request>(&parsed);
    if (request == nullptr)
        return 0;
    std::string again = format_request(*request);
    if (request_end(again) != again.size())
        std::abort();
    auto reparsed = parse_request(again);
    auto* same = std::get_if<Request>(&reparsed);
    if (same == nullptr || !(*same == *request))
        std::abort();
    return 0;
}
