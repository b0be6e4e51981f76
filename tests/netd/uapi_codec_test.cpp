// The UAPI text protocol, pure.
#include "netd/wireguard.hpp"

#include <gtest/gtest.h>

#include <cerrno>

using namespace wgd;
using namespace wgd::netd;

namespace {

PublicKey key(std::uint8_t n) {
    PublicKey k;
    k.bytes.fill(n);
    return k;
}
Ip4 ip4(const char* s) {
    return *parse_ip4(s);
}
Ip6 ip6(const char* s) {
    return *parse_ip6(s);
}

const std::string kTwoPeers = "private_key=" + std::string(64, 'a') +
                              "\nlisten_port=51820\n"
                              "public_key=" +
                              to_hex(key(1)) + "\npreshared_key=" + std::string(64, '0') +
                              "\nprotocol_version=1\nendpoint=10.200.0.2:4000\n"
                              "last_handshake_time_sec=0\nlast_handshake_time_nsec=0\n"
                              "tx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=0\n"
                              "allowed_ip=fe80::1234/128\nallowed_ip=10.77.0.5/32\n"
                              "allowed_ip=10.1.0.0/16\n"
                              "public_key=" +
                              to_hex(key(2)) +
                              "\nprotocol_version=1\nallowed_ip=2001:db8::7/128\n"
                              "errno=0\n\n";

} // namespace

TEST(UapiGet, ParsesPeersAndAllowedIps) {
    auto dev = parse_uapi_get(kTwoPeers);
    ASSERT_TRUE(dev) << dev.error().message;
    EXPECT_EQ(dev->listen_port, 51820);
    ASSERT_EQ(dev->peers.size(), 2u);
    EXPECT_EQ(dev->peers[0].key, key(1));
    EXPECT_EQ(dev->peers[0].allowed4.to_vector(),
              (std::vector<Prefix4>{{ip4("10.77.0.5"), 32}, {ip4("10.1.0.0"), 16}}));
    EXPECT_EQ(dev->peers[0].allowed6.to_vector(), (std::vector<Prefix6>{{ip6("fe80::1234"), 128}}));
    EXPECT_EQ(dev->peers[1].key, key(2));
    EXPECT_TRUE(dev->peers[1].allowed4.empty());
    EXPECT_EQ(dev->peers[1].allowed6.to_vector(),
              (std::vector<Prefix6>{{ip6("2001:db8::7"), 128}}));
    EXPECT_EQ(dev->find(key(2)), &dev->peers[1]);
    EXPECT_EQ(dev->find(key(3)), nullptr);
}

TEST(UapiGet, ErrnoOfEitherSignIsAnError) {
    auto neg = parse_uapi_get("errno=-22\n\n");
    ASSERT_FALSE(neg);
    EXPECT_EQ(neg.error().code, 22);
    auto pos = parse_uapi_get("errno=19\n\n");
    ASSERT_FALSE(pos);
    EXPECT_EQ(pos.error().code, 19);
    EXPECT_TRUE(parse_uapi_get("errno=0\n\n"));
}

TEST(UapiGet, MalformedRepliesAreRefused) {
    EXPECT_FALSE(parse_uapi_get(""));
    EXPECT_FALSE(parse_uapi_get("errno=0\n"));                           // no blank line
    EXPECT_FALSE(parse_uapi_get("listen_port=1\n\n"));                   // no errno
    EXPECT_FALSE(parse_uapi_get("allowed_ip=10.0.0.1/32\nerrno=0\n\n")); // before a peer
    EXPECT_FALSE(parse_uapi_get("public_key=zz\nerrno=0\n\n"));
    const std::string peer = "public_key=" + to_hex(key(1)) + "\n";
    EXPECT_FALSE(parse_uapi_get(peer + "allowed_ip=10.0.0.1/33\nerrno=0\n\n"));
    EXPECT_FALSE(parse_uapi_get(peer + "allowed_ip=10.0.0.1\nerrno=0\n\n"));
    EXPECT_FALSE(parse_uapi_get(peer + "allowed_ip=fe80::1/129\nerrno=0\n\n"));
    EXPECT_FALSE(parse_uapi_get(peer + "allowed_ip=10.0.0.1/\nerrno=0\n\n"));
    EXPECT_FALSE(parse_uapi_get(peer + "garbage\nerrno=0\n\n"));
    EXPECT_FALSE(parse_uapi_get("errno=0\nlisten_port=1\n\n")); // after errno
    EXPECT_FALSE(parse_uapi_get("errno=0\n\nextra"));
    EXPECT_FALSE(parse_uapi_get("errno=x\n\n"));
    EXPECT_TRUE(parse_uapi_get(peer + "allowed_ip=10.0.0.1/32\nerrno=0\n\n"));
}

