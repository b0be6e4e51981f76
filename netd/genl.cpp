#include "netd/wireguard.hpp"
#include <cerrno>
namespace wgd::netd {
Result<std::unique_ptr<WgBackend>> make_genl_backend(const std::string& ifname) {
    return make_error(ENOTSUP, "generic netlink family wireguard not available for " + ifname);
}
} // namespace wgd::netd
