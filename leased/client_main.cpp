// leased of the client suite: the loop around ClientLeaseMachine. Events
// from netd (link state, address results) and protod (the server's answers)
// go into the machine; its actions go out as orders to netd.
#include "common/fatal.hpp"
#include "common/log.hpp"
#include "leased/client_lease.hpp"
#include "leased/clock.hpp"
#include "leased/leased.hpp"
#include "leased/random.hpp"
#include "leased/role_entry.hpp"
#include "privsep/channel.hpp"
#include "privsep/channels.hpp"
#include "privsep/messages.hpp"

#include <poll.h>

#include <cerrno>
#include <cstring>

namespace wgd::leased {

namespace {

using privsep::Channel;

// After Exit, the address removals ordered before it get this long to be
// confirmed by netd.
constexpr std::uint64_t kExitGraceMs = 2000;

std::string text_of(const std::variant<Ip4, Ip6>& a) {
    return std::visit([](auto& ip) { return to_string(ip); }, a);
}

class ClientLeased {
  public:
    ClientLeased() : machine_([this](std::uint64_t bound) { return random_.uniform(bound); }) {}
    int run();

    // netd's messages (privsep/channels.hpp: client_netd_to_leased).
    void on(msg::LinkState& s, privsep::Message&);
    void on(msg::ExchangeResult& r, privsep::Message& m);
    void on(msg::Outcome& o, privsep::Message&);
    void on(msg::Renew&, privsep::Message&);
    void on(msg::Stop&, privsep::Message&);

  private:
    // protod's (client_protod_to_leased): an ExchangeResult too, with
    // another meaning, so through a handler of its own.
    struct FromProtod {
        ClientLeased& leased;
        void on(msg::ExchangeResult& r, privsep::Message& m) { leased.on_server_answer(r, m.id); }
    };
    void execute(ClientActions actions);
    void on_netd(privsep::Message& m);
    void on_protod(privsep::Message& m);
    void on_server_answer(const msg::ExchangeResult& r, std::uint32_t exchange);
    bool send_netd(std::uint16_t type, std::uint32_t id, const msg::Bytes& body);
    int timeout_ms();

