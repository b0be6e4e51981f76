// netd of the server suite: preconditions, privileged opens, the children,
// then the order loop. Every order from leased is validated here before it
// reaches WireGuard (validate.hpp): leased is trusted with decisions, not
// with the kernel.
#include "common/fatal.hpp"
#include "common/log.hpp"
#include "netd/control_socket.hpp"
#include "netd/daemon.hpp"
#include "netd/netd.hpp"
#include "netd/rtnl.hpp"
#include "netd/suite.hpp"
#include "netd/validate.hpp"
#include "netd/wireguard.hpp"
#include "privsep/channel.hpp"
#include "privsep/channels.hpp"
#include "privsep/loop.hpp"
#include "privsep/messages.hpp"
#include "privsep/state_files.hpp"

#include <fcntl.h>
#include <malloc.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <map>

namespace wgd::netd {

namespace {

using privsep::Channel;

// How often, at least, the WireGuard device is read again without being
// asked: peers removed by the operator lose their leases, and a restarted
// wireguard-go (allowed IPs gone) is noticed and reconciled by leased. At
// 65,536 peers a read is a 20-24 MB answer that keeps wireguard-go busy, so the
// period also grows to kRefreshCostShare times the last read's duration: the
// reads never take more than 1/kRefreshCostShare of netd's time.
constexpr int kDeviceRefreshMs = 10'000;
constexpr int kRefreshCostShare = 100;
constexpr int kResendPeriods = 6;
// Orders are validated against netd's copy of the device (DeviceView), which
// netd keeps up to date with its own changes; reading all peers before each
// order cost more than applying it. Others may change the device too (an
// operator's `wg set`): the periodic read renews the copy, and an order reads
// it again only after a failed order or when the periodic read fell behind.

bool is_fe80_slash64(const IfAddr& a) {
    auto* p = std::get_if<Prefix6>(&a.prefix);
    return p && p->len == 64 && p->addr == Ip6{{0xfe, 0x80}};
}

bool has_link_local_identity(const Peer& peer) {
    return std::any_of(peer.allowed6.begin(), peer.allowed6.end(),
                       [](const Prefix6& p) { return p.len == 128 && p.addr.is_link_local(); });
}

msg::PoolsSnapshot snapshot(const Pools& pools, const std::vector<IfAddr>& addrs) {
    msg::PoolsSnapshot s{pools.v4, pools.v6, {}, {}};
    for (const IfAddr& a : addrs) {
        if (auto* p4 = std::get_if<Prefix4>(&a.prefix))
            s.own4.push_back(p4->addr);
        else if (auto* p6 = std::get_if<Prefix6>(&a.prefix); p6 && !p6->addr.is_link_local())
            s.own6.push_back(p6->addr);
    }
    return s;
}

// The peers as encoded PeersChunk messages, handed to emit one at a time and
// built a few hundred peers at a time: the whole list as facts, chunks and
// bytes at once would be three more copies of the device at netd's peak.
template <class Emit>
bool for_each_peers_message(const Peers& peers, Emit emit) {
    constexpr std::size_t kPeersPerGroup = 512;
    std::vector<PeerFacts> group;
    group.reserve(kPeersPerGroup);
    for (std::size_t i = 0; i < peers.size(); i++) {
        group.push_back(peers[i].facts());
        if (group.size() < kPeersPerGroup && i + 1 < peers.size())
            continue;
        for (const msg::PeersChunk& chunk : msg::split_peers(group))
            if (!emit(msg::encode(chunk)))
                return false;
        group.clear();
    }
    return true;
}

class ServerNetd {
  public:
    ServerNetd(const Options& options) : options_(options) {}
    int run(const std::vector<std::string>& args);

    // leased's messages (privsep/channels.hpp: server_leased_to_netd).
    void on(msg::RefreshPeers&, privsep::Message&);
    void on(msg::ClaimLeases& claims, privsep::Message&);
    void on(msg::ApplyAllowedIps& order, privsep::Message& m);

