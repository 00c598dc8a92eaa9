#!/usr/bin/env bash
# The lab: a client, a router, the appliance and three real servers in
# network namespaces, for the demo and the end-to-end tests. Dual-stack:
# addresses only from 198.18.0.0/15 and 2001:2::/48 (the benchmarking
# prefixes of RFC 2544 and RFC 5180), only inside these namespaces; nothing
# leaves the box.
#
#   scripts/lab.sh up              create everything, start the servers
#   scripts/lab.sh method nat|tun|dr   set the reals up for a forwarding method
#   scripts/lab.sh down            remove everything it made (safe to run twice)
#   scripts/lab.sh status          what is there
#
# Layout (one-arm, the default):
#
#   client 198.19.0.10 --- router 198.19.0.1 | 198.18.0.1 --- bridge (in "sw")
#                                                              |-- appliance lb0 (DPDK af_packet, 198.18.0.2 in lb.toml)
#                                                              |-- appliance mgmt0 198.18.0.254 (kernel: health checks)
#                                                              |-- real1 198.18.0.11, real2 .12, real3 .13
#   VIP 198.18.1.100: the router routes it to 198.18.0.2.
#
# IPv6, on the same links (every link with an IPv4 address has one):
#
#   client 2001:2:0:10::10/64 --- router 2001:2:0:10::1 | 2001:2::1/64 --- bridge
#                                                          |-- appliance lb0: 2001:2::2 in lb.toml (no kernel address)
#                                                          |-- appliance mgmt0 2001:2::254/64
#                                                          |-- real1 2001:2::11/64, real2 ::12, real3 ::13
#   VIP 2001:2:0:1::100 (on the reals' lo as /128): the router routes
#   2001:2:0:1::/64 to 2001:2::2 and forwards IPv6.
#
# IPv6 is off on every interface (default.disable_ipv6=1) except lo and
# those that get an address above: no link-local chatter from the bridge,
# its ports or lb0 (DPDK's). Duplicate address detection is off (accept_dad=0,
# addresses added "nodad"): every address is unique by construction here,
# and DAD would leave each one tentative for a second or two, during which
# the UDP echo cannot bind it and nothing can send from it; waiting for it
# would slow `up` for no gain. Router solicitations and RAs are off too
# (the routes are static).
#
# Real servers, as a deployment needs them: the VIP on lo, arp_ignore=1,
# arp_announce=2, rp_filter off, and an IPIP decapsulator (the tc-BPF
# program in scripts/ipip-decap: this kernel has no ipip or ip6_tunnel
# module; it strips 4in4, 6in6 and 4in6 outer headers). Their default
# routes (IPv4 and IPv6) are the appliance for NAT and the router for TUN
# and DR. IPv6 needs no arp_ignore/arp_announce: Linux answers a Neighbor
# Solicitation only for an address of the interface it arrived on (tested:
# an NS on eth0 for an address that is only on lo gets no answer, multicast
# or unicast, with forwarding 0 or 1), and solicits from an address of the
# outgoing interface (seen: eth0's link-local while answering from the
# VIP), never from the VIP on lo. Nor is there an IPv6 rp_filter to turn
# off.
# Each runs a dual-stack HTTP server on :80 answering with its name
# (real1..real3), serving big.bin (5 MB), and a UDP echo on :9000 that
# prefixes its name.
#
# Environment: LAB_PREFIX (namespace prefix, default "lbl"), LAB_STATE
# (folder for PIDs and files, default /run/lb-lab-$LAB_PREFIX).
set -euo pipefail

P=${LAB_PREFIX:-lbl}
STATE=${LAB_STATE:-/run/lb-lab-$P}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NS_CLIENT=$P-client NS_ROUTER=$P-router NS_SW=$P-sw NS_LB=$P-lb
REALS=(1 2 3)
PY=/usr/bin/python3

