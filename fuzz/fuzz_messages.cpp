// Every decoder of privsep/messages.hpp on arbitrary bodies: whatever decodes
// must encode back to exactly the same bytes (the format has one spelling).
#include "privsep/messages.hpp"

#include <cstdlib>

using namespace wgd::msg;

namespace {
template <class Decode>
void check(Body body, Decode decode) {
    auto m = decode(body);
    if (!m)
        return;
    Bytes again = encode(*m);
    if (again.size() != body.size() || !std::equal(again.begin(), again.end(), body.begin()))
        std::abort();
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1)
        return 0;
    Body body(data + 1, size - 1);
    switch (data[0] % 12) {
    case 0:
        check(body, decode_query_lease);
        break;
    case 1:
        check(body, decode_lease_answer);
        break;
    case 2:
        check(body, decode_peers_chunk);
        break;
    case 3:
        check(body, decode_pools_snapshot);
        break;
    case 4:
        check(body, decode_apply_allowed_ips);
        break;
    case 5:
        check(body, decode_outcome);
        break;
    case 6:
        check(body, decode_link_state);
        break;
    case 7:
        check(body, decode_exchange_request);
        break;
    case 8:
        check(body, decode_exchange_result);
        check(body, decode_address_order);
        break;
    case 9:
        check(body, decode_query_leases);
        check(body, decode_lease_answers);
        break;
    case 10:
        check(body, decode_allowed_ips_applied);
        break;
    case 11:
        check(body, decode_claim_leases);
        break;
    }
    return 0;
}
