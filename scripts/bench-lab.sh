#!/usr/bin/env bash
# lb-appliance against HAProxy 2.6 in the network-namespace lab, with real
# kernel TCP end to end: the same client, the same router and the same three
# nginx reals, reached through
#   - lb-appliance VS/NAT   VIP 198.18.1.101:8080 (replies through the appliance)
#   - lb-appliance VS/DR    VIP 198.18.1.100:8080 (replies straight to the client)
#   - HAProxy 2.6, TCP mode 198.18.0.250:8080 (a proxy: two TCP connections per request)
# Prints figures and ratios; asserts nothing.
#
#   scripts/bench-lab.sh
#   ROUNDS=5 DURATION=10 scripts/bench-lab.sh
#
# Environment (defaults in brackets):
#   ROUNDS       [3]      interleaved rounds
#   DURATION     [5]      seconds per wrk run
#   CONNECTIONS  [32]     wrk connections (one wrk thread)
#   DOWNLOAD_MB  [200]    size of the large download
#   POLL         [adaptive] the appliance's [workers] poll (busy or adaptive)
#   HAPROXY_THREADS [1]   HAProxy's nbthread (the appliance has one worker)
#
# Per round, for each path in turn (so that all three are measured within a
# minute of each other on a machine whose speed swings), three figures:
#   req/s     wrk, keep-alive: requests per second over CONNECTIONS
#             persistent connections (an established-flow workload);
#   conn/s    wrk with "Connection: close": a new TCP connection per
#             request (the flow set-up workload of an L4 balancer);
#   MB/s      one curl download of DOWNLOAD_MB from a real (single stream).
# The summary gives the median over the rounds and its ratio to HAProxy's.
#
# Set-up: scripts/lab.sh up (own prefix "lbb", own state folder), lab.sh
# method nat; nginx on port 8080 of each real beside the lab's Python HTTP
# server on :80 (which stays, for the health checks of the lab's other
# users); the reals' replies from the DR VIP go to the router by a source
# rule (table 100), all others to the appliance (NAT), so that one
# appliance serves both methods at once and rounds need no restart; HAProxy
# in a namespace of its own ("lbb-hap", 198.18.0.250 on the lab's segment),
# its veth with offloads off like every other lab link. The appliance runs
# as scripts/demo.sh runs it: inside lbb-lb on the lab's af_packet port,
# with the lab's health checks over mgmt0, its config written from
# examples/lab-nat.toml's shape (printed at the end).
#
# Everything it starts is stopped by PID, the lab taken down and its own
# namespace removed, on any exit. Needs root and 2 CPUs or more; installs
# nginx-light, haproxy and wrk if missing (scripts/install-deps.sh --bench).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

case "${1:-}" in
-h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
"") ;;
*)
    printf 'unknown argument: %s (see --help)\n' "$1" >&2
    exit 2
    ;;
esac

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
CONNECTIONS="${CONNECTIONS:-32}"
DOWNLOAD_MB="${DOWNLOAD_MB:-200}"
POLL="${POLL:-adaptive}"
HAPROXY_THREADS="${HAPROXY_THREADS:-1}"
TARGET="${CARGO_TARGET_DIR:-target}"
export LAB_PREFIX=lbb
export LAB_STATE=/run/lb-bench-lab
P=$LAB_PREFIX
NS_CLIENT=$P-client NS_LB=$P-lb NS_SW=$P-sw NS_HAP=$P-hap
VIP_NAT=198.18.1.101 VIP_DR=198.18.1.100 HAP_ADDR=198.18.0.250 PORT=8080
EAL_PREFIX=lb-bench-lab

