// The state directory and its lease files, opened by root: netd at start and
// `show` offline. Neither follows a symlink, and each refuses what another
// user could have planted or swapped: a directory or file not owned by root
// or writable by group or others, a lease file that is not a regular file,
// has more than one link (a hard link to a file elsewhere), or is larger than
// kMaxLeaseFileBytes (leased's RLIMIT_FSIZE: leased never writes more).
#pragma once

#include "common/fd.hpp"
#include "common/result.hpp"

#include <sys/stat.h>

#include <cstdint>
#include <string>

namespace wgd::privsep {

// 256 MiB: 3.5 million 76-byte records, a live set of 1.7 million peers
// before compaction (at twice the live set) shrinks the file.
inline constexpr std::uint64_t kMaxLeaseFileBytes = 256ull << 20;

// Pure checks of an fstat of the opened directory or file: the error, when
// it may not be used, is the reason in a few words ("owned by uid 1000").
Result<void> check_state_dir(const struct stat& st);
Result<void> check_lease_file(const struct stat& st, std::uint64_t max_bytes = kMaxLeaseFileBytes);

// The state directory, created (0700) when `create` and missing; opened
// O_DIRECTORY|O_NOFOLLOW and checked.
Result<UniqueFd> open_state_dir(const std::string& path, bool create);
// A lease file inside it: O_NOFOLLOW|O_NOCTTY|O_NONBLOCK, read-write and
// created (0600) when `writable`, else read-only; then checked. A missing
// file that is not to be created is no error: an invalid fd. The errors
// are one line naming the path.
Result<UniqueFd> open_lease_file(int dir_fd, const std::string& dir_path, const std::string& name,
                                 bool writable);

} // namespace wgd::privsep
