# Thin front door; the build itself is CMake (CMakeLists.txt).
SHELL := /bin/bash
BUILD        ?= build
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
SOAK_SECONDS ?= 600
PREFIX       ?= /usr/local
DESTDIR      ?=
JOBS         ?= $(shell nproc)
SANITIZE     ?= 0
CMAKE_FLAGS  ?=
CHECK_LABEL  ?=

# ccache, where installed, shares compiled objects between build trees.
ifneq ($(shell command -v ccache),)
  CMAKE_FLAGS += -DCMAKE_CXX_COMPILER_LAUNCHER=ccache
endif

# WERROR=1: warnings are errors (CI builds this way).
WERROR       ?= 0
ifeq ($(WERROR),1)
  CMAKE_FLAGS += -DWERROR=ON
endif

ifeq ($(SANITIZE),1)
  BUILD := build-sanitize
  CMAKE_FLAGS += -DSANITIZE=ON
endif

# Debian packages the build, the tests and the demo need.
DEPS := cmake g++ clang pkg-config make libmnl-dev libseccomp-dev libcap-ng-dev \
        libsodium-dev libgtest-dev libgmock-dev libbenchmark-dev iproute2 \
        wireguard-tools wireguard-go mandoc python3 libclang-rt-14-dev \
        iputils-ping procps clang-format

.PHONY: all build deps have-deps check demo fuzz soak bench bench-load install uninstall format format-check clean \
        deps-kernel have-deps-kernel check-kernel check-kernel-large

all: build

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# The packages of the list $(1) that are not installed, as shell text.
missing_packages = $$(for p in $(1); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; \
	  done)

# The only targets that install packages: deps and deps-kernel. The others
# check (have-deps) and say what to run.
deps:
	@missing=$(call missing_packages,$(DEPS)); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "missing packages; as root run:"; \
	  echo "  apt-get install -y" $$missing; exit 1; \
	fi; \
	echo "installing:" $$missing; \
	( [ -n "$$(find /var/lib/apt/lists -name '*Packages*' 2>/dev/null | head -1)" ] || apt-get update ) && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing || \
	{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; }

have-deps:
	@missing=$(call missing_packages,$(DEPS)); \
	if [ -n "$$missing" ]; then \
	  echo "missing Debian packages:" $$missing "(install them with: make deps, as root)" >&2; exit 2; \
	fi

check: have-deps build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(if $(CHECK_LABEL),-L $(CHECK_LABEL))

# The kernel's WireGuard (the generic netlink backend) in QEMU guests booting
# Debian's cloud kernels 6.1 and 6.12 (tests/kernel/run.sh). The kernel and
# busybox packages are fetched into $(BUILD)/kernel, not installed. Needs root.
KERNEL_DEPS := qemu-system-x86 cpio kmod xz-utils file binutils
deps-kernel:
	@$(MAKE) --no-print-directory deps DEPS="$(KERNEL_DEPS)"

have-deps-kernel:
	@missing=$(call missing_packages,$(KERNEL_DEPS)); \
	if [ -n "$$missing" ]; then \
	  echo "missing Debian packages:" $$missing "(install them with: make deps-kernel, as root)" >&2; exit 2; \
	fi

check-kernel: have-deps have-deps-kernel build
	tests/kernel/run.sh $(BUILD) tests

# 100,000 peers on kernel WireGuard, all leased, then a restart (wgd-load in
# the guests); much slower than check-kernel under emulation.
check-kernel-large: have-deps have-deps-kernel build
	tests/kernel/run.sh $(BUILD) large

demo: have-deps build
	@tests/demo.sh $(BUILD)

fuzz: have-deps
	cmake -S . -B $(FUZZ_BUILD) -DFUZZ=ON -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(FUZZ_BUILD) -j $(JOBS)
	@set -e; for t in $(FUZZ_BUILD)/fuzz/fuzz_*; do \
	  name=$$(basename $$t); name=$${name#fuzz_}; \
	  work=$(FUZZ_BUILD)/corpus/$$name; mkdir -p $$work; \
	  echo "== $$name: $(FUZZ_SECONDS) s"; \
	  $$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -timeout=10 \
	      -artifact_prefix=$(FUZZ_BUILD)/crash-$$name- $$work fuzz/corpus/$$name 2>&1 | \
	      grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|#[0-9]+[[:space:]]+DONE|==[0-9]+==ERROR|SUMMARY)' ; \
	  test $${PIPESTATUS[0]} -eq 0; \
	done

# The robustness campaign: SIGKILLs of the server suite's processes
# during grants for SOAK_SECONDS, every acknowledged lease checked after each
# restart; then the other fault, flood and hostile-input tests once. Needs root.
soak: have-deps build
	cd $(BUILD) && WGD_SOAK_SECONDS=$(SOAK_SECONDS) ./tests/test_system \
	  --gtest_filter='Faults.*:Floods.*:Hostile.*'

bench: have-deps build
	@set -e; for b in $(BUILD)/bench/*; do echo "== $$(basename $$b)"; \
	  $$b --benchmark_repetitions=5 --benchmark_report_aggregates_only=true; done

# The server under load: N peers, C concurrent clients, and
# optionally M leases before the restart (RESTART_LEASES=60000; wireguard-go
# holds at most 65,536 peers). HOSTILE=R: R rounds of the paced renewals
# alone and beside one peer changing its lease at full speed (the per-peer
# budget's effect on the others' p99). FLOOR=1 replaces the server by a trivial
# responder: the ceiling this machine's TCP and the generator allow. Needs root.
N              ?= 10000
C              ?= 1000
RESTART_LEASES ?= 0
FLOOR          ?= 0
HOSTILE        ?= 0
bench-load: have-deps build
	$(BUILD)/tests/wgd-load -n $(N) -c $(C) --restart-leases $(RESTART_LEASES) \
	  $(if $(filter 1,$(FLOOR)),--floor) $(if $(filter-out 0,$(HOSTILE)),--hostile $(HOSTILE))

install: build
	DESTDIR=$(DESTDIR) cmake --install $(BUILD) --prefix $(PREFIX)

uninstall:
	@if [ -f $(BUILD)/install_manifest.txt ]; then \
	  while read -r f || [ -n "$$f" ]; do rm -fv "$(DESTDIR)$$f"; done < $(BUILD)/install_manifest.txt; fi

format:
	git ls-files '*.cpp' '*.hpp' | xargs clang-format -i

format-check:
	git ls-files '*.cpp' '*.hpp' | xargs clang-format --dry-run -Werror

clean:
	rm -rf $(BUILD) build-sanitize $(FUZZ_BUILD)