say() { printf 'lab: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
inns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

need_root() { [ "$(id -u)" -eq 0 ] || die "run as root (network namespaces need it)"; }

# addr6 NS IF ADDR/LEN: turns IPv6 on for IF (it is off until then) and
# gives it ADDR, usable at once (no DAD).
addr6() {
    inns "$1" sysctl -qw "net.ipv6.conf.$2.disable_ipv6=0"
    inns "$1" ip -6 addr add "$3" dev "$2" nodad
}

offload_off() { # NS IF
    inns "$1" ethtool -K "$2" gro off gso off tso off tx off rx off >/dev/null 2>&1 || true
}

# veth NS1 IF1 NS2 IF2: a pair created directly inside the two namespaces.
veth() {
    ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"
    inns "$1" ip link set "$2" up
    inns "$3" ip link set "$4" up
    # af_packet must see wire-sized frames with finished checksums.
    offload_off "$1" "$2"
    offload_off "$3" "$4"
}

decap_object() {
    local obj=$STATE/ipip_decap.bpf.o
    if [ ! -f "$obj" ]; then
        clang -O2 -g -target bpf -I"/usr/include/$(uname -m)-linux-gnu" \
            -c "$ROOT/scripts/ipip-decap/ipip_decap.bpf.c" -o "$obj" \
            || die "building the IPIP decapsulator needs clang and libbpf-dev (scripts/install-deps.sh)"
    fi
    echo "$obj"
}

start() { # NAME NS COMMAND...: start a server in NS, remember its PID
    local name=$1 ns=$2; shift 2
    ip netns exec "$ns" "$@" >"$STATE/$name.log" 2>&1 &
    echo $! >"$STATE/$name.pid"
}

up() {
    need_root
    down quiet
    mkdir -p "$STATE"
    echo "$P" >"$STATE/prefix"
    for ns in "$NS_CLIENT" "$NS_ROUTER" "$NS_SW" "$NS_LB" $(for i in "${REALS[@]}"; do echo "$P-real$i"; done); do
        ip netns add "$ns"
        inns "$ns" ip link set lo up
        # IPv6 only on lo and where addr6 puts an address: keeps IPv6
        # chatter (link-local addresses, MLD, router solicitations) off the
        # bridge and lb0, and out of the appliance's drop counters. No DAD,
        # no RS, no RAs (see the header).
        inns "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1 \
            net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
            net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0 \
            net.ipv6.conf.all.router_solicitations=0 net.ipv6.conf.default.router_solicitations=0
    done
    inns "$NS_SW" ip link add br0 type bridge
    inns "$NS_SW" ip link set br0 up

    # client <-> router
    veth "$NS_CLIENT" eth0 "$NS_ROUTER" cli0
    inns "$NS_CLIENT" ip addr add 198.19.0.10/24 dev eth0
    inns "$NS_CLIENT" ip route add default via 198.19.0.1
    inns "$NS_ROUTER" ip addr add 198.19.0.1/24 dev cli0
    addr6 "$NS_CLIENT" eth0 2001:2:0:10::10/64
    inns "$NS_CLIENT" ip -6 route add default via 2001:2:0:10::1
    addr6 "$NS_ROUTER" cli0 2001:2:0:10::1/64
    # router <-> segment
    veth "$NS_ROUTER" srv0 "$NS_SW" p-router
    inns "$NS_SW" ip link set p-router master br0
    inns "$NS_ROUTER" ip addr add 198.18.0.1/24 dev srv0
    inns "$NS_ROUTER" ip route add 198.18.1.0/24 via 198.18.0.2
    inns "$NS_ROUTER" sysctl -qw net.ipv4.ip_forward=1
    addr6 "$NS_ROUTER" srv0 2001:2::1/64
    inns "$NS_ROUTER" ip -6 route add 2001:2:0:1::/64 via 2001:2::2
    inns "$NS_ROUTER" sysctl -qw net.ipv6.conf.all.forwarding=1
    # the appliance: lb0 for DPDK (no kernel address), mgmt0 for checks
    veth "$NS_LB" lb0 "$NS_SW" p-lb
    inns "$NS_SW" ip link set p-lb master br0
    veth "$NS_LB" mgmt0 "$NS_SW" p-mgmt
    inns "$NS_SW" ip link set p-mgmt master br0
    inns "$NS_LB" ip addr add 198.18.0.254/24 dev mgmt0
    addr6 "$NS_LB" mgmt0 2001:2::254/64
    # the kernel must not answer ARP for lb0's traffic on mgmt0 (nor NS:
    # lb0 has no IPv6, and 2001:2::2 is no kernel address)
    inns "$NS_LB" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2

    local obj; obj=$(decap_object)
    mkdir -p "$STATE/www"
    for i in "${REALS[@]}"; do
        local ns=$P-real$i addr=198.18.0.1$i addr6=2001:2::1$i
        veth "$ns" eth0 "$NS_SW" "p-real$i"
        inns "$NS_SW" ip link set "p-real$i" master br0
        inns "$ns" ip addr add "$addr/24" dev eth0
        inns "$ns" ip addr add 198.18.1.100/32 dev lo
        addr6 "$ns" eth0 "$addr6/64"
        inns "$ns" ip -6 addr add 2001:2:0:1::100/128 dev lo
        inns "$ns" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
            net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0 \
            net.ipv4.conf.lo.rp_filter=0
        inns "$ns" tc qdisc add dev eth0 clsact
        inns "$ns" tc filter add dev eth0 ingress bpf direct-action obj "$obj" sec tc
        local www=$STATE/www/real$i
        mkdir -p "$www"
        echo "real$i" >"$www/index.html"
        [ -f "$STATE/www/big.bin" ] || head -c 5242880 /dev/urandom >"$STATE/www/big.bin"
        ln -sf ../big.bin "$www/big.bin"
        # "::" makes http.server dual-stack (IPV6_V6ONLY off): one process,
        # one PID, for IPv4 and IPv6 alike.
        start "http$i" "$ns" "$PY" -m http.server 80 --bind :: --directory "$www" --protocol HTTP/1.1
        # One socket per address, so that each reply leaves from the address
        # the request came to: the VIP (DR, TUN) or the real's own (NAT). A
        # UDP server bound to 0.0.0.0 would answer a DR request from the
        # real's address, which the client would not accept.
        start "udp$i" "$ns" "$PY" -c "
import selectors, socket
sel = selectors.DefaultSelector()
for addr in ('198.18.1.100', '$addr', '2001:2:0:1::100', '$addr6'):
    s = socket.socket(socket.AF_INET6 if ':' in addr else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 9000))
    sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        d, a = key.fileobj.recvfrom(2048)
        key.fileobj.sendto(b'real$i: ' + d, a)
"
    done
    method nat
    # wait for the servers; a lab with a dead server is no lab
    for i in "${REALS[@]}"; do
        local ok=""
        for _ in $(seq 100); do
            if inns "$P-real$i" "$PY" -c "
import socket
for a in ('127.0.0.1', '2001:2::1$i'):
    socket.create_connection((a, 80), 1).close()" 2>/dev/null; then
                ok=1
                break
            fi
            sleep 0.1
        done
        [ -n "$ok" ] || die "the HTTP server of real$i did not start: $(tail -3 "$STATE/http$i.log" 2>/dev/null)"
        kill -0 "$(cat "$STATE/udp$i.pid")" 2>/dev/null ||
            die "the UDP echo of real$i did not start: $(tail -3 "$STATE/udp$i.log" 2>/dev/null)"
    done
    say "up: client $NS_CLIENT, router $NS_ROUTER, appliance $NS_LB (lb0 for DPDK, mgmt0 198.18.0.254 and 2001:2::254), reals $P-real1..3"
}

