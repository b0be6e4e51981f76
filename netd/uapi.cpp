// The UAPI backend: one fresh connection per operation, like wg(8).
#include "netd/netd.hpp"
#include "netd/wireguard.hpp"

#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "common/fd.hpp"

#include <cerrno>
#include <cstring>
#include <vector>

namespace wgd::netd {
namespace {

// The answer to a set is one errno= line; anything longer is not an answer.
constexpr std::size_t kMaxSetAnswer = 4096;
// Pieces of the answer are read into this much, then parsed: the answer to a
// get (300 to 370 bytes a peer, 20 to 24 MB at 65,536 peers) is never held
// whole.
constexpr std::size_t kReadBuffer = 64u << 10;
// Counted, not held: a bound on what a runaway answer can make netd build,
// three times the answer of wireguard-go's 65,536 peers at most.
constexpr std::size_t kMaxGetAnswer = 64u << 20;

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

// Sends the request, then hands the answer to `consume` piece by piece as it
// arrives, until consume answers true (the answer is complete).
template <class Consume>
Result<void> uapi_exchange(const std::string& path, std::string_view request, Consume consume) {
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
    std::vector<char> buf(kReadBuffer);
    for (;;) {
        const long n = ::recv(fd->get(), buf.data(), buf.size(), 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return make_error(errno, std::string("UAPI receive: ") + std::strerror(errno));
        }
        if (n == 0)
            return make_error(EPROTO, "UAPI: connection closed before the end of the answer");
        Result<bool> complete = consume(std::string_view(buf.data(), static_cast<std::size_t>(n)));
        if (!complete)
            return complete.error();
        if (*complete)
            return {};
    }
}

// The answer to a set, whole: it is one short line and a blank line.
Result<std::string> uapi_set_exchange(const std::string& path, std::string_view request) {
    std::string answer;
    auto exchanged = uapi_exchange(path, request, [&](std::string_view piece) -> Result<bool> {
        answer.append(piece);
        if (answer.size() > kMaxSetAnswer)
            return make_error(EMSGSIZE, "UAPI set: answer too large");
        return answer == "\n" ||
               (answer.size() >= 2 && answer.compare(answer.size() - 2, 2, "\n\n") == 0);
    });
    if (!exchanged)
        return exchanged.error();
    return answer;
}

class UapiBackend final : public WgBackend {
  public:
    explicit UapiBackend(std::string path) : path_(std::move(path)) {}

    Result<Device> read_device() override { return read(nullptr, nullptr); }
    Result<void> stream_device(DeviceSink& sink) override {
        auto r = read(nullptr, &sink);
        if (!r)
            return r.error();
        return {};
    }

    Result<void> apply(std::span<const PeerChange> changes) override {
        if (changes.empty())
            return {};
        std::vector<PublicKey> removing;
        for (const auto& c : changes)
            if (!c.remove4.empty() || !c.remove6.empty())
                removing.push_back(c.key);
        Device current;
        PublicKey transient;
        if (!removing.empty()) {
            // What the peers with removals hold now: only that is moved away.
            auto dev = read(&removing, nullptr);
            if (!dev)
                return dev.error();
            current = std::move(*dev);
            if (::getrandom(transient.bytes.data(), transient.bytes.size(), 0) !=
                static_cast<ssize_t>(transient.bytes.size()))
                return make_error(errno, std::string("getrandom: ") + std::strerror(errno));
        }
        auto request = build_uapi_set(current, changes, transient);
        if (!request)
            return request.error();
        auto reply = uapi_set_exchange(path_, *request);
        if (!reply)
            return reply.error();
        return parse_uapi_errno(*reply);
    }

    std::string_view name() const override { return "uapi"; }

  private:
    // Every peer, or only those in *only; to *sink when there is one.
    Result<Device> read(const std::vector<PublicKey>* only, DeviceSink* sink) {
        UapiGetParser parser;
        if (only)
            parser.keep_only(*only);
        if (sink)
            parser.stream_to(*sink);
        std::size_t received = 0;
        auto exchanged =
            uapi_exchange(path_, "get=1\n\n", [&](std::string_view piece) -> Result<bool> {
                received += piece.size();
                if (received > kMaxGetAnswer)
                    return make_error(EMSGSIZE, "UAPI answer too large");
                auto fed = parser.feed(piece);
                if (!fed)
                    return fed.error();
                return parser.done();
            });
        if (!exchanged)
            return exchanged.error();
        return parser.take();
    }

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

std::optional<std::vector<PeerFacts>> read_peers(const std::string& ifname) {
    auto backend = open_backend(ifname);
    if (!backend)
        return std::nullopt;
    auto device = (*backend)->read_device();
    if (!device)
        return std::nullopt;
    std::vector<PeerFacts> peers;
    peers.reserve(device->peers.size());
    for (const Peer& p : device->peers)
        peers.push_back(p.facts());
    return peers;
}

} // namespace wgd::netd
