// wg-dynamic-server show: the leases of the lease file as an operator reads
// them, like `wg show` prints peers. Formatting is pure and tested; reading
// works on copies of the files, so show never writes to the state directory.
#pragma once

#include "leased/lease_record.hpp"
#include "leased/server.hpp"
#include "privsep/cli.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace wgd::leased {

struct ShowInput {
    std::vector<LeaseRecord> leases; // live and expired; expired ones are not shown
    // The WireGuard device when it could be read (root): link-local
    // identities and reservations. nullopt: the lease file alone.
    std::optional<std::vector<PeerFacts>> device;
    std::int64_t now_wall = 0;
};

std::string format_table(const ShowInput& input);
std::string format_json(const ShowInput& input);

// The live leases of IFACE in DIR without writing anything; error text when
// there is no lease file or it cannot be read.
struct ReadLeases {
    std::vector<LeaseRecord> leases;
    std::string error;
};
ReadLeases read_leases(const std::string& state_dir, const std::string& iface);

} // namespace wgd::leased