TEST(UapiSet, ErrnoAnswer) {
    EXPECT_TRUE(parse_uapi_errno("errno=0\n\n"));
    EXPECT_EQ(parse_uapi_errno("errno=-22\n\n").error().code, 22);
    EXPECT_EQ(parse_uapi_errno("errno=22\n\n").error().code, 22);
    EXPECT_FALSE(parse_uapi_errno("errno=0\n"));
    EXPECT_FALSE(parse_uapi_errno("ok\n\n"));
}

TEST(UapiSet, AdditionsOnlyAreUpdateOnlyAllowedIpLines) {
    Device dev;
    std::vector<PeerChange> changes{
        PeerChange{key(1), {ip4("10.77.0.9")}, {}, {ip6("2001:db8::9")}, {}}};
    auto req = build_uapi_set(dev, changes, key(9));
    ASSERT_TRUE(req);
    EXPECT_EQ(*req,
              "set=1\npublic_key=" + to_hex(key(1)) +
                  "\nupdate_only=true\nallowed_ip=10.77.0.9/32\nallowed_ip=2001:db8::9/128\n\n");
}

// The removed addresses go to a transient peer removed in the same set,
// ahead of the additions; the peers' other entries are not written at all.
TEST(UapiSet, RemovalMovesTheAddressesToATransientPeerRemovedInTheSameSet) {
    auto dev = parse_uapi_get(kTwoPeers);
    ASSERT_TRUE(dev);
    std::vector<PeerChange> changes{
        PeerChange{key(1), {ip4("10.77.0.9")}, {ip4("10.77.0.5")}, {}, {}},
        PeerChange{key(2), {}, {}, {ip6("2001:db8::8")}, {ip6("2001:db8::7")}}};
    auto req = build_uapi_set(*dev, changes, key(9));
    ASSERT_TRUE(req);
    EXPECT_EQ(*req, "set=1\npublic_key=" + to_hex(key(9)) +
                        "\nallowed_ip=10.77.0.5/32\nallowed_ip=2001:db8::7/128\nremove=true\n"
                        "public_key=" +
                        to_hex(key(1)) +
                        "\nupdate_only=true\nallowed_ip=10.77.0.9/32\n"
                        "public_key=" +
                        to_hex(key(2)) + "\nupdate_only=true\nallowed_ip=2001:db8::8/128\n\n");
}

// 10.1.0.0/32 is not on the peer (10.1.0.0/16 is): nothing is moved, and an
// address the peer no longer holds is taken from no one.
TEST(UapiSet, RemovalOfAnAddressThePeerDoesNotHoldMovesNothing) {
    auto dev = parse_uapi_get(kTwoPeers);
    ASSERT_TRUE(dev);
    std::vector<PeerChange> changes{
        PeerChange{key(1), {}, {ip4("10.1.0.0"), ip4("10.77.0.6")}, {}, {}}};
    auto req = build_uapi_set(*dev, changes, key(9));
    ASSERT_TRUE(req);
    EXPECT_EQ(*req, "set=1\n\n");
}

TEST(UapiSet, RemovalForAnUnknownPeerIsRefused) {
    Device dev;
    std::vector<PeerChange> changes{PeerChange{key(5), {}, {ip4("10.77.0.5")}, {}, {}}};
    auto req = build_uapi_set(dev, changes, key(9));
    ASSERT_FALSE(req);
    EXPECT_EQ(req.error().code, ENOENT);
}

namespace {

// Feeds `pieces` in order to a fresh parser; its take(), also when a feed failed.
Result<Device> parse_in_pieces(const std::vector<std::string_view>& pieces) {
    UapiGetParser parser;
    for (const auto piece : pieces)
        if (!parser.feed(piece))
            break;
    return parser.take();
}

void expect_same_device(const Device& a, const Device& b) {
    EXPECT_EQ(a.listen_port, b.listen_port);
    ASSERT_EQ(a.peers.size(), b.peers.size());
    for (std::size_t i = 0; i < a.peers.size(); ++i) {
        EXPECT_EQ(a.peers[i].key, b.peers[i].key) << "peer " << i;
        EXPECT_EQ(a.peers[i].allowed4, b.peers[i].allowed4) << "peer " << i;
        EXPECT_EQ(a.peers[i].allowed6, b.peers[i].allowed6) << "peer " << i;
    }
}

} // namespace

