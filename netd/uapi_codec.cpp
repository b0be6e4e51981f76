// The UAPI text protocol of userspace WireGuard (wireguard-go), pure.
#include "netd/wireguard.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <map>

namespace wgd::netd {
namespace {

template <class P, class Parse>
std::optional<P> parse_prefix(std::string_view text, Parse parse, unsigned max_len) {
    const auto slash = text.find('/');
    if (slash == std::string_view::npos)
        return std::nullopt;
    auto addr = parse(text.substr(0, slash));
    const auto len_text = text.substr(slash + 1);
    unsigned len = 0;
    auto [end, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
    if (!addr || ec != std::errc() || end != len_text.data() + len_text.size() ||
        len_text.empty() || len_text.size() > 3 || len > max_len)
        return std::nullopt;
    P p;
    p.addr = *addr;
    p.len = static_cast<std::uint8_t>(len);
    return p;
}

std::optional<int> parse_errno(std::string_view value) {
    bool negative = false;
    if (!value.empty() && value.front() == '-') {
        negative = true; // wireguard-go answers -EINVAL and the like
        value.remove_prefix(1);
    }
    int v = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (value.empty() || ec != std::errc() || end != value.data() + value.size() || v < 0)
        return std::nullopt;
    (void)negative;
    return v;
}

} // namespace

const Peer* Device::find(const PublicKey& key) const {
    for (const auto& p : peers)
        if (p.key == key)
            return &p;
    return nullptr;
}

Result<void> UapiGetParser::fail(std::string message) {
    error_ = make_error(EBADMSG, std::move(message));
    partial_ = std::string(); // give the buffer back: nothing more will be read
    return *error_;
}

void UapiGetParser::keep_only(std::vector<PublicKey> keys) {
    keep_ = std::move(keys);
    std::sort(keep_.begin(), keep_.end());
    filtering_ = true;
}

void UapiGetParser::stream_to(DeviceSink& sink) {
    sink_ = &sink;
    sink.start();
}

void UapiGetParser::hand_over() {
    if (!sink_)
        return;
    for (Peer& p : device_.peers)
        sink_->peer(std::move(p));
    device_.peers.clear();
}

Result<void> UapiGetParser::feed(std::string_view bytes) {
    if (error_)
        return *error_;
    while (!bytes.empty()) {
        if (done_)
            return fail("UAPI reply: data after the blank line");
        const auto nl = bytes.find('\n');
        if (nl == std::string_view::npos) {
            if (partial_.size() + bytes.size() > kMaxLine)
                return fail("UAPI reply: line too long");
            partial_.append(bytes);
            return {};
        }
        Result<void> parsed;
        if (partial_.empty()) {
            // the common case: the whole line is in this piece, parse it in place
            parsed = parse_line(bytes.substr(0, nl));
        } else {
            if (partial_.size() + nl > kMaxLine)
                return fail("UAPI reply: line too long");
            partial_.append(bytes.substr(0, nl));
            parsed = parse_line(partial_);
            partial_.clear();
        }
        if (!parsed)
            return parsed;
        bytes.remove_prefix(nl + 1);
    }
    return {};
}

Result<void> UapiGetParser::parse_line(std::string_view line) {
    if (line.size() > kMaxLine)
        return fail("UAPI reply: line too long");
    if (line.empty()) {
        hand_over();
        done_ = true;
        partial_ = std::string();
        return {};
    }
    const auto eq = line.find('=');
    if (eq == std::string_view::npos)
        return fail("UAPI reply line without '='");
    const auto key = line.substr(0, eq);
    const auto value = line.substr(eq + 1);
    if (errno_)
        return fail("UAPI reply continues after errno=");
    if (key == "errno") {
        errno_ = parse_errno(value);
        if (!errno_)
            return fail("UAPI reply: bad errno value");
    } else if (key == "public_key") {
        auto k = key_from_hex(value);
        if (!k)
            return fail("UAPI reply: bad public_key");
        have_peer_ = true;
        hand_over(); // the previous peer is complete
        skipping_peer_ = filtering_ && !std::binary_search(keep_.begin(), keep_.end(), *k);
        if (!skipping_peer_)
            device_.peers.push_back(Peer{*k, {}, {}});
    } else if (key == "allowed_ip") {
        if (!have_peer_)
            return fail("UAPI reply: allowed_ip before any peer");
        if (value.find(':') != std::string_view::npos) {
            auto p = parse_prefix<Prefix6>(value, parse_ip6, 128);
            if (!p)
                return fail("UAPI reply: bad allowed_ip");
            if (!skipping_peer_)
                device_.peers.back().allowed6.push_back(*p);
        } else {
            auto p = parse_prefix<Prefix4>(value, parse_ip4, 32);
            if (!p)
                return fail("UAPI reply: bad allowed_ip");
            if (!skipping_peer_)
                device_.peers.back().allowed4.push_back(*p);
        }
    } else if (key == "listen_port" && !have_peer_) {
        unsigned port = 0;
        auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), port);
        if (ec != std::errc() || end != value.data() + value.size() || port > 65535)
            return fail("UAPI reply: bad listen_port");
        device_.listen_port = static_cast<std::uint16_t>(port);
    }
    // other keys (private_key, endpoint, counters ...) are not netd's business
    return {};
}

