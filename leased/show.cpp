#include "leased/show.hpp"

#include "leased/lease_file.hpp"
#include "leased/leased.hpp"
#include "privsep/state_files.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <sstream>

namespace wgd::leased {

namespace {

struct Row {
    std::string peer;
    std::string link_local;
    std::string ipv4, ipv6;
    std::int64_t leasestart = 0, expires = 0;
    bool reserved = false;
};

std::string duration(std::int64_t s) {
    std::int64_t h = s / 3600, m = s % 3600 / 60, sec = s % 60;
    char buf[64];
    if (h > 0)
        std::snprintf(buf, sizeof buf, "%lldh %02lldm %02llds", static_cast<long long>(h),
                      static_cast<long long>(m), static_cast<long long>(sec));
    else if (m > 0)
        std::snprintf(buf, sizeof buf, "%lldm %02llds", static_cast<long long>(m),
                      static_cast<long long>(sec));
    else
        std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(sec));
    return buf;
}

std::vector<Row> rows_of(const ShowInput& in) {
    std::map<PublicKey, std::string> link_local;
    std::vector<Row> rows;
    std::map<PublicKey, const LeaseRecord*> leased;
    for (const LeaseRecord& r : in.leases)
        if (!r.released() && r.expiry_wall > in.now_wall)
            leased[r.peer] = &r;
    if (in.device) {
        for (const PeerFacts& p : *in.device) {
            for (const Prefix6& a : p.allowed6)
                if (a.len == 128 && a.addr.is_link_local()) {
                    link_local[p.key] = to_string(a.addr);
                    break;
                }
        }
    }
    for (auto& [key, r] : leased) {
        Row row;
        row.peer = to_base64(key);
        row.link_local = link_local.count(key) ? link_local[key] : "";
        if (r->ipv4)
            row.ipv4 = to_string(Prefix4{*r->ipv4, 32});
        if (r->ipv6)
            row.ipv6 = to_string(Prefix6{*r->ipv6, 128});
        row.leasestart = r->start_wall;
        row.expires = r->expiry_wall;
        rows.push_back(row);
    }
    // Reservations: static host allowed IPs that are not a lease of the peer.
    if (in.device) {
        for (const PeerFacts& p : *in.device) {
            const LeaseRecord* lease = leased.count(p.key) ? leased[p.key] : nullptr;
            Row row;
            row.peer = to_base64(p.key);
            row.link_local = link_local.count(p.key) ? link_local[p.key] : "";
            row.reserved = true;
            for (const Prefix4& a : p.allowed4)
                if (a.len == 32 && is_leasable(a.addr) && !(lease && lease->ipv4 == a.addr) &&
                    row.ipv4.empty())
                    row.ipv4 = to_string(a);
            for (const Prefix6& a : p.allowed6)
                if (a.len == 128 && is_leasable(a.addr) && !(lease && lease->ipv6 == a.addr) &&
                    row.ipv6.empty())
                    row.ipv6 = to_string(a);
            if (!row.ipv4.empty() || !row.ipv6.empty())
                rows.push_back(row);
        }
    }
    std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
        return std::tie(a.link_local, a.peer, a.reserved) <
               std::tie(b.link_local, b.peer, b.reserved);
    });
    return rows;
}

std::string json_string(const std::string& s) {
    // Keys, addresses and base64 need no escaping; quote anyway for safety.
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\')
            out.push_back('\\');
        out.push_back(c);
    }
    return out + "\"";
}

} // namespace

std::string format_table(const ShowInput& in) {
    std::vector<Row> rows = rows_of(in);
    if (rows.empty())
        return "no leases\n";
    std::ostringstream out;
    char line[512];
    std::snprintf(line, sizeof line, "%-44s  %-26s  %-18s  %-42s  %s\n", "peer", "link-local",
                  "ipv4", "ipv6", "left");
    out << line;
    for (const Row& r : rows) {
        std::string left = r.reserved ? "reserved" : duration(r.expires - in.now_wall);
        std::snprintf(line, sizeof line, "%-44s  %-26s  %-18s  %-42s  %s\n", r.peer.c_str(),
                      r.link_local.empty() ? "-" : r.link_local.c_str(),
                      r.ipv4.empty() ? "-" : r.ipv4.c_str(), r.ipv6.empty() ? "-" : r.ipv6.c_str(),
                      left.c_str());
        out << line;
    }
    return out.str();
}

std::string format_json(const ShowInput& in) {
    std::ostringstream out;
    out << "[";
    bool first = true;
    for (const Row& r : rows_of(in)) {
        out << (first ? "\n" : ",\n") << "  {\"peer\": " << json_string(r.peer)
            << ", \"link_local\": " << (r.link_local.empty() ? "null" : json_string(r.link_local))
            << ", \"ipv4\": " << (r.ipv4.empty() ? "null" : json_string(r.ipv4))
            << ", \"ipv6\": " << (r.ipv6.empty() ? "null" : json_string(r.ipv6))
            << ", \"reserved\": " << (r.reserved ? "true" : "false");
        if (!r.reserved)
            out << ", \"leasestart\": " << r.leasestart << ", \"expires\": " << r.expires
                << ", \"seconds_left\": " << (r.expires - in.now_wall);
        out << "}";
        first = false;
    }
    out << (first ? "]\n" : "\n]\n");
    return out.str();
}

