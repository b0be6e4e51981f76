// netd of the client suite: preconditions, the children, then the orders of
// leased: a socket connecting to the server (handed to protod, which alone
// speaks to it) and the leased addresses on IFACE, each order re-checked.
#include "common/fatal.hpp"
#include "common/log.hpp"
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

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>

namespace wgd::netd {

namespace {

using privsep::Channel;

// After SIGTERM leased removes its addresses; it gets this long to do so.
constexpr auto kStopGrace = std::chrono::seconds(3);

const Ip6 kServerAddress{{0xfe, 0x80}}; // fe80::

msg::LinkState link_state(const LinkInfo& link, const std::vector<IfAddr>& addrs) {
    msg::LinkState s;
    s.link = link.is_up() ? msg::Link::up : msg::Link::down;
    for (const IfAddr& a : addrs) {
        if (auto* p4 = std::get_if<Prefix4>(&a.prefix); p4 && is_leasable(p4->addr))
            s.global4.push_back(*p4);
        else if (auto* p6 = std::get_if<Prefix6>(&a.prefix); p6 && is_leasable(p6->addr))
            s.global6.push_back(*p6);
    }
    return s;
}

class ClientNetd {
  public:
    explicit ClientNetd(const Options& options) : options_(options) {}
    int run(const std::vector<std::string>& args);

    // leased's messages (privsep/channels.hpp: client_leased_to_netd).
    void on(msg::ExchangeRequest& request, privsep::Message& m);
    void on(msg::AddressOrder& order, privsep::Message& m);

  private:
    void check_preconditions();
    int report_check();
    void read_leased();
    void on_leased(privsep::Message& m);
    void start_exchange(std::uint32_t id, const msg::ExchangeRequest& request);
    void on_address_order(std::uint32_t id, const msg::AddressOrder& order);
    void restore_routes(const std::vector<SavedRoute>& before, std::uint8_t family);
    void on_events();
    void on_exits(const std::vector<privsep::ChildExit>& exits);
    void on_signal(int sig, privsep::Supervisor& supervisor);
    bool send_leased(std::uint16_t type, std::uint32_t id, const msg::Bytes& body);
    void send_link_state();

