# Shared by the benchmark scripts (sourced, not run): the appliance's config
# for a one-arm benchmark run, and what it needs. The caller sets MEM (the
# EAL's memory arguments, a list of words), LB_MAC (the appliance port's
# MAC) and GEN_MAC (the generator's, which every real's static neighbor
# entry names, so that everything comes back to it).

# is_v6 CASE: whether the case (or testpmd run) sends IPv6.
is_v6() { [[ $1 == *6 || $1 == *6@base ]]; }

# capacity FLOWS: a flow-table capacity with room for FLOWS (twice, rounded
# up to a power of two, at least 2^20).
capacity() {
    local c=1048576
    while [ "$c" -lt $(($1 * 2)) ]; do c=$((c * 2)); done
    echo "$c"
}

# appliance_config METHOD DEVICE CAPACITY PREFIX [DPDK_LINE] (METHOD: nat
# ... dr6): the appliance's lb.toml for a run on DPDK device DEVICE with a
# flow table of CAPACITY and EAL file prefix PREFIX, with DPDK_LINE
# (`burst = N`) in its [dpdk] table when given (nothing, not even a blank
# line, when not). One `wrr` service on port 80 to three reals (weights 3,
# 2, 1; NAT to port 8080). The IPv6 methods (bench-throughput.sh's header
# comment) give the port address6 and MTU 1500 instead of an IPv4 address,
# and take IPv6 reals, neighbors and VIP.
appliance_config() {
    local method=${1%6} device=$2 port_line="" eal address net vip name=web extra=""
    [ -z "${5:-}" ] || extra=$'\n'$5
    [ "$method" = nat ] && port_line="port = 8080"
    if is_v6 "$1"; then
        address='address6 = "2001:2::2/64"
mtu = 1500' net=2001:2:: vip=2001:2:1::100 name=web6
    else
        address='address = "198.18.0.2/24"' net=198.18.0. vip=198.18.1.100
    fi
    # shellcheck disable=SC2086 # $MEM is a list of words
    eal=$(printf '"%s", ' --lcores 0@0,1@0 $MEM --file-prefix "$4")
    cat <<EOF
[dpdk]
eal_args = [${eal%, }]$extra
[workers]
lcores = [1]
[[ports]]
name = "wan"
device = "$device"
$address
mac = "$LB_MAC"
[flows]
capacity = $3
[metrics]
listen = "127.0.0.1:0"
$(for r in 11 12 13; do printf '[[neighbors]]\naddress = "%s%s"\nmac = "%s"\n' "$net" "$r" "$GEN_MAC"; done)
[[services]]
name = "$name"
vip = "$vip"
port = 80
protocol = "tcp"
scheduler = "wrr"
forwarding = "$method"
$(for r in 11:3 12:2 13:1; do printf '[[services.reals]]\naddress = "%s%s"\nweight = %s\n%s\n' "$net" "${r%:*}" "${r#*:}" "$port_line"; done)
EOF
}