std::string format_live_table(const LiveShow& live) {
    std::string out = "interface: " + live.iface + " (running)\n";
    for (const PoolUse& p : live.pools)
        out += "pool " + p.prefix + ": size " + decimal(p.size) + ", leased " +
               std::to_string(p.leased) + ", free " + decimal(p.size - p.leased) + "\n";
    if (live.pools.empty())
        out += "no pools\n";
    return out + "\n" + format_table(live.leases);
}

std::string format_live_json(const LiveShow& live) {
    std::string out =
        "{\"interface\": " + json_string(live.iface) + ", \"running\": true, \"pools\": [";
    bool first = true;
    for (const PoolUse& p : live.pools) {
        out += std::string(first ? "\n" : ",\n") + "  {\"prefix\": " + json_string(p.prefix) +
               ", \"size\": " + decimal(p.size) + ", \"leased\": " + std::to_string(p.leased) +
               ", \"free\": " + decimal(p.size - p.leased) + "}";
        first = false;
    }
    out += first ? "],\n" : "\n],\n";
    std::string leases = format_json(live.leases);
    leases.pop_back(); // its newline
    return out + "\"leases\": " + leases + "}\n";
}

ShowInput show_input_of(const std::vector<PeerView>& peers, std::int64_t now_wall) {
    ShowInput in;
    in.now_wall = now_wall;
    std::vector<PeerFacts> device;
    device.reserve(peers.size());
    for (const PeerView& p : peers) {
        if (p.lease)
            in.leases.push_back(*p.lease);
        PeerFacts f{p.key, p.statics4, p.statics6};
        if (p.link_local)
            f.allowed6.insert(f.allowed6.begin(), Prefix6{*p.link_local, 128});
        device.push_back(std::move(f));
    }
    in.device = std::move(device);
    return in;
}

Result<std::vector<LeaseRecord>> read_leases(const std::string& state_dir,
                                             const std::string& iface) {
    // LeaseFile::open may cut a torn tail or start a fresh file: give it
    // private copies, so that show only ever reads the state directory.
    // The same checks as the server's at start: no symlink, root's, one link,
    // and no larger than leased can write, so the copy is bounded too.
    UniqueFd copies[2];
    bool any = false;
    auto dir = privsep::open_state_dir(state_dir, false);
    if (!dir)
        return dir.error();
    for (int i = 0; i < 2; i++) {
        const std::string name = iface + ".leases." + std::to_string(i);
        const std::string path = state_dir + "/" + name;
        copies[i].reset(memfd_create("wg-dynamic-show", MFD_CLOEXEC));
        if (!copies[i]) {
            const int err = errno;
            return make_error(err, std::string("memfd_create: ") + std::strerror(err));
        }
        auto opened = privsep::open_lease_file(dir->get(), state_dir, name, false);
        if (!opened)
            return opened.error();
        if (!*opened)
            continue; // no such file
        UniqueFd src = std::move(*opened);
        any = true;
        char buf[65536];
        ssize_t n;
        std::uint64_t copied = 0;
        while ((n = read(src.get(), buf, sizeof buf)) > 0) {
            copied += static_cast<std::uint64_t>(n);
            if (copied > privsep::kMaxLeaseFileBytes)
                return make_error(EFBIG,
                                  "lease file " + path + " refused: grew over the limit of " +
                                      std::to_string(privsep::kMaxLeaseFileBytes) + " bytes");
            if (write(copies[i].get(), buf, static_cast<std::size_t>(n)) != n) {
                const int err = errno;
                return make_error(err, std::string("copy: ") + std::strerror(err));
            }
        }
        if (n < 0) {
            const int err = errno;
            return make_error(err, "cannot read " + path + ": " + std::strerror(err));
        }
    }
    if (!any)
        return make_error(ENOENT, "no lease file for " + iface + " in " + state_dir);
    Result<OpenedLeaseFile> opened =
        LeaseFile::open(std::move(copies[0]), std::move(copies[1]), iface);
    if (!opened)
        return opened.error();
    return std::move(opened->leases);
}

Result<std::string>
show_lease_file(const std::string& state_dir, const std::string& iface, bool json,
                const std::function<std::optional<std::vector<PeerFacts>>()>& read_device) {
    Result<std::vector<LeaseRecord>> leases = read_leases(state_dir, iface);
    if (!leases)
        return leases.error();
    ShowInput input{std::move(*leases), read_device(), std::time(nullptr)};
    return json ? format_json(input) : format_table(input);
}

} // namespace wgd::leased
