#!/usr/bin/env bash
# Throughput of the whole appliance (DPDK rx/tx, mbufs, pipeline) on this
# machine, with a baseline measured in the same run. Prints figures and the
# exact commands; asserts nothing.
#
#   scripts/bench-throughput.sh             # about 30 s after the build
#   DURATION=10 FLOWS=100000 scripts/bench-throughput.sh
#
# Every path is two DPDK processes joined by a net_memif pair (a shared-memory
# "wire"), each on its own CPU: lb-trafficgen on CPU 1 (the memif client: it
# sends, and counts what comes back), and on CPU 0 the memif server, which is
#   1. baseline: dpdk-testpmd in io forwarding, sending every packet back
#      (the cost of the wire and of the generator itself);
#   2. lb-appliance, one-arm VS/NAT: SYN then data from FLOWS clients to the
#      VIP; the appliance rewrites them to three reals whose MAC (a static
#      [[neighbors]] entry, no ARP) is the generator's, out of the same port;
#   3. the same with VS/DR (only the MACs change).
# "Mpps sent" is what the memif ring accepted from the generator (it pushes
# back when the forwarder falls behind: nothing is lost on the way in);
# "Mpps forwarded" is what came back to the generator, timed from the first
# to the last packet received.
#
# Needs root (DPDK's runtime folder), dpdk-testpmd (Debian package dpdk) and
# 2 CPUs. Uses 2 MB hugepages (--in-memory) when at least 512 are free on a
# mounted hugetlbfs, else --no-huge (about half the rate: TLB misses).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-5}"
FLOWS="${FLOWS:-10000}"
PAYLOAD=10 # 14 + 20 + 20 + 10 = 64-byte frames, as testpmd's default
TARGET="${CARGO_TARGET_DIR:-target}"
GEN_MAC=02:00:00:00:00:01
LB_MAC=02:00:00:00:00:02
TAG="lbbench-$$"

log() { printf '%s\n' "$*" >&2; }

command -v dpdk-testpmd >/dev/null || { log "dpdk-testpmd not found (apt-get install dpdk)"; exit 1; }
[ "$(nproc)" -ge 2 ] || log "warning: fewer than 2 CPUs: both processes share one, figures are meaningless"

log "building (release)"
cargo build --release -q -p lb-appliance -p lb-trafficgen
LB="$TARGET/release/lb-appliance"
GEN="$TARGET/release/lb-trafficgen"

hp_free=$(awk '/^HugePages_Free/ {print $2}' /proc/meminfo)
if [ "${hp_free:-0}" -ge 512 ] && awk '$3 == "hugetlbfs" {f=1} END {exit !f}' /proc/mounts; then
    MEM="--in-memory --no-pci"
    MEMNOTE="2 MB hugepages (--in-memory)"
else
    MEM="--no-huge -m 512 --no-pci --no-shconf"
    MEMNOTE="no hugepages (--no-huge -m 512)"
fi