  private:
    void check_preconditions();
    void open_lease_files();
    // paced: for the peers' stream, one message held at a time (see
    // Channel::send_paced); queued: everything else.
    enum class Pace { queued, paced };
    bool send(std::uint16_t type, std::uint32_t id, const msg::Bytes& body,
              Pace pace = Pace::queued);
    bool send_pools();
    // The peers go to leased when asked, or when they changed since last
    // sent (a digest of what was sent says so): at 65,536 peers resending
    // an unchanged list every period went with renewal stalls of up to 2 s.
    bool send_peers(bool asked);
    // Answers leased's refresh_peers once a read has worked.
    bool send_peers_if_asked();
    // Reads the device for a refresh_peers, unless one was read for that
    // within the table's interval (then at its end, from a timer).
    void refresh_if_asked();
    bool refresh_device();
    // The periodic read: the peers go to leased if they changed (or were
    // asked for), and the next read is due refresh_period_ later.
    void refresh_periodically();
    void reread_on_sighup();
    int report_check();
    void device_read(); // after a read that worked
    void record_applied(const std::vector<PeerChange>& changes);
    void read_leased();
    void handle_leased(privsep::Message& m);
    void handle_events();

    const Options& options_;
    Rtnl rtnl_ = fail_open();
    LinkInfo link_;
    std::unique_ptr<WgBackend> wg_;
    BackendOptions backend_options_; // where IFACE.sock is looked up
    DeviceView device_;
    std::chrono::steady_clock::time_point device_read_at_;
    bool device_trusted_ = false;  // false: read it again before the next order
    bool device_held_ = false;     // false: the last read failed, the view is partial
    bool peers_asked_ = false;     // leased asked for the peers, not answered yet
    bool asked_read_done_ = false; // a read was made for a refresh_peers, at:
    std::chrono::steady_clock::time_point asked_read_at_;
    std::chrono::steady_clock::duration refresh_period_ =
        std::chrono::milliseconds(kDeviceRefreshMs);
    std::array<unsigned char, crypto_generichash_BYTES> sent_digest_{};
    bool peers_sent_ = false;
    int unchanged_ = 0; // periodic reads since the peers last went to leased
    Scope scope_;       // pools and own addresses
    LeasedSet leased_set_{device_};
    bool claims_open_ = true; // until leased's first order
    UniqueFd listener_;
    UniqueFd control_;
    UniqueFd state_dir_, lease_file_, lease_file_next_;
    Channel leased_;
    std::optional<RtnlEvents> events_;
    privsep::Loop* loop_ = nullptr;            // SuiteParent's, from the children's start
    privsep::Loop::TimerId refresh_timer_ = 0; // the periodic read
    privsep::Loop::TimerId asked_timer_ = 0;   // a refresh_peers deferred by its interval

