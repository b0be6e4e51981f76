// The lease file: durable leases for a server that runs chrooted and can
// open no file, so it works only on two file descriptors handed in by the
// privileged parent (both opened O_RDWR|O_CREAT on e.g. wg0.leases.0 and
// wg0.leases.1 in the state directory).
//
// Layout of each file (little-endian):
//   header, 64 bytes: "WGDLEASE", format version (u32), record size (u32),
//     generation (u64), interface name (16 bytes, NUL padded), reserved,
//     CRC32C of the header (u32, last).
//   records, 76 bytes each: type (u8, 1 = a peer's lease state), flags (u8:
//     bit 0 IPv4 present, bit 1 IPv6 present), reserved (u16), peer key (32),
//     IPv4 (4), IPv6 (16), start (i64, Unix s), expiry (i64, Unix s: wall
//     time survives a reboot, CLOCK_BOOTTIME does not), CRC32C (u32).
// A record is the peer's whole lease state after a change; the last record
// of a peer wins; a record with neither address is a release.
//
// Durability: append(batch) writes a batch with one pwrite; sync() makes it
// durable (fdatasync). Nothing may be acknowledged before sync() returned 0
// (group commit: many grants share one sync). A failed append or sync
// returns the errno (ENOSPC, EROFS, EIO...): the caller refuses the grants of
// that batch and aborts their plans.
//
// Space ahead: append() writes zeros 1,024 records past the last record when
// it runs out of them, so that most appends do not grow the file and their
// fdatasync does not have to write the inode. Where the zeros do not fit (a
// small or full file system), appends grow the file.
//
// Replay (open): of the two files the one with a valid header and the
// highest generation is active. Its records are read in order; a bad record
// followed by good ones is corruption (skipped, counted); bad or partial
// records at the end are a torn tail, cut off (ftruncate) and reported; zeros
// after the last good record are the space ahead, kept. A header of a newer
// format version or of another interface is refused.
//
// Compaction, without renaming files and without stopping grants: the
// inactive file is truncated and receives the live set (a snapshot taken by
// the caller) in steps of at most one batch (compaction_step), while
// appends go on to the active file and are also queued behind the snapshot
// in the new file, so that its order stays "snapshot, then newer". When the
// snapshot is written, the new file is synced, then its header with
// generation + 1 is written and synced: from that moment replay picks it.
// A crash at any point leaves either the old file (the new one has no valid
// header, or a lower generation) or the complete new one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.hpp"
#include "common/result.hpp"
#include "leased/lease_record.hpp"

namespace wgd::leased {

inline constexpr std::uint32_t kLeaseFileVersion = 1;
inline constexpr std::size_t kLeaseHeaderSize = 64;
inline constexpr std::size_t kLeaseRecordSize = 76;

struct ReplayReport {
    std::size_t records = 0;         // good records read from the active file
    std::size_t corrupt_skipped = 0; // bad records with good ones after them
    std::uint64_t tail_cut_bytes = 0;
    bool fresh = false;      // no valid file: started a new one
    bool unreadable = false; // a file had content but no valid header
    std::uint64_t generation = 0;
};

struct OpenedLeaseFile;

// The replay as an index into the active file (Replay::index): for each
// peer, the number of its last record, found by the key's hash; the records
// stay in the file and are read again (pread) when asked. 8 bytes a slot,
// 11 a record at most, where the records in memory cost 72 each and the
// map that keeps a peer's last one 100 more: at a restart with 100,000
// peers leased holds this while the view of the peers arrives; the records
// themselves would be its peak of memory. The file's descriptor is borrowed
// from the LeaseFile, which must outlive the index and start no compaction
// before the index is done with (the compaction truncates the other file,
// and after a switch this one).
class ReplayIndex final : public ExpectedLeases {
  public:
    std::size_t slots() const override { return slots_.size(); }
    std::size_t size() const override { return live_; }
    std::size_t find(const PublicKey& key, LeaseRecord& record) const override;
    void for_each(const std::function<void(std::size_t, const LeaseRecord&)>& f) const override;
    int error() const override { return error_; }