TEST(UapiGetParser, ByteByByteGivesTheSameDeviceAsWhole) {
    auto whole = parse_uapi_get(kTwoPeers);
    ASSERT_TRUE(whole) << whole.error().message;
    UapiGetParser parser;
    const std::string_view text = kTwoPeers;
    for (std::size_t i = 0; i < text.size(); ++i) {
        EXPECT_FALSE(parser.done()) << "done before the last byte, at " << i;
        ASSERT_TRUE(parser.feed(text.substr(i, 1))) << "byte " << i;
    }
    EXPECT_TRUE(parser.done());
    auto dev = parser.take();
    ASSERT_TRUE(dev) << dev.error().message;
    ASSERT_EQ(dev->peers.size(), 2u);
    expect_same_device(*dev, *whole);
}

TEST(UapiGetParser, EverySplitInTwoGivesTheSameDeviceAsWhole) {
    auto whole = parse_uapi_get(kTwoPeers);
    ASSERT_TRUE(whole) << whole.error().message;
    const std::string_view text = kTwoPeers;
    for (std::size_t at = 0; at <= text.size(); ++at) {
        auto dev = parse_in_pieces({text.substr(0, at), text.substr(at)});
        ASSERT_TRUE(dev) << "split at " << at << ": " << dev.error().message;
        expect_same_device(*dev, *whole);
    }
}

namespace {
// Keeps what a streaming parser hands over.
struct Taken final : DeviceSink {
    int starts = 0;
    Device device;
    void start() override {
        starts++;
        device.peers.clear();
    }
    void peer(Peer&& p) override { device.peers.push_back(std::move(p)); }
};
} // namespace

// netd's refresh takes the peers one by one: each must come whole and once,
// whatever the pieces, and the parser must hold no more than the one it is
// parsing.
TEST(UapiGetParser, EverySplitStreamedGivesTheSamePeersAsWhole) {
    auto whole = parse_uapi_get(kTwoPeers);
    ASSERT_TRUE(whole) << whole.error().message;
    const std::string_view text = kTwoPeers;
    for (std::size_t at = 0; at <= text.size(); ++at) {
        Taken taken;
        UapiGetParser parser;
        parser.stream_to(taken);
        ASSERT_TRUE(parser.feed(text.substr(0, at)));
        ASSERT_TRUE(parser.feed(text.substr(at)));
        auto rest = parser.take();
        ASSERT_TRUE(rest) << "split at " << at << ": " << rest.error().message;
        EXPECT_TRUE(rest->peers.empty()) << "split at " << at;
        EXPECT_EQ(taken.starts, 1);
        taken.device.listen_port = whole->listen_port;
        expect_same_device(taken.device, *whole);
    }
}

TEST(UapiGetParser, EverySplitOfABadAnswerGivesTheSameError) {
    const std::string peer = "public_key=" + to_hex(key(1)) + "\n";
    const std::vector<std::string> bad{peer + "allowed_ip=10.0.0.1/33\nerrno=0\n\n",
                                       "errno=0\nlisten_port=1\n\n", "errno=0\n\nextra",
                                       "errno=-22\n\n", peer + "errno=0\n"};
    for (const auto& answer : bad) {
        const auto whole = parse_uapi_get(answer);
        ASSERT_FALSE(whole) << answer;
        const std::string_view text = answer;
        for (std::size_t at = 0; at <= text.size(); ++at) {
            auto split = parse_in_pieces({text.substr(0, at), text.substr(at)});
            ASSERT_FALSE(split) << answer << " split at " << at;
            EXPECT_EQ(split.error().code, whole.error().code) << answer << " split at " << at;
            EXPECT_EQ(split.error().message, whole.error().message) << answer << " at " << at;
        }
    }
}

TEST(UapiGetParser, LineOverTheLimitIsRefusedAsSoonAsItIsKnown) {
    UapiGetParser parser;
    ASSERT_TRUE(parser.feed("private_key="));
    const std::string filler(UapiGetParser::kMaxLine - std::string_view("private_key=").size(),
                             'a');
    ASSERT_TRUE(parser.feed(filler)); // exactly at the limit: still a line
    auto over = parser.feed("a");     // no newline yet, but already too long
    ASSERT_FALSE(over);
    EXPECT_EQ(over.error().code, EBADMSG);
    EXPECT_FALSE(parser.feed("\nerrno=0\n\n")); // the error is final
    auto dev = parser.take();
    ASSERT_FALSE(dev);
    EXPECT_EQ(dev.error().code, EBADMSG);
}