log() { printf 'bench-lab: %s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}
for v in ROUNDS DURATION CONNECTIONS DOWNLOAD_MB HAPROXY_THREADS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done
case $POLL in busy | adaptive) ;; *) die "POLL must be busy or adaptive, not '$POLL'" ;; esac
[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
# nginx, HAProxy and wrk on a fresh machine (nothing when they are there).
scripts/install-deps.sh --bench
export PATH="$HOME/.cargo/bin:$PATH"
for t in nginx haproxy wrk curl; do
    command -v "$t" >/dev/null || die "$t not found: scripts/install-deps.sh --bench installs it"
done
HAPROXY_VERSION=$(haproxy -v | sed -n '1s/^HA-\{0,1\}Proxy version \([^ ]*\).*/\1/p')
NGINX_VERSION=$(nginx -v 2>&1 | sed 's/^.*nginx\///')

# Everything started or changed is undone by cleanup, on any exit.
WORK=""
PIDS=()
LB_PID=""
stop_pid() { # PID: TERM, then KILL after 5 s
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local pid
    trap '' INT TERM
    [ -z "$LB_PID" ] || stop_pid "$LB_PID"
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    ip netns del "$NS_HAP" 2>/dev/null || true
    scripts/lab.sh down >/dev/null 2>&1 || true
    rm -rf "/var/run/dpdk/$EAL_PREFIX"
    [ -z "$WORK" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
WORK=$(mktemp -d /tmp/lb-bench-lab.XXXXXX)
# nginx and HAProxy read their files from here.
chmod 755 "$WORK"

inns() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}
# start NAME NS COMMAND...: a process in NS, output in $WORK/NAME.log, its
# PID in LAST_PID and PIDS.
start() {
    local name=$1 ns=$2
    shift 2
    ip netns exec "$ns" "$@" </dev/null >"$WORK/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}
# wait_tcp NS ADDR PORT NAME PID: until ADDR:PORT accepts from NS (10 s).
wait_tcp() {
    for _ in $(seq 100); do
        kill -0 "$5" 2>/dev/null || break
        if inns "$1" curl -s -o /dev/null --max-time 1 "http://$2:$3/"; then return 0; fi
        sleep 0.1
    done
    die "$4 did not start: $(tail -5 "$WORK/$4.log" 2>/dev/null)"
}

log "building (release)"
cargo build --release -q -p lb-appliance
case $TARGET in /*) LB=$TARGET/release/lb-appliance ;; *) LB=$ROOT/$TARGET/release/lb-appliance ;; esac

log "lab: scripts/lab.sh up (prefix $P)"
scripts/lab.sh up >"$WORK/lab.log" 2>&1 || die "lab.sh up failed: $(tail -5 "$WORK/lab.log")"
scripts/lab.sh method nat >>"$WORK/lab.log" 2>&1

# Files: index.html (the real's name) and the large download, one copy
# shared by the three reals.
head -c "$((DOWNLOAD_MB * 1048576))" /dev/urandom >"$WORK/big.bin"
for i in 1 2 3; do
    d=$WORK/real$i
    mkdir -p "$d/www"
    echo "real$i" >"$d/www/index.html"
    ln -s ../../big.bin "$d/www/big.bin"
    # master_process off: one process (the single worker of a default
    # set-up) whose PID is the server's, stopped like every other; it runs
    # as root, so it reads $WORK without a user switch.
    cat >"$d/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    types { text/html html; application/octet-stream bin; }
    server {
        listen $PORT backlog=4096;
        root $d/www;
    }
}
EOF
    start "nginx$i" "$P-real$i" nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf"
    wait_tcp "$P-real$i" 127.0.0.1 "$PORT" "nginx$i" "$LAST_PID"
    # DR replies leave from the VIP: to the router; NAT replies (from the
    # real's own address) keep the lab's NAT default route (the appliance).
    inns "$P-real$i" ip route add default via 198.18.0.1 table 100
    inns "$P-real$i" ip rule add from "$VIP_DR" table 100 priority 100
done

# HAProxy's namespace on the lab's segment.
ip netns add "$NS_HAP"
inns "$NS_HAP" ip link set lo up
ip link add eth0 netns "$NS_HAP" type veth peer name p-hap netns "$NS_SW"
inns "$NS_SW" ip link set p-hap master br0
inns "$NS_SW" ip link set p-hap up
inns "$NS_HAP" ip link set eth0 up
for x in "$NS_HAP eth0" "$NS_SW p-hap"; do
    read -r ns ifc <<<"$x"
    inns "$ns" ethtool -K "$ifc" gro off gso off tso off tx off rx off >/dev/null 2>&1 || true
done
inns "$NS_HAP" ip addr add "$HAP_ADDR/24" dev eth0
inns "$NS_HAP" ip route add default via 198.18.0.1
cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread $HAPROXY_THREADS
    maxconn 8000
    log stderr format raw local0 err
defaults
    mode tcp
    log global
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend bench
    bind $HAP_ADDR:$PORT
    default_backend reals
backend reals
    balance roundrobin
    server real1 198.18.0.11:$PORT weight 3
    server real2 198.18.0.12:$PORT weight 2
    server real3 198.18.0.13:$PORT weight 1
EOF
haproxy -c -q -f "$WORK/haproxy.cfg" || die "haproxy refused $WORK/haproxy.cfg"
# -db: foreground, no daemon: its PID is the proxy's.
start haproxy "$NS_HAP" haproxy -db -f "$WORK/haproxy.cfg"
HAP_PID=$LAST_PID
wait_tcp "$NS_CLIENT" "$HAP_ADDR" "$PORT" haproxy "$HAP_PID"

# The appliance: the lab's NAT example with two services on the nginx
# port, one per method, and room for the connection test's flows.
service() { # NAME VIP METHOD
    cat <<EOF

[[services]]
name = "$1"
vip = "$2"
port = $PORT
protocol = "tcp"
scheduler = "wrr"
forwarding = "$3"

[services.health_check]
kind = "http"
interval = "1s"
timeout = "500ms"
rise = 1
fall = 2
path = "/"
$(for r in 11:3 12:2 13:1; do printf '\n[[services.reals]]\naddress = "198.18.0.%s"\nweight = %s\n' "${r%:*}" "${r#*:}"; done)
EOF
}
cat >"$WORK/lb.toml" <<EOF
# scripts/bench-lab.sh: examples/lab-nat.toml's port, NAT and DR on port $PORT.
[dpdk]
eal_args = ["-l", "0-1", "--no-huge", "-m", "512", "--no-pci", "--no-shconf",
            "--file-prefix", "$EAL_PREFIX"]
mbufs = 8191

[workers]
lcores = [1]
poll = "$POLL"

[[ports]]
name = "wan"
device = "net_af_packet0,iface=lb0"
address = "198.18.0.2/24"
gateway = "198.18.0.1"

[flows]
capacity = 1048576

[metrics]
listen = "127.0.0.1:9101"
$(service nat "$VIP_NAT" nat)
$(service dr "$VIP_DR" dr)
EOF
"$LB" --check -c "$WORK/lb.toml" >"$WORK/check.log" 2>&1 || die "the bench config is refused: $(cat "$WORK/check.log")"
ip netns exec "$NS_LB" "$LB" -c "$WORK/lb.toml" </dev/null >"$WORK/lb.log" 2>&1 &
LB_PID=$!
up=0
for _ in $(seq 200); do
    up=$(inns "$NS_LB" curl -s --max-time 2 http://127.0.0.1:9101/metrics | grep -cE '^lb_real_up\{.*service="(nat|dr)"\} 1' || true)
    [ "$up" = 6 ] && break
    kill -0 "$LB_PID" 2>/dev/null || break
    sleep 0.1
done
[ "$up" = 6 ] || die "the appliance's health checks did not bring the six reals up: $(tail -20 "$WORK/lb.log")"

# The client: a new connection per request needs ports faster than
# TIME_WAIT frees them.
inns "$NS_CLIENT" sysctl -qw net.ipv4.ip_local_port_range="1024 65000" net.ipv4.tcp_tw_reuse=1

TARGETS="haproxy nat dr"
addr_of() { case $1 in haproxy) echo "$HAP_ADDR" ;; nat) echo "$VIP_NAT" ;; dr) echo "$VIP_DR" ;; esac }
label() { case $1 in haproxy) echo "HAProxy ${HAPROXY_VERSION%%-*} (TCP mode)" ;; nat) echo "lb-appliance VS/NAT" ;; dr) echo "lb-appliance VS/DR" ;; esac }

# Which real answers, 12 new connections per path: the weights 3:2:1 of
# both balancers give 6, 4, 2.
log "checking that every path reaches the three reals"
{
    echo "which real answered 12 requests per path (weights 3:2:1):"
    for t in $TARGETS; do
        printf '  %-28s %s\n' "$(label "$t")" "$(for _ in $(seq 12); do
            inns "$NS_CLIENT" curl -s --max-time 2 "http://$(addr_of "$t"):$PORT/" || echo failed
        done | sort | uniq -c | awk '{printf "%s%s=%s", (NR > 1 ? " " : ""), $2, $1}')"
    done
} >"$WORK/spread"
cat "$WORK/spread" >&2
! grep -q failed "$WORK/spread" || die "a path does not answer"

# wrk_run NAME URL [HEADER]: requests per second, and the errors wrk saw
# (socket errors and non-2xx/3xx), as "rps errors".
wrk_run() {
    local out=$WORK/$1.wrk
    shift
    inns "$NS_CLIENT" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "$@" >"$out" 2>&1 || {
        log "wrk failed: $(cat "$out")"
        return 1
    }
    awk '/^Requests\/sec:/ {rps = $2}
         /Socket errors:/ {gsub(/,/, ""); e += $4 + $6 + $8 + $10}
         /Non-2xx or 3xx responses:/ {e += $NF}
         END {printf "%.0f %d\n", rps, e}' "$out"
}

# download URL: MB/s of one download, "-" if it failed or came short.
download() {
    inns "$NS_CLIENT" curl -s -o /dev/null --max-time 120 -w '%{http_code} %{size_download} %{speed_download}\n' "$1" |
        awk -v want="$((DOWNLOAD_MB * 1048576))" '$1 == 200 && $2 == want {printf "%.1f\n", $3 / 1048576; next} {print "-"}'
}

STARTED=$(date -u +%Y-%m-%dT%H:%MZ)
# Other work on the machine shows in the load average; the lab's own idle
# processes add little.
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$WORK/results"
for round in $(seq "$ROUNDS"); do
    for t in $TARGETS; do
        url="http://$(addr_of "$t"):$PORT/"
        read -r rps rerr < <(wrk_run "r$round-$t-ka" "$url")
        read -r cps cerr < <(wrk_run "r$round-$t-cc" -H "Connection: close" "$url")
        mbs=$(download "${url}big.bin")
        echo "$round $t $rps $rerr $cps $cerr $mbs" >>"$WORK/results"
        log "round $round $(label "$t"): $rps req/s ($rerr errors), $cps conn/s ($cerr errors), $mbs MB/s"
    done
done

median() { # median < numbers ("-" ignored)
    { grep -v '^-$' || true; } | sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
col() { awk -v t="$1" -v c="$2" '$2 == t {print $c}' "$WORK/results" | median; }
# xcol TARGET COLUMN: the median over the rounds of TARGET's figure divided
# by HAProxy's of the same round (the machine's speed swings between rounds
# more than between the paths of one round).
xcol() {
    awk -v t="$1" -v c="$2" '$2 == "haproxy" {h[$1] = $c} $2 == t {v[$1] = $c}
        END {for (r in v) if (v[r] != "-" && h[r] != "-" && h[r] > 0) printf "%.3f\n", v[r] / h[r]; else print "-"}' \
        "$WORK/results" | median | awk '{if ($1 == "-") print "-"; else printf "%.2f\n", $1}'
}

echo "lb-appliance against HAProxy in the lab: started $STARTED, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo '+changes')"
echo "machine: $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), kernel $(uname -r), DPDK $(pkg-config --modversion libdpdk 2>/dev/null || echo '?')"
echo "load average: $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (1, 5, 15 min; $(nproc) CPUs)"
echo "reals: nginx $NGINX_VERSION (1 process each) on :$PORT; HAProxy $HAPROXY_VERSION nbthread $HAPROXY_THREADS; lb-appliance one worker, poll = \"$POLL\", net_af_packet on a veth"
echo "client: wrk -t1 -c$CONNECTIONS -d${DURATION}s (keep-alive; and with Connection: close), curl for a $DOWNLOAD_MB MB download; $ROUNDS interleaved rounds"
echo
echo "per round (req/s, conn/s: wrk; errors: socket errors + non-2xx; MB/s: one download)"
printf '%-6s %-28s %10s %7s %10s %7s %8s\n' round path "req/s" errors "conn/s" errors "MB/s"
while read -r round t rps rerr cps cerr mbs; do
    printf '%-6s %-28s %10s %7s %10s %7s %8s\n' "$round" "$(label "$t")" "$rps" "$rerr" "$cps" "$cerr" "$mbs"
done <"$WORK/results"
echo
echo "summary: medians over $ROUNDS rounds; x = median of the same-round ratios to HAProxy"
printf '%-28s %10s %7s %10s %7s %8s %7s\n' path "req/s" x "conn/s" x "MB/s" x
for t in $TARGETS; do
    printf '%-28s %10s %7s %10s %7s %8s %7s\n' "$(label "$t")" "$(col "$t" 3)" "$(xcol "$t" 3)" \
        "$(col "$t" 5)" "$(xcol "$t" 5)" "$(col "$t" 7)" "$(xcol "$t" 7)"
done
echo
cat "$WORK/spread"
echo
echo "appliance at the end (/metrics): $(inns "$NS_LB" curl -s --max-time 2 http://127.0.0.1:9101/metrics |
    awk '/^lb_flows_created_total/ {c += $2}
         /^lb_packets_dropped_total/ && $2 > 0 {match($0, /reason="[^"]*"/); r = substr($0, RSTART + 8, RLENGTH - 9); d[r] += $2}
         END {printf "flows created %d, packets dropped:", c; n = 0; for (r in d) {printf " %s=%d", r, d[r]; n++}; if (!n) printf " none"}')"
echo
echo "appliance config ($WORK/lb.toml; run as: ip netns exec $NS_LB $TARGET/release/lb-appliance -c lb.toml):"
sed 's/^/  /' "$WORK/lb.toml"
echo "HAProxy config (run as: ip netns exec $NS_HAP haproxy -db -f haproxy.cfg):"
sed 's/^/  /' "$WORK/haproxy.cfg"
