#!/usr/bin/env bash
# lb-appliance's demo, on a machine without DPDK NICs: installs what is
# missing, builds in release mode, brings the lab up (scripts/lab.sh: a
# client, a router, the appliance and three real servers in network
# namespaces, dual-stack), and in turn for NAT, TUN and DR starts
# lb-appliance with the lab's dual-stack config
# (examples/lab-dual-stack.toml, its services set to that method), sends a
# few hundred HTTP requests from the client to the IPv4 VIP and as many to
# the IPv6 VIP, shows which real answered how many (the configured weights
# are 3:2:1) and a few lines of /metrics. Then the scale-out part: the lab
# again with two appliances behind the router's ECMP route (BIRD, BGP, BFD),
# long-lived downloads through the VIP spread over both, a `kill -9` of one
# mid-download, the router dropping it (BFD), and every download intact
# (sha256); then the same two as a NAT primary/backup pair with connection
# sync and a floating gateway, and a `kill -9` of the primary during NAT
# downloads. Cleans everything up, also on
# failure or Ctrl-C, and ends with one line saying whether it worked (exit
# status 0) or not. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REQUESTS=${REQUESTS:-300}
export LAB_PREFIX=${LAB_PREFIX:-lbdemo}
export LAB_STATE=${LAB_STATE:-/run/lb-demo-lab}
LB_NS=$LAB_PREFIX-lb
CLIENT_NS=$LAB_PREFIX-client
CONFIG=examples/lab-dual-stack.toml
VIP4=198.18.1.100
VIP6=2001:2:0:1::100

say() { printf '\n== %s\n' "$*"; }

scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
say "building (release)"
cargo build --release --quiet
BIN=$ROOT/target/release/lb-appliance

PID=""
SCALE_PIDS=()
WORK=""
stop_pid() {
    if [ -n "$1" ] && kill -0 "$1" 2>/dev/null; then
        kill -TERM "$1" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$1" 2>/dev/null || true
    fi
}
cleanup() {
    stop_pid "$PID"
    for p in "${SCALE_PIDS[@]}"; do stop_pid "$p"; done
    scripts/lab.sh down >/dev/null 2>&1 || true
    [ -z "$WORK" ] || rm -rf "$WORK"
    # The EAL's runtime folders of the appliances the demo ran.
    rm -rf /var/run/dpdk/lb-demo-nat /var/run/dpdk/lb-demo-tun /var/run/dpdk/lb-demo-dr
}
trap cleanup EXIT
trap 'exit 130' INT TERM
WORK=$(mktemp -d /tmp/lb-demo.XXXXXX)

say "lab: scripts/lab.sh up"
scripts/lab.sh up