WORK=$(mktemp -d /tmp/lb-bench.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
    rm -rf /var/run/dpdk/"$TAG"-*
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts a process in the background with its output in $WORK/$1.log.
start() {
    local name=$1
    shift
    printf '  %q' "$@" >>"$WORK/commands"
    printf '\n' >>"$WORK/commands"
    "$@" </dev/null >"$WORK/$name.log" 2>&1 &
    PIDS+=("$!")
    LAST_PID=$!
}

wait_for() { # wait_for SECONDS COMMAND...: polls until it succeeds
    local end=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.2
    done
}

# stop PID SIGNAL: signals the process and waits for it.
stop() {
    kill "-$2" "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# generate NAME SOCKET: runs the generator against the server on SOCKET (in
# the background, so that a signal interrupts the wait and the EXIT trap
# kills it by PID); writes "Mpps-sent Mpps-forwarded" to $WORK/result.
generate() {
    local name=$1 sock=$2 pid
    local cmd=("$GEN" --eal "--lcores 0@1 $MEM --file-prefix $TAG-gen-$name"
        --device "net_memif0,role=client,id=0,socket=$sock,socket-abstract=no,mac=$GEN_MAC"
        --dst-mac "$LB_MAC" --vip 198.18.1.100 --port 80 --clients 198.19.0.0/16
        --flows "$FLOWS" --rate 0 --duration "${DURATION}s" --payload "$PAYLOAD" --link-timeout 20s)
    printf '  %q' "${cmd[@]}" >>"$WORK/commands"
    printf '\n' >>"$WORK/commands"
    "${cmd[@]}" </dev/null >"$WORK/gen-$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || { log "generator failed:"; cat "$WORK/gen-$name.log" >&2; return 1; }
    grep '^sent ' "$WORK/gen-$name.log" >>"$WORK/summaries"
    sed -n 's/^sent [0-9]* packets (\([0-9.]*\) Mpps), received [0-9]* packets (\([0-9.]*\) Mpps).*/\1 \2/p' \
        "$WORK/gen-$name.log" >"$WORK/result"
}

RESULTS=()

# 1. Baseline: testpmd io forwarding back out of the same memif port.
sock="$WORK/testpmd.sock"
printf '# baseline: dpdk-testpmd io forwarding\n' >>"$WORK/commands"
# shellcheck disable=SC2086
start testpmd dpdk-testpmd --lcores '0@0,1@0' $MEM --file-prefix "$TAG-testpmd" \
    --vdev "net_memif0,role=server,id=0,socket=$sock,socket-abstract=no" -- \
    --forward-mode=io --port-topology=loop --total-num-mbufs=16384 --auto-start --stats-period 3600
TESTPMD=$LAST_PID
# The memif client must connect once the server's port is started, not
# merely when its socket exists: wait for testpmd to be forwarding.
wait_for 20 grep -q 'packet forwarding - ports' "$WORK/testpmd.log" ||
    { log "testpmd did not start:"; cat "$WORK/testpmd.log" >&2; exit 1; }
log "baseline: testpmd io forwarding, ${DURATION}s"
generate testpmd "$sock"
read -r s f <"$WORK/result"
RESULTS+=("$(printf '%-44s %10s %15s' "dpdk-testpmd io forwarding (baseline)" "$s" "$f")")
stop "$TESTPMD" INT

# 2, 3. lb-appliance, one-arm, NAT then DR.
appliance_config() { # appliance_config METHOD SOCKET
    local method=$1 sock=$2 port_line="" eal
    [ "$method" = nat ] && port_line="port = 8080"
    # shellcheck disable=SC2086 # $MEM is a list of words
    eal=$(printf '"%s", ' --lcores 0@0,1@0 $MEM --file-prefix "$TAG-lb-$method")
    cat <<EOF
[dpdk]
eal_args = [${eal%, }]
[workers]
lcores = [1]
[[ports]]
name = "wan"
device = "net_memif0,role=server,id=0,socket=$sock,socket-abstract=no"
address = "198.18.0.2/24"
mac = "$LB_MAC"
[flows]
capacity = 1048576
[metrics]
listen = "127.0.0.1:0"
$(for r in 11 12 13; do printf '[[neighbors]]\naddress = "198.18.0.%s"\nmac = "%s"\n' "$r" "$GEN_MAC"; done)
[[services]]
name = "web"
vip = "198.18.1.100"
port = 80
protocol = "tcp"
scheduler = "wrr"
forwarding = "$method"
$(for r in 11:3 12:2 13:1; do printf '[[services.reals]]\naddress = "198.18.0.%s"\nweight = %s\n%s\n' "${r%:*}" "${r#*:}" "$port_line"; done)
EOF
}

for method in nat dr; do
    sock="$WORK/lb-$method.sock"
    appliance_config "$method" "$sock" >"$WORK/lb-$method.toml"
    printf '# lb-appliance %s (config: below)\n' "$method" >>"$WORK/commands"
    start "lb-$method" env RUST_LOG=info "$LB" -c "$WORK/lb-$method.toml"
    APP=$LAST_PID
    wait_for 30 grep -q polling "$WORK/lb-$method.log" ||
        { log "lb-appliance did not start:"; cat "$WORK/lb-$method.log" >&2; exit 1; }
    log "lb-appliance $method, ${DURATION}s"
    generate "lb-$method" "$sock"
    read -r s f <"$WORK/result"
    label="lb-appliance ${method^^}, $FLOWS flows, one-arm"
    RESULTS+=("$(printf '%-44s %10s %15s' "$label" "$s" "$f")")
    stop "$APP" TERM
    grep -h 'worker on' "$WORK/lb-$method.log" | sed 's/^.*worker on/  lb-appliance '"$method"' final: worker on/' >>"$WORK/summaries" || true
done

echo "lb-appliance throughput: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $MEMNOTE"
echo "64-byte frames over net_memif; forwarder on CPU 0, lb-trafficgen on CPU 1; ${DURATION} s per path"
echo
printf '%-44s %10s %15s\n' "path" "Mpps sent" "Mpps forwarded"
printf '%s\n' "${RESULTS[@]}"
echo
echo "generator summaries:"
sed 's/^/  /' "$WORK/summaries"
echo
echo "commands (socket paths are in a temporary folder):"
cat "$WORK/commands"
echo "appliance config (NAT; DR is the same with forwarding = \"dr\" and no real port):"
sed 's/^/  /' "$WORK/lb-nat.toml"
