#!/usr/bin/env bash
# Throughput of the whole appliance (DPDK rx/tx, mbufs, pipeline) on this
# machine, against dpdk-testpmd measured in the same rounds. Prints figures,
# the exact commands and the config; asserts nothing.
#
#   scripts/bench-throughput.sh [--hugepages]
#   ROUNDS=5 DURATION=3 FLOWS="10000 1000000" scripts/bench-throughput.sh
#
# Environment (defaults in brackets):
#   ROUNDS    [3]               interleaved rounds
#   DURATION  [5]               seconds measured per run
#   FLOWS     ["10000 1000000"] flow counts, each a block of every round
#   CASES     ["nat tun dr"]    appliance forwarding methods: nat, tun, dr over IPv4;
#                               nat6, tun6, dr6 the same over IPv6 (NAT66, TUN
#                               6in6, DR); METHOD@base runs BASELINE_LB instead
#                               (another build) in the same rounds
#   BASELINE_LB []              an lb-appliance binary to compare with, e.g. one
#                               built from an older commit in a git worktree
#   BURST     []                [dpdk] burst of this build's runs (unset: the default, 64)
#   BASELINE_BURST []           the same for BASELINE_LB's runs (BASELINE_LB may be
#                               this very binary: burst sizes then compared alone)
#   LB        [target/release/lb-appliance]
#                               the build measured as "this build", e.g.
#                               target/pgo/lb-appliance (scripts/build-pgo.sh)
#   IOFWD     [1]               also testpmd io forwarding, once per round
#   ALTERNATE [1]               run the cases in reverse order in even rounds (A B
#                               in odd rounds, B A in even ones); 0: always in
#                               the order of CASES, as before 2026-12-02
#   HUGEPAGES [1024]            2 MB pages that --hugepages makes sure are free
#   CLEAN     [90]              CPU share (%) both processes need for a clean run
#   STEADY    [10]              how far (%) the two macswap runs of a block, before
#                               and after its cases, may differ for the block's
#                               runs to be clean (the host kept its speed)
#   ORDER     [scrambled]       the order of the flows in each round after the
#                               SYNs (lb-trafficgen --order): scrambled, every
#                               flow once per round in an order unrelated to the
#                               one they were opened in, as independent clients'
#                               packets arrive; or sequential, the order they
#                               were opened in, which is the order the appliance
#                               allocated their flow entries in (the CPU's
#                               prefetcher follows it: kinder at 1M flows). The
#                               figures before 2026-11-29 are sequential.
#
# Every path is two DPDK processes joined by a net_memif pair (a shared-memory
# "wire"), each on its own CPU: lb-trafficgen on CPU 1 (the memif client: it
# sends, and counts what comes back), and on CPU 0 the memif server, one of
#   - dpdk-testpmd --forward-mode=macswap, the baseline: it swaps the MAC
#     addresses of every packet (it touches every frame, as the appliance
#     does) and sends it back;
#   - dpdk-testpmd --forward-mode=io, a second reference: sends every packet
#     back untouched (the cost of the wire and of the generator alone);
#   - lb-appliance, one-arm, VS/NAT, VS/TUN (IPIP) or VS/DR: FLOWS clients
#     send to the VIP; the appliance forwards to three reals whose MAC (a
#     static [[neighbors]] entry, no ARP) is the generator's, out of the same
#     port, so everything comes back to the generator, which counts it by
#     kind (to-real for NAT, ipip for TUN, to-vip for DR and testpmd).
#
# IPv6 cases (nat6, tun6, dr6): the generator sends Ethernet + IPv6 (no
# extension headers) + TCP to the IPv6 VIP 2001:2:1::100 from the clients
# 2001:2:100::/64, 78-byte frames (4 bytes of data: 14 + 40 + 20 + 4, the
# nearest to the IPv4 case's 64 that still carries data; 118 bytes once TUN
# wraps them in 6in6). The appliance's port has address6 2001:2::2/64 (and
# no IPv4 address) and MTU 1500 (TUN 6in6 needs 1320 at least: 40 bytes of
# outer header on an IPv6 minimum of 1280); the reals 2001:2::11-13 are
# static IPv6 [[neighbors]] with the generator's MAC, as for IPv4; no
# gateway6, as IPv4 has no gateway: nothing is sent to the clients (the
# "reals" are the generator, which answers nothing). NAT66 counts as
# to-real, 6in6 as ipip (outer next header 41), DR as to-vip. When CASES
# has an IPv6 case, every round also runs testpmd macswap with the same
# IPv6 frames ("testpmd macswap6"), and the IPv6 cases' ratios are to it:
# macswap reads no IP header, but the frames are 14 bytes longer (two cache
# lines, not one, through the memif copy) and the generator writes a
# 16-byte source address into each, so the IPv4 baseline would credit or
# charge the appliance with differences that are not its own (measured on
# the 2-CPU machine, 2026-11-28: macswap of the IPv6 frames forwarded 8 and
# 12 % fewer Mpps than of the IPv4 ones in the same rounds).
#
# A round runs, for each FLOWS value, a block: macswap, every case (and io
# forwarding once), then macswap again ("testpmd macswap, again"), one after
# the other, so that a case and its baseline are minutes apart at most on a
# machine whose speed swings 2x in minutes; each case's ratio is to the first
# macswap figure of the same round and flow count, and the summary gives the
# median over the rounds. The second macswap run's ratio to the first says
# whether the host kept its speed through the block: when the two differ by
# more than STEADY %, a case's ratio compares runs made at different speeds
# (this VM's host switches between about 4 and 12 Mpps of testpmd), and none
# of the block's runs is clean.
#
# The generator opens every flow with a SYN, then sends data (ACK|PSH) to
# each flow in turn; the first two rounds (the SYNs, and the first ACKs that
# make the flows Established) are warm-up: the DURATION seconds measured
# start once the memif ring has taken them. "Mpps sent" is what the ring
# took in that phase (it pushes back: nothing is lost on the way in); "Mpps
# fwd" is what came back in it; "SYN s" is how long the ring took to accept
# the SYN round (about the forwarder's flow set-up time, the ring holding 1k).
# "fwd CPU" and "gen CPU" are the share of its CPU each process had during
# the run (the generator's from schedstat over the measured phase, the
# forwarder's from /proc/PID/stat over the generator's run): on a machine shared with other
# work they say which runs were starved, which the ratios alone cannot. The
# summary gives the median ratio over all rounds and over the clean ones
# (every process of the run and of its macswap run had CLEAN % of its CPU,
# and the block's two macswap runs agree within STEADY %).
#
# Memory: with --hugepages (root), the script makes sure HUGEPAGES 2 MB pages
# are free (raising nr_hugepages for the difference), mounts a hugetlbfs in a
# temporary folder if none is mounted, runs every process with --in-memory,
# and gives back what it reserved and mounted when it exits, however it exits.
# Without it: --in-memory if at least 512 2 MB pages are already free on a
# mounted hugetlbfs, else --no-huge -m 512 (about half the rate: TLB misses).
#
# Needs root (DPDK's runtime folder), dpdk-testpmd (Debian package dpdk),
# stdbuf (coreutils) and 2 CPUs.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/bench-appliance.sh
. scripts/lib/bench-appliance.sh