TEST(UapiGetParser, LineAtTheLimitIsAcceptedAndOneMoreByteIsNot) {
    const auto line = [](std::size_t size) {
        return "private_key=" + std::string(size - std::string_view("private_key=").size(), 'a') +
               "\nerrno=0\n\n";
    };
    EXPECT_TRUE(parse_uapi_get(line(UapiGetParser::kMaxLine)));
    auto over = parse_uapi_get(line(UapiGetParser::kMaxLine + 1));
    ASSERT_FALSE(over);
    EXPECT_EQ(over.error().code, EBADMSG);
}

TEST(UapiGetParser, DataAfterTheBlankLineIsRefused) {
    UapiGetParser parser;
    ASSERT_TRUE(parser.feed("errno=0\n\n"));
    EXPECT_TRUE(parser.done());
    auto extra = parser.feed("x");
    ASSERT_FALSE(extra);
    EXPECT_EQ(extra.error().code, EBADMSG);
    auto dev = parser.take();
    ASSERT_FALSE(dev);
    EXPECT_EQ(dev.error().code, EBADMSG);
}

TEST(UapiGetParser, AnswerCutBeforeItsBlankLineIsAnError) {
    const std::string_view text = kTwoPeers;
    for (std::size_t cut = 0; cut < text.size(); ++cut) {
        UapiGetParser parser;
        ASSERT_TRUE(parser.feed(text.substr(0, cut))) << "cut at " << cut;
        EXPECT_FALSE(parser.done()) << "cut at " << cut;
        auto dev = parser.take();
        ASSERT_FALSE(dev) << "cut at " << cut;
        EXPECT_EQ(dev.error().code, EBADMSG);
    }
}

TEST(UapiGetParser, ErrorIsReportedByTheFeedThatBringsTheBadLine) {
    UapiGetParser parser;
    ASSERT_TRUE(parser.feed("public_key=" + to_hex(key(1)) + "\nallowed_ip=10.0.0.1/3"));
    ASSERT_TRUE(parser.feed("3")); // the line is not over: not yet known bad
    auto bad = parser.feed("\n");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, EBADMSG);
}

TEST(UapiGetParser, KeepOnlyDropsTheOtherPeersAndTheirAllowedIps) {
    UapiGetParser parser;
    parser.keep_only({key(2), key(9)});
    ASSERT_TRUE(parser.feed(kTwoPeers));
    auto dev = parser.take();
    ASSERT_TRUE(dev) << dev.error().message;
    ASSERT_EQ(dev->peers.size(), 1u);
    EXPECT_EQ(dev->peers[0].key, key(2));
    EXPECT_TRUE(dev->peers[0].allowed4.empty());
    EXPECT_EQ(dev->peers[0].allowed6.to_vector(),
              (std::vector<Prefix6>{{ip6("2001:db8::7"), 128}}));
    // take() leaves a parser that keeps every peer again
    ASSERT_TRUE(parser.feed(kTwoPeers));
    EXPECT_EQ(parser.take()->peers.size(), 2u);
}

TEST(UapiGetParser, KeepOnlyStillRefusesABadLineOfAPeerItDrops) {
    UapiGetParser parser;
    parser.keep_only({key(2)});
    const std::string bad =
        "public_key=" + to_hex(key(1)) + "\nallowed_ip=10.0.0.1/33\nerrno=0\n\n";
    EXPECT_FALSE(parser.feed(bad));
    auto dev = parser.take();
    ASSERT_FALSE(dev);
    EXPECT_EQ(dev.error().code, EBADMSG);
}

// The backend reads only the peers of the removals, then moves their addresses.
TEST(UapiSet, RemovalNeedsOnlyThePeersItChanges) {
    UapiGetParser parser;
    parser.keep_only({key(1)});
    ASSERT_TRUE(parser.feed(kTwoPeers));
    auto current = parser.take();
    ASSERT_TRUE(current);
    const std::vector<PeerChange> changes{PeerChange{key(1), {}, {ip4("10.77.0.5")}, {}, {}},
                                          PeerChange{key(2), {ip4("10.77.0.8")}, {}, {}, {}}};
    auto req = build_uapi_set(*current, changes, key(9));
    ASSERT_TRUE(req) << req.error().message;
    EXPECT_EQ(*req, "set=1\npublic_key=" + to_hex(key(9)) +
                        "\nallowed_ip=10.77.0.5/32\nremove=true\npublic_key=" + to_hex(key(2)) +
                        "\nupdate_only=true\nallowed_ip=10.77.0.8/32\n\n");
}
