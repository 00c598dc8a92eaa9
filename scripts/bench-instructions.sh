#!/usr/bin/env bash
# Instructions per packet of the pipeline, counted by valgrind's callgrind:
# a figure that does not move with this shared machine's speed, for
# comparing two builds of the packet path (nanoseconds still come from
# `cargo bench -p lb-dataplane --bench pipeline`, which this runs, short).
#
#   scripts/bench-instructions.sh            # the cases below
#   CASES="IPv4 NAT established, 1k" scripts/bench-instructions.sh
#
# For each case (a filter of the pipeline bench; its "1M" cases are cut to
# 2k flows here, so that they stay out of the 1k ones) it runs the bench under
# callgrind with LB_BENCH_RUNS=1 (one warm-up run and one measured run of
# PACKETS packets each; the cases' flows are opened one packet at a time
# before, outside what is counted) and collects only inside
# `Pipeline::process_burst` (--toggle-collect), the per-burst entry point a
# worker calls. The figure is those instructions over the packets that
# went through it. Instructions are not time: a cache miss costs none and
# a division one. Needs valgrind (scripts/install-deps.sh --bench).
#
#   scripts/bench-instructions.sh --worker   # the appliance's own build
#   WORKER_CASES="nat dr" FLOWS=1000 ROUNDS=100 scripts/bench-instructions.sh --worker
#   CG_OUT=/tmp/cg scripts/bench-instructions.sh --worker   # keep the profiles
#
# --worker counts the same function in the appliance itself: the bench's
# copy of `process_burst` is compiled in the bench's crate (for its own
# buffer type), and LLVM makes it differently from the worker's, which
# `lb-dataplane` compiles for DPDK's mbufs: the same source counts some 3 %
# apart between two builds of the bench (BENCHMARKS.md, session 43). Here
# `lb-trafficgen` writes the frames of FLOWS flows (IPv4 or IPv6 TCP to the
# VIP, 64- or 78-byte frames as in bench-throughput.sh) into a pcap file
# (`net_pcap` tx_pcap), and `lb-appliance` (the release build, one worker,
# `--no-huge`, the one-arm config of bench-throughput.sh) reads it back
# with `net_pcap` rx_pcap under callgrind, collecting inside
# `process_burst` only, until its worker has received every frame (its
# `lb_worker_rx_packets_total`); then it is stopped. Three files per case:
# the flows' SYNs alone, SYN and first ACK, and SYN, first ACK and ROUNDS
# more ACKs of 10 bytes each: "established" is the difference between the
# last two over FLOWS x ROUNDS frames, "new flow" the first over FLOWS.
# Every frame must come out forwarded (tx equal to rx), else it stops.
# Cases: nat tun dr nat6 tun6 dr6. No root needed, no hugepages, one CPU.
# With CG_OUT (a folder, made if missing) each run's callgrind file is kept
# there as CASE-syn.cg, CASE-first.cg and CASE-all.cg, for a line profile
# of the worker itself (`callgrind_annotate --auto=yes CG_OUT/nat-all.cg`).
# CG_ARGS: more callgrind options for the worker's runs, e.g.
# CG_ARGS=--dump-instr=yes for counts per machine instruction, which
# scripts/cg-tree.py turns into a tree of the inlined frames (which step of
# the pipeline the instructions belong to, not only their innermost line):
#   scripts/cg-tree.py CG_OUT/nat-all.cg --minus CG_OUT/nat-first.cg \
#       --packets $((FLOWS * ROUNDS)) --depth 6 --min 2
# CG_COLLECT: the function(s) counted instead of `process_burst`, e.g.
# 'lb_dataplane::worker::Worker::run*' for the whole worker, its driver
# calls included (net_pcap's here, not memif's). LB: the appliance binary
# counted [target/release/lb-appliance], e.g. another build's.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = --worker ]; then
    # shellcheck source=lib/bench-appliance.sh
    . scripts/lib/bench-appliance.sh
    FLOWS=${FLOWS:-1000}
    ROUNDS=${ROUNDS:-100}
    WORKER_CASES=${WORKER_CASES:-"nat tun dr nat6 tun6 dr6"}
    MEM="--no-huge -m 512 --no-pci --no-shconf"
    GEN_MAC=02:00:00:00:00:01
    LB_MAC=02:00:00:00:00:02
    command -v valgrind >/dev/null || { echo "valgrind is needed: scripts/install-deps.sh --bench (or apt-get install valgrind)" >&2; exit 1; }
    if [ -n "${CG_OUT:-}" ]; then
        mkdir -p "$CG_OUT" || { echo "CG_OUT: cannot make '$CG_OUT'" >&2; exit 1; }
    fi
    cargo build --release -q -p lb-appliance -p lb-trafficgen
    work=$(mktemp -d)
    pid=""
    # Only what this script started: the appliance under valgrind, by PID.
    trap '[ -z "$pid" ] || kill -KILL "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
    # An empty capture: the generator's port needs something to receive from.
    printf '\xd4\xc3\xb2\xa1\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x00\x00\x01\x00\x00\x00' >"$work/empty.pcap"
    # frames CASE PER-FLOW FILE: the generator's frames, PER-FLOW a flow.
    frames() {
        local addrs=(--vip 198.18.1.100 --clients 198.19.0.0/16) payload=10
        if is_v6 "$1"; then addrs=(--vip 2001:2:1::100 --clients 2001:2:100::/64) payload=4; fi
        target/release/lb-trafficgen --eal "--lcores 0@0 $MEM --file-prefix bi-gen-$$" \
            --device "net_pcap0,rx_pcap=$work/empty.pcap,tx_pcap=$3" \
            --dst-mac "$LB_MAC" --src-mac "$GEN_MAC" "${addrs[@]}" --port 80 \
            --flows "$FLOWS" --packets-per-flow "$2" --order scrambled \
            --payload "$payload" --drain 0s >"$work/gen.log" 2>&1 ||
            { cat "$work/gen.log" >&2; exit 1; }
    }
    # instructions CASE FILE FRAMES: what `process_burst` executed for them.
    instructions() {
        local toml=$work/$1.toml log=$work/lb.log n=0 rx="" tx="" metrics=""
        appliance_config "$1" "net_pcap0,rx_pcap=$2,tx_pcap=/dev/null" "$(capacity "$FLOWS")" "bi-lb-$$" >"$toml"
        rm -f "$work/cg"
        # shellcheck disable=SC2086 # CG_ARGS: words for valgrind
        valgrind --tool=callgrind --callgrind-out-file="$work/cg" ${CG_ARGS:-} \
            --toggle-collect="${CG_COLLECT:-lb_core::pipeline::Pipeline::process_burst*}" \
            "${LB:-target/release/lb-appliance}" -c "$toml" </dev/null >"$log" 2>&1 &
        pid=$!
        while [ "$n" -lt 600 ]; do
            n=$((n + 1))
            sleep 0.5
            kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "lb-appliance stopped" >&2; exit 1; }
            [ -n "$metrics" ] || metrics=$(sed -n 's|^.*metrics on \(http://[^ ]*/metrics\).*$|\1|p' "$log")
            [ -n "$metrics" ] || continue
            rx=$(curl -s "$metrics" | awk '/^lb_worker_rx_packets_total/ {s += $2} END {print s + 0}') || true
            [ "$rx" != "$3" ] || break
        done
        kill -TERM "$pid"
        wait "$pid" || true
        pid=""
        [ "$rx" = "$3" ] || { cat "$log" >&2; echo "$1: received $rx of $3 frames" >&2; exit 1; }
        tx=$(sed -n 's/^.*worker on lcore [0-9]*: rx [0-9]*, tx \([0-9]*\),.*$/\1/p' "$log")
        [ "$tx" = "$3" ] || { cat "$log" >&2; echo "$1: forwarded $tx of $3 frames" >&2; exit 1; }
        if [ -n "${CG_OUT:-}" ]; then
            cp "$work/cg" "$CG_OUT/$1-$(basename "$2" .pcap).cg"
        fi
        sed -n 's/^summary: //p' "$work/cg"
    }
    echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (with local changes)'), the appliance's worker, $FLOWS flows, $ROUNDS rounds of ACKs, valgrind $(valgrind --version)"
    printf '%-8s %14s %14s\n' case "new flow" "established"
    for c in $WORKER_CASES; do
        case $c in nat | tun | dr | nat6 | tun6 | dr6) ;; *) echo "unknown case '$c' (nat tun dr nat6 tun6 dr6)" >&2; exit 1 ;; esac
        frames "$c" 1 "$work/syn.pcap"
        frames "$c" 2 "$work/first.pcap"
        frames "$c" $((ROUNDS + 2)) "$work/all.pcap"
        syn=$(instructions "$c" "$work/syn.pcap" "$FLOWS")
        first=$(instructions "$c" "$work/first.pcap" $((2 * FLOWS)))
        all=$(instructions "$c" "$work/all.pcap" $(((ROUNDS + 2) * FLOWS)))
        printf '%-8s %14.1f %14.1f\n' "$c" "$(echo "$syn / $FLOWS" | bc -l)" \
            "$(echo "($all - $first) / ($ROUNDS * $FLOWS)" | bc -l)"
    done
    exit 0
