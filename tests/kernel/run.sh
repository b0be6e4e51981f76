#!/usr/bin/env bash
# The daemons on kernel WireGuard: boots Debian's cloud kernels under QEMU,
# one after the other, from an initramfs that holds the freshly built
# daemons and test programs, and runs the kernel system tests inside (the
# system tests' lab then makes kernel WireGuard interfaces, and the daemons
# use the generic netlink backend). Each guest's console is relayed here;
# the exit status is 0 only when every guest ran its tests and they passed.
#
#   tests/kernel/run.sh BUILD_DIR [tests|large]
#
# tests: the kernel system tests (make check-kernel).
# large: 100,000 peers leased and restarted by wgd-load (make check-kernel-large).
#
# Environment: WGD_KERNELS (Debian package names, default the 6.1 and 6.12
# cloud kernels), WGD_KERNEL_FILTER (a gtest filter replacing the default),
# WGD_KERNEL_TIMEOUT (seconds per guest), WGD_KERNEL_PEERS (large: peers).
#
# Needs root (apt-get, the guests' namespaces), qemu-system-x86 and cpio
# (make deps-kernel). The kernel and busybox-static packages are fetched
# with apt-get download into BUILD_DIR/kernel and unpacked there: nothing is
# installed on this machine for them, /boot and the boot loader stay as
# they are. Everything else lives in a temporary directory removed at exit,
# and a guest still running then is stopped by its pid.
set -euo pipefail

build=$(realpath "${1:?usage: run.sh BUILD_DIR [tests|large]}")
mode=${2:-tests}
kernels=${WGD_KERNELS:-linux-image-cloud-amd64 linux-image-6.12-cloud-amd64}
cache=$build/kernel

# The system tests run on kernel WireGuard: grant, renewal, another peer's
# address never granted, expiry, a reservation from a static allowed IP,
# pools following routes, restart keeping the leases, fail closed on a
# SIGKILL of a child or of netd, the client's grant, expiry and stop, an
# operator's changes kept during a grant and release storm, a revocation,
# leases that expired or lost their route during downtime, the hostile
# program in leased's seat, and in protod's where netd is what it meets
# (signals; the client's address orders): the frames protod sends leased
# meet no backend, and their floods take minutes under emulation.
# Under emulation each takes
# 10-30 s, so the whole suite (wireguard-go's faults among it) is left to
# make check.
default_filter='Server.RequestWithoutAddress*:Server.AddressesAreStable*'
default_filter+=':Server.LeaseNotRenewed*:Server.StaticAllowedIp*:Server.NewRouteGrows*'
default_filter+=':Server.RestartRestores*:Server.KillingAChild*'
default_filter+=':Client.ObtainsBoth*:Client.ServerGoneAddressesExpire*:Client.SigtermRemoves*'
default_filter+=':OperatorChanges.*:FailClosed.SigkillOfNetd*:Operate.RevokeEndsTheLease*'
default_filter+=':ClientRoutes.*:Deployment.LeaseThatExpiredWhileTheServerWasStopped*'
default_filter+=':Deployment.LeaseWhoseRouteWasRemovedWhileTheServerWasStopped*'
default_filter+=':HostileNeighbour.*:HostileProtod.Signals*:HostileClientProtod.*'
filter=${WGD_KERNEL_FILTER:-$default_filter}
peers=${WGD_KERNEL_PEERS:-100000}

case $mode in
tests) timeout_s=${WGD_KERNEL_TIMEOUT:-600} memory=1024 ;;
large) timeout_s=${WGD_KERNEL_TIMEOUT:-5400} memory=4096 ;;
*) echo "run.sh: unknown mode '$mode' (tests or large)" >&2; exit 2 ;;
esac

if [ "$(id -u)" != 0 ]; then
    echo "run.sh: needs root (apt-get download, network namespaces in the guest)" >&2
    exit 1
fi
for tool in qemu-system-x86_64 cpio depmod modprobe xz gzip timeout; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool missing: make deps-kernel" >&2; exit 1; }
done

