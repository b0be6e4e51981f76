// The kernel backend: generic netlink family "wireguard".
#include "netd/genl_codec.hpp"
#include "netd/nl_io.hpp"

#include <libmnl/libmnl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace wgd::netd {
namespace {

constexpr int kDumpAttempts = 10;

class GenlBackend final : public WgBackend {
  public:
    GenlBackend(mnl_socket* sock, std::uint16_t family, std::string ifname)
        : sock_(sock), family_(family), ifname_(std::move(ifname)),
          seq_(static_cast<std::uint32_t>(::getpid()) << 8) {
        utsname u{};
        removal_ =
            ::uname(&u) == 0 ? genl::removal_for_kernel(u.release) : genl::Removal::transient_peer;
    }
    ~GenlBackend() override { mnl_socket_close(sock_); }
    GenlBackend(const GenlBackend&) = delete;
    GenlBackend& operator=(const GenlBackend&) = delete;

    Result<Device> read_device() override { return read(nullptr, nullptr); }
    Result<void> stream_device(DeviceSink& sink) override {
        auto r = read(nullptr, &sink);
        if (!r)
            return r.error();
        return {};
    }

    // Every peer, or only those in *only; to *sink when there is one.
    Result<Device> read(const std::vector<PublicKey>* only, DeviceSink* sink) {
        for (int attempt = 0; attempt < kDumpAttempts; ++attempt) {
            std::array<std::uint8_t, 64> buf{};
            const std::size_t len = genl::build_get_device(buf, family_, ++seq_, ifname_);
            genl::DeviceDumpDecoder decoder;
            if (only)
                decoder.keep_only(*only);
            if (sink)
                decoder.stream_to(*sink);
            bool interrupted = false;
            auto r = nl::exchange(
                sock_, std::span(buf.data(), len),
                [&](const nlmsghdr* nlh) { return decoder.feed(nlh); }, &interrupted);
            if (!r)
                return r.error();
            if (!interrupted) {
                decoder.finish();
                return decoder.take();
            }
        }
        return make_error(EAGAIN, "wireguard device dump kept changing");
    }

    Result<void> apply(std::span<const PeerChange> changes) override {
        if (changes.empty())
            return {};
        Device current;
        PublicKey transient;
        bool removes = false;
        if (removal_ == genl::Removal::transient_peer) {
            // What the peers with removals hold now: only that is moved away.
            std::vector<PublicKey> removing;
            for (const auto& c : changes)
                if (!c.remove4.empty() || !c.remove6.empty())
                    removing.push_back(c.key);
            if (!removing.empty()) {
                auto dev = read(&removing, nullptr);
                if (!dev)
                    return dev.error();
                current = std::move(*dev);
                if (::getrandom(transient.bytes.data(), transient.bytes.size(), 0) !=
                    static_cast<ssize_t>(transient.bytes.size()))
                    return make_error(errno, std::string("getrandom: ") + std::strerror(errno));
                removes = true;
            }
        }
        auto messages = genl::build_set_device(family_, seq_ + 1, ifname_, current, changes,
                                               removal_, transient);
        if (!messages)
            return messages.error();
        seq_ += static_cast<std::uint32_t>(messages->size());
        for (const auto& m : *messages) {
            if (auto r = nl::exchange(
                    sock_, m, [](const nlmsghdr*) -> Result<void> { return {}; }, nullptr);
                !r) {
                // A message stops at its first failing peer: the transient
                // peer may still hold addresses it took.
                if (removes) {
                    auto gone = genl::build_remove_peer(family_, ++seq_, ifname_, transient);
                    (void)nl::exchange(
                        sock_, gone, [](const nlmsghdr*) -> Result<void> { return {}; }, nullptr);
                }
                return r;
            }
        }
        return {};
    }

    std::string_view name() const override { return "genl"; }

  private:
    mnl_socket* sock_;
    std::uint16_t family_;
    std::string ifname_;
    std::uint32_t seq_;
    genl::Removal removal_;
};

} // namespace

Result<std::unique_ptr<WgBackend>> make_genl_backend(const std::string& ifname) {
    mnl_socket* sock = mnl_socket_open2(NETLINK_GENERIC, SOCK_CLOEXEC);
    if (!sock)
        return make_error(errno, std::string("generic netlink socket: ") + std::strerror(errno));
    if (mnl_socket_bind(sock, 0, MNL_SOCKET_AUTOPID) < 0) {
        const int code = errno;
        mnl_socket_close(sock);
        return make_error(code, std::string("generic netlink bind: ") + std::strerror(code));
    }
    std::array<std::uint8_t, 64> buf{};
    const std::size_t len = genl::build_get_family(buf, static_cast<std::uint32_t>(::getpid()));
    std::optional<std::uint16_t> family;
    auto r = nl::exchange(
        sock, std::span(buf.data(), len),
        [&](const nlmsghdr* nlh) -> Result<void> {
            if (auto id = genl::parse_family_id(nlh))
                family = id;
            return {};
        },
        nullptr);
    if (!r || !family) {
        mnl_socket_close(sock);
        return make_error(r ? EBADMSG : r.error().code,
                          "no generic netlink family wireguard (no kernel WireGuard): " +
                              (r ? std::string("no family id") : r.error().message));
    }
    return std::unique_ptr<WgBackend>(std::make_unique<GenlBackend>(sock, *family, ifname));
}

} // namespace wgd::netd
