// The control socket of the server (privsep/control.hpp): created by netd
// before any sandbox, served by protod, which gets the listening fd.
#pragma once

#include "common/fd.hpp"
#include "common/result.hpp"

#include <string>

namespace wgd::netd {

// Creates /run/wg-dynamic (mode 0700) when missing, or closes it to all but
// root when it is root's; then binds and listens on IFACE.sock there, mode
// 0600. A socket file that a live server answers on is an error (another
// server serves IFACE); one that nobody answers on is a leftover and is
// replaced.
Result<UniqueFd> open_control_socket(const std::string& iface);

} // namespace wgd::netd
