#!/usr/bin/env bash
# lb-appliance's demo on a machine without DPDK NICs: installs what is
# missing, builds in release mode, and runs the appliance inside a network
# namespace on a veth interface through DPDK's af_packet driver. A client in
# another namespace resolves and pings the appliance's address and a VIP.
# Cleans up everything it made, also on failure or Ctrl-C. Run as root.
#
# (The load-balancing demo of NAT, TUN and DR through a lab of real servers
# comes with scripts/lab.sh.)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

say() { printf '\n== %s\n' "$*"; }

scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
say "building (release)"
cargo build --release --quiet
BIN=$ROOT/target/release/lb-appliance
CONFIG=$ROOT/examples/local-responder.toml

NS_CL=lbdemo-client
NS_LB=lbdemo-lb
WORK=""
PID=""

cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PID" 2>/dev/null || true
    fi
    ip netns del "$NS_CL" 2>/dev/null || true
    ip netns del "$NS_LB" 2>/dev/null || true
    rm -rf /var/run/dpdk/lb-demo
    [ -z "$WORK" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cleanup  # leftovers of an interrupted run
WORK=$(mktemp -d /tmp/lb-demo.XXXXXX)

say "network: $NS_CL (198.18.0.1) <-veth-> $NS_LB (lb-appliance on lb0 = 198.18.0.2, VIP 198.18.1.100)"
ip netns add "$NS_CL"
ip netns add "$NS_LB"
ip link add lbdemo-a type veth peer name lbdemo-b
ip link set lbdemo-a netns "$NS_CL"
ip link set lbdemo-b netns "$NS_LB"
ip -n "$NS_CL" link set lbdemo-a name cl0
ip -n "$NS_LB" link set lbdemo-b name lb0
for pair in "$NS_CL cl0" "$NS_LB lb0"; do
    set -- $pair
    ip -n "$1" link set lo up
    ip -n "$1" link set "$2" up
    # af_packet must see wire-sized frames with finished checksums.
    ip netns exec "$1" ethtool -K "$2" gro off gso off tso off tx off rx off >/dev/null 2>&1 || true
done
ip -n "$NS_CL" addr add 198.18.0.1/24 dev cl0
ip -n "$NS_CL" route add 198.18.1.0/24 via 198.18.0.2

say "starting: lb-appliance -c examples/local-responder.toml (inside $NS_LB)"
ip netns exec "$NS_LB" "$BIN" -c "$CONFIG" >"$WORK/lb.log" 2>&1 &
PID=$!
for _ in $(seq 300); do
    grep -q polling "$WORK/lb.log" && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
done
if ! grep -q polling "$WORK/lb.log"; then
    cat "$WORK/lb.log"
    echo "DEMO FAILED: the appliance did not start"
    exit 1
fi
grep -E "INFO" "$WORK/lb.log" | sed 's/^/  /'

failed=0
for target in 198.18.0.2 198.18.1.100; do
    say "arping $target (from $NS_CL)"
    ip netns exec "$NS_CL" arping -c 2 -w 5 -I cl0 "$target" | sed 's/^/  /' || failed=1
    say "ping $target (from $NS_CL)"
    ip netns exec "$NS_CL" ping -c 3 -W 2 "$target" | sed 's/^/  /' || failed=1
done

say "stopping (SIGTERM)"
kill -TERM "$PID"
status=0
wait "$PID" || status=$?
PID=""
grep -E "port wan|worker on|stopped" "$WORK/lb.log" | sed 's/^/  /'
if [ "$failed" -eq 0 ] && [ "$status" -eq 0 ]; then
    echo
    echo "DEMO PASSED: lb-appliance answered ARP and ping for its address and the VIP, and stopped cleanly"
else
    echo
    echo "DEMO FAILED: arping/ping failed or the appliance exited with $status"
    exit 1
fi
