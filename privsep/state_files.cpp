#include "privsep/state_files.hpp"

#include <fcntl.h>

#include <cerrno>
#include <cstring>

namespace wgd::privsep {

namespace {

std::string owner_and_mode_problem(const struct stat& st) {
    if (st.st_uid != 0)
        return "owned by uid " + std::to_string(st.st_uid) + ", not root";
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
        return "writable by group or others";
    return "";
}

} // namespace

std::string state_dir_problem(const struct stat& st) {
    if (!S_ISDIR(st.st_mode))
        return "not a directory";
    return owner_and_mode_problem(st);
}

std::string lease_file_problem(const struct stat& st, std::uint64_t max_bytes) {
    if (!S_ISREG(st.st_mode))
        return "not a regular file";
    if (std::string p = owner_and_mode_problem(st); !p.empty())
        return p;
    if (st.st_nlink != 1)
        return std::to_string(st.st_nlink) + " hard links, not one";
    if (st.st_size < 0 || static_cast<std::uint64_t>(st.st_size) > max_bytes)
        return std::to_string(static_cast<long long>(st.st_size)) + " bytes, over the limit of " +
               std::to_string(max_bytes);
    return "";
}

Result<UniqueFd> open_state_dir(const std::string& path, bool create) {
    if (create && ::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
        return failure("cannot create state directory " + path + ": " + std::strerror(errno));
    }
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) {
        const char* why = errno == ELOOP || errno == ENOTDIR ? "a symbolic link or not a directory"
                                                             : std::strerror(errno);
        return failure("state directory " + path + " refused: " + why);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        return failure("state directory " + path + ": " + std::strerror(errno));
    }
    if (std::string p = state_dir_problem(st); !p.empty()) {
        return failure("state directory " + path + " refused: " + p);
    }
    return fd;
}

Result<UniqueFd> open_lease_file(int dir_fd, const std::string& dir_path, const std::string& name,
                                 bool writable) {
    const std::string path = dir_path + "/" + name;
    int flags = O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC;
    flags |= writable ? O_RDWR | O_CREAT : O_RDONLY;
    UniqueFd fd(::openat(dir_fd, name.c_str(), flags, 0600));
    if (!fd) {
        if (!writable && errno == ENOENT)
            return UniqueFd{}; // absent: not an error when only reading
        const char* why = errno == ELOOP ? "a symbolic link" : std::strerror(errno);
        return failure("lease file " + path + " refused: " + why);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        return failure("lease file " + path + ": " + std::strerror(errno));
    }
    if (std::string p = lease_file_problem(st); !p.empty()) {
        return failure("lease file " + path + " refused: " + p);
    }
    // Regular files ignore O_NONBLOCK; it only kept a planted FIFO from
    // blocking the open. Cleared all the same, so that every later call
    // behaves as on any file.
    if (int fl = ::fcntl(fd.get(), F_GETFL); fl >= 0)
        (void)::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

} // namespace wgd::privsep
