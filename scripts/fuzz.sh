#!/usr/bin/env bash
# Builds and runs every cargo-fuzz target in fuzz/ for SECONDS each
# (default 60), one after the other, and prints per target the executions
# and the crashes. Exit status 1 if any target crashed; its crashing inputs
# are copied into fuzz/regressions/<target>/ for triage (the replay test
# then fails on them until they are fixed or listed in known-open.txt).
#
#   scripts/fuzz.sh [SECONDS]          every target
#   FUZZ_TARGETS="wire" scripts/fuzz.sh 30
#
# Installs cargo-fuzz if missing; needs a nightly toolchain (libFuzzer's
# instrumentation). New inputs that libFuzzer finds accumulate in
# fuzz/work/<target>/corpus (not committed); `cargo fuzz cmin` them into
# fuzz/corpus/<target> to keep the ones that add coverage.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

duration="${1:-60}"
if ! [[ "$duration" =~ ^[0-9]+$ ]] || [ "$duration" -lt 1 ]; then
    echo "usage: $0 [SECONDS]  (seconds per target, default 60)" >&2
    exit 2
fi

# --- what it needs --------------------------------------------------------
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: no nightly Rust toolchain; cargo-fuzz needs one. Trying: rustup toolchain install nightly" >&2
    if ! rustup toolchain install nightly --profile minimal; then
        echo "fuzz.sh: could not install nightly Rust. Install it (rustup toolchain install nightly) and run again." >&2
        exit 2
    fi
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

all_targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^lb-fuzz$')
targets="${FUZZ_TARGETS:-$all_targets}"

# Debug assertions and overflow checks on (cargo-fuzz's default without
# -O). No AddressSanitizer: the packet core is safe Rust (its one unsafe
# module only prefetches and advises the kernel), and ASan halves the
# executions per second.
fuzz_flags=(--sanitizer none)

# --- cleanup of what we start ---------------------------------------------
child=""
cleanup() {
    if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
        kill "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

for t in $targets; do
    echo "== building $t"
    (cd fuzz && cargo +nightly fuzz build "${fuzz_flags[@]}" "$t")
done

declare -A execs crashes speed
failed=0
for t in $targets; do
    work="fuzz/work/$t"
    mkdir -p "$work/corpus" "$work/artifacts" "fuzz/corpus/$t" "fuzz/regressions/$t"
    log="$work/fuzz.log"
    ls "$work/artifacts" >"$work/artifacts.before"
    echo "== fuzzing $t for ${duration}s (log: $log)"
    # A target's dictionary (tokens libFuzzer splices in), if it has one.
    dict=()
    [ -f "fuzz/dict/$t.dict" ] && dict=(-dict="dict/$t.dict")
    # New inputs go to the first folder; the seeds and regressions are read.
    (cd fuzz && exec cargo +nightly fuzz run "${fuzz_flags[@]}" "$t" \
        "work/$t/corpus" "corpus/$t" "regressions/$t" -- "${dict[@]}" \
        -max_total_time="$duration" -max_len=16384 -timeout=20 -rss_limit_mb=4096 \
        -artifact_prefix="work/$t/artifacts/" -print_final_stats=1) >"$log" 2>&1 &
    child=$!
    status=0
    wait "$child" || status=$?
    child=""
    execs[$t]=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed[$t]=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    new_artifacts=$(ls "$work/artifacts" | comm -13 "$work/artifacts.before" -)
    n=0
    for a in $new_artifacts; do
        cp "$work/artifacts/$a" "fuzz/regressions/$t/$a"
        n=$((n + 1))
    done
    if [ "$status" -ne 0 ] && [ "$n" -eq 0 ]; then
        # Died without leaving an input (a build or setup error): say so.
        echo "fuzz.sh: $t exited with status $status and no crash input; the end of its log:" >&2
        tail -n 30 "$log" >&2
        n=1
    fi
    crashes[$t]=$n
    if [ "$n" -gt 0 ]; then
        failed=1
        grep -m 20 -E "panicked at|invariant violated|^\[|SUMMARY" "$log" || true
        [ -n "$new_artifacts" ] && echo "copied to fuzz/regressions/$t/: $new_artifacts"
    fi
done

echo
printf '%-12s %14s %10s %8s\n' target executions exec/s crashes
for t in $targets; do
    printf '%-12s %14s %10s %8s\n' "$t" "${execs[$t]:-?}" "${speed[$t]:-?}" "${crashes[$t]}"
done
exit "$failed"
