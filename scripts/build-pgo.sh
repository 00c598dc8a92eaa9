#!/usr/bin/env bash
# Builds lb-appliance with profile-guided optimisation (LLVM PGO through
# rustc): an instrumented build forwards the lab's traffic, its profile is
# merged, and the release build is made again with it. The result forwards
# about a tenth more packets per second than the plain release build
# (BENCHMARKS.md, "Profile-guided optimisation"); it behaves the same.
#
#   scripts/build-pgo.sh                 -> target/pgo/lb-appliance
#   PROFILE=target/pgo/lb-appliance.profdata scripts/build-pgo.sh
#                                        (reuse a profile: no training run)
#
# The training run is scripts/bench-throughput.sh with the instrumented
# binary as its BASELINE_LB: NAT, TUN and DR over IPv4 and IPv6 (NAT66,
# 6in6, IPv6 DR), at 10k and 1M flows, 2 s each, from lb-trafficgen over
# net_memif. So the profile is of the established-flow fast path, of flow
# set-up and of the flow table at scale; paths the training does not take
# (the SYN proxy's cookies, ICMP errors, ARP and NDP) are laid out as cold,
# which PGO may make slower, although they run at the same speed whichever
# way round the branches are laid out. A profile goes stale as the code
# changes (functions that changed are optimised as without one): build it
# again from the same commit.
#
# Needs root (DPDK's runtime folder; hugepages are reserved and given back
# as bench-throughput.sh does), 2 CPUs, and llvm-profdata of rustc's own
# LLVM (the rustup component llvm-tools, added here if missing). Takes
# about 5 minutes: two release builds and a minute of traffic.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

die() {
    printf 'build-pgo: %s\n' "$*" >&2
    exit 1
}

HOST=$(rustc -vV | sed -n 's/^host: //p')
[ -n "$HOST" ] || die "cannot tell rustc's host target"
PROFDATA="$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata"
if [ ! -x "$PROFDATA" ]; then
    echo "build-pgo: adding the rustup component llvm-tools (llvm-profdata)"
    rustup component add llvm-tools >/dev/null || die "rustup component add llvm-tools failed"
fi
[ -x "$PROFDATA" ] || die "no llvm-profdata at $PROFDATA"

OUT_DIR=target/pgo
mkdir -p "$OUT_DIR"
WORK=$(mktemp -d /tmp/lb-pgo.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# An explicit --target keeps RUSTFLAGS off build scripts and proc macros:
# only the appliance's own code is instrumented, then optimised.
if [ -n "${PROFILE:-}" ]; then
    [ -s "$PROFILE" ] || die "PROFILE: '$PROFILE' is not a profile"
    cp "$PROFILE" "$WORK/merged.profdata"
else
    [ "$(id -u)" -eq 0 ] || die "the training run needs root (DPDK); or give PROFILE="
    echo "== instrumented build"
    CARGO_TARGET_DIR=target/pgo-gen RUSTFLAGS="-Cprofile-generate=$WORK/raw" \
        cargo build --release -q --target "$HOST" -p lb-appliance
    INSTRUMENTED="target/pgo-gen/$HOST/release/lb-appliance"
    echo "== training: bench-throughput.sh with the instrumented build"
    CASES="nat@base tun@base dr@base nat6@base tun6@base dr6@base" \
        BASELINE_LB="$INSTRUMENTED" FLOWS="10000 1000000" ROUNDS=1 DURATION=2 IOFWD=0 \
        scripts/bench-throughput.sh --hugepages >"$WORK/training.log" 2>&1 ||
        { tail -30 "$WORK/training.log" >&2; die "the training run failed (its log above)"; }
    # Every appliance run must have forwarded: a run that did not would
    # leave its paths out of the profile.
    runs=$(grep -c 'r1-lb-.*-base-.*: worker on lcore' "$WORK/training.log" || true)
    [ "$runs" -eq 12 ] || { tail -30 "$WORK/training.log" >&2; die "expected 12 training runs, found $runs"; }
    ls "$WORK"/raw/*.profraw >/dev/null 2>&1 || die "the instrumented build wrote no profile"
    "$PROFDATA" merge -o "$WORK/merged.profdata" "$WORK"/raw/*.profraw
    cp "$WORK/merged.profdata" "$OUT_DIR/lb-appliance.profdata"
fi

echo "== optimised build"
CARGO_TARGET_DIR=target/pgo-use \
    RUSTFLAGS="-Cprofile-use=$WORK/merged.profdata -Cllvm-args=-pgo-warn-missing-function=false" \
    cargo build --release -q --target "$HOST" -p lb-appliance
cp "target/pgo-use/$HOST/release/lb-appliance" "$OUT_DIR/lb-appliance"
"$OUT_DIR/lb-appliance" --version >/dev/null || die "the optimised build does not run"
echo "build-pgo: $OUT_DIR/lb-appliance (profile: $OUT_DIR/lb-appliance.profdata)"
