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
#include "privsep/loop.hpp"
#include "privsep/messages.hpp"

#include <cerrno>
#include <chrono>
#include <cstring>

namespace wgd::leased {

namespace {

using privsep::Channel;

// After Exit, the address removals ordered before it get this long to be
// confirmed by netd.
constexpr std::chrono::milliseconds kExitGrace{2000};

std::string text_of(const std::variant<Ip4, Ip6>& a) {
    return std::visit([](auto& ip) { return to_string(ip); }, a);
}

class ClientLeased {
  public:
    explicit ClientLeased(privsep::Loop loop)
        : loop_(std::move(loop)),
          machine_([this](std::uint64_t bound) { return random_.uniform(bound); }) {}
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
    // Ends the loop with `status` once no order is outstanding, or after
    // kExitGrace.
    void exit_after_orders(int status);
    void on_deadline();
    void end_round();

    privsep::Loop loop_;
    privsep::Loop::TimerId deadline_timer_ = 0; // the machine's next deadline
    privsep::Loop::TimerId exit_timer_ = 0;     // the end of the exit's grace
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
};

bool ClientLeased::send_netd(std::uint16_t type, std::uint32_t id, const msg::Bytes& body) {
    if (netd_.send(type, id, body))
        return true;
    WGD_LOG_ERROR("cannot send to netd: %s", std::strerror(errno));
    loop_.stop(1);
    return false;
}

void ClientLeased::exit_after_orders(int status) {
    exit_status_ = status;
    loop_.disarm(deadline_timer_);
    loop_.arm_after(exit_timer_, kExitGrace);
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
            // The deadline is read from the machine after every round.
        } else if (auto* exit = std::get_if<Exit>(&action)) {
            exit_after_orders(exit->status);
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
    if (!exit_status_) // stop() always ends in Exit; be safe anyway
        exit_after_orders(0);
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

// Armed by end_round only while the machine runs and no exit is under way.
void ClientLeased::on_deadline() {
    const std::uint64_t now = clock_.boot_ms();
    if (auto deadline = machine_.next_deadline(); deadline && *deadline <= now)
        execute(machine_.timer(now));
}

void ClientLeased::end_round() {
    if (exit_status_) {
        if (orders_outstanding_ == 0)
            loop_.stop(*exit_status_);
        return;
    }
    auto deadline = machine_.next_deadline();
    if (started_ && deadline)
        loop_.arm_after(deadline_timer_, wait_until(clock_, *deadline));
    else
        loop_.disarm(deadline_timer_);
}

int ClientLeased::run() {
    auto read_netd = [this] {
        privsep::drain(netd_, "netd", 64, [this](privsep::Message& m) { on_netd(m); });
    };
    auto read_protod = [this] {
        privsep::drain(protod_, "protod", 64, [this](privsep::Message& m) { on_protod(m); });
    };
    if (!loop_.watch_channel(netd_, "netd", read_netd) ||
        !loop_.watch_channel(protod_, "protod", read_protod)) {
        WGD_LOG_ERROR("epoll_ctl: %s", std::strerror(errno));
        return 1;
    }
    deadline_timer_ = loop_.add_timer([this] { on_deadline(); });
    exit_timer_ = loop_.add_timer([this] { loop_.stop(*exit_status_); });
    loop_.after_each_round([this] { end_round(); });
    return loop_.run();
}

} // namespace

int client_main(const Options& options) {
    auto loop = enter_leased_sandbox(Side::client, options);
    if (!loop) {
        WGD_LOG_ERROR("%s", loop.error().message.c_str());
        return 1;
    }
    ClientLeased leased(std::move(*loop));
    return leased.run();
}

} // namespace wgd::leased
