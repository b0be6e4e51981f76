// The lease file on real files in a temporary directory.
#include "leased/lease_file.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

using namespace wgd;
using namespace wgd::leased;

namespace {

class TempDir {
  public:
    TempDir() {
        std::string tmpl =
            (std::filesystem::temp_directory_path() / "wgd-leasefile-XXXXXX").string();
        path_ = ::mkdtemp(tmpl.data());
    }
    ~TempDir() { std::filesystem::remove_all(path_); }
    std::string file(const std::string& name) const { return path_ + "/" + name; }

  private:
    std::string path_;
};

UniqueFd open_rw(const std::string& path) {
    return UniqueFd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
}

Result<OpenedLeaseFile> open_pair(const TempDir& dir, const std::string& prefix = "wg0.leases",
                                  const char* iface = "wg0") {
    return LeaseFile::open(open_rw(dir.file(prefix + ".0")), open_rw(dir.file(prefix + ".1")),
                           iface);
}

// Closes the files' descriptors, as a server that stops does, before the
// test opens them again.
void close_files(Result<OpenedLeaseFile>& opened) {
    opened = failure("closed by the test");
}

std::uint64_t file_size(const std::string& path) {
    return std::filesystem::file_size(path);
}

void copy_file(const std::string& from, const std::string& to) {
    std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing);
}

LeaseRecord lease(int n, int host, std::int64_t start = 1764201600) {
    PublicKey k;
    k.bytes[0] = static_cast<std::uint8_t>(n);
    k.bytes[1] = static_cast<std::uint8_t>(n >> 8);
    k.bytes[2] = static_cast<std::uint8_t>(n >> 16);
    Ip6 v6{};
    v6.bytes[0] = 0x20, v6.bytes[1] = 0x01, v6.bytes[15] = static_cast<std::uint8_t>(host);
    return LeaseRecord{
        k, Ip4{{10, 0, static_cast<std::uint8_t>(host >> 8), static_cast<std::uint8_t>(host)}}, v6,
        start, start + 3600};
}

LeaseRecord release(int n) {
    LeaseRecord r = lease(n, 0);
    return LeaseRecord{r.peer, std::nullopt, std::nullopt, 0, 0};
}

// What a replay must give: the last state of each peer, leases only.
std::map<PublicKey, LeaseRecord> expected_state(const std::vector<LeaseRecord>& history) {
    std::map<PublicKey, LeaseRecord> m;
    for (auto& r : history)
        if (r.released())
            m.erase(r.peer);
        else
            m[r.peer] = r;
    return m;
}

std::map<PublicKey, LeaseRecord> as_map(const std::vector<LeaseRecord>& leases) {
    std::map<PublicKey, LeaseRecord> m;
    for (auto& r : leases)
        EXPECT_TRUE(m.emplace(r.peer, r).second) << "one state per peer";
    return m;
}

} // namespace

