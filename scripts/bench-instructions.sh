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
set -euo pipefail
cd "$(dirname "$0")/.."

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