USE_HUGEPAGES=0
for arg in "$@"; do
    case $arg in
    --hugepages) USE_HUGEPAGES=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        printf 'unknown argument: %s (see --help)\n' "$arg" >&2
        exit 2
        ;;
    esac
done

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
FLOWS="${FLOWS:-10000 1000000}"
CASES="${CASES:-nat tun dr}"
IOFWD="${IOFWD:-1}"
ALTERNATE="${ALTERNATE:-1}"
HUGEPAGES="${HUGEPAGES:-1024}"
CLEAN="${CLEAN:-90}"
STEADY="${STEADY:-10}"
ORDER="${ORDER:-scrambled}"
PAYLOAD=10 # 14 + 20 + 20 + 10 = 64-byte frames, as testpmd's default
PAYLOAD6=4 # 14 + 40 + 20 + 4 = 78-byte IPv6 frames (see above)
WARMUP_ROUNDS=2
TARGET="${CARGO_TARGET_DIR:-target}"
GEN_MAC=02:00:00:00:00:01
LB_MAC=02:00:00:00:00:02
TAG="lbbench-$$"

log() { printf '%s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}

read -r -a list <<<"$FLOWS"
FLOWS="${list[*]}"
read -r -a list <<<"$CASES"
CASES="${list[*]}"
{ [ -n "$FLOWS" ] && [ -n "$CASES" ]; } || die "FLOWS and CASES must not be empty"
for v in ROUNDS DURATION HUGEPAGES CLEAN STEADY; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done
for f in $FLOWS; do
    [[ $f =~ ^[1-9][0-9]*$ ]] || die "FLOWS must be a list of positive integers, not '$FLOWS'"
done
case $ALTERNATE in
0 | 1) ;;
*) die "ALTERNATE must be 0 or 1, not '$ALTERNATE'" ;;
esac
case $ORDER in
scrambled | sequential) ;;
*) die "ORDER must be scrambled or sequential, not '$ORDER'" ;;
esac
for c in $CASES; do
    case $c in
    nat | tun | dr | nat6 | tun6 | dr6) ;;
    nat@base | tun@base | dr@base | nat6@base | tun6@base | dr6@base)
        [ -n "${BASELINE_LB:-}" ] || die "CASES: '$c' needs BASELINE_LB (another lb-appliance binary)"
        [ -x "$BASELINE_LB" ] || die "BASELINE_LB: '$BASELINE_LB' is not an executable"
        ;;
    *) die "CASES: unknown case '$c' (nat, tun, dr, nat6, tun6, dr6, or METHOD@base with BASELINE_LB)" ;;
    esac
