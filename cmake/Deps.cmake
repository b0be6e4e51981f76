# The four C libraries of the project, found through pkg-config and exposed as
# imported targets (PkgConfig::MNL, ...).
find_package(PkgConfig REQUIRED)
pkg_check_modules(MNL REQUIRED IMPORTED_TARGET libmnl)
pkg_check_modules(SECCOMP REQUIRED IMPORTED_TARGET libseccomp)
pkg_check_modules(CAPNG REQUIRED IMPORTED_TARGET libcap-ng)
pkg_check_modules(SODIUM REQUIRED IMPORTED_TARGET libsodium)
