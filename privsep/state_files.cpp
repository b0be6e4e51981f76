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

OpenedFile open_state_dir(const std::string& path, bool create) {
    OpenedFile out;
    if (create && ::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
        out.error = "cannot create state directory " + path + ": " + std::strerror(errno);
        return out;
    }
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) {
        const char* why = errno == ELOOP || errno == ENOTDIR ? "a symbolic link or not a directory"
                                                             : std::strerror(errno);
        out.error = "state directory " + path + " refused: " + why;
        return out;
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        out.error = "state directory " + path + ": " + std::strerror(errno);
        return out;
    }
    if (std::string p = state_dir_problem(st); !p.empty()) {
        out.error = "state directory " + path + " refused: " + p;
        return out;
    }
    out.fd = std::move(fd);
    return out;
}

OpenedFile open_lease_file(int dir_fd, const std::string& dir_path, const std::string& name,
                           bool writable) {
    OpenedFile out;
    const std::string path = dir_path + "/" + name;
    int flags = O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC;
    flags |= writable ? O_RDWR | O_CREAT : O_RDONLY;
    UniqueFd fd(::openat(dir_fd, name.c_str(), flags, 0600));
    if (!fd) {
        if (!writable && errno == ENOENT)
            return out;
        const char* why = errno == ELOOP ? "a symbolic link" : std::strerror(errno);
        out.error = "lease file " + path + " refused: " + why;
        return out;
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        out.error = "lease file " + path + ": " + std::strerror(errno);
        return out;
    }
    if (std::string p = lease_file_problem(st); !p.empty()) {
        out.error = "lease file " + path + " refused: " + p;
        return out;
    }
    // Regular files ignore O_NONBLOCK; it only kept a planted FIFO from
    // blocking the open. Cleared all the same, so that every later call
    // behaves as on any file.
    if (int fl = ::fcntl(fd.get(), F_GETFL); fl >= 0)
        (void)::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK);
    out.fd = std::move(fd);
    return out;
}

} // namespace wgd::privsep