done
# Checked before the build (found in review: after it, a typo cost a
# release build first).
BURST=${BURST:-} BASELINE_BURST=${BASELINE_BURST:-}
for b in "$BURST" "$BASELINE_BURST"; do
    [ -z "$b" ] || { [[ $b =~ ^[1-9][0-9]{0,2}$ ]] && [ "$b" -le 128 ]; } ||
        die "BURST/BASELINE_BURST: '$b' is not 1..128"
done
# baseline_of CASE: the macswap run its ratio is to.
baseline_of() { if is_v6 "${1%-again}"; then echo testpmd-macswap6; else echo testpmd-macswap; fi; }
HAS_V6=0
for c in $CASES; do if is_v6 "$c"; then HAS_V6=1; fi; done
command -v dpdk-testpmd >/dev/null || die "dpdk-testpmd not found (apt-get install dpdk)"
command -v stdbuf >/dev/null || die "stdbuf not found (coreutils)"
[ "$(id -u)" = 0 ] || die "needs root (DPDK's runtime folder, and --hugepages)"
[ "$(nproc)" -ge 2 ] || log "warning: fewer than 2 CPUs: both processes share one, figures are meaningless"

# Everything the script starts or changes is undone by cleanup, on any exit.
WORK=$(mktemp -d /tmp/lb-bench.XXXXXX)
PIDS=()
HP_SYSFS=/sys/kernel/mm/hugepages/hugepages-2048kB
HP_ORIG=""  # nr_hugepages before the script raised it
HP_MOUNT="" # the hugetlbfs the script mounted
cleanup() {
    local pid
    trap '' INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "$HP_MOUNT" ]; then
        umount "$HP_MOUNT" 2>/dev/null || umount -l "$HP_MOUNT" 2>/dev/null ||
            log "could not unmount $HP_MOUNT"
        rmdir "$HP_MOUNT" 2>/dev/null || true
    fi
    if [ -n "$HP_ORIG" ]; then
        echo "$HP_ORIG" >"$HP_SYSFS/nr_hugepages" 2>/dev/null ||
            log "could not restore $HP_SYSFS/nr_hugepages to $HP_ORIG"
        log "hugepages: nr_hugepages restored to $(cat "$HP_SYSFS/nr_hugepages")"
    fi
    rm -rf "$WORK"
    rm -rf /var/run/dpdk/"$TAG"-*
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

hugetlbfs_mounted() { awk '$3 == "hugetlbfs" {f=1} END {exit !f}' /proc/mounts; }
hp_free() { cat "$HP_SYSFS/free_hugepages" 2>/dev/null || echo 0; }