metrics() { ip netns exec "$LB_NS" curl -s --max-time 2 http://127.0.0.1:9101/metrics; }

# requests HOST: sends $REQUESTS requests to http://HOST/ (an IPv6 address
# in brackets), each on a new connection, and prints "name count".
requests() {
    ip netns exec "$CLIENT_NS" /usr/bin/python3 - "$REQUESTS" "$1" <<'PY'
import collections, http.client, sys
# http.client wants an IPv6 address without its brackets when given a port.
n, host = int(sys.argv[1]), sys.argv[2].strip("[]")
seen = collections.Counter()
for _ in range(n):
    try:
        c = http.client.HTTPConnection(host, 80, timeout=5)
        c.request("GET", "/")
        seen[c.getresponse().read().decode().strip()] += 1
        c.close()
    except Exception as e:
        seen["failed"] += 1
for name in sorted(seen):
    print(name, seen[name])
PY
}

# balanced FAMILY HOST COUNTS: runs `requests HOST` into the file COUNTS,
# shows the split by real against the weights 3:2:1; fails (status 1)
# unless every real is within 5 % of all requests of its share and none
# failed.
balanced() {
    local family=$1 host=$2 counts=$3 ok=0 name weight got want tol diff mark
    echo "  $family: $REQUESTS requests to http://$host/ (weights real1:real2:real3 = 3:2:1):"
    requests "$host" >"$counts"
    for r in "real1 3" "real2 2" "real3 1"; do
        read -r name weight <<<"$r"
        got=$(awk -v n="$name" '$1 == n {print $2}' "$counts")
        got=${got:-0}
        want=$((REQUESTS * weight / 6))
        # Tolerance: 5 % of all requests (one worker runs exact smooth wrr).
        tol=$((REQUESTS / 20))
        diff=$((got > want ? got - want : want - got))
        mark=ok
        [ "$diff" -le "$tol" ] || { mark="OFF (expected $want ± $tol)"; ok=1; }
        printf '    %-6s %4d  (expected %d)  %s\n' "$name" "$got" "$want" "$mark"
    done
    if grep -q '^failed' "$counts"; then
        echo "    failed requests: $(awk '$1 == "failed" {print $2}' "$counts")"
        ok=1
    fi
    return "$ok"
}

failed=()
for method in nat tun dr; do
    M=$(echo "$method" | tr '[:lower:]' '[:upper:]')
    say "$M: scripts/lab.sh method $method; lb-appliance -c $CONFIG with forwarding = \"$method\" (in $LB_NS)"
    scripts/lab.sh method "$method"
    # The example is written for NAT; every service takes the lab's method.
    sed -e "s/\"lb-lab\"/\"lb-demo-$method\"/" -e "s/^forwarding = \"nat\"/forwarding = \"$method\"/" \
        "$CONFIG" >"$WORK/lb-$method.toml"
    ip netns exec "$LB_NS" "$BIN" -c "$WORK/lb-$method.toml" >"$WORK/lb-$method.log" 2>&1 &
    PID=$!
    up=0
    for _ in $(seq 150); do
        up=$(metrics | grep -cE '^lb_real_up\{.*service="web6?"\} 1' || true)
        [ "$up" = 6 ] && break
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ "$up" != 6 ]; then
        tail -20 "$WORK/lb-$method.log"
        echo "$M: the health checks did not bring the six reals (three per family) up"
        failed+=("$M")
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" || true
        PID=""
        continue
    fi
    echo "  health checks: 3 reals up over IPv4 (service web), 3 over IPv6 (web6)"
    ok=1
    balanced IPv4 "$VIP4" "$WORK/counts-$method-4" || { ok=0; failed+=("$M/IPv4"); }
    balanced IPv6 "[$VIP6]" "$WORK/counts-$method-6" || { ok=0; failed+=("$M/IPv6"); }
    echo "  a few lines of /metrics:"
    metrics | grep -E '^lb_(flows_created_total|real_up)\{.*service="web6?"|^lb_port_(rx|tx)_packets_total|^lb_config_generation' | sed 's/^/    /'
    kill -TERM "$PID"
    status=0
    wait "$PID" || status=$?
    PID=""
    grep -E "port wan:" "$WORK/lb-$method.log" | sed 's/.*port wan: /  appliance port counters: /'
    if [ "$ok" = 1 ] && [ "$status" = 0 ]; then
        echo "  $M: ok (IPv4 and IPv6)"
    else
        echo "  $M: FAILED (exit status $status)"
        [ "$status" = 0 ] || failed+=("$M")
    fi
done

# downloads_broken NAME N: waits for the downloads WORK/NAME1..N (the
# demo's other children but the surviving appliance; in this shell, not a
# subshell, so that it can wait for them), prints each broken one and sets
# BROKEN to how many were (200 and the sha256 of big.bin expected).
downloads_broken() {
    local name=$1 n=$2 i job want
    BROKEN=0
    for job in $(jobs -p); do [ "$job" = "${SCALE_PIDS[1]}" ] || wait "$job" || true; done
    want=$(sha256sum <"$LAB_STATE/www/big.bin")
    for i in $(seq "$n"); do
        if [ "$(cat "$WORK/$name$i.out")" != "200 5242880" ] || [ "$(sha256sum <"$WORK/$name$i")" != "$want" ]; then
            echo "    download $i: $(cat "$WORK/$name$i.out") BROKEN"
            BROKEN=$((BROKEN + 1))
        fi
    done
}

