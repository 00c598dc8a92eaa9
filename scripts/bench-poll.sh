#!/usr/bin/env bash
# Busy against adaptive polling ([workers] poll): the CPU an idle appliance
# uses, and the round-trip time of UDP requests at low rates through it.
# Prints figures, the config and the commands; asserts nothing.
#
#   scripts/bench-poll.sh
#   ROUNDS=5 WORKERS="1 2" INTERVALS="10 1" scripts/bench-poll.sh
#
# Environment (defaults in brackets):
#   ROUNDS     [3]      interleaved rounds (each runs busy and adaptive, the
#                       order alternating from round to round)
#   WORKERS    ["1 2"]  worker counts, each a block of every round
#   IDLE       [10]     seconds of idle CPU measured per run
#   REQUESTS   [1000]   UDP requests per rate
#   INTERVALS  ["10 1"] milliseconds between requests (100/s and 1000/s)
#   LAB_PREFIX [lbp]    namespace prefix of the lab (scripts/lab.sh)
#
# Set-up: the lab of scripts/lab.sh (namespaces, af_packet on a veth, NAT;
# addresses from 198.18.0.0/15 only), made with its own prefix and removed
# again on exit. Each run starts lb-appliance (release build) in the lab's
# appliance namespace with a config that differs only in `poll`, waits until
# the UDP echo service (VIP 198.18.1.100:9000, NAT to the three reals)
# answers, then
#   - idle CPU: with no traffic, the appliance's CPU time (utime + stime of
#     every thread, /proc/PID/stat) over IDLE seconds, as a share of one CPU;
#   - latency: from the client namespace (through the lab's router), one
#     UDP socket sends REQUESTS requests at a fixed schedule, one every
#     INTERVAL ms, each waiting for its echo (1 s at most: then lost), and
#     the round-trip times are reported as median, p90, p99 and max, with
#     the appliance's CPU share over that phase. One socket is one flow: the
#     flow exists after the first request, so this is forwarding latency,
#     not flow set-up. The time includes the router, the reals and Python on
#     both ends, the same in both modes: compare the modes, not the figures
#     with a hardware appliance.
# With 1 worker the EAL runs `-l 0-1` (main lcore 0, worker lcore 1); with 2,
# `--lcores 0@0,1@0,2@1` and two queue pairs per af_packet port (the kernel
# spreads flows over both, so a reply can reach the other worker and be
# handed over). The lab's processes (router, reals, client, kernel
# forwarding) share the same 2 CPUs with the appliance.
#
# Needs root (namespaces, DPDK), python3, and what scripts/lab.sh needs.
set -euo pipefail
cd "$(dirname "$0")/.."

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
WORKERS="${WORKERS:-1 2}"
IDLE="${IDLE:-10}"
REQUESTS="${REQUESTS:-1000}"
INTERVALS="${INTERVALS:-10 1}"
export LAB_PREFIX="${LAB_PREFIX:-lbp}"
export LAB_STATE="/run/lb-lab-$LAB_PREFIX"
TARGET="${CARGO_TARGET_DIR:-target}"
TAG="lbpoll-$$"
NS_LB="$LAB_PREFIX-lb"
NS_CLIENT="$LAB_PREFIX-client"

log() { printf '%s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}

for v in ROUNDS IDLE REQUESTS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done
for w in $WORKERS; do
    case $w in 1 | 2) ;; *) die "WORKERS: 1 or 2, not '$w' (this script lays out 2 CPUs)" ;; esac
done
for i in $INTERVALS; do
    [[ $i =~ ^[1-9][0-9]*$ ]] || die "INTERVALS must be whole milliseconds, not '$INTERVALS'"
done
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, DPDK's runtime folder)"
command -v python3 >/dev/null || die "python3 not found"
[ "$(nproc)" -ge 2 ] || log "warning: fewer than 2 CPUs: the 2-worker layout shares one"