if [ "$USE_HUGEPAGES" = 1 ]; then
    [ -w "$HP_SYSFS/nr_hugepages" ] || die "--hugepages: no 2 MB hugepages on this kernel ($HP_SYSFS)"
    free=$(hp_free)
    if [ "$free" -lt "$HUGEPAGES" ]; then
        HP_ORIG=$(cat "$HP_SYSFS/nr_hugepages")
        echo $((HP_ORIG + HUGEPAGES - free)) >"$HP_SYSFS/nr_hugepages" ||
            die "--hugepages: could not raise nr_hugepages"
        got=$(($(cat "$HP_SYSFS/nr_hugepages") - HP_ORIG))
        log "hugepages: reserved $got pages of 2 MB (nr_hugepages $HP_ORIG -> $((HP_ORIG + got)))"
        [ "$(hp_free)" -ge 256 ] || die "--hugepages: only $(hp_free) free 2 MB pages after reserving (memory fragmented?)"
    fi
    if ! hugetlbfs_mounted; then
        HP_MOUNT=$(mktemp -d /tmp/lb-bench-huge.XXXXXX)
        mount -t hugetlbfs -o pagesize=2M nodev "$HP_MOUNT" || die "--hugepages: could not mount a hugetlbfs"
        log "hugepages: mounted a hugetlbfs on $HP_MOUNT"
    fi
    MEM="--in-memory --no-pci"
    if [ -n "$HP_ORIG" ]; then
        MEMNOTE="2 MB hugepages reserved by the script ($(hp_free) free; --in-memory), given back on exit"
    else
        MEMNOTE="2 MB hugepages already reserved ($(hp_free) free; --in-memory)"
    fi
elif [ "$(hp_free)" -ge 512 ] && hugetlbfs_mounted; then
    MEM="--in-memory --no-pci"
    MEMNOTE="2 MB hugepages already reserved ($(hp_free) free; --in-memory)"
else
    MEM="--no-huge -m 512 --no-pci --no-shconf"
    MEMNOTE="no hugepages (--no-huge -m 512)"
fi
log "memory: $MEMNOTE"

log "building (release)"
cargo build --release -q -p lb-appliance -p lb-trafficgen
LB="${LB:-$TARGET/release/lb-appliance}"
[ -x "$LB" ] || die "LB: '$LB' is not an executable"
GEN="$TARGET/release/lb-trafficgen"

ROUND=0 # the commands of round 1 are printed at the end
CLK_TCK=$(getconf CLK_TCK)

# note_command ARGS...: records a command line (round 1 only).
note_command() {
    [ "$ROUND" = 1 ] || return 0
    {
        printf '  %q' "$1"
        shift
        printf ' %q' "$@"
        printf '\n'
    } >>"$WORK/commands"
}