# The scale-out part: two appliances behind the router's ECMP route.
scale_out() {
    local i n t0 gone bad=0
    say "SCALE-OUT: scripts/lab.sh up --appliances 2 (BIRD on the router and beside each appliance; TUN, mh)"
    scripts/lab.sh down >/dev/null
    scripts/lab.sh up --appliances 2
    for i in 1 2; do
        ip netns exec "$LAB_PREFIX-lb$i" "$BIN" -c "$LAB_STATE/lb$i.toml" >"$WORK/lb-scale-$i.log" 2>&1 &
        SCALE_PIDS+=("$!")
    done
    hops() { ip netns exec "$LAB_PREFIX-router" ip route show "$VIP4" | grep -c via || true; }
    for _ in $(seq 300); do [ "$(hops)" = 2 ] && break; sleep 0.1; done
    [ "$(hops)" = 2 ] || { echo "  the router never had both appliances as next hops"; tail -5 "$WORK"/lb-scale-*.log; return 1; }
    # Every real up on both (their Maglev tables then agree).
    for i in 1 2; do
        for _ in $(seq 100); do
            n=$(ip netns exec "$LAB_PREFIX-lb$i" curl -s --max-time 2 http://127.0.0.1:9101/metrics | grep -cE '^lb_real_up\{.*service="web"\} 1' || true)
            [ "$n" = 3 ] && break
            sleep 0.1
        done
    done
    echo "  the router's route to $VIP4 (BGP from both appliances, ECMP):"
    ip netns exec "$LAB_PREFIX-router" ip route show "$VIP4" | sed 's/^/    /'
    echo "  8 downloads of a 5 MB file at 1 MB/s each from the client"
    for i in $(seq 8); do
        ip netns exec "$CLIENT_NS" curl -sS --max-time 60 --limit-rate 1M -o "$WORK/dl$i" \
            -w '%{http_code} %{size_download}\n' "http://$VIP4/big.bin" >"$WORK/dl$i.out" 2>&1 &
    done
    sleep 2
    for i in 1 2; do
        echo "    appliance $i has $(ip netns exec "$LAB_PREFIX-lb$i" curl -s --max-time 2 http://127.0.0.1:9101/metrics |
            awk '/^lb_flows_created_total\{.*service="web"/ {s += $2} END {print s + 0}') of them"
    done
    echo "  kill -9 appliance 1 mid-download"
    t0=$(date +%s%N)
    kill -KILL "${SCALE_PIDS[0]}"
    for _ in $(seq 300); do [ "$(hops)" = 1 ] && break; sleep 0.01; done
    gone=$((($(date +%s%N) - t0) / 1000000))
    echo "  the router dropped it after $gone ms (BFD):"
    ip netns exec "$LAB_PREFIX-router" ip route show "$VIP4" | sed 's/^/    /'
    wait "${SCALE_PIDS[0]}" 2>/dev/null || true
    downloads_broken dl 8
    bad=$BROKEN
    echo "  downloads intact (sha256): $((8 - bad)) of 8"
    stop_pid "${SCALE_PIDS[1]}"
    SCALE_PIDS=()
    SCALE_MS=$gone
    [ "$bad" = 0 ]
}
SCALE_MS="?"
scale_out || failed+=("SCALE-OUT")

