// Replay of arbitrary lease files: the first input byte splits the rest
// between the two files. Whatever opens must replay the same way twice,
// with nothing left to cut the second time, and keep a record appended.
#include "leased/lease_file.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <map>

using namespace wgd;
using namespace wgd::leased;

namespace {

UniqueFd memfd_with(const std::uint8_t* data, std::size_t size) {
    UniqueFd fd(::memfd_create("lease", MFD_CLOEXEC));
    if (!fd)
        std::abort();
    std::size_t off = 0;
    while (off < size) {
        ssize_t n = ::write(fd.get(), data + off, size - off);
        if (n <= 0)
            std::abort();
        off += static_cast<std::size_t>(n);
    }
    return fd;
}

std::map<PublicKey, LeaseRecord> state_of(const std::vector<LeaseRecord>& leases) {
    std::map<PublicKey, LeaseRecord> m;
    for (auto& r : leases) {
        if (r.released() || !m.emplace(r.peer, r).second)
            std::abort(); // one live state per peer
        std::uint8_t buf[kLeaseRecordSize];
        encode_record(r, buf);
        if (decode_record(buf) != r)
            std::abort();
    }
    return m;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2)
        return 0;
    const std::size_t split = std::min<std::size_t>(size - 1, std::size_t{data[0]} * 16);
    UniqueFd a = memfd_with(data + 1, split);
    UniqueFd b = memfd_with(data + 1 + split, size - 1 - split);
    UniqueFd a2(::dup(a.get())), b2(::dup(b.get())), a3(::dup(a.get())), b3(::dup(b.get()));

    // Each open stands for a start of the server: the files of the one
    // before are closed first, as at a restart.
    std::map<PublicKey, LeaseRecord> state;
    {
        auto first = LeaseFile::open(std::move(a), std::move(b), "wg0");
        if (!first)
            return 0;
        state = state_of(first->leases);
    }

    PublicKey k;
    k.bytes.fill(0xab);
    LeaseRecord extra{k, Ip4{{10, 1, 2, 3}}, std::nullopt, 1, 2};
    {
        auto second = LeaseFile::open(std::move(a2), std::move(b2), "wg0");
        if (!second || second->report.tail_cut_bytes != 0 || state_of(second->leases) != state)
            std::abort();
        if (second->file.append({extra}) != 0 || second->file.sync() != 0)
            std::abort();
    }
    auto third = LeaseFile::open(std::move(a3), std::move(b3), "wg0");
    if (!third)
        std::abort();
    auto expected = state;
    expected[k] = extra;
    if (state_of(third->leases) != expected)
        std::abort();
    return 0;
}