work=$(mktemp -d /tmp/wgd-kernel-XXXXXX)
guest_pid=
cleanup() {
    if [ -n "$guest_pid" ] && kill -0 "$guest_pid" 2>/dev/null; then
        kill -TERM "$guest_pid" 2>/dev/null || true
        wait "$guest_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A package's .deb in the cache, fetched once per version.
fetch_deb() { # package -> path of the .deb
    local pkg=$1 version file
    version=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
    if [ -z "$version" ] || [ "$version" = "(none)" ]; then
        apt-get update -q >/dev/null
        version=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
    fi
    [ -n "$version" ] && [ "$version" != "(none)" ] || { echo "run.sh: no package $pkg" >&2; return 1; }
    file=$(ls "$cache/debs/${pkg}_"*"${version#*:}"_*.deb 2>/dev/null | head -1 || true)
    if [ -z "$file" ]; then
        mkdir -p "$cache/debs"
        (cd "$cache/debs" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$version" >&2)
        file=$(ls "$cache/debs/${pkg}_"*"${version#*:}"_*.deb | head -1)
    fi
    echo "$file"
}

# Unpacks a package once; prints the directory.
unpack() { # package -> directory
    local deb dir
    deb=$(fetch_deb "$1")
    dir=$cache/unpacked/$(basename "$deb" .deb)
    if [ ! -e "$dir/.done" ]; then
        rm -rf "$dir"
        mkdir -p "$dir"
        dpkg-deb -x "$deb" "$dir"
        touch "$dir/.done"
    fi
    echo "$dir"
}

# The image package a kernel metapackage names (linux-image-cloud-amd64 ->
# linux-image-6.1.0-NN-cloud-amd64).
image_package() {
    apt-cache depends --important "$1" | awk '/Depends: linux-image-/ {print $2; exit}'
}

# Copies an executable and every library ldd names, at the same paths, into
# the root; the programs of this build without their debug information.
copy_with_libraries() { # root file [destination]
    local root=$1 file=$2 dest=${3:-$2}
    mkdir -p "$root$(dirname "$dest")"
    cp -L "$file" "$root$dest"
    case $file in "$build"/*) strip --strip-debug "$root$dest" ;; esac
    local lib
    for lib in $(ldd "$file" 2>/dev/null | grep -oE '/[^ ]+' || true); do
        if [ ! -e "$root$lib" ]; then
            mkdir -p "$root$(dirname "$lib")"
            cp -L "$lib" "$root$lib"
        fi
    done
}

# What every guest holds: the programs under test at their build paths (the
# test programs find the daemons there), iproute2's ip, wg, dash as /bin/sh
# (busybox's shell would run its own ip applet before PATH), busybox for the
# rest, the users the daemons drop to.
base=$work/base
mkdir -p "$base"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,var,root}
ln -s ../run "$base/var/run"
for program in wg-dynamic-server wg-dynamic-client tests/test_system tests/wgd-load \
    tests/hostile_leased.so tests/hostile_protod.so; do
    [ -x "$build/$program" ] || { echo "run.sh: $build/$program missing: make build" >&2; exit 1; }
    copy_with_libraries "$base" "$build/$program"
done
copy_with_libraries "$base" "$(command -v ip)" /usr/sbin/ip
copy_with_libraries "$base" "$(command -v wg)" /usr/bin/wg
copy_with_libraries "$base" "$(readlink -f /bin/sh)" /bin/sh
busybox_dir=$(unpack busybox-static)
cp "$busybox_dir/bin/busybox" "$base/bin/busybox"
for applet in $("$base/bin/busybox" --list); do
    case $applet in ip | sh | init | linuxrc) continue ;; esac
    [ -e "$base/bin/$applet" ] || ln -s busybox "$base/bin/$applet"
done
cat >"$base/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
_wg-dynamic:x:998:998:wg-dynamic:/nonexistent:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat >"$base/etc/group" <<'EOF'
root:x:0:
_wg-dynamic:x:998:
nogroup:x:65534:
EOF
echo 'hosts: files' >"$base/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$base/etc/hosts"

case $mode in
tests)
    run_command="WGD_LAB_WIREGUARD=kernel $build/tests/test_system --gtest_color=no --gtest_filter='$filter'"
    ;;
large)
    run_command="WGD_LAB_WIREGUARD=kernel $build/tests/wgd-load -n $peers -c 1000 --rate 500"
    run_command+=" --renew-after-restart"
    ;;
esac

cat >"$base/init" <<EOF
#!/bin/busybox sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o size=50% tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /run/netns /dev/pts /dev/shm
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
ulimit -n 65536
for module in \$(cat /etc/wgd-modules); do
    insmod "\$module" || echo "wgd-kernel: insmod \$module failed"
done
ip link set lo up
echo "wgd-kernel: kernel \$(uname -r), \$(nproc) CPUs, \$(awk '/MemTotal/ {print \$2}' /proc/meminfo) kB"
cd /tmp
start=\$(date +%s)
$run_command
status=\$?
echo "wgd-kernel: exit \$status after \$((\$(date +%s) - start)) s (emulated time)"
sync
sleep 1
poweroff -f
EOF
chmod +x "$base/init"

accel=(-machine accel=tcg)
if [ -w /dev/kvm ]; then accel=(-machine accel=kvm -cpu host); fi

failed=()
summary=()
for package in $kernels; do
    image=$(image_package "$package")
    [ -n "$image" ] || { echo "run.sh: $package names no kernel image" >&2; exit 1; }
    kdir=$(unpack "$image")
    version=$(ls "$kdir/lib/modules")
    # depmod for modprobe's dependency order; it writes into the cache only.
    [ -e "$kdir/lib/modules/$version/modules.dep" ] || depmod -b "$kdir" "$version"
    root=$work/root-$version
    cp -a "$base" "$root"
    : >"$root/etc/wgd-modules"
    for module in $(for name in wireguard veth; do
        modprobe -d "$kdir" -S "$version" --show-depends "$name"
    done | awk '$1 == "insmod" {print $2}'); do
        rel=${module#"$kdir"}
        rel=${rel%.xz}
        grep -qxF "$rel" "$root/etc/wgd-modules" && continue
        mkdir -p "$root$(dirname "$rel")"
        case $module in
        *.xz) xz -dc "$module" >"$root$rel" ;;
        *) cp "$module" "$root$rel" ;;
        esac
        echo "$rel" >>"$root/etc/wgd-modules"
    done
    (cd "$root" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) >"$work/initrd-$version.gz"
    rm -rf "$root"

    console=$work/console-$version.log
    echo "== kernel $version ($package): $mode, at most $timeout_s s"
    started=$(date +%s)
    # An emulated guest kernel can die while it boots (TCG has been seen to
    # trip an int3 in 6.12's patched text): a guest whose kernel never
    # reached the init is booted once more. A guest that ran the tests is
    # judged on its first run.
    for attempt in 1 2; do
        : >"$console"
        timeout -k 10 "$timeout_s" qemu-system-x86_64 "${accel[@]}" -m "$memory" -smp 2 \
            -nodefaults -display none -no-reboot -serial "file:$console" \
            -kernel "$kdir/boot/vmlinuz-$version" -initrd "$work/initrd-$version.gz" \
            -append "console=ttyS0 quiet panic=-1 oops=panic" </dev/null &
        guest_pid=$!
        tail -n +1 -F --pid="$guest_pid" "$console" 2>/dev/null | sed -u "s/\r\$//; s/^/[$version] /" &
        relay=$!
        guest_status=0
        wait "$guest_pid" || guest_status=$?
        guest_pid=
        wait "$relay" 2>/dev/null || true
        if [ "$attempt" = 1 ] && [ "$guest_status" != 124 ] && [ "$guest_status" != 137 ] &&
            ! grep -q '^wgd-kernel: kernel ' <(tr -d '\r' <"$console"); then
            echo "== kernel $version stopped before the init ran (an emulated boot failure): booting it again"
            continue
        fi
        break
    done
    elapsed=$(($(date +%s) - started))
    verdict=$(tr -d '\r' <"$console" | sed -n 's/^wgd-kernel: exit \([0-9]*\) .*/\1/p' | tail -1)
    if [ "$guest_status" = 124 ] || [ "$guest_status" = 137 ]; then
        why="timed out after $timeout_s s"
    elif [ -z "$verdict" ]; then
        why="the guest stopped without a verdict (qemu status $guest_status)"
    elif [ "$verdict" != 0 ]; then
        why="tests failed (exit $verdict)"
    else
        why=
    fi
    if [ -n "$why" ]; then
        failed+=("$version")
        summary+=("FAILED  $version: $why, ${elapsed} s")
    else
        summary+=("passed  $version: ${elapsed} s")
    fi
    rm -f "$work/initrd-$version.gz"
done

echo "== kernel WireGuard ($mode)"
printf '%s\n' "${summary[@]}"
[ ${#failed[@]} -eq 0 ]
