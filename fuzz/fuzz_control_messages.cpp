// The bodies of the control messages between protod and leased
// (privsep/control.hpp, privsep/events.hpp): whatever decodes encodes to a
// body that decodes to the same message.
#include "privsep/control.hpp"
#include "privsep/events.hpp"

#include <cstdlib>
#include <span>

using namespace wgd;

namespace {
template <class Decode, class Encode>
void check(std::span<const std::uint8_t> body, Decode decode, Encode encode) {
    auto m = decode(body);
    if (!m)
        return;
    auto again = decode(encode(*m));
    if (!again || !(*again == *m))
        std::abort();
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1)
        return 0;
    std::span<const std::uint8_t> body(data + 1, size - 1);
    switch (data[0] % 4) {
    case 0:
        check(body, control::decode_control_query,
              [](const control::ControlQuery& q) { return control::encode(q); });
        break;
    case 1:
        check(body, control::decode_control_reply,
              [](const control::ControlReply& r) { return control::encode(r); });
        break;
    case 2:
        check(body, control::decode_monitor_state, control::encode_monitor_state);
        break;
    case 3:
        check(body, decode_events,
              [](const std::vector<LeaseEvent>& e) { return encode_events(e); });
        break;
    }
    return 0;
}