  private:
    friend class LeaseFile;
    static constexpr std::uint32_t kEmpty = 0xffffffffu;
    static constexpr std::uint32_t kReleased = 0x80000000u; // the last record is a release
    struct Slot {
        std::uint32_t record = kEmpty; // its number in the file, and kReleased
        std::uint32_t hash = 0;        // the key's, to read only the likely records
    };
    // Room for max_records distinct peers at 3/4 load at most: the index never
    // grows, so it is never held twice.
    ReplayIndex(int fd, std::size_t max_records);
    // Record `number` is r, the peer's latest so far. 0 or an errno.
    int note(std::uint32_t number, const LeaseRecord& r);
    void finish(std::uint32_t records); // the records read; counts the live ones
    static std::uint32_t hash_of(const PublicKey& key);
    std::size_t home(std::uint32_t hash) const {
        return static_cast<std::size_t>((std::uint64_t{hash} * slots_.size()) >> 32);
    }
    std::size_t next(std::size_t i) const { return i + 1 == slots_.size() ? 0 : i + 1; }
    std::optional<LeaseRecord> read(std::uint32_t number) const; // sets error_ when it fails

    int fd_;
    std::vector<Slot> slots_;
    std::uint32_t records_ = 0; // in the file, up to the last good one
    std::size_t live_ = 0;
    mutable int error_ = 0;
};

class LeaseFile {
  public:
    // records: OpenedLeaseFile::leases holds every peer's last state (show,
    // tests). index: OpenedLeaseFile::index does, and leases stays empty
    // (leased at start). The error, when the files are refused, is one line
    // that begins "lease file: ".
    enum class Replay { records, index };
    static Result<OpenedLeaseFile> open(UniqueFd first, UniqueFd second, std::string_view iface,
                                        Replay replay = Replay::records);

    int append(const std::vector<LeaseRecord>& batch); // 0 or an errno
    int sync();                                        // 0 or an errno

    // Records in the active file; compaction is due when they exceed twice
    // the live set (and a small floor).
    std::size_t record_count() const { return records_; }
    bool compaction_due(std::size_t live) const;
    int start_compaction(std::vector<LeaseRecord> live_snapshot); // 0 or an errno
    // Writes up to max_records of the snapshot; at the end switches files.
    // Returns 0 while more remains or when done (see compacting()), or an
    // errno (the compaction is then abandoned; the active file is intact).
    int compaction_step(std::size_t max_records = 64);
    bool compacting() const { return compaction_.has_value(); }
    std::uint64_t generation() const { return generation_; }

    LeaseFile(LeaseFile&&) = default;
    LeaseFile& operator=(LeaseFile&&) = default;

  private:
    LeaseFile() = default;
    struct Compaction {
        std::vector<LeaseRecord> snapshot;
        std::size_t written = 0; // of the snapshot
        std::size_t queued = 0;  // newer records written behind the snapshot
    };
    int write_header(int fd, std::uint64_t generation);
    int write_ahead(int fd, std::uint64_t needed);
    static constexpr std::uint64_t kWriteAheadRecords = 1024; // 76 KiB

    UniqueFd fds_[2];
    int active_ = 0;
    std::uint64_t generation_ = 0;
    std::string iface_;
    std::uint64_t end_ = kLeaseHeaderSize;       // append offset in the active file
    std::uint64_t allocated_ = kLeaseHeaderSize; // written so far: records, then zeros
    bool write_ahead_ = true;                    // false after a failure, until the next compaction
    std::size_t records_ = 0;
    std::optional<Compaction> compaction_;
};

// A lease file accepted by LeaseFile::open: the file to append to, what its
// replay found, and what the replay repaired (for the caller to log).
struct OpenedLeaseFile {
    LeaseFile file;
    std::vector<LeaseRecord> leases;    // the last state of every peer that holds a lease
    std::unique_ptr<ReplayIndex> index; // Replay::index: the same, left in the file
    ReplayReport report;
};

// Exposed for tests and the fuzzer: one record to bytes and back.
void encode_record(const LeaseRecord& r, std::uint8_t* out);
std::optional<LeaseRecord> decode_record(const std::uint8_t* in);
std::uint32_t crc32c(const std::uint8_t* data, std::size_t len);

} // namespace wgd::leased