# start NAME COMMAND...: starts a process in the background with its output
# in $WORK/NAME.log; its PID in LAST_PID.
start() {
    local name=$1
    shift
    note_command "$@"
    : >"$WORK/$name.log"
    "$@" </dev/null >>"$WORK/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# wait_for SECONDS COMMAND...: polls until the command succeeds; gives up
# at once when it returns 2.
wait_for() {
    local end=$((SECONDS + $1)) rc
    shift
    while :; do
        rc=0
        "$@" || rc=$?
        [ "$rc" != 0 ] || return 0
        [ "$rc" != 2 ] || return 1
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.1
    done
}

# ready PID LOG PATTERN SOCKET: the process is alive (else 2), has logged
# PATTERN and its memif socket exists.
ready() {
    kill -0 "$1" 2>/dev/null || return 2
    grep -qs "$3" "$2" || return 1 # (2 if the log is not there yet)
    [ -S "$4" ]
}

# stop PID SIGNAL: signals the process and waits for it.
stop() {
    kill "-$2" "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# cputime PID: the CPU time of the process, all its threads, ended ones
# included (utime + stime, in clock ticks), and the time now in ticks.
cputime() {
    awk -v now="$(date +%s%N)" -v hz="$CLK_TCK" '{sub(/^.*\) /, ""); printf "%.0f %.3f\n", $12 + $13, now / 1e9 * hz}' \
        /proc/"$1"/stat 2>/dev/null || true
}

# generate NAME SOCKET FLOWS FORWARDER-PID FAMILY: runs the generator
# against the memif server on SOCKET, with IPv4 or (FAMILY 6) IPv6 frames;
# sets RESULT to "Mpps-sent Mpps-forwarded warm-up-s
# SYN-round-s generator-CPU-% forwarder-CPU-%" of the measured phase (the
# forwarder's CPU share is over the generator's whole run).
generate() {
    local name=$1 sock=$2 flows=$3 fwd=$4 pid rc=0 end s s0="" s1=""
    local addrs=(--vip 198.18.1.100 --port 80 --clients 198.19.0.0/16) payload=$PAYLOAD
    if [ "$5" = 6 ]; then
        addrs=(--vip 2001:2:1::100 --port 80 --clients 2001:2:100::/64)
        payload=$PAYLOAD6
    fi
    local cmd=("$GEN" --eal "--lcores 0@1 $MEM --file-prefix $TAG-$name-gen"
        --device "net_memif0,role=client,id=0,socket=$sock,socket-abstract=no,mac=$GEN_MAC"
        --dst-mac "$LB_MAC" "${addrs[@]}"
        --flows "$flows" --order "$ORDER" --rate 0 --warmup-rounds "$WARMUP_ROUNDS" --duration "${DURATION}s"
        --payload "$payload" --link-timeout 20s)
    note_command "${cmd[@]}"
    "${cmd[@]}" </dev/null >"$WORK/$name-gen.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    # A watchdog rather than timeout(1), so that the PID is the generator's.
    end=$((SECONDS + DURATION + 90))
    # The forwarder's CPU time is sampled all along (first and last good
    # samples), not only at both ends.
    while kill -0 "$pid" 2>/dev/null; do
        s=$(cputime "$fwd")
        if [ -n "$s" ]; then
            if [ -z "$s0" ]; then s0=$s; else s1=$s; fi
        fi
        if [ "$SECONDS" -ge "$end" ]; then
            log "generator still running after $((DURATION + 90)) s: stopping it"
            kill -INT "$pid" 2>/dev/null || true
            rc=124
            break
        fi
        sleep 0.2
    done
    wait "$pid" || rc=$?
    if [ "$rc" != 0 ]; then
        log "generator failed ($rc):"
        cat "$WORK/$name-gen.log" >&2
        return 1
    fi
    printf '  round %s %s: %s\n' "$ROUND" "$name" "$(grep '^sent ' "$WORK/$name-gen.log")" >>"$WORK/summaries"
    RESULT=$(sed -n 's/^measured after [0-9]* warm-up rounds ([0-9]* packets, \([0-9.]*\) s; SYN round \([0-9.-]*\)[ s]*): sent [0-9]* packets (\([0-9.]*\) Mpps), received [0-9]* packets (\([0-9.]*\) Mpps).*; CPU \([0-9]*\) %.*/\3 \4 \1 \2 \5/p' \
        "$WORK/$name-gen.log")
    [ -n "$RESULT" ] || { log "no measured phase in the generator's output:" && cat "$WORK/$name-gen.log" >&2 && return 1; }
    # "?" when the samples are missing or the figure is implausible (a
    # forwarder that forwarded cannot have had less than 1 % of its CPU).
    RESULT="$RESULT $(echo "$s0 $s1" | awk 'NF == 4 && $4 > $2 {v = 100 * ($3 - $1) / ($4 - $2)} END {if (v >= 1) printf "%.0f", v; else printf "?"}')"
}

# record CASE FLOWS: appends this run's figures to $WORK/results.
record() {
    echo "$ROUND $2 $1 $RESULT" >>"$WORK/results"
}

# testpmd MODE FLOWS [6] [again]: the baseline (macswap) or the io reference;
# with 6, macswap of the IPv6 frames (recorded as testpmd-macswap6); with
# "again", the block's second macswap run (testpmd-macswap-again).
run_testpmd() {
    local mode=$1 flows=$2 family=${3:-4} kind="testpmd-$1${3:-}${4:+-$4}" name sock pid
    name="r$ROUND-$kind-$flows"
    sock="$WORK/$name.sock"
    # The readiness line below reaches the log only when testpmd's stdout is
    # flushed: to a file, stdio buffers it by blocks. stdbuf -oL makes it
    # line-buffered; --stats-period 1 (the statistics print every second)
    # flushes it within seconds even where stdbuf's preload does not take.
    # (--stats-period 3600, used before, printed nothing for the first
    # hour after boot: testpmd counts the period from the TSC's zero, so
    # where stdbuf did not take, a freshly booted machine never saw the
    # line and reported "testpmd did not start".) It also keeps testpmd
    # running with its standard input at end of file: without it, testpmd
    # waits for a key and takes the end of /dev/null for one.
    # shellcheck disable=SC2086 # $MEM is a list of words
    start "$name" stdbuf -oL dpdk-testpmd --lcores '0@0,1@0' $MEM --file-prefix "$TAG-$name" \
        --vdev "net_memif0,role=server,id=0,socket=$sock,socket-abstract=no" -- \
        --forward-mode="$mode" --port-topology=loop --total-num-mbufs=16384 --auto-start --stats-period 1
    pid=$LAST_PID
    # The memif client must connect once the server's port is started, not
    # merely when its socket exists: wait for testpmd to be forwarding.
    wait_for 30 ready "$pid" "$WORK/$name.log" 'packet forwarding - ports' "$sock" ||
        { log "testpmd did not start:" && cat "$WORK/$name.log" >&2 && exit 1; }
    log "round $ROUND: $(label "$kind"), $flows flows"
    generate "$name" "$sock" "$flows" "$pid" "$family"
    stop "$pid" INT
    record "$kind" "$flows"
}

run_appliance() { # run_appliance CASE FLOWS (CASE: METHOD, or METHOD@base)
    local case=$1 method=${1%@base} flows=$2 name="r$ROUND-lb-${1/@/-}-$2" sock pid bin=$LB
    if [ "$case" != "$method" ]; then bin=$BASELINE_LB; fi
    sock="$WORK/$name.sock"
    local burst=$BURST
    if [ "$case" != "$method" ]; then burst=$BASELINE_BURST; fi
    appliance_config "$method" "net_memif0,role=server,id=0,socket=$sock,socket-abstract=no" \
        "$(capacity "$flows")" "$TAG-$name" "${burst:+burst = $burst}" >"$WORK/$name.toml"
    # The config printed at the end is this build's (found in review: with
    # CASES="nat nat@base", the baseline's run came second and its config,
    # BASELINE_BURST's burst, was printed as the one measured); a
    # baseline's only where this build does not run the method.
    if [ "$ROUND" = 1 ] && { [ "$case" = "$method" ] || [ ! -f "$WORK/config-$method-$flows.toml" ]; }; then
        cp "$WORK/$name.toml" "$WORK/config-$method-$flows.toml"
    fi
    start "$name" env RUST_LOG=info "$bin" -c "$WORK/$name.toml"
    pid=$LAST_PID
    wait_for 60 ready "$pid" "$WORK/$name.log" polling "$sock" ||
        { log "lb-appliance did not start:" && cat "$WORK/$name.log" >&2 && exit 1; }
    log "round $ROUND: $(label "$case"), $flows flows"
    generate "$name" "$sock" "$flows" "$pid" "$(is_v6 "$method" && echo 6 || echo 4)"
    stop "$pid" TERM
    printf '  round %s %s: %s\n' "$ROUND" "$name" \
        "$(grep -h 'worker on lcore' "$WORK/$name.log" | sed 's/^.*\] //')" >>"$WORK/summaries"
    record "$case" "$flows"
}

label() { # label CASE
    case $1 in
    testpmd-macswap) echo "testpmd macswap (baseline)" ;;
    testpmd-macswap6) echo "testpmd macswap6 (baseline)" ;;
    testpmd-macswap-again) echo "testpmd macswap, again" ;;
    testpmd-macswap6-again) echo "testpmd macswap6, again" ;;
    testpmd-io) echo "testpmd io (reference)" ;;
    *@base) echo "baseline build ${1%@base}" | sed 's/ \([a-z0-9]*\)$/ \U\1/' ;;
    *) echo "lb-appliance ${1^^}" ;;
    esac
}

