#!/usr/bin/env bash
# The lab: a client, a router, the appliance and three real servers in
# network namespaces, for the demo and the end-to-end tests. Dual-stack:
# addresses only from 198.18.0.0/15 and 2001:2::/48 (the benchmarking
# prefixes of RFC 2544 and RFC 5180), only inside these namespaces; nothing
# leaves the box.
#
#   scripts/lab.sh up              create everything, start the servers
#   scripts/lab.sh up --appliances N   the scale-out layout (N = 2 or 3, below)
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
# Scale-out (`up --appliances N`, N = 2 or 3): N appliances behind an ECMP
# router instead of one, each announcing the VIPs over BGP:
#
#   client --- router (BIRD, BGP + BFD to each appliance, ECMP) --- bridge
#                                  |-- appliance 1 in $P-lb1: lb0 (DPDK), 198.18.0.2 / 2001:2::2
#                                  |-- appliance 2 in $P-lb2: lb0 (DPDK), 198.18.0.3 / 2001:2::3
#                                  |-- (appliance 3 in $P-lb3: 198.18.0.4 / 2001:2::4)
#                                  |-- real1..3 as above
#
# The router has no static route to the VIPs: its BIRD learns them from a
# BGP session (IPv4 and IPv6, with BFD at 100 ms x 3) with each appliance's
# BIRD, and installs one ECMP route per VIP over every appliance that
# announces it (merge paths), hashed on layer 4
# (fib_multipath_hash_policy=1, IPv4 and IPv6). BIRD 2.0 cannot write the
# kernel's nexthop objects, so the groups are plain multipath routes, not
# resilient ones: when an appliance goes, only its flows move (the kernel
# hashes over the live next hops; flows of the others may move too, and
# with mh every appliance picks the same real, so they continue anyway).
# Each appliance namespace has no kernel address until its appliance runs:
# the appliance's kernel interface lbk0 (net_tap) then carries the port
# address, and BGP, BFD and the health checks use it; lb0 sits in a bridge
# that stays down, so the kernel never answers on it. The appliance
# ([announce] table 100) keeps its VIPs' host routes in kernel table 100,
# which BIRD in the same namespace learns and exports. Each appliance's
# config is written to $STATE/lbI.toml from examples/lab-scale.toml (TUN,
# mh, adaptive polling); `method tun|dr` sets its forwarding. NAT does not
# scale out by ECMP (replies must come back through the one appliance that
# holds the flow): with two appliances, `method nat` makes them a
# primary/backup pair instead. It appends a [sync] section to each config
# (lb1 primary, lb2 backup, peers 198.18.0.2/.3:8848 over lbk0, the
# floating gateway 198.18.0.5 and 2001:2::5, messages keyed with
# $STATE/sync.key, made once, mode 0600), points the reals' default
# routes at that gateway, and makes lb2's BIRD prepend its AS twice, so the
# router prefers lb1 while lb1 announces (a standby primary announces
# nothing; see README "NAT failover"). The lab starts the BIRDs, not the
# appliances:
#   ip netns exec $P-lb1 target/release/lb-appliance -c $STATE/lb1.toml
# Every BIRD runs in the foreground with its own control socket
# ($STATE/bird-NAME.ctl; `birdc -s` it) and is stopped by its PID, like the
# servers; the distribution's bird service is never involved.
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
BIRD=/usr/sbin/bird
# The scale-out layout's appliance namespaces, whichever exist.
LBS=(1 2 3)

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

# The namespaces of the appliances of a lab with N of them: the one of the
# default layout, or one per appliance.
lb_namespaces() { # N
    if [ "$1" -eq 1 ]; then echo "$NS_LB"; else for i in $(seq "$1"); do echo "$P-lb$i"; done; fi
}

