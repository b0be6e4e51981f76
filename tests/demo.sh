#!/usr/bin/env bash
# make demo: wg-dynamic's main job, for a person to watch. In network
# namespaces made here: a WireGuard gateway (wireguard-go) with an IPv4 and
# an IPv6 pool running wg-dynamic-server, and two WireGuard peers running
# wg-dynamic-client. Everything made here is removed at the end, also on
# Ctrl-C. Exits non-zero if any step fails.
set -euo pipefail
umask 077

build=$(cd "${1:-build}" && pwd)
server_bin=$build/wg-dynamic-server
client_bin=$build/wg-dynamic-client

if [ "$(id -u)" != 0 ]; then
    echo "make demo needs root (network namespaces, wireguard-go)" >&2
    exit 1
fi

id=$$
srv_ns=wgd-demo-s$id
srv_if=wgds$id
work=$(mktemp -d /tmp/wgd-demo.XXXXXX)
pids=()
wg_pids=()
ifaces=()
namespaces=()

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say() { printf '   %s\n' "$*"; }

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    for p in "${wg_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${wg_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    for i in "${ifaces[@]}"; do rm -f "/run/wireguard/$i.sock" "/run/wg-dynamic/$i.sock"; done
    for n in "${namespaces[@]}"; do ip netns del "$n" 2>/dev/null || true; done
    [ "$status" -eq 0 ] && rm -rf "$work"
    if [ "$status" -eq 0 ]; then
        step "Cleaned up: namespaces, interfaces and processes are gone. The demo passed."
    else
        step "Cleaned up. The demo FAILED (status $status); logs were in $work."
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_wireguard_go() { # ns iface
    ip netns exec "$1" wireguard-go -f "$2" >/dev/null 2>&1 &
    wg_pids+=($!)
    ifaces+=("$2")
    for _ in $(seq 100); do [ -S "/run/wireguard/$2.sock" ] && return 0; sleep 0.05; done
    echo "wireguard-go did not start for $2" >&2
    return 1
}

wait_for() { # seconds command...
    local n=$(( $1 * 10 )); shift
    for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
    return 1
}

step "Building a WireGuard gateway and two peers in network namespaces"
ip netns add "$srv_ns"; namespaces+=("$srv_ns")
ip -n "$srv_ns" link set lo up
start_wireguard_go "$srv_ns" "$srv_if"
ip -n "$srv_ns" link set "$srv_if" addrgenmode none
wg genkey > "$work/server.key"
wg pubkey < "$work/server.key" > "$work/server.pub"
ip netns exec "$srv_ns" wg set "$srv_if" private-key "$work/server.key" listen-port 51820

for n in 1 2; do
    ns=wgd-demo-c$n-$id; ifc=wgdc$n$id; ll=fe80::$((0x1230 + n))
    ip netns add "$ns"; namespaces+=("$ns")
    ip link add "vs$n$id" netns "$srv_ns" type veth peer name "vc$n$id" netns "$ns"
    ip -n "$srv_ns" addr add "10.200.$n.1/24" dev "vs$n$id"; ip -n "$srv_ns" link set "vs$n$id" up
    ip -n "$ns" addr add "10.200.$n.2/24" dev "vc$n$id"; ip -n "$ns" link set "vc$n$id" up
    ip -n "$ns" link set lo up
    start_wireguard_go "$ns" "$ifc"
    ip -n "$ns" link set "$ifc" addrgenmode none
    wg genkey > "$work/client$n.key"
    wg pubkey < "$work/client$n.key" > "$work/client$n.pub"
    ip netns exec "$srv_ns" wg set "$srv_if" peer "$(cat "$work/client$n.pub")" allowed-ips "$ll/128"
    ip netns exec "$ns" wg set "$ifc" private-key "$work/client$n.key" \
        peer "$(cat "$work/server.pub")" allowed-ips fe80::/128,0.0.0.0/0,::/0 \
        endpoint "10.200.$n.1:51820" persistent-keepalive 5
    ip -n "$ns" addr add "$ll/128" dev "$ifc"
    ip -n "$ns" link set "$ifc" up
    ip -n "$ns" route add fe80::/128 dev "$ifc"
    # What wg-quick would route for AllowedIPs 0.0.0.0/0 and ::/0, kept to the pools here.
    ip -n "$ns" route add 10.77.0.0/24 dev "$ifc"
    ip -n "$ns" route add 2001:db8:77::/64 dev "$ifc"
    say "peer $n: namespace $ns, interface $ifc, link-local identity $ll"
done
ip -n "$srv_ns" addr add fe80::/64 dev "$srv_if"
ip -n "$srv_ns" link set "$srv_if" up
ip -n "$srv_ns" addr add 10.77.0.1/24 dev "$srv_if"
ip -n "$srv_ns" addr add 2001:db8:77::1/64 dev "$srv_if"
say "gateway: namespace $srv_ns, interface $srv_if, pools 10.77.0.0/24 and 2001:db8:77::/64"

step "Starting wg-dynamic-server $srv_if"
ip netns exec "$srv_ns" "$server_bin" -f --state-dir "$work/state" "$srv_if" 2> "$work/server.log" &
server_pid=$!; pids+=("$server_pid")
sleep 0.3
kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; exit 1; }
sed 's/^/   | /' "$work/server.log"