    static Rtnl fail_open() {
        auto r = Rtnl::open();
        if (!r)
            throw Failure{"cannot open rtnetlink: " + r.error().message};
        return std::move(r.value());
    }
};

void ServerNetd::check_preconditions() {
    const std::string& ifname = options_.iface;
    if (auto root = check_root(); !root)
        throw Failure{root.error().message};
    if (auto user = check_sandbox_user(options_.user); !user)
        throw Failure{user.error().message};
    auto link = rtnl_.link_by_name(ifname);
    if (!link)
        throw Failure{"no such interface '" + ifname + "'"};
    link_ = *link;
    auto backend = open_backend(ifname);
    if (!backend)
        throw Failure{"'" + ifname + "' is not a WireGuard interface (no UAPI socket " +
                      "/var/run/wireguard/" + ifname +
                      ".sock and no kernel WireGuard device): " + backend.error().message};
    wg_ = std::move(backend.value());
    auto addrs = rtnl_.addresses(link_.ifindex);
    if (!addrs)
        throw Failure{"cannot read the addresses of " + ifname + ": " + addrs.error().message};
    if (std::none_of(addrs->begin(), addrs->end(), is_fe80_slash64))
        throw Failure{"'" + ifname + "' does not carry fe80::/64 (ip addr add fe80::/64 dev " +
                      ifname + ")"};
    const auto read_start = std::chrono::steady_clock::now();
    if (auto read = device_.refresh(*wg_); !read)
        throw Failure{"cannot read WireGuard device " + ifname + ": " + read.error().message};
    device_read();
    // The first period already follows the cost of a read (see kRefreshCostShare).
    refresh_period_ = std::max<std::chrono::steady_clock::duration>(
        refresh_period_, kRefreshCostShare * (std::chrono::steady_clock::now() - read_start));
    if (std::none_of(device_.peers().begin(), device_.peers().end(), has_link_local_identity))
        throw Failure{"no peer of '" + ifname +
                      "' has a link-local /128 allowed IP (fe80::X/128): nobody to serve"};
    auto pools = rtnl_.pools(link_.ifindex);
    if (!pools)
        throw Failure{"cannot read the routes of " + ifname + ": " + pools.error().message};
    scope_.pools = std::move(pools.value());
}

// --check: every precondition held (check_preconditions and the listening
// socket, closed again); the state directory and the lease files are looked
// at, never created. What would be served goes to standard output.
int ServerNetd::report_check() {
    const std::string& dir = options_.state_dir;
    const std::string base = dir + "/" + options_.iface + ".leases";
    struct stat st {};
    std::string files;
    if (stat(dir.c_str(), &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            throw Failure{"state directory " + dir + " is not a directory"};
        if (access(dir.c_str(), W_OK | X_OK) != 0)
            throw Failure{"state directory " + dir + ": " + std::strerror(errno)};
        for (const char* n : {".0", ".1"}) {
            const std::string path = base + n;
            if (access(path.c_str(), F_OK) != 0)
                files += " " + path + " (would be created)";
            else if (access(path.c_str(), R_OK | W_OK) != 0)
                throw Failure{"lease file " + path + ": " + std::strerror(errno)};
            else
                files += " " + path + " (present)";
        }
    } else {
        const std::size_t slash = dir.find_last_of('/');
        const std::string parent = slash == std::string::npos ? "."
                                   : slash == 0               ? "/"
                                                              : dir.substr(0, slash);
        if (stat(parent.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
            throw Failure{"state directory " + dir + " cannot be created: no directory " + parent};
        files = " " + base + ".0 and .1 (would be created, with " + dir + ")";
    }
    std::size_t served = 0;
    std::string peers;
    for (const Peer& p : device_.peers()) {
        for (const Prefix6& a : p.allowed6) {
            if (a.len == 128 && a.addr.is_link_local()) {
                peers += "  peer " + to_base64(p.key) + " " + to_string(a.addr) + "\n";
                served++;
                break;
            }
        }
    }
    std::string pools;
    for (const Prefix4& p : scope_.pools.v4)
        pools += " " + to_string(p);
    for (const Prefix6& p : scope_.pools.v6)
        pools += " " + to_string(p);
    std::printf("%s: check passed: %s would be served on [fe80::%%%s]:970\n"
                "interface: %s (index %d, %s)\n"
                "backend: %s\n"
                "peers: %zu with a link-local identity, of %zu\n%s"
                "pools:%s\n"
                "leasetime: %u s\n"
                "lease files:%s\n",
                std::string(log_name()).c_str(), options_.iface.c_str(), options_.iface.c_str(),
                options_.iface.c_str(), link_.ifindex, link_.is_up() ? "up" : "down",
                std::string(wg_->name()).c_str(), served, device_.peers().size(), peers.c_str(),
                pools.empty() ? " none (no route over the interface: nothing to lease)"
                              : pools.c_str(),
                options_.leasetime, files.c_str());
    return 0;
}

void ServerNetd::open_lease_files() {
    const std::string& dir = options_.state_dir;
    auto opened = privsep::open_state_dir(dir, true);
    if (!opened)
        throw Failure{opened.error().message};
    state_dir_ = std::move(*opened);
    auto open_file = [&](const std::string& name) {
        auto file = privsep::open_lease_file(state_dir_.get(), dir, name, true);
        if (!file)
            throw Failure{file.error().message};
        return std::move(*file);
    };
    lease_file_ = open_file(options_.iface + ".leases.0");
    lease_file_next_ = open_file(options_.iface + ".leases.1");
}

bool ServerNetd::send(std::uint16_t type, std::uint32_t id, const msg::Bytes& body, Pace pace) {
    if (pace == Pace::paced ? leased_.send_paced(type, id, body) : leased_.send(type, id, body))
        return true;
    WGD_LOG_ERROR("cannot send to leased: %s", std::strerror(errno));
    // leased is gone or stopped reading: the suite stops as failed.
    loop_->stop(1);
    return false;
}

bool ServerNetd::send_pools() {
    auto addrs = rtnl_.addresses(link_.ifindex);
    if (!addrs) {
        WGD_LOG_ERROR("cannot read the addresses of %s: %s", options_.iface.c_str(),
                      addrs.error().message.c_str());
        return true; // keep the last snapshot leased has
    }
    msg::PoolsSnapshot s = snapshot(scope_.pools, *addrs);
    scope_.own4 = s.own4;
    scope_.own6 = s.own6;
    return send(msg::pools_snapshot, 0, msg::encode(s));
}

bool ServerNetd::send_peers(bool asked) {
    crypto_generichash_state state;
    crypto_generichash_init(&state, nullptr, 0, sent_digest_.size());
    for_each_peers_message(device_.peers(), [&](const msg::Bytes& chunk) {
        crypto_generichash_update(&state, chunk.data(), chunk.size());
        return true;
    });
    std::array<unsigned char, crypto_generichash_BYTES> digest{};
    crypto_generichash_final(&state, digest.data(), digest.size());
    // Unchanged peers still go every kResendPeriods-th time: leased skips
    // its reconciliation while a batch is in flight, and must get another
    // chance even when nothing changes any more.
    if (!asked && peers_sent_ && digest == sent_digest_ && ++unchanged_ < kResendPeriods)
        return true;
    unchanged_ = 0;
    if (!send(msg::peers_begin, 0, {}))
        return false;
    // Encoded again rather than kept: sending is rare, memory is the point.
    if (!for_each_peers_message(device_.peers(), [&](const msg::Bytes& chunk) {
            return send(msg::peers_chunk, 0, chunk, Pace::paced);
        }))
        return false;
    sent_digest_ = digest;
    peers_sent_ = true;
    return send(msg::peers_end, 0, {});
}

bool ServerNetd::refresh_device() {
    // The view is read again in place, peer by peer, so that the device is
    // never held twice. After a failed read the view (partly read) is
    // untrusted, so the next order reads again (and is refused if that
    // fails too); it keeps the leases meanwhile.
    device_held_ = false;
    device_trusted_ = false;
    if (auto read = device_.refresh(*wg_); !read) {
        WGD_LOG_WARN("cannot read WireGuard device %s: %s", options_.iface.c_str(),
                     read.error().message.c_str());
        // wireguard-go may be restarting: try the backend choice again.
        if (auto backend = open_backend(options_.iface, backend_options_))
            wg_ = std::move(backend.value());
        return false;
    }
    device_read();
    return true;
}

void ServerNetd::device_read() {
    device_read_at_ = std::chrono::steady_clock::now();
    device_trusted_ = true;
    device_held_ = true;
    leased_set_.prune();
}

void ServerNetd::refresh_if_asked() {
    if (!peers_asked_)
        return;
    const auto interval = std::chrono::milliseconds(
        privsep::channels::acceptance<privsep::channels::server_leased_to_netd>().min_interval_ms(
            msg::refresh_peers));
    const auto now = std::chrono::steady_clock::now();
    if (asked_read_done_ && now - asked_read_at_ < interval) {
        loop_->arm(asked_timer_, asked_read_at_ + interval); // too soon: then
        return;
    }
    asked_read_done_ = true;
    asked_read_at_ = now;
    refresh_device();
    send_peers_if_asked();
}

void ServerNetd::refresh_periodically() {
    const auto start = std::chrono::steady_clock::now();
    const bool read = refresh_device();
    const auto end = std::chrono::steady_clock::now();
    refresh_period_ = std::max<std::chrono::steady_clock::duration>(
        std::chrono::milliseconds(kDeviceRefreshMs), kRefreshCostShare * (end - start));
    loop_->arm(refresh_timer_, end + refresh_period_);
    if (!read)
        return;
    if (peers_asked_)
        send_peers_if_asked();
    else
        send_peers(false);
}

// SIGHUP: the device and the routes are read at once and leased gets
// both, then logs one status line. Nothing stops and nothing is lost.
void ServerNetd::reread_on_sighup() {
    WGD_LOG_INFO("SIGHUP: reading %s and its routes again", options_.iface.c_str());
    auto now_link = rtnl_.link_by_name(options_.iface);
    if (now_link && now_link->ifindex == link_.ifindex && now_link->is_up()) {
        if (auto pools = rtnl_.pools(link_.ifindex))
            scope_.pools = std::move(pools.value());
        else
            WGD_LOG_WARN("cannot read the routes of %s: %s", options_.iface.c_str(),
                         pools.error().message.c_str());
    } else {
        // As with route events: routes that left with the link are no pools
        // removed by the operator.
        WGD_LOG_INFO("%s is down or gone: its pools are kept", options_.iface.c_str());
    }
    const bool read = refresh_device();
    if (send_pools() && (!read || send_peers(true)))
        send(msg::status, 0, {});
    if (read)
        peers_asked_ = false; // a refresh leased asked for is answered too
}

bool ServerNetd::send_peers_if_asked() {
    if (!peers_asked_ || !device_held_)
        return true;
    peers_asked_ = false;
    return send_peers(true);
}

// What WireGuard now holds after an order that it accepted.
void ServerNetd::record_applied(const std::vector<PeerChange>& changes) {
    for (const PeerChange& c : changes) {
        if (!device_.record(c))
            device_trusted_ = false;
        leased_set_.record(c);
    }
}

void ServerNetd::handle_leased(privsep::Message& m) {
    namespace ch = privsep::channels;
    ch::dispatch<ch::server_leased_to_netd>(
        claims_open_ ? ch::states::restoring : ch::states::serving, m, *this);
}

void ServerNetd::on(msg::RefreshPeers&, privsep::Message&) {
    // Never the empty view of a failed read: leased would take it for
    // every peer gone. It is answered after the next read that works,
    // and a read happens at most once per the table's interval, however
    // often leased asks (the loop answers a deferred one).
    peers_asked_ = true;
    refresh_if_asked();
}

void ServerNetd::on(msg::ApplyAllowedIps& order, privsep::Message& m) {
    claims_open_ = false;
    leased_set_.close_claims();
    std::vector<PeerChange> changes = std::move(order.changes);
    msg::AllowedIpsApplied answer;
    answer.status.assign(changes.size(), 0);
    bool stale = !device_trusted_ ||
                 std::chrono::steady_clock::now() - device_read_at_ > 2 * refresh_period_;
    if (stale && !refresh_device()) {
        WGD_LOG_ERROR("order %u from leased: cannot read the WireGuard device", m.id);
        answer.status.assign(changes.size(), EIO);
    } else {
        // Each change on its own: one that breaks a rule is refused whole and
        // logged, the others go to WireGuard together.
        std::vector<PeerChange> apply;
        std::vector<std::size_t> applied_at;
        OrderCheck check(device_, scope_, leased_set_);
        for (std::size_t i = 0; i < changes.size(); i++) {
            auto verdict = check.check(changes[i]);
            if (!verdict) {
                answer.status[i] = static_cast<std::uint16_t>(verdict.error().code);
                WGD_LOG_ERROR("refused change %zu of order %u from leased: %s", i, m.id,
                              verdict.error().message.c_str());
                continue;
            }
            PeerChange& c = verdict.value();
            if (c.add4.empty() && c.remove4.empty() && c.add6.empty() && c.remove6.empty())
                continue; // nothing to change: accepted as it is
            apply.push_back(std::move(c));
            applied_at.push_back(i);
        }
        if (!apply.empty()) {
            if (auto applied = wg_->apply(apply); !applied) {
                WGD_LOG_ERROR("cannot change allowed IPs of %s: %s", options_.iface.c_str(),
                              applied.error().message.c_str());
                for (std::size_t i : applied_at)
                    answer.status[i] = static_cast<std::uint16_t>(
                        applied.error().code > 0 ? applied.error().code : EIO);
                device_trusted_ = false; // most often the device changed under us
            } else {
                record_applied(apply);
                WGD_LOG_DEBUG("applied allowed-IP changes of %zu peers", apply.size());
            }
        }
    }
    if (send(msg::allowed_ips_applied, m.id, msg::encode(answer)))
        send_peers_if_asked();
}

void ServerNetd::on(msg::ClaimLeases& claims, privsep::Message&) {
    if (!device_held_ && !refresh_device()) {
        WGD_LOG_ERROR("cannot read the WireGuard device: %zu lease claims not taken",
                      claims.claims.size());
        return;
    }
    std::size_t taken = 0;
    for (const msg::LeaseClaim& c : claims.claims) {
        auto r = leased_set_.claim(scope_, c.key, c.ipv4, c.ipv6);
        if (!r) {
            WGD_LOG_WARN("lease claim from leased not taken: %s", r.error().message.c_str());
            continue;
        }
        taken++;
        // The trace of what the lease file alone made removable (DESIGN.md).
        auto note = [&](const auto& a) {
            WGD_LOG_INFO("lease claim of %s for peer %s: outside every pool, taken for its "
                         "removal only",
                         to_string(a).c_str(), to_base64(c.key).c_str());
        };
        if (r->removal_only4)
            note(*r->removal_only4);
        if (r->removal_only6)
            note(*r->removal_only6);
    }
    WGD_LOG_DEBUG("%zu of %zu lease claims taken", taken, claims.claims.size());
}

void ServerNetd::handle_events() {
    auto batch = events_->read();
    if (!batch) {
        WGD_LOG_WARN("rtnetlink events: %s", batch.error().message.c_str());
        return;
    }
    bool pools_changed = batch->resync_needed;
    for (const RtnlEvent& ev : batch->events) {
        if (auto* link = std::get_if<LinkEvent>(&ev)) {
            if (link->deleted) {
                WGD_LOG_INFO("interface %s was deleted; stopping", options_.iface.c_str());
                loop_->stop(0);
                return;
            }
            if (link->link.is_up() != link_.is_up()) {
                WGD_LOG_INFO("interface %s is %s", options_.iface.c_str(),
                             link->link.is_up() ? "up" : "down");
                // Back up: its routes may differ from those before.
                if (link->link.is_up())
                    pools_changed = true;
            }
            link_ = link->link;
        } else if (auto* route = std::get_if<RouteEvent>(&ev)) {
            pools_changed = true;
            std::string text = std::visit([](auto& p) { return to_string(p); }, route->prefix);
            WGD_LOG_INFO("pool %s %s", text.c_str(), route->added ? "added" : "removed");
        } else if (std::holds_alternative<AddrEvent>(ev)) {
            pools_changed = true; // the server's own addresses are not leased
        }
    }
    if (pools_changed) {
        // Routes vanish with a link that goes down or away (wireguard-go
        // stopping, `ip link set down`): that is no pool removed by the
        // operator, and revoking every lease for it would lose them all. The
        // pools stand until the link is up again and its routes say otherwise.
        auto now_link = rtnl_.link_by_name(options_.iface);
        if (!now_link || now_link->ifindex != link_.ifindex || !now_link->is_up()) {
            WGD_LOG_DEBUG("route change while %s is down or gone: pools kept",
                          options_.iface.c_str());
            return;
        }
        auto pools = rtnl_.pools(link_.ifindex);
        if (pools)
            scope_.pools = std::move(pools.value());
        send_pools();
    }
}

void ServerNetd::read_leased() {
    for (int i = 0; i < 64 && !loop_->stopping(); i++) {
        auto r = leased_.recv();
        if (auto* e = std::get_if<privsep::RecvError>(&r)) {
            if (*e != privsep::RecvError::would_block) {
                WGD_LOG_ERROR("leased channel: %s", privsep::to_string(*e));
                loop_->stop(1);
            }
            return;
        }
        handle_leased(std::get<privsep::Message>(r));
    }
}

int ServerNetd::run(const std::vector<std::string>& args) {
    if (sodium_init() < 0) // for the digest of the peers sent to leased
        throw Failure{"libsodium cannot start"};
    check_preconditions();
    auto listener = listen_link_local(link_.ifindex, options_.iface);
    if (!listener)
        throw Failure{listener.error().message};
    if (options_.check)
        return report_check(); // the listener closes with it: nothing is left
    // Before the lease files: a second server of IFACE stops here (port 970
    // above, or the control socket), having touched nothing.
    auto control = open_control_socket(options_.iface);
    if (!control)
        throw Failure{control.error().message};
    control_ = std::move(control.value());
    listener_ = std::move(listener.value());
    auto events = RtnlEvents::open(link_.ifindex);
    if (!events)
        throw Failure{"cannot subscribe to rtnetlink events: " + events.error().message};
    events_.emplace(std::move(events.value()));
    // Last of the preconditions: a start that fails before it leaves no
    // state directory and no empty lease files behind.
    open_lease_files();

    SuiteParent parent(options_.foreground);
    loop_ = &parent.loop();
    auto [netd_end, leased_netd_end] = privsep::make_channel_pair();
    auto [leased_protod_end, protod_end] = privsep::make_channel_pair();
    namespace fds = privsep::channels::fds;
    parent.start_children(args,
                          {{fds::server_leased::netd, leased_netd_end},
                           {fds::server_leased::protod, leased_protod_end},
                           {fds::server_leased::lease_file, lease_file_},
                           {fds::server_leased::lease_file_next, lease_file_next_}},
                          {{fds::server_protod::leased, protod_end},
                           {fds::server_protod::listener, listener_},
                           {fds::server_protod::control, control_}},
                          {{netd_end, leased_}});
    state_dir_.reset(); // opened for the lease files alone: not kept either

    // Chrooted into the UAPI sockets' directory (UAPI backend) or an empty
    // one: from here on the socket is /IFACE.sock, and is looked up there
    // again when wireguard-go restarts.
    const bool uapi = wg_->name() == "uapi";
    privsep::NetdSandbox how;
    if (uapi)
        how.uapi_dir = backend_options_.uapi_dir;
    if (!parent.enter_sandbox(Side::server, how))
        return 1;
    backend_options_.uapi_dir = "";
    if (uapi)
        wg_ = make_uapi_backend("/" + options_.iface + ".sock");
    WGD_LOG_INFO("serving %s on [fe80::%%%s]:970 (%s backend, %zu peers, %zu+%zu pools)",
                 options_.iface.c_str(), options_.iface.c_str(), std::string(wg_->name()).c_str(),
                 device_.peers().size(), scope_.pools.v4.size(), scope_.pools.v6.size());

    refresh_timer_ = loop_->add_timer([this] { refresh_periodically(); });
    asked_timer_ = loop_->add_timer([this] { refresh_if_asked(); });
    if (!loop_->watch_channel(leased_, "leased", [this] { read_leased(); }) ||
        !loop_->watch(events_->fd(), EPOLLIN, [this](std::uint32_t) { handle_events(); })) {
        WGD_LOG_ERROR("epoll_ctl: %s", std::strerror(errno));
        loop_->stop(1);
    }
    if (send_pools())
        send_peers(true);
    loop_->arm(refresh_timer_, std::chrono::steady_clock::now() + refresh_period_);
    return parent.run(
        [this](const auto&) {
            WGD_LOG_ERROR("stopping the suite");
            loop_->stop(1);
        },
        [this](int sig) {
            if (sig == SIGHUP) {
                reread_on_sighup();
            } else {
                WGD_LOG_INFO("signal %d: stopping", sig);
                loop_->stop(0);
            }
        });
}

} // namespace

int server_main(const Options& options, const std::vector<std::string>& args) {
    // The device's big blocks (index tables, read buffers) are mapped on
    // their own and given back when freed. By default glibc raises this
    // threshold after the first such free, and later tables then come from
    // the heap between the peers of the next read, which kept both resident.
    mallopt(M_MMAP_THRESHOLD, 64 * 1024);
    mallopt(M_TRIM_THRESHOLD, 256 * 1024);
    return run_netd(options, args, [](const Options& settled, const auto& child_args) {
        ServerNetd netd(settled);
        return netd.run(child_args);
    });
}

} // namespace wgd::netd
