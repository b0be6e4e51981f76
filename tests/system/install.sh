#!/usr/bin/env bash
# make install honours PREFIX and DESTDIR: install into a temporary DESTDIR
# and check that the daemons, the manual pages and the systemd units landed
# where an administrator looks for them, then that uninstall removes them.
set -euo pipefail
build=$(cd "${1:?build directory}" && pwd)
dest=$(mktemp -d /tmp/wgd-install.XXXXXX)
trap 'rm -rf "$dest"' EXIT

DESTDIR=$dest cmake --install "$build" --prefix /usr >/dev/null
echo "installed:"
(cd "$dest" && find . -type f | sort | sed 's/^\./   /')

fail=0
for f in usr/sbin/wg-dynamic-server usr/sbin/wg-dynamic-client \
         usr/share/man/man8/wg-dynamic-server.8 usr/share/man/man8/wg-dynamic-client.8 \
         usr/share/man/man7/wg-dynamic.7 \
         usr/lib/systemd/system/wg-dynamic-server@.service \
         usr/lib/systemd/system/wg-dynamic-client@.service \
         usr/lib/sysusers.d/wg-dynamic.conf; do
    if [ ! -f "$dest/$f" ]; then echo "missing: /$f"; fail=1; fi
done
[ -x "$dest/usr/sbin/wg-dynamic-server" ] || { echo "wg-dynamic-server is not executable"; fail=1; }
grep -q '^ExecStart=/usr/sbin/wg-dynamic-server ' "$dest/usr/lib/systemd/system/wg-dynamic-server@.service" ||
    { echo "the server unit does not start /usr/sbin/wg-dynamic-server"; fail=1; }
"$dest/usr/sbin/wg-dynamic-server" --version | grep -q '^wg-dynamic-server ' ||
    { echo "the installed server does not run"; fail=1; }

grep -q '^u _wg-dynamic ' "$dest/usr/lib/sysusers.d/wg-dynamic.conf" ||
    { echo "the sysusers.d file does not create _wg-dynamic"; fail=1; }
# systemd-sysusers accepts it (into a scratch root: the host is not changed).
if command -v systemd-sysusers >/dev/null 2>&1; then
    root=$(mktemp -d /tmp/wgd-sysroot.XXXXXX)
    mkdir -p "$root/etc"
    if ! systemd-sysusers --root="$root" "$dest/usr/lib/sysusers.d/wg-dynamic.conf" >/dev/null 2>&1 ||
       ! grep -q '^_wg-dynamic:' "$root/etc/passwd"; then
        echo "systemd-sysusers did not create _wg-dynamic from the file"; fail=1
    fi
    rm -rf "$root"
fi

# systemd accepts the units, where systemd-analyze exists (it checks that
# ExecStart exists, so point it at the installed tree through a copy).
if command -v systemd-analyze >/dev/null 2>&1; then
    units=$(mktemp -d /tmp/wgd-units.XXXXXX)
    for side in server client; do
        sed "s|/usr/sbin/|$dest/usr/sbin/|" \
            "$dest/usr/lib/systemd/system/wg-dynamic-$side@.service" > "$units/wg-dynamic-$side@.service"
        ln -s "wg-dynamic-$side@.service" "$units/wg-dynamic-$side@wg0.service"
    done
    if ! out=$(cd "$units" && MANPATH="$dest/usr/share/man" systemd-analyze verify \
            "$units/wg-dynamic-server@wg0.service" "$units/wg-dynamic-client@wg0.service" 2>&1); then
        echo "systemd-analyze verify refused the units:"; echo "$out"; fail=1
    elif [ -n "$out" ]; then
        # It exits 0 on a key it ignores; anything it says is a defect here.
        echo "systemd-analyze verify complained:"; echo "$out"; fail=1
    fi
    rm -rf "$units"
else
    echo "(systemd-analyze not installed: units not verified)"
fi

# uninstall: everything the manifest lists goes away.
while read -r f || [ -n "$f" ]; do rm -f "$dest$f"; done < "$build/install_manifest.txt"
left=$(find "$dest" -type f | wc -l)
[ "$left" -eq 0 ] || { echo "uninstall left $left files"; fail=1; }
exit $fail
