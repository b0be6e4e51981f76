#include "leased/role_entry.hpp"

#include "privsep/sandbox.hpp"
#include "privsep/state_files.hpp"

#include <sodium.h>

namespace wgd::leased {

Result<privsep::Loop> enter_leased_sandbox(Side side, const Options& options) {
    auto loop = privsep::Loop::open();
    if (!loop)
        return loop.error();
    privsep::SandboxSpec spec;
    spec.role = privsep::Role::leased;
    spec.side = side;
    spec.user = options.user;
    // The lease file never grows past what netd and `show` accept to open.
    if (side == Side::server)
        spec.max_file_bytes = privsep::kMaxLeaseFileBytes;
    // libsodium picks its random source before the filter forbids looking.
    if (sodium_init() < 0)
        return failure("libsodium cannot start");
    if (auto sandboxed = privsep::enter_sandbox(spec); !sandboxed)
        return make_error(sandboxed.error().code, "sandbox: " + sandboxed.error().message);
    return loop;
}

} // namespace wgd::leased
