// leased of the server suite: the loop around LeaseServer. It turns queries
// from protod into plans, has netd apply their allowed-IP changes, makes
// them durable in the lease file with one sync per batch (group commit),
// and only then answers. Nothing is answered that is not applied and
// written; a failed step aborts the batch and leaves the table as it was.
#include "common/fatal.hpp"
#include "common/log.hpp"
#include "leased/audit.hpp"
#include "leased/batch_answers.hpp"
#include "leased/clock.hpp"
#include "leased/lease_file.hpp"
#include "leased/leased.hpp"
#include "leased/malloc_tuning.hpp"
#include "leased/random.hpp"
#include "leased/role_entry.hpp"
#include "leased/server.hpp"
#include "leased/show.hpp"
#include "privsep/channel.hpp"
#include "privsep/channels.hpp"
#include "privsep/control.hpp"
#include "privsep/loop.hpp"
#include "privsep/messages.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <set>

namespace wgd::leased {

namespace {

using privsep::Channel;

// A grant batch must fit in one message to netd, so that netd validates
// and applies it whole: a plan changes at most four addresses of one peer.
constexpr std::size_t kMaxPlansPerBatch = 256;
// A source that is not a known peer makes leased read the device again, at
// most this often; queries wait for that refresh.
constexpr std::uint64_t kRefreshIntervalMs = 1000;

struct Query {
    std::uint32_t conn = 0;
    msg::QueryLease query;
};

Want want_of(const msg::QueryLease& q) {
    Want w;
    if (!q.ipv4 && !q.ipv6) {
        w.no_address_key = true;
        return w;
    }
    if (q.ipv4) {
        w.v4 = q.ipv4->is_unspecified() ? Want::Kind::Any : Want::Kind::Specific;
        w.ipv4 = *q.ipv4;
    }
    if (q.ipv6) {
        w.v6 = q.ipv6->is_unspecified() ? Want::Kind::Any : Want::Kind::Specific;
        w.ipv6 = *q.ipv6;
    }
    return w;
}

// One unit of work that goes to netd and then to the lease file.
struct Batch {
    std::uint32_t id = 0;
    std::vector<std::pair<std::uint32_t, Plan>> plans; // connection, plan
    LeaseEvents maintenance;                           // expiry, revocation, restore
    BatchAnswers answers;                              // netd's, change by change
    std::optional<EventKind> ended_kind;               // what maintenance.ended are
    std::vector<std::uint32_t> revokers;               // control connections to answer
};

// kChangeBudget, or what WGD_CHANGE_BUDGET says (leased/budget.hpp).
ChangeRate change_rate() {
    const char* text = std::getenv("WGD_CHANGE_BUDGET");
    if (!text)
        return kChangeBudget;
    if (auto rate = parse_change_rate(text)) {
        WGD_LOG_INFO("budget of address changes per peer: %u, then one every %u s (from "
                     "WGD_CHANGE_BUDGET)",
                     rate->burst, rate->interval_s);
        return *rate;
    }
    WGD_LOG_WARN("WGD_CHANGE_BUDGET=%s is not BURST/SECONDS: ignored", text);
    return kChangeBudget;
}

class ServerLeased {
  public:
    ServerLeased(const Options& options, privsep::Loop loop, OpenedLeaseFile opened,
                 ChangeRate rate)
        : loop_(std::move(loop)), opened_(std::move(opened)),
          server_(random_, clock_, options.leasetime, rate), rate_(rate), iface_(options.iface) {}
    // file_ points into opened_.
    ServerLeased(const ServerLeased&) = delete;
    ServerLeased& operator=(const ServerLeased&) = delete;
    int run();

    // netd's messages (privsep/channels.hpp: server_netd_to_leased).
    void on(msg::PoolsSnapshot& s, privsep::Message&);
    void on(msg::PeersBegin&, privsep::Message&);
    void on(msg::PeersChunk& chunk, privsep::Message&);
    void on(msg::PeersEnd&, privsep::Message&);
    void on(msg::Status&, privsep::Message&);
    void on(msg::AllowedIpsApplied& applied, privsep::Message& m);
    // protod's (server_protod_to_leased).
    void on(msg::QueryLeases& queries, privsep::Message&);
    void on(control::ControlQuery& q, privsep::Message& m);
    void on(msg::MonitorState& state, privsep::Message&);