method() {
    need_root
    local m=${1:-}
    local gw gw6
    case "$m" in
        # replies come back through the appliance (its port address)
        nat) gw=198.18.0.2 gw6=2001:2::2 ;;
        # replies go straight to the client; the VIPs stay on lo
        # (198.18.1.100/32, 2001:2:0:1::100/128), which no NS is answered
        # for (see the header)
        tun | dr) gw=198.18.0.1 gw6=2001:2::1 ;;
        *) die "method nat|tun|dr" ;;
    esac
    for i in "${REALS[@]}"; do
        inns "$P-real$i" ip route replace default via "$gw"
        inns "$P-real$i" ip -6 route replace default via "$gw6" dev eth0
    done
    echo "$m" >"$STATE/method"
    say "reals set up for $m (default routes via $gw and $gw6)"
}

down() {
    local quiet=${1:-}
    if [ -d "$STATE" ]; then
        for f in "$STATE"/*.pid; do
            [ -e "$f" ] || continue
            local pid; pid=$(cat "$f")
            # Only a process still living in one of our namespaces is ours:
            # a server that died may have had its PID reused.
            case "$(ip netns identify "$pid" 2>/dev/null)" in
                "$P"-*) ;;
                *) rm -f "$f"; continue ;;
            esac
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
            kill -9 "$pid" 2>/dev/null || true
            rm -f "$f"
        done
    fi
    for ns in "$NS_CLIENT" "$NS_ROUTER" "$NS_SW" "$NS_LB" $(for i in "${REALS[@]}"; do echo "$P-real$i"; done); do
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$STATE"
    [ -n "$quiet" ] || say "down"
}

status() {
    ip netns list | grep -E "^$P-" || say "no lab namespaces"
    [ -f "$STATE/method" ] && say "method: $(cat "$STATE/method")"
    return 0
}

case "${1:-}" in
    up) up ;;
    down) need_root; down ;;
    method) method "${2:-}" ;;
    status) status ;;
    *) echo "usage: $0 up|down|method nat|tun|dr|status" >&2; exit 2 ;;
esac
