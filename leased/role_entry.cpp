#include "leased/role_entry.hpp"

#include "common/log.hpp"
#include "privsep/sandbox.hpp"
#include "privsep/state_files.hpp"

#include <sodium.h>

namespace wgd::leased {

bool enter_leased_sandbox(Side side, const Options& options) {
    privsep::SandboxSpec spec;
    spec.role = privsep::Role::leased;
    spec.side = side;
    spec.user = options.user;
    // The lease file never grows past what netd and `show` accept to open.
    if (side == Side::server)
        spec.max_file_bytes = privsep::kMaxLeaseFileBytes;
    // libsodium picks its random source before the filter forbids looking.
    if (sodium_init() < 0) {
        WGD_LOG_ERROR("libsodium cannot start");
        return false;
    }
    if (auto sandboxed = privsep::enter_sandbox(spec); !sandboxed) {
        WGD_LOG_ERROR("sandbox: %s", sandboxed.error().message.c_str());
        return false;
    }
    return true;
}

} // namespace wgd::leased