# print_round N: the table of round N, ratios to that round's macswap (of
# the case's family).
print_round() {
    printf '\nround %s of %s\n' "$1" "$ROUNDS"
    printf '%-28s %8s %10s %10s %8s %9s %8s %8s %8s\n' case flows "Mpps sent" "Mpps fwd" ratio "warm-up s" "SYN s" "fwd CPU" "gen CPU"
    awk -v r="$1" '$1 == r' "$WORK/results" | while read -r _ flows c sent fwd warm syn gcpu fcpu; do
        base=$(awk -v r="$1" -v f="$flows" -v b="$(baseline_of "$c")" '$1 == r && $2 == f && $3 == b {print $5}' "$WORK/results")
        printf '%-28s %8s %10s %10s %8s %9s %8s %7s%% %7s%%\n' "$(label "$c")" "$flows" "$sent" "$fwd" \
            "$(awk -v a="$fwd" -v b="$base" 'BEGIN {if (b > 0) printf "%.3f", a / b; else printf "-"}')" "$warm" "$syn" "$fcpu" "$gcpu"
    done
}

median() { # median < numbers
    sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "-"; else if (NR % 2) printf "%.3f\n", v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

STARTED=$(date -u +%Y-%m-%dT%H:%MZ)
for ROUND in $(seq 1 "$ROUNDS"); do
    first=1
    for flows in $FLOWS; do
        run_testpmd macswap "$flows"
        if [ "$HAS_V6" = 1 ]; then run_testpmd macswap "$flows" 6; fi
        order=$CASES
        # In even rounds the cases run in reverse order (A B, then B A),
        # so that no build or method always runs first in its block: the
        # position is a bias the rounds should not all share.
        if [ "$ALTERNATE" = 1 ] && [ $((ROUND % 2)) = 0 ]; then
            order=$(printf '%s\n' $CASES | tac | tr '\n' ' ')
        fi
        for c in $order; do run_appliance "$c" "$flows"; done
        if [ "$IOFWD" = 1 ] && [ "$first" = 1 ]; then run_testpmd io "$flows"; fi
        run_testpmd macswap "$flows" "" again
        if [ "$HAS_V6" = 1 ]; then run_testpmd macswap "$flows" 6 again; fi
        first=0
    done
    print_round "$ROUND" >>"$WORK/rounds"
    print_round "$ROUND" >&2
done

# The ratio of every run to the macswap run (of its family: IPv6 cases to
# macswap6) of the same round and flows, and whether both runs were
# "clean": each process had at least CLEAN % of its CPU, and the block's
# macswap runs before and after its cases (either family) agree within
# STEADY %.
awk -v t="$CLEAN" -v steady="$STEADY" 'function lo(a, b) {return a < b ? a : b}
     function bk(c) {return c ~ /6(@base|-again)?$/ ? "testpmd-macswap6" : "testpmd-macswap"}
     NR == FNR {if ($3 ~ /^testpmd-macswap6?$/) {base[$1 " " $2 " " $3] = $5; bcpu[$1 " " $2 " " $3] = lo($8, $9)}
                if ($3 ~ /^testpmd-macswap6?-again$/) again[$1 " " $2 " " $3] = $5; next}
     FNR == 1 {for (k in again) {split(k, p, " "); b = base[p[1] " " p[2] " " bk(p[3])]
                                 if (!(b > 0) || again[k] / b > 1 + steady / 100 || again[k] / b < 1 - steady / 100) drift[p[1] " " p[2]] = 1}}
     {k = $1 " " $2 " " bk($3); b = base[k]
      printf "%s %s %s %s %s %s %s %d\n", $1, $2, $3, $5, (b > 0 ? $5 / b : "-"), $9, $8, (lo($8, $9) >= t && bcpu[k] >= t && !drift[$1 " " $2])}' \
    "$WORK/results" "$WORK/results" >"$WORK/ratios"

echo "lb-appliance throughput: started $STARTED, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo '+changes')"
echo "machine: $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), DPDK $(pkg-config --modversion libdpdk 2>/dev/null || dpkg-query -W -f '${Version}' dpdk 2>/dev/null || echo '?')"
echo "memory: $MEMNOTE"
echo "64-byte frames (84 for TUN) over net_memif; forwarder on CPU 0, lb-trafficgen on CPU 1"
if [ "$HAS_V6" = 1 ]; then
    echo "IPv6 cases and macswap6: 78-byte IPv6/TCP frames (118 for TUN 6in6); their ratios are to testpmd macswap6"
fi
echo "$ROUNDS interleaved rounds; per run $WARMUP_ROUNDS warm-up rounds of the flows, then ${DURATION} s measured;"
echo "flows in $ORDER order after the SYNs (ORDER)"
echo "fwd CPU, gen CPU: the share of a CPU that the forwarder (CPU 0) and lb-trafficgen (CPU 1) had during"
echo "the run (CPU time / wall time); below 100 % other work on this machine took the rest, and that run's figures suffer"
cat "$WORK/rounds"
echo
echo "summary: medians over $ROUNDS rounds; ratio = Mpps fwd / testpmd macswap Mpps fwd of the same round and flows;"
echo "a round is clean when the run and its macswap run both had at least $CLEAN % of both CPUs and the block's"
echo "macswap runs before and after its cases agree within $STEADY % (* marks the others)"
printf '%-28s %8s %15s %13s %7s %14s  %s\n' case flows "median Mpps fwd" "median ratio" clean "clean median" "ratio per round"
for flows in $FLOWS; do
    for c in testpmd-macswap testpmd-macswap6 $CASES testpmd-io testpmd-macswap-again testpmd-macswap6-again; do
        awk -v f="$flows" -v c="$c" '$2 == f && $3 == c' "$WORK/ratios" >"$WORK/sel"
        [ -s "$WORK/sel" ] || continue
        printf '%-28s %8s %15s %13s %7s %14s  %s\n' "$(label "$c")" "$flows" \
            "$(awk '{print $4}' "$WORK/sel" | median)" "$(awk '{print $5}' "$WORK/sel" | median)" \
            "$(awk '{n += $8} END {print n "/" NR}' "$WORK/sel")" "$(awk '$8 == 1 {print $5}' "$WORK/sel" | median)" \
            "$(awk '{printf "%s%.3f%s", (NR > 1 ? " " : ""), $5, ($8 ? "" : "*")}' "$WORK/sel")"
    done
done
# This build against BASELINE_LB, run by run in the same rounds.
for c in $CASES; do
    case $c in *@base) ;; *) continue ;; esac
    m=${c%@base}
    [[ " $CASES " == *" $m "* ]] || continue
    for flows in $FLOWS; do
        awk -v f="$flows" -v m="$m" -v b="$c" '$2 == f && $3 == m {x[$1] = $5} $2 == f && $3 == b {y[$1] = $5}
            END {for (r in x) if (r in y && y[r] > 0) printf "%s %.3f\n", r, x[r] / y[r]}' "$WORK/results" |
            sort -n >"$WORK/vsbase"
        [ -s "$WORK/vsbase" ] || continue
        printf '%-28s %8s this build / baseline build: median %s, per round %s\n' "$(label "$m")" "$flows" \
            "$(awk '{print $2}' "$WORK/vsbase" | median)" "$(awk '{printf "%s%s", (NR > 1 ? " " : ""), $2}' "$WORK/vsbase")"
    done
done
echo
echo "generator summaries (all packets, warm-up included) and the appliance's final counters:"
cat "$WORK/summaries"
echo
echo "commands of round 1 (later rounds differ only in --file-prefix and socket names, in a temporary folder):"
cat "$WORK/commands"
last=${FLOWS##* }
first_case=${CASES%% *}
first_case=${first_case%@base}
cfg_case=nat
[ -f "$WORK/config-nat-$last.toml" ] || cfg_case=$first_case
echo "appliance config (${cfg_case^^}, $last flows; the other methods differ only in forwarding, and only NAT"
echo "has a real port; flows.capacity is $(for f in $FLOWS; do printf '%s for %s flows, ' "$(capacity "$f")" "$f"; done | sed 's/, $//')):"
sed 's/^/  /' "$WORK/config-$cfg_case-$last.toml"
