// What the unsandboxed `show`, `monitor` and `revoke` parse of the server's
// answer (privsep/control.hpp): the head line and the body check. A head
// that parses is never longer than its input and an error is printable.
#include "privsep/control.hpp"

#include <cstdlib>
#include <string_view>

using namespace wgd::control;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto head = parse_answer_head(text);
    if (!head)
        return 0;
    if (head->size > size)
        std::abort();
    if (!head->malformed && !head->ok &&
        (head->error.empty() || !printable(head->error) ||
         head->error.find('\n') != std::string::npos))
        std::abort();
    if (!head->malformed && head->ok && format_answer_head(true, "") != text.substr(0, head->size))
        std::abort();
    (void)printable(text.substr(head->size));
    return 0;
}