up() {
    need_root
    local n=1
    while [ $# -gt 0 ]; do
        case "$1" in
            --appliances) n=${2:-}; shift 2 || die "--appliances N" ;;
            --appliances=*) n=${1#--appliances=}; shift ;;
            *) die "up [--appliances N]: unknown argument $1" ;;
        esac
    done
    case "$n" in 1 | 2 | 3) ;; *) die "--appliances: 1, 2 or 3, not '$n'" ;; esac
    down quiet
    mkdir -p "$STATE"
    echo "$P" >"$STATE/prefix"
    echo "$n" >"$STATE/appliances"
    # shellcheck disable=SC2046 # one word per namespace
    for ns in "$NS_CLIENT" "$NS_ROUTER" "$NS_SW" $(lb_namespaces "$n") $(for i in "${REALS[@]}"; do echo "$P-real$i"; done); do
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
    inns "$NS_ROUTER" sysctl -qw net.ipv4.ip_forward=1
    addr6 "$NS_ROUTER" srv0 2001:2::1/64
    inns "$NS_ROUTER" sysctl -qw net.ipv6.conf.all.forwarding=1
    if [ "$n" -eq 1 ]; then
        inns "$NS_ROUTER" ip route add 198.18.1.0/24 via 198.18.0.2
        inns "$NS_ROUTER" ip -6 route add 2001:2:0:1::/64 via 2001:2::2
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
    else
        scale_out "$n"
    fi

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
    # NAT for one appliance; the scale-out layout runs TUN or DR
    if [ "$n" -eq 1 ]; then method nat; else method tun; fi
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
    if [ "$n" -eq 1 ]; then
        say "up: client $NS_CLIENT, router $NS_ROUTER, appliance $NS_LB (lb0 for DPDK, mgmt0 198.18.0.254 and 2001:2::254), reals $P-real1..3"
    else
        say "up: client $NS_CLIENT, router $NS_ROUTER (BIRD), appliances $P-lb1..$n (lb0 for DPDK, BIRD; configs $STATE/lb1..$n.toml), reals $P-real1..3"
    fi
}

# scale_out N: the appliances' namespaces, their configs and BIRDs, and the
# router's BIRD with ECMP (see the header).
scale_out() {
    local n=$1 i ns name
    # ECMP hashed on the 5-tuple, for both families.
    inns "$NS_ROUTER" sysctl -qw net.ipv4.fib_multipath_hash_policy=1 net.ipv6.fib_multipath_hash_policy=1
    [ -x "$BIRD" ] || die "the scale-out lab needs BIRD 2 ($BIRD; scripts/install-deps.sh installs bird2)"
    for i in $(seq "$n"); do
        ns=$P-lb$i
        veth "$ns" lb0 "$NS_SW" "p-lb$i"
        inns "$NS_SW" ip link set "p-lb$i" master br0
        # A bridge that stays down takes every frame after af_packet has
        # seen it: the kernel never answers on lb0 (lbk0 has the same MAC
        # and addresses).
        inns "$ns" ip link add lb0-off type bridge
        inns "$ns" ip link set lb0 master lb0-off
        # IPv6 on for what comes next (lbk0, made by the appliance, which
        # gives it 2001:2::I), without a link-local address: the dataplane
        # answers Neighbor Solicitations for the port address only, so the
        # router must use the global one as next hop.
        inns "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=0 net.ipv6.conf.default.addr_gen_mode=1
        sed -e "s/198\.18\.0\.2\//198.18.0.$((1 + i))\//" \
            -e "s/2001:2::2\//2001:2::$((1 + i))\//" \
            -e "s/\"lb-lab\"/\"$P-lb$i\"/" \
            "$ROOT/examples/lab-scale.toml" >"$STATE/lb$i.toml"
        # Each its own control socket (`lb-appliance ctl --socket`): they
        # share the host's /run.
        printf '\n[control]\nsocket = "%s"\n' "$STATE/ctl-lb$i.sock" >>"$STATE/lb$i.toml"
        bird_appliance_conf "$i" >"$STATE/bird-lb$i.conf"
        start "bird-lb$i" "$ns" "$BIRD" -f -c "$STATE/bird-lb$i.conf" -s "$STATE/bird-lb$i.ctl"
    done
    bird_router_conf "$n" >"$STATE/bird-router.conf"
    start bird-router "$NS_ROUTER" "$BIRD" -f -c "$STATE/bird-router.conf" -s "$STATE/bird-router.ctl"
    for name in router $(for i in $(seq "$n"); do echo "lb$i"; done); do
        for _ in $(seq 50); do [ -S "$STATE/bird-$name.ctl" ] && break; sleep 0.1; done
        [ -S "$STATE/bird-$name.ctl" ] || die "BIRD ($name) did not start: $(tail -5 "$STATE/bird-$name.log" 2>/dev/null)"
    done
}