WORK=$(mktemp -d /tmp/lb-bench-poll.XXXXXX)
APP_PID=""
LAB_MADE=0
cleanup() {
    trap '' INT TERM
    if [ -n "$APP_PID" ]; then
        kill -TERM "$APP_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$APP_PID" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$APP_PID" 2>/dev/null || true
        wait "$APP_PID" 2>/dev/null || true
    fi
    [ "$LAB_MADE" = 0 ] || scripts/lab.sh down >/dev/null 2>&1 || log "scripts/lab.sh down failed"
    rm -rf "$WORK"
    rm -rf /var/run/dpdk/"$TAG"-*
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building (release)"
cargo build --release -q -p lb-appliance
LB="$(pwd)/$TARGET/release/lb-appliance"

log "lab: up ($LAB_PREFIX-*)"
LAB_MADE=1
scripts/lab.sh up
scripts/lab.sh method nat

CLK_TCK=$(getconf CLK_TCK)

# config WORKERS POLL PREFIX: the lab's NAT echo service, no health check
# (its checks would add the same small load to both modes).
config() {
    local eal lcores qp=""
    if [ "$1" = 1 ]; then
        eal='"-l", "0-1"'
        lcores="[1]"
    else
        eal='"--lcores", "0@0,1@0,2@1"'
        lcores="[1, 2]"
        qp=",qpairs=2"
    fi
    cat <<EOF
[dpdk]
eal_args = [$eal, "--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--file-prefix", "$3"]
mbufs = 8191

[workers]
lcores = $lcores
poll = "$2"

[[ports]]
name = "wan"
device = "net_af_packet0,iface=lb0$qp"
address = "198.18.0.2/24"
gateway = "198.18.0.1"

[flows]
capacity = 65536

[metrics]
listen = "127.0.0.1:9101"

[[services]]
name = "echo"
vip = "198.18.1.100"
port = 9000
protocol = "udp"
scheduler = "wrr"
forwarding = "nat"
$(for r in 11 12 13; do printf '\n[[services.reals]]\naddress = "198.18.0.%s"\n' "$r"; done)
EOF
}

# cputicks PID: utime + stime of the process (all threads), in ticks.
cputicks() {
    awk '{sub(/^.*\) /, ""); print $12 + $13}' /proc/"$1"/stat
}

# The client: REQUESTS requests on one socket, one every INTERVAL ms on a
# fixed schedule; prints "sent lost median p90 p99 max" (microseconds).
CLIENT='
import socket, sys, time
addr, port, n, interval = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]) / 1000
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
s.connect((addr, port))
rtts, lost = [], 0
next_send = time.perf_counter()
for i in range(n):
    delay = next_send - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
    next_send += interval
    msg = b"req-%d" % i
    t0 = time.perf_counter_ns()
    s.send(msg)
    try:
        while True:
            d = s.recv(2048)
            if d.endswith(msg):
                break
    except socket.timeout:
        lost += 1
        continue
    rtts.append((time.perf_counter_ns() - t0) / 1000)
rtts.sort()
q = lambda p: rtts[min(len(rtts) - 1, int(p * len(rtts)))] if rtts else float("nan")
print("%d %d %.0f %.0f %.0f %.0f" % (n, lost, q(0.5), q(0.9), q(0.99), rtts[-1] if rtts else float("nan")))
'

# echo_once: one request through the VIP answered?
echo_once() {
    ip netns exec "$NS_CLIENT" python3 -c "$CLIENT" 198.18.1.100 9000 1 1 2>/dev/null | awk '$2 == 0 {ok = 1} END {exit !ok}'
}

