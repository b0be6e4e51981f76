// protod's side of the control socket, driven in-process: a real unix
// listening socket, a real event loop, a real channel standing for leased.
#include "privsep/messages.hpp"
#include "protod/control_server.hpp"
#include "tests/privsep/recv_within.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <sstream>

using namespace wgd;
using namespace wgd::protod;

namespace {

class ControlServerTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (::geteuid() != 0)
            GTEST_SKIP() << "the control socket serves root only (SO_PEERCRED)";
        char tmpl[] = "/tmp/wgd-control-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        path_ = dir_ + "/test.sock";
        UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        sockaddr_un addr = address();
        ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
        ASSERT_EQ(::listen(listener.get(), 8), 0);
        auto loop = privsep::Loop::open();
        ASSERT_TRUE(loop.has_value());
        loop_.emplace(std::move(loop.value()));
        // pump(): one round, then the hook stops the loop.
        loop_->after_each_round([this] { loop_->stop(0); });
        round_timer_ = loop_->add_timer([] {});
        auto [ours, theirs] = privsep::make_channel_pair();
        protod_end_ = privsep::Channel(std::move(ours));
        leased_ = privsep::Channel(std::move(theirs));
        server_.emplace(std::move(listener), *loop_, protod_end_);
    }
    void TearDown() override {
        server_.reset();
        if (!path_.empty())
            ::unlink(path_.c_str());
        if (!dir_.empty())
            ::rmdir(dir_.c_str());
    }
    sockaddr_un address() const {
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
        return addr;
    }
    UniqueFd connect_client(const std::string& request) {
        UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un addr = address();
        EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
        EXPECT_EQ(::send(fd.get(), request.data(), request.size(), 0),
                  static_cast<ssize_t>(request.size()));
        return fd;
    }
    // One round of the loop: what is ready within timeout_ms handed to the
    // server, which must not stop the loop.
    void pump(int timeout_ms = 0) {
        loop_->arm_after(round_timer_, std::chrono::milliseconds(timeout_ms));
        ASSERT_EQ(loop_->run(), 0);
    }
    // What the client can read now (after pumping the server meanwhile).
    std::string drain(int fd, bool until_eof = false) {
        std::string got;
        char buf[65536];
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        int quiet = 0;
        while (std::chrono::steady_clock::now() < deadline) {
            pump(10);
            ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n > 0) {
                got.append(buf, static_cast<std::size_t>(n));
                quiet = 0;
                continue;
            }
            if (n == 0 || (!until_eof && ++quiet > 5))
                break;
        }
        return got;
    }
    privsep::Message from_protod() {
        auto r = wgd::privsep::testing::recv_within(leased_, 2000);
        EXPECT_TRUE(std::holds_alternative<privsep::Message>(r));
        return std::holds_alternative<privsep::Message>(r)
                   ? std::move(std::get<privsep::Message>(r))
                   : privsep::Message{};
    }

    std::string dir_, path_;
    std::optional<privsep::Loop> loop_;
    privsep::Loop::TimerId round_timer_ = 0;
    privsep::Channel protod_end_, leased_;
    std::optional<ControlServer> server_;
};

LeaseEvent event(int n) {
    LeaseEvent e;
    e.kind = EventKind::renew;
    e.time = 1764201600 + n;
    e.peer.bytes.fill(static_cast<std::uint8_t>(n));
    e.link_local = *parse_ip6("fe80::1234");
    e.ipv4 = *parse_ip4("10.77.0.5");
    e.leasetime = 3600;
    return e;
}

int count_lines(const std::string& text, const std::string& needle) {
    int n = 0;
    for (std::size_t at = 0; (at = text.find(needle, at)) != std::string::npos; at++)
        n++;
    return n;
}

TEST_F(ControlServerTest, ShowGoesToLeasedAndItsAnswerToTheClientThenTheConnectionCloses) {
    UniqueFd client = connect_client("show=1\nformat=json\n\n");
    pump(100);
    pump(100);
    privsep::Message m = from_protod();
    ASSERT_EQ(m.type, msg::control_request);
    auto q = control::decode_control_query(m.body);
    ASSERT_TRUE(q);
    EXPECT_EQ(q->request.command, control::Command::show);
    EXPECT_EQ(q->request.format, control::Format::json);
    server_->on_reply(m.id, {true, false, "first "});
    server_->on_reply(m.id, {true, true, "second\n"});
    EXPECT_EQ(drain(client.get(), true), "ok\nfirst second\n");
    EXPECT_EQ(server_->clients(), 0u);
}

TEST_F(ControlServerTest, ABadRequestGetsOneErrorLineAndLeasedHearsNothing) {
    UniqueFd client = connect_client("reboot=1\n\n");
    EXPECT_EQ(drain(client.get(), true), "error=unknown command\n");
    EXPECT_TRUE(std::holds_alternative<privsep::RecvError>(leased_.recv()));
}

TEST_F(ControlServerTest, AMonitorThatDoesNotReadLosesEventsCountedAndNeverBlocks) {
    UniqueFd client = connect_client("monitor=1\nformat=json\n\n");
    pump(100);
    pump(100);
    privsep::Message state = from_protod();
    ASSERT_EQ(state.type, msg::monitor_state);
    EXPECT_EQ(control::decode_monitor_state(state.body), 1u);

    // Far more than the queue and the socket buffer hold, while the client
    // reads nothing: on_events returns (a blocking write would hang here),
    // the overflow dropped and counted.
    constexpr int kEvents = 20000;
    std::vector<LeaseEvent> events;
    for (int i = 0; i < kEvents; i++)
        events.push_back(event(i));
    server_->on_events(events);
    const std::uint64_t lost = server_->monitor_lost();
    EXPECT_GT(lost, 0u);

    std::string got = drain(client.get());
    server_->on_events({event(kEvents)}); // room again: the loss is reported first
    got += drain(client.get());
    ASSERT_EQ(got.rfind("ok\n", 0), 0u);
    const int delivered = count_lines(got, "\"event\":\"renew\"");
    EXPECT_EQ(static_cast<std::uint64_t>(delivered) + lost,
              static_cast<std::uint64_t>(kEvents + 1));
    EXPECT_EQ(count_lines(got, "\"event\":\"lost\",\"count\":" + std::to_string(lost) + "}"), 1);
    EXPECT_NE(got.find("\"time\":" + std::to_string(1764201600 + kEvents)), std::string::npos);

    client.reset(); // the monitor goes: leased stops sending events
    pump(100);
    privsep::Message gone = from_protod();
    ASSERT_EQ(gone.type, msg::monitor_state);
    EXPECT_EQ(control::decode_monitor_state(gone.body), 0u);
}

} // namespace