Result<Device> UapiGetParser::take() {
    Result<Device> out = [&]() -> Result<Device> {
        if (error_)
            return *error_;
        if (!done_)
            return make_error(EBADMSG, "UAPI reply not terminated by a blank line");
        if (!errno_)
            return make_error(EBADMSG, "UAPI reply without errno=");
        if (*errno_ != 0)
            return make_error(*errno_, "UAPI get failed: errno " + std::to_string(*errno_));
        return std::move(device_);
    }();
    *this = UapiGetParser();
    return out;
}

Result<Device> parse_uapi_get(std::string_view reply) {
    UapiGetParser parser;
    (void)parser.feed(reply); // an error stays in the parser for take()
    return parser.take();
}

Result<void> parse_uapi_errno(std::string_view reply) {
    constexpr std::string_view prefix = "errno=";
    if (reply.size() < prefix.size() + 3 || reply.substr(0, prefix.size()) != prefix ||
        reply.substr(reply.size() - 2) != "\n\n")
        return make_error(EBADMSG, "UAPI set: malformed answer");
    const auto value = reply.substr(prefix.size(), reply.size() - prefix.size() - 2);
    auto err = parse_errno(value);
    if (!err)
        return make_error(EBADMSG, "UAPI set: bad errno value");
    if (*err != 0)
        return make_error(*err, "UAPI set failed: errno " + std::to_string(*err));
    return {};
}

void apply_change(const PeerChange& change, Allowed4& allowed4, Allowed6& allowed6) {
    auto removed4 = [&](const Prefix4& p) {
        return p.len == 32 && std::find(change.remove4.begin(), change.remove4.end(), p.addr) !=
                                  change.remove4.end();
    };
    auto removed6 = [&](const Prefix6& p) {
        return p.len == 128 && std::find(change.remove6.begin(), change.remove6.end(), p.addr) !=
                                   change.remove6.end();
    };
    allowed4.erase(std::remove_if(allowed4.begin(), allowed4.end(), removed4), allowed4.end());
    allowed6.erase(std::remove_if(allowed6.begin(), allowed6.end(), removed6), allowed6.end());
    for (const auto& a : change.add4) {
        const Prefix4 p{a, 32};
        if (std::find(allowed4.begin(), allowed4.end(), p) == allowed4.end())
            allowed4.push_back(p);
    }
    for (const auto& a : change.add6) {
        const Prefix6 p{a, 128};
        if (std::find(allowed6.begin(), allowed6.end(), p) == allowed6.end())
            allowed6.push_back(p);
    }
}

Result<std::string> build_uapi_set(const Device& current, std::span<const PeerChange> changes,
                                   const PublicKey& transient) {
    // Only removals need the current lists; index them once, if at all.
    std::map<PublicKey, const Peer*> index;
    std::string moved;
    for (const auto& change : changes) {
        if (change.remove4.empty() && change.remove6.empty())
            continue;
        if (index.empty())
            for (const auto& p : current.peers)
                index.emplace(p.key, &p);
        auto it = index.find(change.key);
        if (it == index.end())
            return make_error(ENOENT, "no peer " + to_base64(change.key));
        const Peer& held = *it->second;
        for (const auto& a : change.remove4)
            if (std::find(held.allowed4.begin(), held.allowed4.end(), Prefix4{a, 32}) !=
                held.allowed4.end())
                moved += "allowed_ip=" + to_string(a) + "/32\n";
        for (const auto& a : change.remove6)
            if (std::find(held.allowed6.begin(), held.allowed6.end(), Prefix6{a, 128}) !=
                held.allowed6.end())
                moved += "allowed_ip=" + to_string(a) + "/128\n";
    }
    std::string out = "set=1\n";
    if (!moved.empty())
        out += "public_key=" + to_hex(transient) + "\n" + moved + "remove=true\n";
    for (const auto& change : changes) {
        if (change.add4.empty() && change.add6.empty())
            continue;
        out += "public_key=" + to_hex(change.key) + "\nupdate_only=true\n";
        for (const auto& a : change.add4)
            out += "allowed_ip=" + to_string(a) + "/32\n";
        for (const auto& a : change.add6)
            out += "allowed_ip=" + to_string(a) + "/128\n";
    }
    out += "\n";
    return out;
}

} // namespace wgd::netd
