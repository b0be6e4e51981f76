// The UAPI backend: one fresh connection per operation, like wg(8).
#include "netd/wireguard.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "privsep/fd.hpp"

#include <cerrno>
#include <cstring>

namespace wgd::netd {
namespace {

constexpr std::size_t kMaxReply = 64u << 20; // 10,000 peers answer about 3 MB

Result<UniqueFd> connect_uapi(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path))
        return make_error(ENAMETOOLONG, "UAPI socket path too long");
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd)
        return make_error(errno, std::string("UAPI socket: ") + std::strerror(errno));
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0)
        return make_error(errno, "UAPI connect " + path + ": " + std::strerror(errno));
    return fd;
}

// Sends the request and reads the answer up to its terminating blank line.
Result<std::string> uapi_exchange(const std::string& path, std::string_view request) {
    auto fd = connect_uapi(path);
    if (!fd)
        return fd.error();
    std::size_t off = 0;
    while (off < request.size()) {
        const long n = ::send(fd->get(), request.data() + off, request.size() - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return make_error(errno, std::string("UAPI send: ") + std::strerror(errno));
        }
        off += static_cast<std::size_t>(n);
    }
    std::string reply;
    char buf[65536];
    for (;;) {
        if (reply.size() >= 2 && reply.compare(reply.size() - 2, 2, "\n\n") == 0)
            return reply;
        if (reply == "\n")
            return reply;
        const long n = ::recv(fd->get(), buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return make_error(errno, std::string("UAPI receive: ") + std::strerror(errno));
        }
        if (n == 0)
            return make_error(EPROTO, "UAPI: connection closed before the end of the answer");
        reply.append(buf, static_cast<std::size_t>(n));
        if (reply.size() > kMaxReply)
            return make_error(EMSGSIZE, "UAPI answer too large");
    }
}

class UapiBackend final : public WgBackend {
  public:
    explicit UapiBackend(std::string path) : path_(std::move(path)) {}

    Result<Device> read_device() override {
        auto reply = uapi_exchange(path_, "get=1\n\n");
        if (!reply)
            return reply.error();
        return parse_uapi_get(*reply);
    }

    Result<void> apply(std::span<const PeerChange> changes) override {
        if (changes.empty())
            return {};
        bool removals = false;
        for (const auto& c : changes)
            removals = removals || !c.remove4.empty() || !c.remove6.empty();
        Device current;
        if (removals) {
            // no single-entry removal in this UAPI: read the lists to replace them
            auto dev = read_device();
            if (!dev)
                return dev.error();
            current = std::move(*dev);
        }
        auto request = build_uapi_set(current, changes);
        if (!request)
            return request.error();
        auto reply = uapi_exchange(path_, *request);
        if (!reply)
            return reply.error();
        return parse_uapi_errno(*reply);
    }

    std::string_view name() const override { return "uapi"; }

  private:
    std::string path_;
};

} // namespace

std::unique_ptr<WgBackend> make_uapi_backend(const std::string& socket_path) {
    return std::make_unique<UapiBackend>(socket_path);
}

Result<std::unique_ptr<WgBackend>> open_backend(const std::string& ifname,
                                                const BackendOptions& options) {
    if (ifname.empty() || ifname.size() > 15 || ifname.find('/') != std::string::npos ||
        ifname == "." || ifname == "..")
        return make_error(EINVAL, "invalid interface name");
    const std::string path = options.uapi_dir + "/" + ifname + ".sock";
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
        if (auto fd = connect_uapi(path); fd)
            return make_uapi_backend(path);
    }
    return make_genl_backend(ifname);
}

} // namespace wgd::netd