    const Options& options_;
    std::optional<Rtnl> rtnl_;
    LinkInfo link_;
    Ip6 lladdr_;
    std::string server_peer_;  // its public key, base64
    std::string backend_name_; // "uapi" or "genl"
    Channel leased_, protod_;
    std::optional<RtnlEvents> events_;
    privsep::Loop* loop_ = nullptr;            // SuiteParent's, from the children's start
    privsep::Loop::TimerId stop_deadline_ = 0; // leased's kStopGrace after a stop
    bool stopping_ = false;                    // a stop signal came: leased is leaving
    // What was on IFACE at start, and what netd added since.
    std::optional<ClientAddresses> addresses_;
};

void ClientNetd::check_preconditions() {
    const std::string& ifname = options_.iface;
    if (auto root = check_root(); !root)
        throw Failure{root.error().message};
    if (auto user = check_sandbox_user(options_.user); !user)
        throw Failure{user.error().message};
    auto rtnl = Rtnl::open();
    if (!rtnl)
        throw Failure{"cannot open rtnetlink: " + rtnl.error().message};
    rtnl_.emplace(std::move(rtnl.value()));
    auto link = rtnl_->link_by_name(ifname);
    if (!link)
        throw Failure{"no such interface '" + ifname + "'"};
    link_ = *link;
    auto backend = open_backend(ifname);
    if (!backend)
        throw Failure{"'" + ifname + "' is not a WireGuard interface (no UAPI socket " +
                      "/var/run/wireguard/" + ifname + ".sock and no kernel WireGuard device)"};
    auto addrs = rtnl_->addresses(link_.ifindex);
    if (!addrs)
        throw Failure{"cannot read the addresses of " + ifname + ": " + addrs.error().message};
    std::vector<Prefix6> link_locals;
    for (const IfAddr& a : *addrs)
        if (auto* p6 = std::get_if<Prefix6>(&a.prefix); p6 && p6->addr.is_link_local())
            link_locals.push_back(*p6);
    if (link_locals.empty())
        throw Failure{"'" + ifname + "' has no link-local address (ip addr add fe80::X/128 dev " +
                      ifname + ")"};
    if (link_locals.size() > 1)
        throw Failure{"'" + ifname + "' has " + std::to_string(link_locals.size()) +
                      " link-local addresses; it must have exactly one, a /128 (set addrgenmode " +
                      "none before bringing it up)"};
    if (link_locals[0].len != 128)
        throw Failure{"the link-local address of '" + ifname + "' is " + to_string(link_locals[0]) +
                      ", not a /128"};
    lladdr_ = link_locals[0].addr;
    std::vector<Prefix> at_start;
    for (const IfAddr& a : *addrs)
        at_start.push_back(a.prefix);
    addresses_.emplace(std::move(at_start));
    auto device = (*backend)->read_device();
    if (!device)
        throw Failure{"cannot read WireGuard device " + ifname + ": " + device.error().message};
    auto server = std::find_if(device->peers.begin(), device->peers.end(), [](const Peer& p) {
        return std::any_of(p.allowed6.begin(), p.allowed6.end(),
                           [](const Prefix6& a) { return a.contains(kServerAddress); });
    });
    if (server == device->peers.end())
        throw Failure{"no peer of '" + ifname +
                      "' has allowed IPs covering fe80::/128 (the server)"};
    server_peer_ = to_base64(server->key);
    backend_name_ = std::string((*backend)->name());
}

bool ClientNetd::send_leased(std::uint16_t type, std::uint32_t id, const msg::Bytes& body) {
    if (leased_.send(type, id, body))
        return true;
    WGD_LOG_ERROR("cannot send to leased: %s", std::strerror(errno));
    loop_->stop(1);
    return false;
}

void ClientNetd::send_link_state() {
    auto addrs = rtnl_->addresses(link_.ifindex);
    std::vector<IfAddr> none;
    send_leased(msg::link_state, 0, msg::encode(link_state(link_, addrs ? *addrs : none)));
}

void ClientNetd::start_exchange(std::uint32_t id, const msg::ExchangeRequest& request) {
    auto fail = [&](const std::string& why) {
        msg::ExchangeResult r;
        r.error = why;
        send_leased(msg::exchange_result, id, msg::encode(r));
    };
    UniqueFd fd(socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd)
        return fail(std::string("socket: ") + std::strerror(errno));
    int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    // An abortive close leaves no TIME_WAIT on [LLADDR]:970, which would
    // otherwise block the next exchange from the same address and port.
    linger lg{1, 0};
    setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    sockaddr_in6 src{};
    src.sin6_family = AF_INET6;
    src.sin6_port = htons(970);
    src.sin6_addr = *reinterpret_cast<const in6_addr*>(lladdr_.bytes.data());
    src.sin6_scope_id = static_cast<std::uint32_t>(link_.ifindex);
    if (bind(fd.get(), reinterpret_cast<sockaddr*>(&src), sizeof src) != 0)
        return fail("bind [" + to_string(lladdr_) + "%" + options_.iface +
                    "]:970: " + std::strerror(errno));
    sockaddr_in6 dst{};
    dst.sin6_family = AF_INET6;
    dst.sin6_port = htons(970);
    dst.sin6_addr = *reinterpret_cast<const in6_addr*>(kServerAddress.bytes.data());
    dst.sin6_scope_id = static_cast<std::uint32_t>(link_.ifindex);
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0 &&
        errno != EINPROGRESS)
        return fail(std::string("connect [fe80::%") + options_.iface +
                    "]:970: " + std::strerror(errno));
    if (!protod_.send(msg::exchange_request, id, msg::encode(request), fd.get())) {
        WGD_LOG_ERROR("cannot send to protod: %s", std::strerror(errno));
        loop_->stop(1);
    }
}

void ClientNetd::on_address_order(std::uint32_t id, const msg::AddressOrder& order) {
    Prefix prefix =
        order.ipv4 ? Prefix(Prefix4{*order.ipv4, 32}) : Prefix(Prefix6{*order.ipv6, 128});
    std::string text = std::visit([](auto& p) { return to_string(p); }, prefix);
    msg::Outcome outcome{true, ""};
    auto valid = validate_address_order(link_.ifindex, link_.ifindex, prefix);
    auto action = valid ? addresses_->check(order.add, prefix)
                        : Result<ClientAddresses::Action>(valid.error());
    if (!action) {
        outcome = {false, "refused: " + action.error().message};
        WGD_LOG_ERROR("refused address order %u from leased (%s %s): %s", id,
                      order.add ? "add" : "remove", text.c_str(), action.error().message.c_str());
    } else if (*action == ClientAddresses::Action::nothing) {
        WGD_LOG_INFO("%s is on %s already", text.c_str(), options_.iface.c_str());
    } else if (order.add) {
        auto r = rtnl_->add_address(link_.ifindex, prefix);
        if (!r && r.error().code == EEXIST) {
            // Put there by someone else since netd started: not netd's.
            WGD_LOG_INFO("%s is on %s already", text.c_str(), options_.iface.c_str());
        } else if (!r) {
            outcome = {false, r.error().message};
        } else {
            addresses_->record(true, prefix);
            WGD_LOG_INFO("added %s to %s", text.c_str(), options_.iface.c_str());
        }
    } else {
        const std::uint8_t family = order.ipv4 ? AF_INET : AF_INET6;
        auto before = rtnl_->routes_through(link_.ifindex, family);
        if (!before)
            WGD_LOG_WARN("cannot list the routes through %s before removing %s: %s",
                         options_.iface.c_str(), text.c_str(), before.error().message.c_str());
        auto r = rtnl_->remove_address(link_.ifindex, prefix);
        if (!r && r.error().code != EADDRNOTAVAIL) {
            outcome = {false, r.error().message};
        } else {
            addresses_->record(false, prefix);
            WGD_LOG_INFO("removed %s from %s", text.c_str(), options_.iface.c_str());
        }
        if (before)
            restore_routes(*before, family);
    }
    if (!outcome.ok && action)
        WGD_LOG_ERROR("address %s on %s: %s", text.c_str(), options_.iface.c_str(),
                      outcome.error.c_str());
    send_leased(msg::address_result, id, msg::encode(outcome));
}

// Removing the last IPv4 address of IFACE makes the kernel delete every
// IPv4 route through it, in every table (wg-quick's full-tunnel default
// route in its own table among them). Those routes are listed before each
// removal and the ones gone afterwards are put back as they were: the
// interface keeps carrying what the operator routed into it, and a later
// lease finds the routes in place. Only routes through IFACE that were
// there a moment before are re-created, each from the kernel's own listing.
void ClientNetd::restore_routes(const std::vector<SavedRoute>& before, std::uint8_t family) {
    auto after = rtnl_->routes_through(link_.ifindex, family);
    if (!after) {
        WGD_LOG_WARN("cannot list the routes through %s: %s", options_.iface.c_str(),
                     after.error().message.c_str());
        return;
    }
    for (const SavedRoute& route : routes_to_restore(before, *after)) {
        auto r = rtnl_->add_route(route);
        if (!r && r.error().code != EEXIST)
            WGD_LOG_WARN("cannot put back the route %s through %s: %s", describe(route).c_str(),
                         options_.iface.c_str(), r.error().message.c_str());
        else
            WGD_LOG_INFO("put back the route %s through %s that the kernel removed with the "
                         "address",
                         describe(route).c_str(), options_.iface.c_str());
    }
}

void ClientNetd::on_leased(privsep::Message& m) {
    namespace ch = privsep::channels;
    ch::dispatch<ch::client_leased_to_netd>(ch::states::only, m, *this);
}

void ClientNetd::on(msg::ExchangeRequest& request, privsep::Message& m) {
    start_exchange(m.id, request);
}

void ClientNetd::on(msg::AddressOrder& order, privsep::Message& m) {
    on_address_order(m.id, order);
}

void ClientNetd::on_events() {
    auto batch = events_->read();
    if (!batch) {
        WGD_LOG_WARN("rtnetlink events: %s", batch.error().message.c_str());
        return;
    }
    bool changed = batch->resync_needed;
    for (const RtnlEvent& ev : batch->events) {
        if (auto* link = std::get_if<LinkEvent>(&ev)) {
            if (link->deleted) {
                WGD_LOG_INFO("interface %s was deleted; exiting", options_.iface.c_str());
                loop_->stop(0);
                return;
            }
            if (link->link.is_up() != link_.is_up()) {
                WGD_LOG_INFO("interface %s is %s", options_.iface.c_str(),
                             link->link.is_up() ? "up" : "down");
                changed = true;
            }
            link_ = link->link;
        }
    }
    if (changed)
        send_link_state();
}

void ClientNetd::read_leased() {
    for (int i = 0; i < 64 && !loop_->stopping(); i++) {
        auto r = leased_.recv();
        if (auto* e = std::get_if<privsep::RecvError>(&r)) {
            if (*e == privsep::RecvError::would_block)
                return;
            if (stopping_ && *e == privsep::RecvError::peer_closed) {
                // leased is leaving after the stop; the supervisor tells.
                loop_->read_channel(leased_, false);
                return;
            }
            WGD_LOG_ERROR("leased channel: %s", privsep::to_string(*e));
            loop_->stop(1);
            return;
        }
        on_leased(std::get<privsep::Message>(r));
    }
}

void ClientNetd::on_exits(const std::vector<privsep::ChildExit>& exits) {
    for (const auto& exit : exits) {
        if (!stopping_) {
            WGD_LOG_ERROR("stopping the suite"); // reap() logged the exit
            loop_->stop(1);
        } else if (exit.role == "leased") {
            // After a stop, leased leaving with 0 is the plan; protod
            // leaves when leased's channel closes, also expected.
            bool clean = WIFEXITED(exit.status) && WEXITSTATUS(exit.status) == 0;
            loop_->stop(clean ? 0 : 1);
        }
    }
}

void ClientNetd::on_signal(int sig, privsep::Supervisor& supervisor) {
    if (stopping_)
        return;
    if (sig == SIGHUP) {
        WGD_LOG_INFO("SIGHUP: renewing the lease now");
        send_leased(msg::renew, 0, {});
        return;
    }
    WGD_LOG_INFO("signal %d: removing the leased addresses and stopping", sig);
    supervisor.expect_exits();
    stopping_ = true;
    // After a stop protod leaves first: not an error, and no longer read.
    loop_->read_channel(protod_, false);
    send_leased(msg::stop, 0, {});
    loop_->arm(stop_deadline_, std::chrono::steady_clock::now() + kStopGrace);
}

// --check: every precondition held; what the client would ask for goes to
// standard output. Nothing is bound, added or removed.
int ClientNetd::report_check() {
    msg::LinkState state;
    if (auto addrs = rtnl_->addresses(link_.ifindex))
        state = link_state(link_, *addrs);
    // The inception rule of the lease machine: the first /32 and /128
    // global address on IFACE are asked for again, any address otherwise.
    auto first4 = std::find_if(state.global4.begin(), state.global4.end(),
                               [](const Prefix4& p) { return p.len == 32; });
    auto first6 = std::find_if(state.global6.begin(), state.global6.end(),
                               [](const Prefix6& p) { return p.len == 128; });
    const std::string want4 = first4 != state.global4.end()
                                  ? to_string(*first4) + " (already on the interface)"
                                  : "any IPv4 address";
    const std::string want6 = first6 != state.global6.end()
                                  ? to_string(*first6) + " (already on the interface)"
                                  : "any IPv6 address";
    std::printf("%s: check passed: %s would request a lease from [fe80::%%%s]:970\n"
                "interface: %s (index %d, %s)\n"
                "backend: %s\n"
                "link-local address: %s\n"
                "server peer: %s\n"
                "would ask for: %s, %s\n",
                std::string(log_name()).c_str(), options_.iface.c_str(), options_.iface.c_str(),
                options_.iface.c_str(), link_.ifindex, link_.is_up() ? "up" : "down",
                backend_name_.c_str(), to_string(lladdr_).c_str(), server_peer_.c_str(),
                want4.c_str(), want6.c_str());
    return 0;
}

int ClientNetd::run(const std::vector<std::string>& args) {
    check_preconditions();
    if (options_.check)
        return report_check();
    auto events = RtnlEvents::open(link_.ifindex);
    if (!events)
        throw Failure{"cannot subscribe to rtnetlink events: " + events.error().message};
    events_.emplace(std::move(events.value()));
    SuiteParent parent(options_.foreground);
    loop_ = &parent.loop();
    auto [netd_leased, leased_netd] = privsep::make_channel_pair();
    auto [netd_protod, protod_netd] = privsep::make_channel_pair();
    auto [leased_protod, protod_leased] = privsep::make_channel_pair();
    namespace fds = privsep::channels::fds;
    parent.start_children(
        args,
        {{fds::client_leased::netd, leased_netd}, {fds::client_leased::protod, leased_protod}},
        {{fds::client_protod::leased, protod_leased}, {fds::client_protod::netd, protod_netd}},
        {{netd_leased, leased_}, {netd_protod, protod_}});
    if (!parent.enter_sandbox(Side::client))
        return 1;
    WGD_LOG_INFO("requesting a lease on %s from [fe80::%%%s]:970 as %s", options_.iface.c_str(),
                 options_.iface.c_str(), to_string(lladdr_).c_str());

    stop_deadline_ = loop_->add_timer([this] {
        WGD_LOG_ERROR("leased did not stop in time");
        loop_->stop(1);
    });
    // protod never writes to netd: only its end closing is expected.
    auto protod_spoke = [this] {
        WGD_LOG_ERROR("protod's channel to netd closed or spoke out of turn");
        loop_->stop(1);
    };
    if (!loop_->watch_channel(protod_, "protod", protod_spoke) ||
        !loop_->watch_channel(leased_, "leased", [this] { read_leased(); }) ||
        !loop_->watch(events_->fd(), EPOLLIN, [this](std::uint32_t) { on_events(); })) {
        WGD_LOG_ERROR("epoll_ctl: %s", std::strerror(errno));
        loop_->stop(1);
    }
    send_link_state();
    return parent.run([this](const auto& exits) { on_exits(exits); },
                      [&](int sig) { on_signal(sig, parent.supervisor()); });
}

} // namespace

int client_main(const Options& options, const std::vector<std::string>& args) {
    return run_netd(options, args, [](const Options& settled, const auto& child_args) {
        ClientNetd netd(settled);
        return netd.run(child_args);
    });
}

} // namespace wgd::netd
