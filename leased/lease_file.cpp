#include "leased/lease_file.hpp"

#include "common/addr.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unordered_map>

namespace wgd::leased {

namespace {

constexpr char kMagic[8] = {'W', 'G', 'D', 'L', 'E', 'A', 'S', 'E'};
constexpr std::uint8_t kTypePeerState = 1;
constexpr std::size_t kIfaceField = 16;

struct CrcTable {
    std::uint32_t t[256];
    constexpr CrcTable() : t() {
        for (std::uint32_t i = 0; i < 256; i++) {
            std::uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1; // Castagnoli
            t[i] = c;
        }
    }
};
constexpr CrcTable kCrc;

void put32(std::uint8_t* p, std::uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
void put64(std::uint8_t* p, std::uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
std::uint32_t get32(const std::uint8_t* p) {
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}
std::uint64_t get64(const std::uint8_t* p) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

int pwrite_all(int fd, const std::uint8_t* data, std::size_t len, std::uint64_t offset) {
    while (len > 0) {
        ssize_t n = ::pwrite(fd, data, len, static_cast<off_t>(offset));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (n == 0)
            return EIO;
        data += n, len -= static_cast<std::size_t>(n), offset += static_cast<std::uint64_t>(n);
    }
    return 0;
}

// Reads up to len bytes; returns the count, or -errno.
long pread_full(int fd, std::uint8_t* data, std::size_t len, std::uint64_t offset) {
    std::size_t got = 0;
    while (got < len) {
        ssize_t n = ::pread(fd, data + got, len - got, static_cast<off_t>(offset + got));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        got += static_cast<std::size_t>(n);
    }
    return static_cast<long>(got);
}

bool all_zero(const std::uint8_t* data, std::size_t len) {
    return std::all_of(data, data + len, [](std::uint8_t b) { return b == 0; });
}

struct KeyHash {
    std::size_t operator()(const PublicKey& k) const {
        std::size_t h;
        std::memcpy(&h, k.bytes.data(), sizeof h);
        return h;
    }
};

// "lease file: WHAT: the errno's text", with the errno as the code.
Error os_error(const char* what, int err) {
    return make_error(err, std::string("lease file: ") + what + ": " + std::strerror(err));
}

enum class HeaderState { Absent, Garbage, Torn, Valid };
struct Header {
    HeaderState state = HeaderState::Absent;
    std::uint64_t generation = 0;
    std::uint64_t size = 0;
};

} // namespace

std::uint32_t crc32c(const std::uint8_t* data, std::size_t len) {
    std::uint32_t c = ~0u;
    for (std::size_t i = 0; i < len; i++)
        c = kCrc.t[(c ^ data[i]) & 0xff] ^ (c >> 8);
    return ~c;
}

void encode_record(const LeaseRecord& r, std::uint8_t* out) {
    std::memset(out, 0, kLeaseRecordSize);
    out[0] = kTypePeerState;
    out[1] = static_cast<std::uint8_t>((r.ipv4 ? 1 : 0) | (r.ipv6 ? 2 : 0));
    std::memcpy(out + 4, r.peer.bytes.data(), 32);
    if (r.ipv4)
        std::memcpy(out + 36, r.ipv4->bytes.data(), 4);
    if (r.ipv6)
        std::memcpy(out + 40, r.ipv6->bytes.data(), 16);
    put64(out + 56, static_cast<std::uint64_t>(r.start_wall));
    put64(out + 64, static_cast<std::uint64_t>(r.expiry_wall));
    put32(out + 72, crc32c(out, 72));
}

std::optional<LeaseRecord> decode_record(const std::uint8_t* in) {
    if (get32(in + 72) != crc32c(in, 72))
        return std::nullopt;
    if (in[0] != kTypePeerState || in[1] > 3 || in[2] != 0 || in[3] != 0)
        return std::nullopt;
    LeaseRecord r;
    std::memcpy(r.peer.bytes.data(), in + 4, 32);
    if (in[1] & 1) {
        Ip4 a;
        std::memcpy(a.bytes.data(), in + 36, 4);
        r.ipv4 = a;
    }
    if (in[1] & 2) {
        Ip6 a;
        std::memcpy(a.bytes.data(), in + 40, 16);
        r.ipv6 = a;
    }
    r.start_wall = static_cast<std::int64_t>(get64(in + 56));
    r.expiry_wall = static_cast<std::int64_t>(get64(in + 64));
    return r;
}

int LeaseFile::write_header(int fd, std::uint64_t generation) {
    std::uint8_t h[kLeaseHeaderSize] = {};
    std::memcpy(h, kMagic, 8);
    put32(h + 8, kLeaseFileVersion);
    put32(h + 12, kLeaseRecordSize);
    put64(h + 16, generation);
    std::memcpy(h + 24, iface_.data(), std::min(iface_.size(), kIfaceField));
    put32(h + 60, crc32c(h, 60));
    return pwrite_all(fd, h, sizeof h, 0);
}

ReplayIndex::ReplayIndex(int fd, std::size_t max_records)
    : fd_(fd), slots_(max_records + max_records / 3 + 8) {}

std::uint32_t ReplayIndex::hash_of(const PublicKey& key) {
    // Keys are uniformly random curve points and the file is the server's
    // own (a state directory only root writes): unkeyed.
    std::uint64_t a, b;
    std::memcpy(&a, key.bytes.data(), 8);
    std::memcpy(&b, key.bytes.data() + 24, 8);
    return static_cast<std::uint32_t>(mix64(a ^ (b * 0x9e3779b97f4a7c15ull)) >> 32);
}

std::optional<LeaseRecord> ReplayIndex::read(std::uint32_t number) const {
    std::uint8_t b[kLeaseRecordSize];
    const long n =
        pread_full(fd_, b, sizeof b, kLeaseHeaderSize + std::uint64_t{number} * sizeof b);
    if (n < 0) {
        error_ = static_cast<int>(-n);
        return std::nullopt;
    }
    // It was a good record at the replay: anything else now is a file
    // changed behind the server's back.
    auto r = static_cast<std::size_t>(n) == sizeof b ? decode_record(b) : std::nullopt;
    if (!r)
        error_ = EIO;
    return r;
}

int ReplayIndex::note(std::uint32_t number, const LeaseRecord& r) {
    const std::uint32_t hash = hash_of(r.peer);
    const std::uint32_t record = number | (r.released() ? kReleased : 0);
    for (std::size_t i = home(hash);; i = next(i)) {
        Slot& s = slots_[i];
        if (s.record == kEmpty) {
            s = {record, hash};
            return 0;
        }
        if (s.hash == hash) {
            auto earlier = read(s.record & ~kReleased);
            if (!earlier)
                return error_;
            if (earlier->peer == r.peer) {
                s.record = record;
                return 0;
            }
        }
    }
}

void ReplayIndex::finish(std::uint32_t records) {
    records_ = records;
    live_ = static_cast<std::size_t>(std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) {
        return s.record != kEmpty && !(s.record & kReleased);
    }));
}

std::size_t ReplayIndex::find(const PublicKey& key, LeaseRecord& record) const {
    if (slots_.empty())
        return 0;
    const std::uint32_t hash = hash_of(key);
    for (std::size_t i = home(hash);; i = next(i)) {
        const Slot& s = slots_[i];
        if (s.record == kEmpty)
            return slots_.size();
        if (s.hash != hash)
            continue;
        auto r = read(s.record & ~kReleased);
        if (!r)
            return slots_.size();
        if (r->peer == key) {
            if (s.record & kReleased)
                return slots_.size();
            record = *r;
            return i;
        }
    }
}

// In file order, read in large pieces: a record is visited where it is
// the last of its peer (its own number in its peer's slot).
void ReplayIndex::for_each(const std::function<void(std::size_t, const LeaseRecord&)>& f) const {
    std::vector<std::uint8_t> buf(kLeaseRecordSize * std::min<std::size_t>(records_, 4096));
    for (std::uint32_t first = 0; first < records_;) {
        const std::size_t count =
            std::min<std::size_t>(records_ - first, buf.size() / kLeaseRecordSize);
        const long n = pread_full(fd_, buf.data(), count * kLeaseRecordSize,
                                  kLeaseHeaderSize + std::uint64_t{first} * kLeaseRecordSize);
        if (n < 0 || static_cast<std::size_t>(n) < count * kLeaseRecordSize) {
            error_ = n < 0 ? static_cast<int>(-n) : EIO;
            return;
        }
        for (std::size_t k = 0; k < count; k++) {
            auto r = decode_record(buf.data() + k * kLeaseRecordSize);
            if (!r || r->released())
                continue; // a corrupt record skipped at the replay, or a release
            const auto number = static_cast<std::uint32_t>(first + k);
            const std::uint32_t hash = hash_of(r->peer);
            for (std::size_t i = home(hash); slots_[i].record != kEmpty; i = next(i))
                if (slots_[i].hash == hash && slots_[i].record == number) {
                    f(i, *r);
                    break;
                }
        }
        first += static_cast<std::uint32_t>(count);
    }
}

Result<OpenedLeaseFile> LeaseFile::open(UniqueFd first, UniqueFd second, std::string_view iface,
                                        Replay replay) {
    if (!first || !second)
        return make_error(EBADF, "lease file: descriptors not open");
    if (iface.empty() || iface.size() > kIfaceField)
        return make_error(EINVAL, "lease file: bad interface name");
    ReplayReport report;
    LeaseFile file;
    file.fds_[0] = std::move(first);
    file.fds_[1] = std::move(second);
    file.iface_ = std::string(iface);

    Header headers[2];
    for (int i = 0; i < 2; i++) {
        struct stat st {};
        if (::fstat(file.fds_[i].get(), &st) != 0)
            return os_error("fstat", errno);
        Header& h = headers[i];
        h.size = static_cast<std::uint64_t>(st.st_size);
        if (h.size == 0)
            continue;
        std::uint8_t b[kLeaseHeaderSize];
        long n = pread_full(file.fds_[i].get(), b, sizeof b, 0);
        if (n < 0)
            return os_error("read", static_cast<int>(-n));
        if (static_cast<std::size_t>(n) < sizeof b || std::memcmp(b, kMagic, 8) != 0) {
            h.state = HeaderState::Garbage;
            continue;
        }
        if (get32(b + 60) != crc32c(b, 60)) {
            h.state = HeaderState::Torn; // a header being written when we crashed
            continue;
        }
        const std::uint32_t version = get32(b + 8);
        if (version > kLeaseFileVersion || version == 0) {
            return failure("lease file: written by format version " + std::to_string(version) +
                           ", this server reads version " + std::to_string(kLeaseFileVersion) +
                           " (refusing to overwrite it)");
        }
        if (get32(b + 12) != kLeaseRecordSize)
            return failure("lease file: unexpected record size " + std::to_string(get32(b + 12)));
        char name[kIfaceField + 1] = {};
        std::memcpy(name, b + 24, kIfaceField);
        if (std::string_view(name) != iface)
            return failure("lease file: belongs to interface \"" + std::string(name) +
                           "\", not \"" + std::string(iface) + "\"");
        h.state = HeaderState::Valid;
        h.generation = get64(b + 16);
    }

    int active = -1;
    for (int i = 0; i < 2; i++)
        if (headers[i].state == HeaderState::Valid &&
            (active < 0 || headers[i].generation > headers[active].generation))
            active = i;
    for (auto& h : headers)
        if (h.state == HeaderState::Garbage)
            report.unreadable = true;

    if (active < 0) { // a first start, or nothing readable: begin a new file
        report.fresh = true;
        file.active_ = 0;
        file.generation_ = 1;
        const int fd = file.fds_[0].get();
        if (::ftruncate(fd, 0) != 0)
            return os_error("cannot initialise", errno);
        if (int err = file.write_header(fd, 1); err != 0)
            return os_error("cannot initialise", err);
        if (::fdatasync(fd) != 0)
            return os_error("cannot initialise", errno);
        report.generation = 1;
        return OpenedLeaseFile{std::move(file), {}, nullptr, report};
    }

    file.active_ = active;
    file.generation_ = headers[active].generation;
    const int fd = file.fds_[active].get();
    const std::uint64_t size = headers[active].size;
    // Records: the last state of each peer in a map. Index: the number of
    // each peer's last record.
    std::unordered_map<PublicKey, LeaseRecord, KeyHash> state;
    std::unique_ptr<ReplayIndex> index;
    if (replay == Replay::index) {
        const std::uint64_t slots = (size - kLeaseHeaderSize) / kLeaseRecordSize;
        if (slots >= ReplayIndex::kReleased)
            return make_error(EFBIG, "lease file: more records than a replay can index");
        index.reset(new ReplayIndex(fd, static_cast<std::size_t>(slots)));
    }
    std::vector<std::uint8_t> buf(std::min<std::uint64_t>(kLeaseRecordSize * 8192, size));
    // data_end: the end of the last slot that is not all zeros. Zeros after
    // the last good record are space written ahead by append(), not a tail.
    std::uint64_t offset = kLeaseHeaderSize, good_end = kLeaseHeaderSize;
    std::uint64_t data_end = kLeaseHeaderSize;
    std::size_t bad_run = 0;
    while (offset + kLeaseRecordSize <= size) {
        long n = pread_full(fd, buf.data(), buf.size(), offset);
        if (n < 0)
            return os_error("read", static_cast<int>(-n));
        const std::size_t whole = static_cast<std::size_t>(n) / kLeaseRecordSize;
        if (whole == 0)
            break;
        for (std::size_t i = 0; i < whole; i++) {
            const std::uint8_t* slot = buf.data() + i * kLeaseRecordSize;
            if (!all_zero(slot, kLeaseRecordSize))
                data_end = offset + (i + 1) * kLeaseRecordSize;
            auto r = decode_record(slot);
            if (!r) {
                bad_run++;
                continue;
            }
            report.corrupt_skipped += bad_run;
            bad_run = 0;
            report.records++;
            good_end = offset + (i + 1) * kLeaseRecordSize;
            if (index) {
                const auto number =
                    static_cast<std::uint32_t>((offset - kLeaseHeaderSize) / kLeaseRecordSize + i);
                if (int rc = index->note(number, *r); rc != 0)
                    return os_error("read", rc);
            } else {
                state.insert_or_assign(r->peer, *r);
            }
        }
        offset += whole * kLeaseRecordSize;
    }
    if (offset < size) { // less than a record at the end
        std::uint8_t partial[kLeaseRecordSize];
        long n = pread_full(fd, partial, static_cast<std::size_t>(size - offset), offset);
        if (n < 0)
            return os_error("read", static_cast<int>(-n));
        if (!all_zero(partial, static_cast<std::size_t>(n)))
            data_end = size;
    }
    if (size > good_end && data_end <= good_end) {
        file.allocated_ = size;   // only zeros written ahead: kept for the next appends
    } else if (size > good_end) { // a torn tail: bad records and a partial one
        report.tail_cut_bytes = data_end - good_end;
        if (::ftruncate(fd, static_cast<off_t>(good_end)) != 0)
            return os_error("cannot cut the torn tail", errno);
        if (::fdatasync(fd) != 0)
            return os_error("sync", errno);
    }
    if (file.allocated_ < good_end)
        file.allocated_ = good_end;
    file.end_ = good_end;
    file.records_ = (good_end - kLeaseHeaderSize) / kLeaseRecordSize;
    report.generation = file.generation_;
    if (index)
        index->finish(static_cast<std::uint32_t>((good_end - kLeaseHeaderSize) / kLeaseRecordSize));
    std::vector<LeaseRecord> leases;
    leases.reserve(state.size());
    for (auto& [key, r] : state)
        if (!r.released())
            leases.push_back(r);
    return OpenedLeaseFile{std::move(file), std::move(leases), std::move(index), report};
}

int LeaseFile::append(const std::vector<LeaseRecord>& batch) {
    if (batch.empty())
        return 0;
    std::vector<std::uint8_t> buf(batch.size() * kLeaseRecordSize);
    for (std::size_t i = 0; i < batch.size(); i++)
        encode_record(batch[i], buf.data() + i * kLeaseRecordSize);
    const int fd = fds_[active_].get();
    if (write_ahead_ && end_ + buf.size() > allocated_ && write_ahead(fd, end_ + buf.size()) != 0) {
        // No room for zeros ahead (a small or full file system): appends
        // grow the file, until the next compaction tries again.
        (void)::ftruncate(fd, static_cast<off_t>(end_));
        allocated_ = end_;
        write_ahead_ = false;
    }
    int rc = pwrite_all(fd, buf.data(), buf.size(), end_);
    if (rc != 0) {
        // Leave no partial record behind for the next batch to follow.
        (void)::ftruncate(fd, static_cast<off_t>(end_));
        allocated_ = end_;
        return rc;
    }
    end_ += buf.size();
    records_ += batch.size();
    if (compaction_) {
        const std::uint64_t at =
            kLeaseHeaderSize +
            (compaction_->snapshot.size() + compaction_->queued) * kLeaseRecordSize;
        if (pwrite_all(fds_[1 - active_].get(), buf.data(), buf.size(), at) != 0)
            compaction_.reset(); // the active file is intact; try again later
        else
            compaction_->queued += batch.size();
    }
    return 0;
}

// Zeros from the end of what is allocated to past `needed`, written once for
// thousands of records: an append into them leaves the file's size alone, so
// its fdatasync need not write the inode too. Measured on this machine's
// ext4: 286-390 us for append + fdatasync, 149-179 us for an overwrite +
// fdatasync. The next sync() makes the zeros durable with the batch.
int LeaseFile::write_ahead(int fd, std::uint64_t needed) {
    static const std::uint8_t zeros[64 * 1024] = {};
    const std::uint64_t target = needed + kWriteAheadRecords * kLeaseRecordSize;
    for (std::uint64_t at = allocated_; at < target;) {
        const std::size_t n =
            static_cast<std::size_t>(std::min<std::uint64_t>(sizeof zeros, target - at));
        if (int rc = pwrite_all(fd, zeros, n, at); rc != 0)
            return rc;
        at += n;
    }
    allocated_ = target;
    return 0;
}

int LeaseFile::sync() {
    if (::fdatasync(fds_[active_].get()) != 0)
        return errno;
    return 0;
}

bool LeaseFile::compaction_due(std::size_t live) const {
    return !compaction_ && records_ >= 128 && records_ > 2 * live;
}

int LeaseFile::start_compaction(std::vector<LeaseRecord> live_snapshot) {
    if (compaction_)
        return EBUSY;
    if (::ftruncate(fds_[1 - active_].get(), 0) != 0)
        return errno;
    compaction_ = Compaction{std::move(live_snapshot), 0, 0};
    return 0;
}

int LeaseFile::compaction_step(std::size_t max_records) {
    if (!compaction_)
        return 0;
    Compaction& c = *compaction_;
    const int fd = fds_[1 - active_].get();
    const std::size_t n = std::min(max_records, c.snapshot.size() - c.written);
    if (n > 0) {
        std::vector<std::uint8_t> buf(n * kLeaseRecordSize);
        for (std::size_t i = 0; i < n; i++)
            encode_record(c.snapshot[c.written + i], buf.data() + i * kLeaseRecordSize);
        if (int rc = pwrite_all(fd, buf.data(), buf.size(),
                                kLeaseHeaderSize + c.written * kLeaseRecordSize);
            rc != 0) {
            compaction_.reset();
            return rc;
        }
        c.written += n;
        if (c.written < c.snapshot.size())
            return 0;
    }
    // Everything is in place: make it durable, then make it the active file.
    int rc = ::fdatasync(fd) != 0 ? errno : 0;
    if (rc == 0)
        rc = write_header(fd, generation_ + 1);
    if (rc == 0 && ::fdatasync(fd) != 0)
        rc = errno;
    if (rc != 0) {
        (void)::ftruncate(fd, 0);
        compaction_.reset();
        return rc;
    }
    const std::size_t total = c.snapshot.size() + c.queued;
    active_ = 1 - active_;
    generation_++;
    end_ = kLeaseHeaderSize + total * kLeaseRecordSize;
    allocated_ = end_;
    write_ahead_ = true;
    records_ = total;
    compaction_.reset();
    return 0;
}

} // namespace wgd::leased