  private:
    bool send_netd(std::uint16_t type, std::uint32_t id, const msg::Bytes& body);
    bool send_protod(std::uint16_t type, std::uint32_t id, const msg::Bytes& body);
    void on_netd(privsep::Message& m);
    void on_protod(privsep::Message& m);
    void on_pools(const msg::PoolsSnapshot& s);
    void log_status();
    void on_peers_chunk(msg::PeersChunk& chunk);
    void on_peers_end();
    void maybe_start_serving();
    void on_applied(std::uint32_t id, const msg::AllowedIpsApplied& applied);
    // Before any order: the leases restored, and the addresses the restore
    // removes, so that netd knows them for leased (ClaimLeases).
    void send_claims_for(const LeaseEvents& restore);
    void handle_query(const Query& q);
    void refuse(std::uint32_t conn);
    void answer(std::uint32_t conn, const Plan& plan);
    void answer_error(std::uint32_t conn);
    void send_answers(); // what this round decided, in as few messages as fit
    void queue_maintenance(LeaseEvents events, const char* why,
                           std::optional<EventKind> ended_kind = std::nullopt);
    // Counts, monitors and logs e; quiet: at debug whatever its kind.
    void emit(const LeaseEvent& e, bool quiet = false);
    void send_events();
    void on_control(std::uint32_t conn, const control::ControlQuery& q);
    void reply(std::uint32_t conn, bool ok, std::string_view text);
    // false: the peer's plan is in flight, try again after its batch.
    bool revoke(std::uint32_t conn, const PublicKey& peer);
    std::vector<PoolUse> pool_use(const std::vector<PeerView>& peers) const;
    void start_next_batch();
    void finish_batch();
    bool write_records(const std::vector<LeaseRecord>& records);
    void compact_a_little();
    void on_timer();
    void end_round();

    privsep::Loop loop_;
    privsep::Loop::TimerId timer_ = 0;
    OpenedLeaseFile opened_;
    LeaseFile* file_ = &opened_.file;
    SodiumRandom random_;
    SystemClock clock_;
    LeaseServer server_;
    ChangeRate rate_;
    Channel netd_{UniqueFd(privsep::channels::fds::server_leased::netd)};
    Channel protod_{UniqueFd(privsep::channels::fds::server_leased::protod)};
    msg::LeaseAnswers answers_;
    Counters counters_;
    bool monitors_ = false; // protod has monitors listening: send them the events
    std::vector<LeaseEvent> monitor_events_;
    std::vector<std::pair<std::uint32_t, PublicKey>> deferred_revokes_;
    const std::string iface_;

    std::set<Prefix4> pools4_;
    std::set<Prefix6> pools6_;
    bool have_pools_ = false;
    bool have_peers_ = false;
    bool serving_ = false;
    // Between PeersBegin and PeersEnd nothing but netd's chunks is read
    // (protod's channel is only written), no batch starts and no lease
    // expires: the view is taken in as if at once.
    bool receiving_peers_ = false;
    // Leases missing from allowed IPs, found chunk by chunk; queued at the
    // end only when no batch was under way at the beginning (see on_peers_chunk).
    bool reconciling_ = false;
    LeaseEvents reconcile_fixes_;
    std::size_t replayed_ = 0;

    std::vector<Query> waiting_for_facts_; // before the first facts
    std::vector<Query> waiting_for_peers_; // unknown source: after the next refresh
    bool refresh_in_flight_ = false;
    std::uint64_t last_refresh_ms_ = 0;
    std::deque<Query> deferred_; // the peer had a plan in flight