step "Starting wg-dynamic-client on both peers"
client_pids=()
for n in 1 2; do
    ns=wgd-demo-c$n-$id; ifc=wgdc$n$id
    ip netns exec "$ns" "$client_bin" -f "$ifc" 2> "$work/client$n.log" &
    client_pids+=($!); pids+=($!)
done

has_lease() { # ns iface
    ip -n "$1" -o addr show dev "$2" | grep -q 'inet ' &&
        ip -n "$1" -o addr show dev "$2" | grep -q 'inet6 .* scope global'
}
for n in 1 2; do
    if ! wait_for 15 has_lease "wgd-demo-c$n-$id" "wgdc$n$id"; then
        echo "peer $n got no lease" >&2; cat "$work/client$n.log" >&2; exit 1
    fi
done
say "both peers hold a lease"

step "The pools and leases, as the running server holds them (wg-dynamic-server show)"
"$server_bin" show "$srv_if" --state-dir "$work/state" | sed 's/^/   /'

step "A monitor (--json) while peer 1 renews at once on SIGHUP"
ip netns exec "$srv_ns" "$server_bin" monitor "$srv_if" --json > "$work/monitor.json" 2>&1 &
monitor_pid=$!; pids+=("$monitor_pid")
sleep 0.3
kill -HUP "${client_pids[0]}"
monitor_saw_renewal() { grep -q '"event":"renew"' "$work/monitor.json"; }
wait_for 10 monitor_saw_renewal || { echo "the monitor saw no renewal" >&2; cat "$work/monitor.json" >&2; exit 1; }
kill -TERM "$monitor_pid"; wait "$monitor_pid" 2>/dev/null || true
sed 's/^/   /' "$work/monitor.json"

step "The metrics (wg-dynamic-server show --metrics, Prometheus text)"
"$server_bin" show "$srv_if" --metrics | grep -v '^# HELP' | sed 's/^/   /'

step "The addresses each peer put on its WireGuard interface"
for n in 1 2; do
    ip -n "wgd-demo-c$n-$id" -brief addr show dev "wgdc$n$id" | sed 's/^/   /'
done

step "The gateway's WireGuard peers and their allowed IPs (wg show)"
ip netns exec "$srv_ns" wg show "$srv_if" allowed-ips | sed 's/^/   /'

step "Pinging the gateway from each peer's leased addresses, through the tunnel"
for n in 1 2; do
    ns=wgd-demo-c$n-$id; ifc=wgdc$n$id
    v4=$(ip -n "$ns" -o -4 addr show dev "$ifc" | awk '{print $4}' | cut -d/ -f1)
    v6=$(ip -n "$ns" -o -6 addr show dev "$ifc" scope global | awk '{print $4}' | cut -d/ -f1)
    ip netns exec "$ns" ping -c 1 -W 3 -I "$v4" 10.77.0.1 >/dev/null
    say "peer $n: $v4 -> 10.77.0.1 ok"
    ip netns exec "$ns" ping -6 -c 1 -W 3 -I "$v6" 2001:db8:77::1 >/dev/null
    say "peer $n: $v6 -> 2001:db8:77::1 ok"
done

step "The nine sandboxed processes: three per suite (from /proc/PID/status)"
printf '   %-8s %-8s %7s %-6s %-17s %-8s %s\n' suite process pid uid CapEff Seccomp NoNewPrivs
show_process() { # suite role pid
    local s=/proc/$3/status
    printf '   %-8s %-8s %7s %-6s %-17s %-8s %s\n' "$1" "$2" "$3" \
        "$(awk '/^Uid:/{print $2}' "$s")" "$(awk '/^CapEff:/{print $2}' "$s")" \
        "$(awk '/^Seccomp:/{print $2}' "$s")" "$(awk '/^NoNewPrivs:/{print $2}' "$s")"
}
role_of() { tr '\0' ' ' < "/proc/$1/cmdline" | grep -o -- '--privsep-role=[a-z]*' | cut -d= -f2; }
for entry in "server:$server_pid" "client1:${client_pids[0]}" "client2:${client_pids[1]}"; do
    suite=${entry%%:*}; pid=${entry#*:}
    show_process "$suite" netd "$pid"
    for child in $(pgrep -P "$pid"); do show_process "$suite" "$(role_of "$child")" "$child"; done
done
say "netd keeps uid 0 with only CAP_NET_ADMIN, CAP_NET_BIND_SERVICE and CAP_KILL (0000000000001420);"
say "leased and protod run as nobody with no capability; all nine under seccomp (2)."

step "Stopping: the clients remove their addresses, the server keeps its leases on file"
for p in "${client_pids[@]}"; do kill -TERM "$p"; done
for p in "${client_pids[@]}"; do wait "$p" || { echo "a client exited with status $?" >&2; cat "$work"/client*.log >&2; exit 1; }; done
for n in 1 2; do
    if ip -n "wgd-demo-c$n-$id" -o addr show dev "wgdc$n$id" | grep -q 'inet '; then
        echo "peer $n still holds its address" >&2; exit 1
    fi
done
say "clients stopped (exit 0) and their addresses are gone"
kill -TERM "$server_pid"; wait "$server_pid"
say "server stopped (exit 0)"
pids=()