    SodiumRandom random_;
    SystemClock clock_;
    ClientLeaseMachine machine_;
    Channel netd_{UniqueFd(privsep::channels::fds::client_leased::netd)};
    Channel protod_{UniqueFd(privsep::channels::fds::client_leased::protod)};
    bool started_ = false;
    bool link_up_ = true;
    std::uint32_t next_order_ = 1;
    std::size_t orders_outstanding_ = 0;
    std::optional<int> exit_status_;
    std::uint64_t exit_deadline_ = 0;
    bool failed_ = false;
};

bool ClientLeased::send_netd(std::uint16_t type, std::uint32_t id, const msg::Bytes& body) {
    if (netd_.send(type, id, body))
        return true;
    WGD_LOG_ERROR("cannot send to netd: %s", std::strerror(errno));
    failed_ = true;
    return false;
}

void ClientLeased::execute(ClientActions actions) {
    for (ClientAction& action : actions) {
        if (auto* req = std::get_if<SendRequest>(&action)) {
            msg::ExchangeRequest r{req->want4, req->want6};
            send_netd(msg::exchange_request, static_cast<std::uint32_t>(req->exchange),
                      msg::encode(r));
        } else if (auto* add = std::get_if<AddAddress>(&action)) {
            msg::AddressOrder o{true, std::nullopt, std::nullopt};
            if (auto* a4 = std::get_if<Ip4>(&add->address))
                o.ipv4 = *a4;
            else
                o.ipv6 = std::get<Ip6>(add->address);
            WGD_LOG_INFO("adding %s", text_of(add->address).c_str());
            orders_outstanding_++;
            send_netd(msg::address_order, next_order_++, msg::encode(o));
        } else if (auto* rem = std::get_if<RemoveAddress>(&action)) {
            msg::AddressOrder o{false, std::nullopt, std::nullopt};
            if (auto* a4 = std::get_if<Ip4>(&rem->address))
                o.ipv4 = *a4;
            else
                o.ipv6 = std::get<Ip6>(rem->address);
            WGD_LOG_INFO("removing %s", text_of(rem->address).c_str());
            orders_outstanding_++;
            send_netd(msg::address_order, next_order_++, msg::encode(o));
        } else if (std::holds_alternative<SetTimer>(action)) {
            // The deadline is read from the machine at every poll.
        } else if (auto* exit = std::get_if<Exit>(&action)) {
            exit_status_ = exit->status;
            exit_deadline_ = clock_.boot_ms() + kExitGraceMs;
        } else if (auto* line = std::get_if<LogLine>(&action)) {
            switch (line->severity) {
            case Severity::debug:
                WGD_LOG_DEBUG("%s", line->text.c_str());
                break;
            case Severity::info:
                WGD_LOG_INFO("%s", line->text.c_str());
                break;
            case Severity::warning:
                WGD_LOG_WARN("%s", line->text.c_str());
                break;
            }
        }
    }
}

void ClientLeased::on_netd(privsep::Message& m) {
    namespace ch = privsep::channels;
    ch::dispatch<ch::client_netd_to_leased>(
        started_ ? ch::states::running : ch::states::before_link, m, *this);
}

void ClientLeased::on(msg::LinkState& s, privsep::Message&) {
    std::uint64_t now = clock_.boot_ms();
    bool up = s.link == msg::Link::up;
    if (s.link == msg::Link::deleted) {
        execute(machine_.link_deleted());
    } else if (!started_) {
        started_ = true;
        link_up_ = up;
        ExistingAddresses existing{s.global4, s.global6};
        execute(machine_.start(now, existing, up));
    } else if (up != link_up_) {
        link_up_ = up;
        execute(up ? machine_.link_up(now) : machine_.link_down(now));
    }
}

void ClientLeased::on(msg::ExchangeResult& r, privsep::Message& m) {
    // netd could not even make the socket.
    execute(machine_.exchange_failed(clock_.boot_ms(), m.id, r.error));
}

void ClientLeased::on(msg::Outcome& o, privsep::Message&) {
    if (orders_outstanding_ > 0)
        orders_outstanding_--;
    if (!o.ok)
        WGD_LOG_ERROR("netd could not apply an address order: %s", o.error.c_str());
}

void ClientLeased::on(msg::Renew&, privsep::Message&) {
    if (started_ && !exit_status_)
        execute(machine_.renew_now(clock_.boot_ms()));
}

void ClientLeased::on(msg::Stop&, privsep::Message&) {
    execute(machine_.stop());
    if (!exit_status_) { // stop() always ends in Exit; be safe anyway
        exit_status_ = 0;
        exit_deadline_ = clock_.boot_ms() + kExitGraceMs;
    }
}

void ClientLeased::on_protod(privsep::Message& m) {
    namespace ch = privsep::channels;
    FromProtod handler{*this};
    ch::dispatch<ch::client_protod_to_leased>(ch::states::only, m, handler);
}

void ClientLeased::on_server_answer(const msg::ExchangeResult& r, std::uint32_t exchange) {
    std::uint64_t now = clock_.boot_ms();
    if (!r.answered) {
        execute(machine_.exchange_failed(now, exchange, r.error));
        return;
    }
    // The machine checks the grant again (lengths, classes, families):
    // protod is the process that read the network.
    LeaseResponse response{exchange, r.ipv4, r.ipv6, r.leasestart, r.leasetime, r.errnum};
    execute(machine_.response(now, response));
}

int ClientLeased::timeout_ms() {
    std::uint64_t now = clock_.boot_ms();
    std::uint64_t wait = 1000;
    if (auto deadline = machine_.next_deadline())
        wait = *deadline > now ? std::min<std::uint64_t>(wait, *deadline - now) : 0;
    if (exit_status_)
        wait = std::min<std::uint64_t>(wait, 50);
    return static_cast<int>(wait);
}

int ClientLeased::run() {
    while (!failed_) {
        if (exit_status_ && (orders_outstanding_ == 0 || clock_.boot_ms() >= exit_deadline_))
            return *exit_status_;
        if (!netd_.flush()) { // what netd's socket could not take before
            WGD_LOG_ERROR("cannot send to netd: %s", std::strerror(errno));
            return 1;
        }
        pollfd fds[2] = {{netd_.fd(), netd_.poll_events(), 0}, {protod_.fd(), POLLIN, 0}};
        if (poll(fds, 2, timeout_ms()) < 0 && errno != EINTR) {
            WGD_LOG_ERROR("poll: %s", std::strerror(errno));
            return 1;
        }
        if (fds[0].revents)
            privsep::drain(netd_, "netd", 64, [&](privsep::Message& m) { on_netd(m); });
        if (fds[1].revents)
            privsep::drain(protod_, "protod", 64, [&](privsep::Message& m) { on_protod(m); });
        if (started_ && !exit_status_) {
            auto deadline = machine_.next_deadline();
            if (deadline && *deadline <= clock_.boot_ms())
                execute(machine_.timer(clock_.boot_ms()));
        }
    }
    return 1;
}

} // namespace

int client_main(const Options& options) {
    if (auto entered = enter_leased_sandbox(Side::client, options); !entered) {
        WGD_LOG_ERROR("%s", entered.error().message.c_str());
        return 1;
    }
    ClientLeased leased;
    return leased.run();
}

} // namespace wgd::leased
