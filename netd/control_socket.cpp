#include "netd/control_socket.hpp"

#include "privsep/control.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace wgd::netd {

namespace {

Error sys_error(const std::string& what) {
    return Error{errno, what + ": " + std::strerror(errno)};
}

} // namespace

Result<UniqueFd> open_control_socket(const std::string& iface) {
    const std::string dir = control::kRunDir;
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
        return sys_error("cannot create " + dir);
    struct stat st {};
    if (::lstat(dir.c_str(), &st) != 0)
        return sys_error("cannot read " + dir);
    // A directory of root's (the sandbox's empty directory may have made it
    // 0755) is closed to others; anyone else's is refused: a socket inside
    // would not be root's alone.
    if (!S_ISDIR(st.st_mode) || st.st_uid != 0)
        return Error{0, dir + " must be a directory owned by root"};
    if ((st.st_mode & 077) != 0 && ::chmod(dir.c_str(), 0700) != 0)
        return sys_error("cannot make " + dir + " mode 0700");

    const std::string path = control::socket_path(iface);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path)
        return Error{0, "control socket path too long: " + path};
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);

    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!probe)
        return sys_error("socket");
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0)
        return Error{0, "another wg-dynamic-server serves " + iface + " (" + path + " answers)"};
    if (errno == ECONNREFUSED) {
        if (::unlink(path.c_str()) != 0 && errno != ENOENT)
            return sys_error("cannot remove the stale " + path);
    } else if (errno != ENOENT) {
        return sys_error("cannot check " + path);
    }

    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd)
        return sys_error("socket");
    const mode_t old_mask = ::umask(0177); // the file is born 0600
    const int bound = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    const int bind_errno = errno;
    ::umask(old_mask);
    if (bound != 0) {
        errno = bind_errno;
        return sys_error("cannot bind " + path);
    }
    if (::chmod(path.c_str(), 0600) != 0 || ::listen(fd.get(), 16) != 0)
        return sys_error("cannot listen on " + path);
    return fd;
}

} // namespace wgd::netd