# The NAT pair: the same two appliances as primary and backup with
# connection sync and a floating gateway for the reals.
active() { ip netns exec "$LAB_PREFIX-lb$1" curl -s --max-time 2 http://127.0.0.1:9101/metrics | awk '/^lb_sync_active / {print $2}'; }
nat_pair() {
    local i t0 took bad=0
    say "NAT PAIR: scripts/lab.sh method nat (lb1 primary, lb2 backup, [sync] keyed, with the floating gateway 198.18.0.5 the reals route through)"
    scripts/lab.sh method nat
    for i in 1 2; do
        ip netns exec "$LAB_PREFIX-lb$i" "$BIN" -c "$LAB_STATE/lb$i.toml" >"$WORK/lb-pair-$i.log" 2>&1 &
        SCALE_PIDS+=("$!")
    done
    for _ in $(seq 300); do [ "$(active 1)" = 1 ] && [ "$(active 2)" = 0 ] && break; sleep 0.1; done
    [ "$(active 1)" = 1 ] || { echo "  the primary never became active"; tail -5 "$WORK"/lb-pair-*.log; return 1; }
    for i in 1 2; do
        for _ in $(seq 100); do
            [ "$(ip netns exec "$LAB_PREFIX-lb$i" curl -s --max-time 2 http://127.0.0.1:9101/metrics | grep -cE '^lb_real_up\{.*service="web"\} 1' || true)" = 3 ] && break
            sleep 0.1
        done
    done
    for _ in $(seq 300); do ip netns exec "$LAB_PREFIX-router" ip route show "$VIP4" | grep -q "via 198.18.0.2" && break; sleep 0.1; done
    echo "  lb_sync_active: lb1 $(active 1), lb2 $(active 2); real1's neighbor entry for the gateway:"
    ip netns exec "$LAB_PREFIX-real1" ping -c 1 -W 1 198.18.0.5 >/dev/null 2>&1 || true
    ip netns exec "$LAB_PREFIX-real1" ip neigh show to 198.18.0.5 | sed 's/^/    /'
    echo "  6 NAT downloads of a 5 MB file at 1 MB/s each from the client"
    for i in $(seq 6); do
        ip netns exec "$CLIENT_NS" curl -sS --max-time 60 --limit-rate 1M -o "$WORK/nat$i" \
            -w '%{http_code} %{size_download}\n' "http://$VIP4/big.bin" >"$WORK/nat$i.out" 2>&1 &
    done
    sleep 2
    echo "    the backup holds $(ip netns exec "$LAB_PREFIX-lb2" curl -s --max-time 2 http://127.0.0.1:9101/metrics |
        awk '/^lb_sync_flows_total\{direction="installed"\}/ {print $2}') synced flows"
    echo "  kill -9 the primary mid-download"
    t0=$(date +%s%N)
    kill -KILL "${SCALE_PIDS[0]}"
    for _ in $(seq 500); do [ "$(active 2)" = 1 ] && break; sleep 0.01; done
    took=$((($(date +%s%N) - t0) / 1000000))
    echo "  the backup is active after $took ms (dead_after 600 ms); real1's neighbor entry for the gateway now:"
    sleep 0.5
    ip netns exec "$LAB_PREFIX-real1" ip neigh show to 198.18.0.5 | sed 's/^/    /'
    wait "${SCALE_PIDS[0]}" 2>/dev/null || true
    downloads_broken nat 6
    bad=$BROKEN
    echo "  NAT downloads intact (sha256): $((6 - bad)) of 6"
    grep -h "sync: backup -> active" "$WORK/lb-pair-2.log" | sed 's/^/    /'
    stop_pid "${SCALE_PIDS[1]}"
    SCALE_PIDS=()
    PAIR_MS=$took
    [ "$bad" = 0 ]
}
PAIR_MS="?"
nat_pair || failed+=("NAT-PAIR")

if [ "${#failed[@]}" -eq 0 ]; then
    echo
    echo "DEMO PASSED: NAT, TUN and DR each balanced $REQUESTS HTTP requests over IPv4 and $REQUESTS over IPv6 by weight 3:2:1 through lb-appliance; two appliances behind ECMP lost none of 8 downloads when one was killed (router moved in $SCALE_MS ms); a NAT primary/backup pair lost none of 6 when the primary was killed (backup active in $PAIR_MS ms)"
else
    echo
    echo "DEMO FAILED: ${failed[*]}"
    exit 1
fi
