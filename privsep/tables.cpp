#include "privsep/tables.hpp"

#include "privsep/messages.hpp"

namespace wgd::privsep::tables {

const Acceptance& server_netd_from_leased() {
    // Sizes: a refresh is empty; claims at most kMaxClaimsPerMessage of
    // 32 + 5 + 17 bytes after their count; an order fills at most a message.
    constexpr std::uint32_t kClaimsBody = 4 + msg::kMaxClaimsPerMessage * (32 + 5 + 17);
    static const Acceptance table{
        {restoring, msg::claim_leases, false, kClaimsBody, 0},
        {restoring, msg::refresh_peers, false, 0, kRefreshIntervalMs},
        {restoring, msg::apply_allowed_ips, false, kMaxBody, 0},
        {serving, msg::refresh_peers, false, 0, kRefreshIntervalMs},
        {serving, msg::apply_allowed_ips, false, kMaxBody, 0},
    };
    return table;
}

const Acceptance& client_netd_from_leased() {
    // ExchangeRequest: two optional addresses (1 + 4, 1 + 16); AddressOrder:
    // one more byte for add/remove.
    static const Acceptance table{
        {0, msg::exchange_request, false, 5 + 17, 0},
        {0, msg::address_order, false, 1 + 5 + 17, 0},
    };
    return table;
}

} // namespace wgd::privsep::tables