# BIRD timers of the lab: BFD 100 ms x 3 (a dead appliance is gone from the
# router within about 300 ms); BGP retries every second, so that a
# restarted appliance is back at once.
BFD_TIMERS='min rx interval 100 ms; min tx interval 100 ms; multiplier 3;'
BGP_TIMERS='bfd on; hold time 9; connect delay time 1; connect retry time 1; error wait time 1, 4;'

# The NAT pair's floating gateway (`[sync] gateway`, `gateway6`): the
# reals' default routes while the lab runs NAT with two appliances.
NAT_GATEWAY=198.18.0.5
NAT_GATEWAY6=2001:2::5

# nat_pair_sync I: the [sync] section of appliance I of the NAT pair
# (1 primary, 2 backup), appended to its config by `method nat`; both are
# keyed with the same $STATE/sync.key (README, "Keyed sync"), 32 random
# bytes in hex, made the first time.
nat_pair_sync() {
    local role=primary peer=198.18.0.3
    if [ "$1" -eq 2 ]; then role=backup peer=198.18.0.2; fi
    if [ ! -s "$STATE/sync.key" ]; then
        (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$STATE/sync.key")
    fi
    cat <<CONF
# lab: NAT pair (written by scripts/lab.sh method nat; removed by tun|dr)
[sync]
role = "$role"
peer = "$peer:8848"
interval = "200ms"
dead_after = "600ms"
gateway = "$NAT_GATEWAY"
gateway6 = "$NAT_GATEWAY6"
key_file = "$STATE/sync.key"
CONF
}

# bird_appliance_conf I [METHOD]: examples/bird.conf with appliance I's
# addresses. With METHOD nat, appliance 2 is the backup of the pair: it
# announces the VIPs with a longer AS path (prepended twice), so the
# router prefers the primary while the primary announces them.
bird_appliance_conf() {
    local a=198.18.0.$((1 + $1)) a6=2001:2::$((1 + $1))
    local prepend=""
    if [ "${2:-}" = nat ] && [ "$1" -eq 2 ]; then
        prepend="bgp_path.prepend(65001); bgp_path.prepend(65001);"
    fi
    cat <<CONF
# Appliance $1 of the lab (written by scripts/lab.sh after examples/bird.conf).
log stderr all;
router id $a;
protocol device { scan time 1; }
protocol kernel vips4 { kernel table 100; learn; scan time 1; ipv4 { import all; export none; }; }
protocol kernel vips6 { kernel table 100; learn; scan time 1; ipv6 { import all; export none; }; }
protocol bfd { interface "lbk0" { $BFD_TIMERS }; }
protocol bgp upstream4 {
    local $a as 65001;
    neighbor 198.18.0.1 as 65000;
    $BGP_TIMERS
    ipv4 { import none; export filter { if proto = "vips4" then { $prepend accept; } reject; }; next hop self; };
}
protocol bgp upstream6 {
    local $a6 as 65001;
    neighbor 2001:2::1 as 65000;
    $BGP_TIMERS
    ipv6 { import none; export filter { if proto = "vips6" then { $prepend accept; } reject; }; next hop self; };
}
CONF
}

# bird_router_conf N: examples/bird-router.conf with N appliances.
bird_router_conf() {
    cat <<CONF
# The lab's router (written by scripts/lab.sh after examples/bird-router.conf).
log stderr all;
router id 198.18.0.1;
protocol device { scan time 1; }
protocol kernel { merge paths on limit 16; ipv4 { import none; export all; }; }
protocol kernel { merge paths on limit 16; ipv6 { import none; export all; }; }
protocol bfd { interface "srv0" { $BFD_TIMERS }; }
template bgp appliance4 {
    local 198.18.0.1 as 65000;
    $BGP_TIMERS
    ipv4 { import all; export none; };
}
template bgp appliance6 {
    local 2001:2::1 as 65000;
    $BGP_TIMERS
    ipv6 { import all; export none; next hop prefer global; };
}
CONF
    for i in $(seq "$1"); do
        echo "protocol bgp lb${i}v4 from appliance4 { neighbor 198.18.0.$((1 + i)) as 65001; }"
        echo "protocol bgp lb${i}v6 from appliance6 { neighbor 2001:2::$((1 + i)) as 65001; }"
    done
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
    local n i; n=$(cat "$STATE/appliances" 2>/dev/null || echo 1)
    if [ "$n" -gt 1 ]; then
        # NAT replies must come back through the appliance that holds the
        # flow: it scales by active/backup, not by ECMP. Two appliances
        # become a primary/backup pair (see the header); TUN and DR undo it.
        [ "$m" != nat ] || [ "$n" -eq 2 ] ||
            die "NAT runs as a primary/backup pair: lab.sh up --appliances 2"
        for i in $(seq "$n"); do
            sed -i -e "s/^forwarding = \".*\"/forwarding = \"$m\"/" -e '/^# lab: NAT pair/,$d' "$STATE/lb$i.toml"
            if [ "$m" = nat ]; then
                nat_pair_sync "$i" >>"$STATE/lb$i.toml"
            fi
            bird_appliance_conf "$i" "$m" >"$STATE/bird-lb$i.conf"
            if [ -S "$STATE/bird-lb$i.ctl" ]; then
                birdc -s "$STATE/bird-lb$i.ctl" configure >/dev/null || die "BIRD (lb$i) refused its new config"
            fi
        done
        if [ "$m" = nat ]; then gw=$NAT_GATEWAY gw6=$NAT_GATEWAY6; fi
    fi
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
    for ns in "$NS_CLIENT" "$NS_ROUTER" "$NS_SW" "$NS_LB" $(for i in "${LBS[@]}"; do echo "$P-lb$i"; done) \
        $(for i in "${REALS[@]}"; do echo "$P-real$i"; done); do
        ip netns del "$ns" 2>/dev/null || true
    done
    # The EAL runtime folders of the scale-out appliances (their configs'
    # --file-prefix).
    for i in "${LBS[@]}"; do rm -rf "/var/run/dpdk/$P-lb$i"; done
    rm -rf "$STATE"
    [ -n "$quiet" ] || say "down"
}

status() {
    ip netns list | grep -E "^$P-" || say "no lab namespaces"
    [ -f "$STATE/method" ] && say "method: $(cat "$STATE/method")"
    if [ -S "$STATE/bird-router.ctl" ]; then
        say "the router's BGP sessions and VIP routes:"
        birdc -s "$STATE/bird-router.ctl" show protocols >&2 || true
        inns "$NS_ROUTER" ip route show 198.18.1.0/24 >&2 || true
        inns "$NS_ROUTER" ip -6 route show 2001:2:0:1::/64 >&2 || true
    fi
    return 0
}

case "${1:-}" in
    up) shift; up "$@" ;;
    down) need_root; down ;;
    method) method "${2:-}" ;;
    status) status ;;
    *) echo "usage: $0 up [--appliances N]|down|method nat|tun|dr|status" >&2; exit 2 ;;
esac