# run ROUND WORKERS POLL: one appliance run; appends to $WORK/results.
run() {
    local round=$1 w=$2 poll=$3 name="r$1-w$2-$3" t0 t1 w0 w1 stats end
    config "$w" "$poll" "$TAG-$name" >"$WORK/$name.toml"
    [ "$round" = 1 ] && cp "$WORK/$name.toml" "$WORK/config-w$w-$poll.toml"
    ip netns exec "$NS_LB" env RUST_LOG=info "$LB" -c "$WORK/$name.toml" </dev/null >"$WORK/$name.log" 2>&1 &
    APP_PID=$!
    end=$((SECONDS + 60))
    until grep -qs "worker $((w - 1)) polling" "$WORK/$name.log"; do
        kill -0 "$APP_PID" 2>/dev/null || { cat "$WORK/$name.log" >&2 && die "lb-appliance exited"; }
        [ "$SECONDS" -lt "$end" ] || { cat "$WORK/$name.log" >&2 && die "lb-appliance did not start"; }
        sleep 0.1
    done
    end=$((SECONDS + 20))
    until echo_once; do
        [ "$SECONDS" -lt "$end" ] || { tail -20 "$WORK/$name.log" >&2 && die "the echo through the VIP never answered"; }
    done
    # Settle: start-up work and the warm-up request are over.
    sleep 2
    t0=$(date +%s%N)
    w0=$(cputicks "$APP_PID")
    sleep "$IDLE"
    w1=$(cputicks "$APP_PID")
    t1=$(date +%s%N)
    idle=$(awk -v a="$w0" -v b="$w1" -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" \
        'BEGIN {printf "%.1f", 100 * (b - a) / hz / ((t1 - t0) / 1e9)}')
    log "round $round, $w worker(s), $poll: idle CPU $idle %"
    echo "$round $w $poll idle - - - - - - $idle" >>"$WORK/results"
    for interval in $INTERVALS; do
        t0=$(date +%s%N)
        w0=$(cputicks "$APP_PID")
        stats=$(ip netns exec "$NS_CLIENT" python3 -c "$CLIENT" 198.18.1.100 9000 "$REQUESTS" "$interval")
        w1=$(cputicks "$APP_PID")
        t1=$(date +%s%N)
        cpu=$(awk -v a="$w0" -v b="$w1" -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" \
            'BEGIN {printf "%.1f", 100 * (b - a) / hz / ((t1 - t0) / 1e9)}')
        log "round $round, $w worker(s), $poll, every $interval ms: sent lost median p90 p99 max (us) $stats; CPU $cpu %"
        echo "$round $w $poll $interval $stats $cpu" >>"$WORK/results"
    done
    kill -TERM "$APP_PID"
    wait "$APP_PID" || log "lb-appliance exited with $?"
    APP_PID=""
    printf '  round %s %s: %s\n' "$round" "$name" \
        "$(grep -h 'worker on lcore' "$WORK/$name.log" | sed 's/^.*\] //' | tr '\n' ' ')" >>"$WORK/summaries"
}

STARTED=$(date -u +%Y-%m-%dT%H:%MZ)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq 1 "$ROUNDS"); do
    for w in $WORKERS; do
        if [ $((round % 2)) = 1 ]; then order="busy adaptive"; else order="adaptive busy"; fi
        for poll in $order; do run "$round" "$w" "$poll"; done
    done
done

median() { # median < numbers
    sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "-"; else if (NR % 2) printf "%.1f\n", v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

echo "lb-appliance busy against adaptive polling: started $STARTED, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo '+changes')"
echo "machine: $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), load average at start $LOAD0, at end $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$ROUNDS interleaved rounds; idle CPU over ${IDLE} s; $REQUESTS UDP requests per rate through the lab (af_packet, NAT)"
echo
echo "per run (CPU: share of one CPU, all threads of lb-appliance; latency in microseconds)"
printf '%-5s %-7s %-9s %-10s %6s %5s %8s %8s %8s %8s %7s\n' round workers poll phase sent lost median p90 p99 max CPU
while read -r r w p i sent lost med p90 p99 max cpu; do
    if [ "$i" = idle ]; then
        printf '%-5s %-7s %-9s %-10s %6s %5s %8s %8s %8s %8s %6s%%\n' "$r" "$w" "$p" idle - - - - - - "$cpu"
    else
        printf '%-5s %-7s %-9s %-10s %6s %5s %8s %8s %8s %8s %6s%%\n' "$r" "$w" "$p" "every ${i}ms" "$sent" "$lost" "$med" "$p90" "$p99" "$max" "$cpu"
    fi
done <"$WORK/results"
echo
echo "summary: medians over $ROUNDS rounds"
printf '%-7s %-9s %-10s %8s %8s %8s %8s %7s\n' workers poll phase median p90 p99 lost CPU
for w in $WORKERS; do
    for p in busy adaptive; do
        awk -v w="$w" -v p="$p" '$2 == w && $3 == p && $4 == "idle"' "$WORK/results" >"$WORK/sel"
        printf '%-7s %-9s %-10s %8s %8s %8s %8s %6s%%\n' "$w" "$p" idle - - - - "$(awk '{print $11}' "$WORK/sel" | median)"
        for i in $INTERVALS; do
            awk -v w="$w" -v p="$p" -v i="$i" '$2 == w && $3 == p && $4 == i' "$WORK/results" >"$WORK/sel"
            printf '%-7s %-9s %-10s %8s %8s %8s %8s %6s%%\n' "$w" "$p" "every ${i}ms" \
                "$(awk '{print $7}' "$WORK/sel" | median)" "$(awk '{print $8}' "$WORK/sel" | median)" \
                "$(awk '{print $9}' "$WORK/sel" | median)" "$(awk '{s += $6} END {print s}' "$WORK/sel")" \
                "$(awk '{print $11}' "$WORK/sel" | median)"
        done
    done
done
echo
echo "the appliance's final worker counters:"
cat "$WORK/summaries"
echo
echo "appliance command (in namespace $NS_LB): RUST_LOG=info lb-appliance -c CONFIG"
echo "client (in namespace $NS_CLIENT): python3 -c CLIENT 198.18.1.100 9000 $REQUESTS INTERVAL_MS (the script's CLIENT)"
for w in $WORKERS; do
    echo "config, $w worker(s), adaptive (busy differs only in poll):"
    sed 's/^/  /' "$WORK/config-w$w-adaptive.toml"
done