    Batch next_; // being filled
    std::optional<Batch> in_flight_;
    std::deque<Batch> maintenance_;
    std::uint32_t next_batch_id_ = 1;
};

bool ServerLeased::send_netd(std::uint16_t type, std::uint32_t id, const msg::Bytes& body) {
    if (netd_.send(type, id, body))
        return true;
    WGD_LOG_ERROR("cannot send to netd: %s", std::strerror(errno));
    loop_.stop(1);
    return false;
}

bool ServerLeased::send_protod(std::uint16_t type, std::uint32_t id, const msg::Bytes& body) {
    if (protod_.send(type, id, body))
        return true;
    WGD_LOG_ERROR("cannot send to protod: %s", std::strerror(errno));
    loop_.stop(1);
    return false;
}

void ServerLeased::on_netd(privsep::Message& m) {
    namespace ch = privsep::channels;
    ch::dispatch<ch::server_netd_to_leased>(
        receiving_peers_ ? ch::states::in_peers : ch::states::idle, m, *this);
}

void ServerLeased::on(msg::PoolsSnapshot& s, privsep::Message&) {
    on_pools(s);
}

void ServerLeased::on(msg::PeersBegin&, privsep::Message&) {
    receiving_peers_ = true;
    loop_.read_channel(protod_, false);
    loop_.disarm(timer_);
    server_.begin_peers();
    // A batch under way may be moving exactly the addresses a chunk
    // shows missing: reconcile only from a quiet start.
    reconciling_ = serving_ && !in_flight_ && next_.plans.empty();
    reconcile_fixes_ = {};
}

void ServerLeased::on(msg::PeersChunk& chunk, privsep::Message&) {
    on_peers_chunk(chunk);
}

void ServerLeased::on(msg::PeersEnd&, privsep::Message&) {
    receiving_peers_ = false;
    loop_.read_channel(protod_, true);
    on_peers_end();
}

void ServerLeased::on(msg::Status&, privsep::Message&) {
    log_status();
}

void ServerLeased::on(msg::AllowedIpsApplied& applied, privsep::Message& m) {
    on_applied(m.id, applied);
}

// One line on SIGHUP, once netd sent the device and the routes it read again.
void ServerLeased::log_status() {
    std::string pools;
    for (const auto& p : pools4_)
        pools += (pools.empty() ? "" : " ") + to_string(p);
    for (const auto& p : pools6_)
        pools += (pools.empty() ? "" : " ") + to_string(p);
    WGD_LOG_INFO("status: %zu peers, pools %s, %zu leases (%zu IPv4, %zu IPv6)",
                 server_.peer_count(), pools.empty() ? "none" : pools.c_str(),
                 server_.lease_count(), server_.lease_count4(), server_.lease_count6());
}

void ServerLeased::on_pools(const msg::PoolsSnapshot& s) {
    std::set<Prefix4> new4;
    std::set<Prefix6> new6;
    for (const auto& p : s.pools4)
        new4.insert(p.masked());
    for (const auto& p : s.pools6)
        new6.insert(p.masked());
    server_.set_own_addresses(s.own4, s.own6);
    for (const auto& p : new4)
        if (!pools4_.count(p))
            server_.add_prefix(p);
    for (const auto& p : new6)
        if (!pools6_.count(p))
            server_.add_prefix(p);
    for (const auto& p : pools4_)
        if (!new4.count(p))
            queue_maintenance(server_.remove_prefix(p), "pool removed", EventKind::revoke);
    for (const auto& p : pools6_)
        if (!new6.count(p))
            queue_maintenance(server_.remove_prefix(p), "pool removed", EventKind::revoke);
    pools4_ = std::move(new4);
    pools6_ = std::move(new6);
    have_pools_ = true;
    maybe_start_serving();
}

void ServerLeased::on_peers_chunk(msg::PeersChunk& chunk) {
    const std::vector<PeerFacts>& peers = chunk.peers;
    server_.add_peers(peers);
    if (!reconciling_)
        return;
    // A lease whose address is missing from its peer's allowed IPs
    // (wireguard-go restarted, an operator's `wg set`) is put back.
    for (const PeerFacts& p : peers)
        if (PeerChange fix = server_.missing_leases(p); !fix.empty())
            reconcile_fixes_.changes.push_back(std::move(fix));
}

void ServerLeased::on_peers_end() {
    queue_maintenance(server_.end_peers(), "peers removed", EventKind::revoke);
    have_peers_ = true;
    refresh_in_flight_ = false;
    // end_peers may have ended leases seen missing (their address is now
    // another peer's): those are not put back.
    std::erase_if(reconcile_fixes_.changes,
                  [&](PeerChange& fix) { return !server_.keep_leased(fix); });
    if (!reconcile_fixes_.changes.empty())
        WGD_LOG_WARN("%zu peers lost leased allowed IPs (WireGuard restarted?); putting them back",
                     reconcile_fixes_.changes.size());
    queue_maintenance(std::move(reconcile_fixes_), "reconcile");
    reconcile_fixes_ = {};
    maybe_start_serving();
    auto waiting = std::move(waiting_for_peers_);
    waiting_for_peers_.clear();
    for (const Query& q : waiting) {
        if (server_.lookup_peer(q.query.source))
            handle_query(q);
        else
            refuse(q.conn);
    }
}

void ServerLeased::maybe_start_serving() {
    if (serving_ || !have_pools_ || !have_peers_)
        return;
    serving_ = true;
    LeaseEvents restore = server_.restore_expected();
    if (int err = server_.restore_error(); err != 0)
        fatal("lease file: cannot read a record to restore: %s", std::strerror(err));
    send_claims_for(restore);
    queue_maintenance(std::move(restore), "restore");
    WGD_LOG_INFO("serving: %zu leases restored from %zu records", server_.lease_count(), replayed_);
    auto waiting = std::move(waiting_for_facts_);
    waiting_for_facts_.clear();
    for (const Query& q : waiting)
        handle_query(q);
}

void ServerLeased::on_protod(privsep::Message& m) {
    namespace ch = privsep::channels;
    ch::dispatch<ch::server_protod_to_leased>(ch::states::only, m, *this);
}

void ServerLeased::on(control::ControlQuery& q, privsep::Message& m) {
    on_control(m.id, q);
}

void ServerLeased::on(msg::MonitorState& state, privsep::Message&) {
    monitors_ = state.monitors > 0;
    if (!monitors_)
        monitor_events_.clear();
}

void ServerLeased::on(msg::QueryLeases& queries, privsep::Message&) {
    // protod parsed untrusted bytes: check again what only a sound parser
    // lets through, so a compromised protod cannot ask for a multicast lease.
    // All are checked before any is handled: a bad one refuses the message.
    for (const auto& [conn, q] : queries.items) {
        if (!q.source.is_link_local() ||
            (q.ipv4 && !q.ipv4->is_unspecified() && !is_leasable(*q.ipv4)) ||
            (q.ipv6 && !q.ipv6->is_unspecified() && !is_leasable(*q.ipv6))) {
            fatal("protod sent a query that no valid request can produce");
        }
    }
    for (const auto& [conn, q] : queries.items) {
        Query query{conn, q};
        if (!serving_)
            waiting_for_facts_.push_back(query);
        else
            handle_query(query);
    }
}

void ServerLeased::handle_query(const Query& q) {
    auto peer = server_.lookup_peer(q.query.source);
    if (!peer) {
        waiting_for_peers_.push_back(q);
        std::uint64_t now = clock_.boot_ms();
        if (!refresh_in_flight_ && now >= last_refresh_ms_ + kRefreshIntervalMs) {
            refresh_in_flight_ = true;
            last_refresh_ms_ = now;
            send_netd(msg::refresh_peers, 0, {});
        }
        return;
    }
    if (q.query.invalid != 0) {
        // An invalid request of a peer: it gets its error (protod writes
        // it), nothing is decided. A source that is no peer was refused above.
        msg::LeaseAnswer a{};
        a.errnum = q.query.invalid;
        answers_.items.push_back({q.conn, a});
        if (answers_.items.size() >= msg::kMaxItemsPerMessage)
            send_answers();
        return;
    }
    auto plan = server_.plan(*peer, want_of(q.query));
    if (!plan) {
        deferred_.push_back(q); // this peer's previous plan is still in flight
        return;
    }
    if (plan->unchanged) {
        // What the lease file holds already: no netd order, no write, no
        // sync; still a renewal for the audit trail, monitor and metrics.
        // Over its budget, a peer's refusals are logged at debug but the
        // first: one line per run of them, not one per request.
        if (plan->over_budget()) {
            counters_.over_budget++;
            if (plan->budget == ChangeBudget::Verdict::refused_first)
                WGD_LOG_INFO("peer %s: over its budget of address changes (%u, then one every "
                             "%u s): answered from what it holds until its budget allows",
                             to_base64(*peer).c_str(), rate_.burst, rate_.interval_s);
        }
        for (const LeaseEvent& e :
             events_of_plan(*plan, server_.current_lease(*peer), server_.link_local_of(*peer)))
            emit(e, plan->over_budget());
        answer(q.conn, *plan);
        return;
    }
    next_.plans.emplace_back(q.conn, std::move(*plan));
    if (next_.plans.size() >= kMaxPlansPerBatch)
        start_next_batch();
}

void ServerLeased::refuse(std::uint32_t conn) {
    WGD_LOG_DEBUG("connection %u: source is not a peer's link-local address", conn);
    send_protod(msg::refuse_connection, conn, {});
}

void ServerLeased::answer(std::uint32_t conn, const Plan& plan) {
    msg::LeaseAnswer a{plan.ipv4, plan.ipv6, static_cast<std::uint64_t>(plan.leasestart),
                       plan.leasetime, static_cast<std::uint8_t>(plan.error)};
    answers_.items.push_back({conn, a});
    if (answers_.items.size() >= msg::kMaxItemsPerMessage)
        send_answers();
}

void ServerLeased::answer_error(std::uint32_t conn) {
    // SPEC has no errno for "the server could not apply or store the
    // lease"; 3 tells the client that nothing was granted, and it retries.
    msg::LeaseAnswer a{};
    a.errnum = kErrnoUnavailable;
    answers_.items.push_back({conn, a});
    if (answers_.items.size() >= msg::kMaxItemsPerMessage)
        send_answers();
}

void ServerLeased::send_answers() {
    if (answers_.items.empty())
        return;
    send_protod(msg::lease_answers, 0, msg::encode(answers_));
    answers_.items.clear();
}

// A reply to `show` at 100,000 leases runs to megabytes: its pieces are
// paced, so that no more than one waits in the channel at a time.
void ServerLeased::reply(std::uint32_t conn, bool ok, std::string_view text) {
    for (const control::ControlReply& piece : control::split_reply(ok, text)) {
        if (!protod_.send_paced(msg::control_reply, conn, control::encode(piece))) {
            WGD_LOG_ERROR("cannot send to protod: %s", std::strerror(errno));
            loop_.stop(1);
            return;
        }
    }
}

std::vector<PoolUse> ServerLeased::pool_use(const std::vector<PeerView>& peers) const {
    std::vector<PoolUse> out;
    for (const Prefix4& p : pools4_) {
        PoolUse u{to_string(p), false, server_.pool_size(p), 0};
        for (const PeerView& v : peers)
            if (v.lease && v.lease->ipv4 && p.contains(*v.lease->ipv4))
                u.leased++;
        out.push_back(u);
    }
    for (const Prefix6& p : pools6_) {
        PoolUse u{to_string(p), true, server_.pool_size(p), 0};
        for (const PeerView& v : peers)
            if (v.lease && v.lease->ipv6 && p.contains(*v.lease->ipv6))
                u.leased++;
        out.push_back(u);
    }
    return out;
}

void ServerLeased::on_control(std::uint32_t conn, const control::ControlQuery& q) {
    const control::Request& r = q.request;
    if (r.command == control::Command::revoke) {
        std::optional<PublicKey> peer = r.peer;
        if (r.ipv4)
            peer = server_.lease_holder(*r.ipv4);
        else if (r.ipv6)
            peer = server_.lease_holder(*r.ipv6);
        std::string what = r.peer   ? "peer " + to_base64(*r.peer)
                           : r.ipv4 ? to_string(*r.ipv4)
                                    : to_string(*r.ipv6);
        if (!serving_ || !peer || (!server_.current_lease(*peer) && !server_.plan_pending(*peer))) {
            reply(conn, false, "no lease of " + what);
            return;
        }
        if (!revoke(conn, *peer))
            deferred_revokes_.emplace_back(conn, *peer);
        return;
    }
    if (r.command != control::Command::show) {
        reply(conn, false, "not a request for leased");
        return;
    }
    std::vector<PeerView> peers = server_.view();
    if (r.format == control::Format::metrics) {
        MetricsInput in;
        in.iface = iface_;
        in.counters = counters_;
        in.counters.refusals[1] = q.invalid_requests;
        in.counters.refusals[2] = q.unsupported_requests;
        in.monitor_lost = q.monitor_lost;
        in.pools = pool_use(peers);
        in.peers = peers.size();
        in.leases = server_.lease_count();
        reply(conn, true, format_metrics(in));
        return;
    }
    LiveShow live{iface_, pool_use(peers), show_input_of(peers, clock_.wall_seconds())};
    reply(conn, true,
          r.format == control::Format::json ? format_live_json(live) : format_live_table(live));
}

bool ServerLeased::revoke(std::uint32_t conn, const PublicKey& peer) {
    if (server_.plan_pending(peer))
        return false;
    auto events = server_.revoke(peer);
    if (!events) {
        reply(conn, false, "no lease of peer " + to_base64(peer));
        return true;
    }
    queue_maintenance(std::move(*events), "revoke", EventKind::revoke);
    maintenance_.back().revokers.push_back(conn);
    return true;
}

void ServerLeased::send_events() {
    if (!monitors_) {
        monitor_events_.clear();
        return;
    }
    for (std::size_t i = 0; i < monitor_events_.size(); i += kMaxEventsPerMessage) {
        std::size_t n = std::min(kMaxEventsPerMessage, monitor_events_.size() - i);
        if (!send_protod(msg::lease_events, 0,
                         encode_events(std::span(monitor_events_).subspan(i, n))))
            break;
    }
    monitor_events_.clear();
}

// The audit trail: each event at info (a renewal that changes nothing at
// debug), counted for the metrics.
void ServerLeased::emit(const LeaseEvent& e, bool quiet) {
    counters_.count(e);
    if (monitors_)
        monitor_events_.push_back(e);
    if (audit_at_info(e) && !quiet)
        WGD_LOG_INFO("%s", format_text(e).c_str());
    else
        WGD_LOG_DEBUG("%s", format_text(e).c_str());
}

void ServerLeased::queue_maintenance(LeaseEvents events, const char* why,
                                     std::optional<EventKind> ended_kind) {
    if (events.changes.empty() && events.records.empty())
        return;
    WGD_LOG_DEBUG("%s: %zu allowed-IP changes, %zu records", why, events.changes.size(),
                  events.records.size());
    Batch b;
    b.ended_kind = ended_kind;
    b.maintenance = std::move(events);
    maintenance_.push_back(std::move(b));
}

void ServerLeased::start_next_batch() {
    if (in_flight_)
        return;
    Batch batch;
    if (!maintenance_.empty()) {
        batch = std::move(maintenance_.front());
        maintenance_.pop_front();
    } else if (!next_.plans.empty()) {
        batch = std::move(next_);
        next_ = Batch{};
    } else {
        return;
    }
    batch.id = next_batch_id_++;
    std::vector<PeerChange> changes;
    std::vector<std::size_t> owners; // of each change: its plan, or maintenance
    for (std::size_t i = 0; i < batch.plans.size(); i++)
        if (!batch.plans[i].second.changes.empty()) {
            changes.push_back(batch.plans[i].second.changes);
            owners.push_back(i);
        }
    for (auto& c : batch.maintenance.changes)
        if (!c.empty()) {
            changes.push_back(c);
            owners.push_back(BatchAnswers::kMaintenance);
        }
    in_flight_ = std::move(batch);
    if (changes.empty()) {
        finish_batch(); // renewals of what the peers already hold
        return;
    }
    auto parts = msg::split_changes(changes);
    std::size_t first = 0;
    for (const auto& part : parts) {
        in_flight_->answers.sent(std::vector<std::size_t>(
            owners.begin() + static_cast<std::ptrdiff_t>(first),
            owners.begin() + static_cast<std::ptrdiff_t>(first + part.changes.size())));
        first += part.changes.size();
    }
    for (const auto& part : parts)
        if (!send_netd(msg::apply_allowed_ips, in_flight_->id, msg::encode(part)))
            return;
}

void ServerLeased::send_claims_for(const LeaseEvents& restore) {
    // The removals of the restore (few) by peer; the leases are visited in
    // the table, not copied: a copy of them all, or a map of claims, would
    // be leased's peak of memory at a restart.
    std::map<PublicKey, msg::LeaseClaim> removals;
    for (const PeerChange& c : restore.changes) {
        if (c.remove4.empty() && c.remove6.empty())
            continue;
        msg::LeaseClaim& claim =
            removals.try_emplace(c.key, msg::LeaseClaim{c.key, {}, {}}).first->second;
        if (!c.remove4.empty())
            claim.ipv4 = c.remove4.front();
        if (!c.remove6.empty())
            claim.ipv6 = c.remove6.front();
    }
    // Paced while netd keeps up: the claims of 100,000 leases are 5 MB,
    // which queued at once would be leased's peak of memory. A netd that
    // takes no piece for 100 ms may itself be waiting for leased to read (a
    // stream of peers): the rest is then queued like any send, and leased
    // goes back to its loop to read.
    bool pacing = true;
    msg::ClaimLeases m;
    auto send_claims = [&] {
        if (loop_.stopping())
            return;
        if (pacing) {
            if (!netd_.flush_within(std::chrono::milliseconds(100))) {
                WGD_LOG_ERROR("cannot send to netd: %s", std::strerror(errno));
                loop_.stop(1);
                return;
            }
            pacing = !netd_.wants_write();
        }
        send_netd(msg::claim_leases, 0, msg::encode(m));
        m.claims.clear();
    };
    auto add = [&](const msg::LeaseClaim& claim) {
        m.claims.push_back(claim);
        if (m.claims.size() == msg::kMaxClaimsPerMessage)
            send_claims();
    };
    // One claim a peer: an address the restore removes stands for that
    // family instead of the lease.
    server_.for_each_live_record([&](const LeaseRecord& r) {
        msg::LeaseClaim claim{r.peer, r.ipv4, r.ipv6};
        if (auto it = removals.find(r.peer); it != removals.end()) {
            if (it->second.ipv4)
                claim.ipv4 = it->second.ipv4;
            if (it->second.ipv6)
                claim.ipv6 = it->second.ipv6;
            removals.erase(it);
        }
        add(claim);
    });
    for (const auto& [key, claim] : removals)
        add(claim);
    if (!m.claims.empty())
        send_claims();
}

void ServerLeased::on_applied(std::uint32_t id, const msg::AllowedIpsApplied& applied) {
    if (!in_flight_ || in_flight_->id != id) {
        fatal("netd answered batch %u, which is not in flight", id);
    }
    if (!in_flight_->answers.answered(applied.status)) {
        fatal("netd answered batch %u with %zu statuses, not one per change sent", id,
              applied.status.size());
    }
    if (in_flight_->answers.complete())
        finish_batch();
}

bool ServerLeased::write_records(const std::vector<LeaseRecord>& records) {
    if (records.empty())
        return true;
    int err = file_->append(records);
    if (err == 0)
        err = file_->sync();
    if (err == 0)
        return true;
    WGD_LOG_ERROR("lease file: cannot write %zu records: %s", records.size(), std::strerror(err));
    return false;
}

void ServerLeased::finish_batch() {
    Batch batch = std::move(*in_flight_);
    in_flight_.reset();
    const BatchAnswers& answers = batch.answers;
    if (!batch.plans.empty()) {
        if (answers.failed_plans() > 0)
            WGD_LOG_ERROR("netd refused %zu of %zu grants (first errno %d); the others stand",
                          answers.failed_plans(), batch.plans.size(), answers.first_error());
        std::vector<LeaseRecord> records;
        for (std::size_t i = 0; i < batch.plans.size(); i++)
            if (!answers.plan_failed(i))
                records.push_back(batch.plans[i].second.record);
        const bool stored = write_records(records);
        LeaseEvents undo;
        for (std::size_t i = 0; i < batch.plans.size(); i++) {
            auto& [conn, plan] = batch.plans[i];
            const bool applied = !answers.plan_failed(i);
            std::optional<LeaseRecord> before = server_.current_lease(plan.peer);
            if (applied && stored && server_.commit(plan)) {
                for (const LeaseEvent& e :
                     events_of_plan(plan, before, server_.link_local_of(plan.peer)))
                    emit(e);
                answer(conn, plan);
                continue;
            }
            PeerChange inverse = server_.abort(plan);
            // netd applied the change but the file refused it: take it back
            // so that nothing unrecorded stays in WireGuard.
            if (applied && !inverse.empty())
                undo.changes.push_back(std::move(inverse));
            LeaseEvent refused;
            refused.kind = EventKind::refuse;
            refused.time = plan.leasestart;
            refused.peer = plan.peer;
            refused.link_local = server_.link_local_of(plan.peer);
            refused.errnum = kErrnoUnavailable;
            emit(refused);
            answer_error(conn);
        }
        queue_maintenance(std::move(undo), "undo of an unrecorded batch");
        if (answers.failed_plans() > 0 && !refresh_in_flight_) {
            // A refusal most often means the device changed under us.
            refresh_in_flight_ = true;
            last_refresh_ms_ = clock_.boot_ms();
            send_netd(msg::refresh_peers, 0, {});
        }
    } else {
        if (answers.failed_maintenance() > 0)
            WGD_LOG_ERROR("netd refused %zu maintenance changes (first errno %d)",
                          answers.failed_maintenance(), answers.first_error());
        const bool written = write_records(batch.maintenance.records);
        const bool refused = answers.failed_maintenance() > 0;
        for (std::uint32_t conn : batch.revokers)
            reply(conn, written && !refused,
                  !written  ? "the lease file refused the revocation"
                  : refused ? "WireGuard refused the change (errno " +
                                  std::to_string(answers.first_error()) + ")"
                            : "");
        if (batch.ended_kind) {
            const std::int64_t now = clock_.wall_seconds();
            for (const LeaseRecord& was : batch.maintenance.ended)
                emit(event_of_ended(*batch.ended_kind, was, server_.link_local_of(was.peer), now));
        }
    }
    compact_a_little();
    auto revokes = std::move(deferred_revokes_);
    deferred_revokes_.clear();
    for (auto& [conn, peer] : revokes)
        if (!revoke(conn, peer))
            deferred_revokes_.emplace_back(conn, peer);
    auto deferred = std::move(deferred_);
    deferred_.clear();
    for (const Query& q : deferred)
        handle_query(q);
}

// Compaction advances by one step per batch, so grants never wait for more
// than one step's writes.
void ServerLeased::compact_a_little() {
    if (!serving_)
        return; // the restore still reads the replayed records in the file
    int err = 0;
    if (file_->compacting())
        err = file_->compaction_step(256);
    else if (file_->compaction_due(server_.lease_count()))
        err = file_->start_compaction(server_.live_records());
    if (err != 0)
        WGD_LOG_ERROR("lease file compaction abandoned: %s", std::strerror(err));
}

// Armed by end_round only while serving and not receiving the peers.
void ServerLeased::on_timer() {
    std::uint64_t now = clock_.boot_ms();
    if (auto next = server_.next_expiry(); next && *next <= now) {
        LeaseEvents expired = server_.expire(now, 4096);
        queue_maintenance(std::move(expired), "expiry", EventKind::expire);
    }
    if (!waiting_for_peers_.empty() && !refresh_in_flight_ &&
        now >= last_refresh_ms_ + kRefreshIntervalMs) {
        refresh_in_flight_ = true;
        last_refresh_ms_ = now;
        send_netd(msg::refresh_peers, 0, {});
    }
}

// After the round's messages and due timer, in this order: the next batch to
// netd, the answers and the monitors' events to protod, and the timer for
// the next expiry or the refresh retry.
void ServerLeased::end_round() {
    if (receiving_peers_) {
        send_answers(); // decided before the peers began
        return;
    }
    start_next_batch();
    send_answers();
    send_events();
    std::optional<std::uint64_t> due = server_.next_expiry();
    if (!waiting_for_peers_.empty() && !refresh_in_flight_)
        due = std::min(due.value_or(UINT64_MAX), last_refresh_ms_ + kRefreshIntervalMs);
    if (serving_ && due)
        loop_.arm_after(timer_, wait_until(clock_, *due));
    else
        loop_.disarm(timer_);
}

int ServerLeased::run() {
    const ReplayReport& report = opened_.report;
    // SPEC: a missing or unreadable lease file is reported, and the
    // addresses found in allowed IPs are then reservations: the view treats
    // every allowed IP it holds no lease for as static.
    if (report.unreadable)
        WGD_LOG_ERROR("lease file unreadable: started a new one; addresses in allowed IPs are "
                      "kept as reservations");
    else if (report.fresh)
        WGD_LOG_INFO("no lease file yet: started a new one");
    if (report.tail_cut_bytes > 0)
        WGD_LOG_WARN("lease file: cut a torn tail of %llu bytes (a write interrupted by a crash)",
                     static_cast<unsigned long long>(report.tail_cut_bytes));
    if (report.corrupt_skipped > 0)
        WGD_LOG_WARN("lease file: skipped %zu corrupt records", report.corrupt_skipped);
    // The records stay in the file (see ReplayIndex): no compaction starts
    // before restore_expected() is done with them.
    replayed_ = opened_.index ? opened_.index->size() : 0;
    server_.expect_restore(std::move(opened_.index));

    auto read_netd = [this] {
        privsep::drain(netd_, "netd", 1024, [this](privsep::Message& m) { on_netd(m); });
    };
    auto read_protod = [this] {
        privsep::drain(protod_, "protod", 1024, [this](privsep::Message& m) { on_protod(m); });
    };
    if (!loop_.watch_channel(netd_, "netd", read_netd) ||
        !loop_.watch_channel(protod_, "protod", read_protod)) {
        WGD_LOG_ERROR("epoll_ctl: %s", std::strerror(errno));
        return 1;
    }
    timer_ = loop_.add_timer([this] { on_timer(); });
    loop_.after_each_round([this] { end_round(); });
    return loop_.run();
}

} // namespace

int server_main(const Options& options) {
    map_big_blocks_on_their_own();
    auto loop = enter_leased_sandbox(Side::server, options);
    if (!loop) {
        WGD_LOG_ERROR("%s", loop.error().message.c_str());
        return 1;
    }
    // The lease file is read inside the sandbox: it is input like any other.
    Result<OpenedLeaseFile> opened =
        LeaseFile::open(UniqueFd(privsep::channels::fds::server_leased::lease_file),
                        UniqueFd(privsep::channels::fds::server_leased::lease_file_next),
                        options.iface, LeaseFile::Replay::index);
    if (!opened) {
        WGD_LOG_ERROR("lease file refused: %s", opened.error().message.c_str());
        return 1;
    }
    ServerLeased leased(options, std::move(*loop), std::move(*opened), change_rate());
    return leased.run();
}

} // namespace wgd::leased
