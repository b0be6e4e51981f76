#include "privsep/state_files.hpp"

#include <fcntl.h>

#include <cerrno>
#include <cstring>

namespace wgd::privsep {

namespace {

Result<void> check_owner_and_mode(const struct stat& st) {
    if (st.st_uid != 0)
        return make_error(EPERM, "owned by uid " + std::to_string(st.st_uid) + ", not root");
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
        return make_error(EPERM, "writable by group or others");
    return {};
}

// "state directory PATH: the errno's text", with the errno as the code.
Error os_error(const std::string& what, int err) {
    return make_error(err, what + ": " + std::strerror(err));
}

} // namespace

Result<void> check_state_dir(const struct stat& st) {
    if (!S_ISDIR(st.st_mode))
        return make_error(ENOTDIR, "not a directory");
    return check_owner_and_mode(st);
}

Result<void> check_lease_file(const struct stat& st, std::uint64_t max_bytes) {
    if (!S_ISREG(st.st_mode))
        return make_error(EINVAL, "not a regular file");
    if (auto owner = check_owner_and_mode(st); !owner)
        return owner;
    if (st.st_nlink != 1)
        return make_error(EMLINK, std::to_string(st.st_nlink) + " hard links, not one");
    if (st.st_size < 0 || static_cast<std::uint64_t>(st.st_size) > max_bytes)
        return make_error(EFBIG, std::to_string(static_cast<long long>(st.st_size)) +
                                     " bytes, over the limit of " + std::to_string(max_bytes));
    return {};
}

Result<UniqueFd> open_state_dir(const std::string& path, bool create) {
    if (create && ::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
        return os_error("cannot create state directory " + path, errno);
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) {
        const int err = errno;
        if (err == ELOOP || err == ENOTDIR)
            return make_error(err, "state directory " + path +
                                       " refused: a symbolic link or not a directory");
        return os_error("state directory " + path + " refused", err);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
        return os_error("state directory " + path, errno);
    if (auto checked = check_state_dir(st); !checked)
        return make_error(checked.error().code,
                          "state directory " + path + " refused: " + checked.error().message);
    return fd;
}

Result<UniqueFd> open_lease_file(int dir_fd, const std::string& dir_path, const std::string& name,
                                 bool writable) {
    const std::string path = dir_path + "/" + name;
    int flags = O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC;
    flags |= writable ? O_RDWR | O_CREAT : O_RDONLY;
    UniqueFd fd(::openat(dir_fd, name.c_str(), flags, 0600));
    if (!fd) {
        const int err = errno;
        if (!writable && err == ENOENT)
            return UniqueFd{}; // absent: not an error when only reading
        if (err == ELOOP)
            return make_error(err, "lease file " + path + " refused: a symbolic link");
        return os_error("lease file " + path + " refused", err);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
        return os_error("lease file " + path, errno);
    if (auto checked = check_lease_file(st); !checked)
        return make_error(checked.error().code,
                          "lease file " + path + " refused: " + checked.error().message);
    // Regular files ignore O_NONBLOCK; it only kept a planted FIFO from
    // blocking the open. Cleared all the same, so that every later call
    // behaves as on any file.
    if (int fl = ::fcntl(fd.get(), F_GETFL); fl >= 0)
        (void)::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

} // namespace wgd::privsep
