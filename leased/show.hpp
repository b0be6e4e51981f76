// wg-dynamic-server show: the leases of the lease file as an operator reads
// them, like `wg show` prints peers. Formatting is pure and tested; reading
// works on copies of the files, so show never writes to the state directory.
#pragma once

#include "common/cli.hpp"
#include "common/result.hpp"
#include "leased/audit.hpp"
#include "leased/lease_record.hpp"
#include "leased/server.hpp"

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

// What the running server believes (the control socket's `show`): its
// pools, then the same lease table as above.
struct LiveShow {
    std::string iface;
    std::vector<PoolUse> pools;
    ShowInput leases; // device: the peers as leased knows them
};
// "interface: wg0 (running)", one "pool PREFIX: size N, leased N, free N"
// line per pool, an empty line, then format_table.
std::string format_live_table(const LiveShow& live);
// {"interface": ..., "running": true, "pools": [...], "leases": format_json}
std::string format_live_json(const LiveShow& live);
// The peers of the table as show's input: leases, link-local identities,
// static allowed IPs.
ShowInput show_input_of(const std::vector<PeerView>& peers, std::int64_t now_wall);

// The live leases of IFACE in DIR without writing anything; the error when
// there is no lease file or it cannot be read.
Result<std::vector<LeaseRecord>> read_leases(const std::string& state_dir,
                                             const std::string& iface);

} // namespace wgd::leased