fi

PACKETS=${PACKETS:-100000}
CASES=${CASES:-"IPv4 parse only|IPv4 NAT established, 1k flows|IPv4 TUN established, 1k flows|IPv4 DR established, 1k flows|IPv4 NAT replies, 1k flows|IPv6 parse only|IPv6 NAT established, 1k flows|IPv6 DR established, 1k flows|IPv6 NAT replies, 1k flows"}

command -v valgrind >/dev/null || { echo "valgrind is needed: scripts/install-deps.sh --bench (or apt-get install valgrind)" >&2; exit 1; }
bench=$(cargo bench -p lb-dataplane --bench pipeline --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "pipeline" and m.get("executable"):
        print(m["executable"])')
[ -x "$bench" ] || { echo "could not build the pipeline bench" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (with local changes)'), $PACKETS packets per case, valgrind $(valgrind --version)"
printf '%-40s %12s\n' case "instr/packet"
IFS='|' read -ra cases <<<"$CASES"
for c in "${cases[@]}"; do
    LB_BENCH_PACKETS=$PACKETS LB_BENCH_RUNS=1 LB_BENCH_LARGE=2000 \
        valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
        --toggle-collect='lb_core::pipeline::Pipeline::process_burst*' \
        "$bench" --bench "$c" >"$out/log" 2>&1 || { cat "$out/log" >&2; exit 1; }
    ir=$(sed -n 's/^summary: //p' "$out/cg")
    # Warm-up and measured run, each rounded up to whole passes over 1000 flows.
    n=$(( 2 * ( (PACKETS + 999) / 1000 * 1000 ) ))
    printf '%-40s %12.1f\n' "$c" "$(echo "$ir / $n" | bc -l)"
done