TEST(LeaseFile, RecordRoundTripsAndChecksumCatchesEveryFlippedBit) {
    std::uint8_t buf[kLeaseRecordSize];
    const LeaseRecord r = lease(7, 300);
    encode_record(r, buf);
    EXPECT_EQ(decode_record(buf), r);
    for (std::size_t bit = 0; bit < kLeaseRecordSize * 8; bit++) {
        buf[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
        EXPECT_FALSE(decode_record(buf)) << "bit " << bit;
        buf[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    }
}

TEST(LeaseFile, FirstStartCreatesAnEmptyFile) {
    TempDir dir;
    auto opened = open_pair(dir);
    ASSERT_TRUE(opened) << opened.error().message;
    EXPECT_TRUE(opened->report.fresh);
    EXPECT_FALSE(opened->report.unreadable);
    EXPECT_TRUE(opened->leases.empty());
    EXPECT_EQ(file_size(dir.file("wg0.leases.0")), kLeaseHeaderSize);
}

TEST(LeaseFile, SyncedGrantsComeBackAfterRestartAndTheLastRecordWins) {
    TempDir dir;
    std::vector<LeaseRecord> history{lease(1, 1), lease(2, 2), lease(3, 3)};
    {
        auto opened = open_pair(dir);
        ASSERT_TRUE(opened);
        ASSERT_EQ(opened->file.append(history), 0);
        std::vector<LeaseRecord> more{lease(1, 11, 1764205000), release(2)};
        ASSERT_EQ(opened->file.append(more), 0);
        ASSERT_EQ(opened->file.sync(), 0);
        history.insert(history.end(), more.begin(), more.end());
    }
    auto again = open_pair(dir);
    ASSERT_TRUE(again) << again.error().message;
    EXPECT_EQ(again->report.records, 5u);
    EXPECT_EQ(as_map(again->leases), expected_state(history));
}

TEST(LeaseFile, CrashAtEveryByteOfTheLastRecordLosesOnlyThatRecord) {
    TempDir dir;
    std::vector<LeaseRecord> acknowledged;
    for (int i = 1; i <= 20; i++)
        acknowledged.push_back(lease(i % 7, i));
    {
        auto opened = open_pair(dir);
        ASSERT_EQ(opened->file.append(acknowledged), 0);
        ASSERT_EQ(opened->file.sync(), 0);
        ASSERT_EQ(opened->file.append({lease(3, 99)}), 0); // being written at the crash
    }
    const std::string full = dir.file("full");
    copy_file(dir.file("wg0.leases.0"), full);
    const std::uint64_t base = kLeaseHeaderSize + acknowledged.size() * kLeaseRecordSize;
    const std::uint64_t written_ahead = file_size(full);
    ASSERT_GT(written_ahead, base + kLeaseRecordSize) << "zeros written ahead";
    // The crash leaves the record's first `cut` bytes, and after them either
    // the zeros written ahead or, where the file system lost them, nothing.
    for (bool zeros_after : {true, false}) {
        for (std::uint64_t cut = 0; cut < kLeaseRecordSize; cut++) {
            SCOPED_TRACE("cut at " + std::to_string(cut) + (zeros_after ? ", zeros after" : ""));
            copy_file(full, dir.file("wg0.leases.0"));
            if (zeros_after) {
                std::fstream f(dir.file("wg0.leases.0"),
                               std::ios::in | std::ios::out | std::ios::binary);
                f.seekp(static_cast<std::streamoff>(base + cut));
                f.write(std::string(kLeaseRecordSize - cut, '\0').data(),
                        static_cast<std::streamsize>(kLeaseRecordSize - cut));
            } else {
                ASSERT_EQ(
                    ::truncate(dir.file("wg0.leases.0").c_str(), static_cast<off_t>(base + cut)),
                    0);
            }
            for (int replay = 0; replay < 2; replay++) { // replaying twice changes nothing
                auto opened = open_pair(dir);
                ASSERT_TRUE(opened) << opened.error().message;
                // Zeros after: the torn record is reported as its whole slot.
                const std::uint64_t torn = zeros_after && cut > 0 ? kLeaseRecordSize : cut;
                EXPECT_EQ(opened->report.tail_cut_bytes, replay == 0 ? torn : 0);
                EXPECT_EQ(as_map(opened->leases), expected_state(acknowledged));
                // Cut right after the last good record, or zeros kept ahead.
                const auto size = file_size(dir.file("wg0.leases.0"));
                EXPECT_TRUE(size == base || (zeros_after && cut == 0 && size == written_ahead))
                    << size;
            }
            // The next record goes right after the acknowledged ones.
            {
                auto opened = open_pair(dir);
                ASSERT_EQ(opened->file.append({lease(4, 44)}), 0);
                ASSERT_EQ(opened->file.sync(), 0);
            }
            auto after = acknowledged;
            after.push_back(lease(4, 44));
            auto reopened = open_pair(dir);
            EXPECT_EQ(reopened->report.tail_cut_bytes, 0u);
            EXPECT_EQ(as_map(reopened->leases), expected_state(after));
        }
    }
    copy_file(full, dir.file("wg0.leases.0"));
    auto whole = open_pair(dir);
    auto with_last = acknowledged;
    with_last.push_back(lease(3, 99));
    EXPECT_EQ(as_map(whole->leases), expected_state(with_last)) << "a complete record counts";
}

TEST(LeaseFile, ZerosWrittenAheadAreNeitherRecordsNorATornTail) {
    TempDir dir;
    std::vector<LeaseRecord> history;
    {
        auto opened = open_pair(dir);
        // Past the first stretch of zeros written ahead, into a second one.
        for (int batch = 0; batch < 100; batch++) {
            std::vector<LeaseRecord> records;
            for (int i = 0; i < 100; i++)
                records.push_back(lease(batch * 100 + i, i));
            ASSERT_EQ(opened->file.append(records), 0);
            ASSERT_EQ(opened->file.sync(), 0);
            history.insert(history.end(), records.begin(), records.end());
        }
    }
    const auto size = file_size(dir.file("wg0.leases.0"));
    ASSERT_GT(size, kLeaseHeaderSize + history.size() * kLeaseRecordSize);
    auto opened = open_pair(dir);
    ASSERT_TRUE(opened) << opened.error().message;
    EXPECT_EQ(opened->report.records, history.size());
    EXPECT_EQ(opened->report.tail_cut_bytes, 0u);
    EXPECT_EQ(opened->report.corrupt_skipped, 0u);
    EXPECT_EQ(as_map(opened->leases), expected_state(history));
    EXPECT_EQ(file_size(dir.file("wg0.leases.0")), size) << "the zeros stay for the next appends";
}

TEST(LeaseFile, CorruptRecordInTheMiddleIsSkippedAndReported) {
    TempDir dir;
    std::vector<LeaseRecord> history;
    for (int i = 1; i <= 10; i++)
        history.push_back(lease(i, i));
    {
        auto opened = open_pair(dir);
        ASSERT_EQ(opened->file.append(history), 0);
        ASSERT_EQ(opened->file.sync(), 0);
    }
    {
        std::fstream f(dir.file("wg0.leases.0"), std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(kLeaseHeaderSize + 4 * kLeaseRecordSize + 40));
        f.put('\x7f');
    }
    auto opened = open_pair(dir);
    ASSERT_TRUE(opened);
    EXPECT_EQ(opened->report.corrupt_skipped, 1u);
    EXPECT_EQ(opened->report.tail_cut_bytes, 0u);
    history.erase(history.begin() + 4);
    EXPECT_EQ(as_map(opened->leases), expected_state(history)) << "nothing invented, the rest kept";
}

TEST(LeaseFile, CorruptLastRecordIsCutAsATornTail) {
    TempDir dir;
    {
        auto opened = open_pair(dir);
        ASSERT_EQ(opened->file.append({lease(1, 1), lease(2, 2)}), 0);
        ASSERT_EQ(opened->file.sync(), 0);
    }
    {
        std::fstream f(dir.file("wg0.leases.0"), std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(kLeaseHeaderSize + kLeaseRecordSize + 10));
        f.put('\x01');
    }
    auto opened = open_pair(dir);
    EXPECT_EQ(opened->report.tail_cut_bytes, kLeaseRecordSize);
    EXPECT_EQ(as_map(opened->leases), expected_state({lease(1, 1)}));
    ASSERT_EQ(opened->file.append({lease(3, 3)}), 0);
    ASSERT_EQ(opened->file.sync(), 0);
    close_files(opened);
    auto again = open_pair(dir);
    EXPECT_EQ(as_map(again->leases), expected_state({lease(1, 1), lease(3, 3)}));
}

TEST(LeaseFile, FileOfAnotherInterfaceIsRefused) {
    TempDir dir;
    { ASSERT_TRUE(open_pair(dir, "x", "wg0")); }
    auto opened = open_pair(dir, "x", "wg1");
    EXPECT_FALSE(opened);
    EXPECT_NE(opened.error().message.find("wg0"), std::string::npos) << opened.error().message;
}

TEST(LeaseFile, FileOfANewerFormatVersionIsRefused) {
    TempDir dir;
    { ASSERT_TRUE(open_pair(dir)); }
    {
        // Version 2 with a valid header checksum.
        std::fstream f(dir.file("wg0.leases.0"), std::ios::in | std::ios::out | std::ios::binary);
        std::uint8_t h[kLeaseHeaderSize];
        f.read(reinterpret_cast<char*>(h), sizeof h);
        h[8] = 2;
        std::uint32_t c = crc32c(h, 60);
        for (int i = 0; i < 4; i++)
            h[60 + i] = static_cast<std::uint8_t>(c >> (8 * i));
        f.seekp(0);
        f.write(reinterpret_cast<char*>(h), sizeof h);
    }
    auto opened = open_pair(dir);
    EXPECT_FALSE(opened);
    EXPECT_NE(opened.error().message.find("version 2"), std::string::npos)
        << opened.error().message;
    EXPECT_EQ(file_size(dir.file("wg0.leases.0")), kLeaseHeaderSize) << "left untouched";
}

TEST(LeaseFile, UnreadableFileIsReportedAndAFreshOneStarts) {
    TempDir dir;
    {
        std::ofstream f(dir.file("wg0.leases.0"), std::ios::binary);
        f << "this is not a lease file at all, but something else entirely";
    }
    auto opened = open_pair(dir);
    ASSERT_TRUE(opened);
    EXPECT_TRUE(opened->report.unreadable);
    EXPECT_TRUE(opened->report.fresh);
}

// Grants go on during a compaction; at every point a crash (a copy of the
// files as they are) replays exactly the acknowledged state.
TEST(LeaseFile, CompactionInTheMiddleOfGrantsLosesNothing) {
    TempDir dir;
    auto opened = open_pair(dir);
    ASSERT_TRUE(opened);
    LeaseFile& file = opened->file;
    std::vector<LeaseRecord> acknowledged;
    auto grant_batch = [&](int round) {
        std::vector<LeaseRecord> batch;
        for (int i = 0; i < 64; i++)
            batch.push_back(lease((round * 64 + i) % 100, round * 64 + i, 1764201600 + round));
        ASSERT_EQ(file.append(batch), 0);
        ASSERT_EQ(file.sync(), 0);
        acknowledged.insert(acknowledged.end(), batch.begin(), batch.end());
    };
    auto crash_and_replay = [&](const std::string& tag) {
        TempDir crash;
        copy_file(dir.file("wg0.leases.0"), crash.file("wg0.leases.0"));
        copy_file(dir.file("wg0.leases.1"), crash.file("wg0.leases.1"));
        auto replayed = open_pair(crash);
        ASSERT_TRUE(replayed) << tag << ": " << replayed.error().message;
        EXPECT_EQ(as_map(replayed->leases), expected_state(acknowledged)) << tag;
    };
    for (int round = 0; round < 10; round++)
        grant_batch(round);
    auto live = expected_state(acknowledged);
    ASSERT_TRUE(file.compaction_due(live.size()));
    std::vector<LeaseRecord> snapshot;
    for (auto& [k, r] : live)
        snapshot.push_back(r);
    const auto generation = file.generation();
    ASSERT_EQ(file.start_compaction(snapshot), 0);
    crash_and_replay("after start");
    int round = 10;
    while (file.compacting()) {
        ASSERT_EQ(file.compaction_step(16), 0);
        crash_and_replay("step before round " + std::to_string(round));
        grant_batch(round++);
        crash_and_replay("round " + std::to_string(round));
    }
    EXPECT_EQ(file.generation(), generation + 1);
    EXPECT_EQ(file.record_count(), snapshot.size() + 64u * static_cast<unsigned>(round - 10));
    grant_batch(round++);
    close_files(opened);
    auto again = open_pair(dir);
    EXPECT_EQ(again->report.generation, generation + 1);
    EXPECT_EQ(as_map(again->leases), expected_state(acknowledged));
}

TEST(LeaseFile, WriteErrorIsReportedAndLeavesNoPartialRecord) {
    TempDir dir;
    auto opened = open_pair(dir);
    ASSERT_TRUE(opened);
    ASSERT_EQ(opened->file.append({lease(1, 1)}), 0);
    ASSERT_EQ(opened->file.sync(), 0);
    const std::uint64_t records_end = kLeaseHeaderSize + kLeaseRecordSize;
    ASSERT_GT(file_size(dir.file("wg0.leases.0")), records_end) << "zeros written ahead";

    // Nothing may be written 100 bytes past the last record: a 64-record
    // batch fails, although it would not grow the file.
    struct rlimit old {};
    ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
    auto previous = ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = old;
    small.rlim_cur = records_end + 100;
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
    std::vector<LeaseRecord> batch;
    for (int i = 0; i < 64; i++)
        batch.push_back(lease(i + 2, i + 2));
    const int rc = opened->file.append(batch);
    ::setrlimit(RLIMIT_FSIZE, &old);
    ::signal(SIGXFSZ, previous);
    EXPECT_EQ(rc, EFBIG);
    EXPECT_EQ(file_size(dir.file("wg0.leases.0")), records_end) << "cut after the last record";

    ASSERT_EQ(opened->file.append({lease(5, 5)}), 0);
    ASSERT_EQ(opened->file.sync(), 0);
    close_files(opened);
    auto again = open_pair(dir);
    EXPECT_EQ(again->report.tail_cut_bytes, 0u);
    EXPECT_EQ(as_map(again->leases), expected_state({lease(1, 1), lease(5, 5)}));
}

namespace {

// What the index replay gives, through find() and for_each(), checked
// against the records replay of the same files.
struct IndexedState {
    std::map<PublicKey, LeaseRecord> found;   // find() of every key the history names
    std::map<PublicKey, LeaseRecord> visited; // for_each()
    std::size_t visits = 0;
    std::size_t size = 0;
};

IndexedState indexed_state(const TempDir& dir, const std::vector<LeaseRecord>& history) {
    auto opened =
        LeaseFile::open(open_rw(dir.file("wg0.leases.0")), open_rw(dir.file("wg0.leases.1")), "wg0",
                        LeaseFile::Replay::index);
    IndexedState s;
    EXPECT_TRUE(opened) << opened.error().message;
    EXPECT_TRUE(opened->leases.empty()) << "left in the file";
    if (!opened->index)
        return s;
    const ReplayIndex& index = *opened->index;
    s.size = index.size();
    for (const LeaseRecord& r : history) {
        LeaseRecord got;
        if (index.find(r.peer, got) < index.slots())
            s.found[r.peer] = got;
    }
    std::set<std::size_t> slots;
    index.for_each([&](std::size_t slot, const LeaseRecord& r) {
        s.visits++;
        EXPECT_TRUE(slots.insert(slot).second) << "one record a slot";
        LeaseRecord got;
        EXPECT_EQ(index.find(r.peer, got), slot);
        s.visited[r.peer] = r;
    });
    EXPECT_EQ(index.error(), 0);
    return s;
}

} // namespace

// Thousands of peers, each granted, renewed, some released and some leased
// again, in an order that interleaves them: the index holds each peer's last
// record and only those that hold a lease, as the records replay does.
TEST(LeaseFile, IndexReplayGivesEachPeersLastLeaseAsTheRecordsReplayDoes) {
    TempDir dir;
    std::vector<LeaseRecord> history;
    for (int round = 0; round < 3; round++)
        for (int n = 0; n < 3000; n++) {
            if (round == 1 && n % 5 == 0)
                history.push_back(release(n));
            else if (!(round == 2 && n % 10 == 0))
                history.push_back(lease(n, (n + round * 7) % 60000, 1764201600 + round));
        }
    {
        auto opened = open_pair(dir);
        ASSERT_EQ(opened->file.append(history), 0);
        ASSERT_EQ(opened->file.sync(), 0);
    }
    const auto want = expected_state(history);
    auto records = open_pair(dir);
    ASSERT_TRUE(records);
    ASSERT_EQ(as_map(records->leases), want);
    close_files(records);

    IndexedState got = indexed_state(dir, history);
    EXPECT_EQ(got.size, want.size());
    EXPECT_EQ(got.found, want) << "find(): the last record, none for a released peer";
    EXPECT_EQ(got.visited, want);
    EXPECT_EQ(got.visits, want.size()) << "each lease visited once";
    LeaseRecord unused;
    auto opened =
        LeaseFile::open(open_rw(dir.file("wg0.leases.0")), open_rw(dir.file("wg0.leases.1")), "wg0",
                        LeaseFile::Replay::index);
    EXPECT_EQ(opened->index->find(lease(999999, 1).peer, unused), opened->index->slots())
        << "a key the file never named";
}

TEST(LeaseFile, IndexReplaySkipsACorruptRecordAndCutsATornTailAsTheRecordsReplayDoes) {
    TempDir dir;
    std::vector<LeaseRecord> history;
    for (int i = 1; i <= 10; i++)
        history.push_back(lease(i % 4, i));
    {
        auto opened = open_pair(dir);
        ASSERT_EQ(opened->file.append(history), 0);
        ASSERT_EQ(opened->file.sync(), 0);
    }
    {
        std::fstream f(dir.file("wg0.leases.0"), std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(kLeaseHeaderSize + 8 * kLeaseRecordSize + 40));
        f.put('\x7f'); // the 9th: corrupt, with a good one after it
        f.seekp(0, std::ios::end);
        f.write("torn", 4);
    }
    std::vector<LeaseRecord> kept = history;
    kept.erase(kept.begin() + 8);
    IndexedState got = indexed_state(dir, history);
    EXPECT_EQ(got.found, expected_state(kept));
    EXPECT_EQ(got.visited, expected_state(kept));
    EXPECT_EQ(file_size(dir.file("wg0.leases.0")), kLeaseHeaderSize + 10 * kLeaseRecordSize)
        << "the torn tail is cut";
}

// The records stay in the file: one changed behind the server's back is not
// taken for what the replay read, and the failure is reported.
TEST(LeaseFile, IndexReportsARecordThatChangedAfterTheReplay) {
    TempDir dir;
    {
        auto opened = open_pair(dir);
        ASSERT_EQ(opened->file.append({lease(1, 1), lease(2, 2)}), 0);
        ASSERT_EQ(opened->file.sync(), 0);
    }
    auto opened =
        LeaseFile::open(open_rw(dir.file("wg0.leases.0")), open_rw(dir.file("wg0.leases.1")), "wg0",
                        LeaseFile::Replay::index);
    ASSERT_TRUE(opened->index);
    {
        std::fstream f(dir.file("wg0.leases.0"), std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(kLeaseHeaderSize + 40));
        f.put('\x7f');
    }
    LeaseRecord got;
    EXPECT_EQ(opened->index->find(lease(1, 1).peer, got), opened->index->slots());
    EXPECT_EQ(opened->index->error(), EIO);
    EXPECT_LT(opened->index->find(lease(2, 2).peer, got), opened->index->slots());
    EXPECT_EQ(got, lease(2, 2));
}
