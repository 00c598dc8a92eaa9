#!/usr/bin/env bash
# Gives a box's data-plane NICs and hugepages to DPDK, for lb-appliance.
#
#   scripts/bind-nics.sh [options] [PCI|IFACE ...]
#
# In this order: checks the NICs (a PCI address such as 0000:3b:00.0, or a
# kernel interface name such as enp59s0f0) and refuses the ones that carry
# the route of the operator's SSH session or a default route, IPv4 or
# IPv6: the box's management (unless --force; through bridges, bonds and
# VLANs, and under sudo too; with or without an SSH session, on the console
# and at boot alike); loads the driver (vfio-pci, or
# uio_pci_generic) and checks that the IOMMU is on (vfio-pci); reserves the
# hugepages (never fewer than are reserved already, unless --hugepages
# says so; with --persist, keeps them across a reboot) and mounts hugetlbfs
# if no mount of that page size exists; records each NIC's kernel driver
# in $STATE_DIR/nic-drivers and binds the NICs with dpdk-devbind.py. --status shows the bindings, --unbind gives the
# NICs back to their kernel driver. Run `scripts/bind-nics.sh --help`.
#
# Exit status: 0 done, 1 something failed (the message says what and what to
# run), 2 bad arguments. Messages go to stderr and start with "bind-nics: ".
#
# Environment (defaults in brackets), so that tests can replace the tools and
# the system files this script reads and writes:
#   DPDK_DEVBIND   [dpdk-devbind.py]     the binding tool
#   MODPROBE       [modprobe]            the module loader
#   SYSFS          [/sys]                root of sysfs: NICs, drivers, IOMMU
#                                        groups, hugepage counts
#   STATE_DIR      [/var/lib/lb-appliance]  where nic-drivers is kept
#   SYSCTL_DIR     [/etc/sysctl.d]       where --persist writes (2M pages)
#   IP_ROUTE_GET   [empty]               if set, taken as the output of
#                                        `ip route get <ssh client>` instead
#                                        of running it (e.g. "dev eth9")
#   IP_DEFAULT_ROUTES [unset]            if set (even empty), taken as the
#                                        output of `ip route show default`
#                                        for both families instead of
#                                        running it
#   PROC           [/proc]               where the SSH session is looked for
#                                        in the callers' environments (sudo
#                                        drops SSH_CONNECTION) and meminfo
#   APPLIANCE_PROC [lb-appliance]        the process --unbind waits on
set -euo pipefail

DPDK_DEVBIND=${DPDK_DEVBIND:-dpdk-devbind.py}
MODPROBE=${MODPROBE:-modprobe}
SYSFS=${SYSFS:-/sys}
STATE_DIR=${STATE_DIR:-/var/lib/lb-appliance}
SYSCTL_DIR=${SYSCTL_DIR:-/etc/sysctl.d}
IP_ROUTE_GET=${IP_ROUTE_GET:-}
PROC=${PROC:-/proc}
APPLIANCE_PROC=${APPLIANCE_PROC:-lb-appliance}

SYSCTL_FILE=80-lb-appliance-hugepages.conf
PROG=${0##*/}

say() { printf 'bind-nics: %s\n' "$*" >&2; }
die() {
    say "$@"
    exit 1
}
bad_usage() {
    say "$*"
    say "see: $PROG --help"
    exit 2
}

usage() {
    cat <<EOF
Usage: $PROG [options] [PCI|IFACE ...]

Reserves hugepages, loads the DPDK driver, checks the IOMMU and binds the
named NICs (PCI addresses such as 0000:3b:00.0, or interface names such as
enp59s0f0) to it with dpdk-devbind.py, for lb-appliance. With no NIC, only
the hugepages are set up.

Options:
  --hugepages N          hugepages to reserve (default: 2 GB of them, 1024
                         of 2M or 2 of 1G, and never fewer than are
                         reserved already; a number given is set as is)
  --hugepage-size SIZE   2M (default) or 1G
  --persist              keep the hugepages across a reboot: for 2M pages,
                         writes vm.nr_hugepages (applied early at boot,
                         before memory fragments) to
                           $SYSCTL_DIR/$SYSCTL_FILE;
                         for 1G pages,
                         prints the kernel command line to add
                         (default_hugepagesz=1G hugepagesz=1G hugepages=N in
                         GRUB_CMDLINE_LINUX of /etc/default/grub, then
                         update-grub), since 1G pages are best reserved at boot
  --no-hugepages         leave hugepages and hugetlbfs alone
  --nics-file FILE       also bind the NICs FILE names (PCI addresses or
                         interface names, separated by blanks or lines;
                         # starts a comment): what the boot-time unit
                         lb-appliance-bind-nics.service runs with
                         /etc/lb-appliance/nics
  --driver DRIVER        vfio-pci (default; needs the IOMMU) or
                         uio_pci_generic (no IOMMU, no DMA isolation)
  --force                bind even the NIC that carries this SSH session's
                         route or a default route (the box may lose that
                         path; have a console);
                         --unbind even while lb-appliance runs
  --status               show the NIC bindings (dpdk-devbind.py --status),
                         the hugepages and the recorded kernel drivers
  --unbind               give the named NICs back to their kernel driver
                         (default: every NIC recorded in
                           $STATE_DIR/nic-drivers)
  --dry-run              print the commands that change the system instead
                         of running them
  -h, --help             this text

Each NIC's kernel driver is recorded in $STATE_DIR/nic-drivers
before it is bound, so that --unbind can restore it.

Environment: DPDK_DEVBIND, MODPROBE, SYSFS, STATE_DIR, SYSCTL_DIR and
IP_ROUTE_GET replace the tools and paths used (see the top of the script).

Examples:
  $PROG --persist 0000:3b:00.0 0000:3b:00.1
  $PROG --hugepages 4 --hugepage-size 1G --persist enp59s0f0
  $PROG --status
  $PROG --unbind
EOF
}

# ---------------------------------------------------------------- arguments

hugepages=
hugepages_given=0
size=2M
persist=0
do_hugepages=1
driver=vfio-pci
force=0
mode=bind
dry_run=0
nics=()
nics_file=

need_value() {
    [ "$2" -ge 2 ] || bad_usage "$1 needs a value"
}

while [ $# -gt 0 ]; do
    case "$1" in
    --hugepages)
        need_value "$1" $#
        hugepages=$2 hugepages_given=1
        shift 2
        ;;
    --hugepages=*)
        hugepages=${1#*=} hugepages_given=1
        shift
        ;;
    --hugepage-size)
        need_value "$1" $#
        size=$2
        shift 2
        ;;
    --hugepage-size=*)
        size=${1#*=}
        shift
        ;;
    --driver)
        need_value "$1" $#
        driver=$2
        shift 2
        ;;
    --driver=*)
        driver=${1#*=}
        shift
        ;;
    --nics-file)
        need_value "$1" $#
        nics_file=$2
        shift 2
        ;;
    --nics-file=*)
        nics_file=${1#*=}
        shift
        ;;
    --persist) persist=1 && shift ;;
    --no-hugepages) do_hugepages=0 && shift ;;
    --force) force=1 && shift ;;
    --status)
        [ "$mode" = bind ] || bad_usage "--status and --unbind exclude each other"
        mode=status && shift
        ;;
    --unbind)
        [ "$mode" = bind ] || bad_usage "--status and --unbind exclude each other"
        mode=unbind && shift
        ;;
    --dry-run) dry_run=1 && shift ;;
    -h | --help)
        usage
        exit 0
        ;;
    --)
        shift
        nics+=("$@")
        break
        ;;
    -*) bad_usage "unknown option $1" ;;
    *) nics+=("$1") && shift ;;
    esac
done

if [ -n "$nics_file" ]; then
    [ -r "$nics_file" ] || bad_usage "--nics-file $nics_file cannot be read"
    while read -r line || [ -n "$line" ]; do
        read -ra words <<<"${line%%#*}"
        nics+=("${words[@]+"${words[@]}"}")
    done <"$nics_file"
fi
case "$size" in
2M | 2m | 2MB | 2mb | 2048k | 2048kB) size=2M kb=2048 ;;
1G | 1g | 1GB | 1gb | 1048576k | 1048576kB) size=1G kb=1048576 ;;
*) bad_usage "--hugepage-size must be 2M or 1G, not '$size'" ;;
esac
# Not given: 2 GB's worth, and never fewer than are reserved already
# (found in audit: the default of 1024 pages meant 1 TiB of 1G pages, and
# a run to bind one more NIC shrank a larger reservation under the
# running appliance).
[ "$hugepages_given" -eq 1 ] || hugepages=$((2 * 1024 * 1024 / kb))
case "$hugepages" in
'' | *[!0-9]*) bad_usage "--hugepages needs a whole number of pages, not '$hugepages'" ;;
esac
hugepages=$((10#$hugepages))
case "$driver" in
vfio-pci | uio_pci_generic) ;;
*) bad_usage "--driver must be vfio-pci or uio_pci_generic, not '$driver'" ;;
esac
if [ "$mode" = status ] && [ "${#nics[@]}" -gt 0 ]; then
    bad_usage "--status takes no NIC"
fi
if [ "$mode" = bind ] && [ "$do_hugepages" -eq 0 ] && [ "${#nics[@]}" -eq 0 ]; then
    # A NIC file that names none (all commented out: a NIC the kernel
    # driver serves, as mlx5's) is nothing to do, not a mistake: the boot
    # unit runs this, and the appliance must still start (found in audit).
    if [ -n "$nics_file" ]; then
        say "$nics_file names no NIC: nothing to bind"
        exit 0
    fi
    bad_usage "nothing to do: name the NICs to bind, or drop --no-hugepages"
fi

# ---------------------------------------------------------------- helpers

# Runs a command that changes the system, or prints it under --dry-run.
run() {
    if [ "$dry_run" -eq 1 ]; then
        printf '+ %s\n' "$*"
    else
        "$@"
    fi
}

# Writes VALUE to FILE (a sysfs or /etc file), or prints it under --dry-run.
write_file() {
    local value=$1 file=$2
    if [ "$dry_run" -eq 1 ]; then
        printf '+ echo %s > %s\n' "$value" "$file"
        return 0
    fi
    local err
    if ! err=$( { printf '%s\n' "$value" >"$file"; } 2>&1); then
        say "cannot write $value to $file: ${err##*: }"
        return 1
    fi
}

is_pci() {
    [[ "$1" =~ ^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]]
}

# The driver a PCI device is bound to now (empty if none).
current_driver() {
    local link=$SYSFS/bus/pci/devices/$1/driver
    if [ -L "$link" ]; then
        basename "$(readlink "$link")"
    fi
}

# The kernel interfaces of a PCI device (empty if it has none now).
ifaces_of() {
    local d out=
    for d in "$SYSFS/bus/pci/devices/$1/net/"*; do
        [ -e "$d" ] && out=${out:+$out }${d##*/}
    done
    printf '%s' "$out"
}

is_dpdk_driver() {
    case "$1" in
    vfio-pci | uio_pci_generic | igb_uio) return 0 ;;
    *) return 1 ;;
    esac
}

# The PCI address under a kernel interface (empty if none): its device, or
# the device's parent for a NIC behind a bus of its own (virtio-net:
# device -> virtio0, whose parent is the virtio-pci function DPDK binds).
pci_of_iface() {
    local dev
    [ -e "$SYSFS/class/net/$1/device" ] || return 0
    dev=$(readlink -f "$SYSFS/class/net/$1/device")
    if is_pci "${dev##*/}"; then
        printf '%s\n' "${dev##*/}"
    elif dev=${dev%/*} && is_pci "${dev##*/}"; then
        printf '%s\n' "${dev##*/}"
    fi
}

# Resolves a PCI address or interface name to the full PCI address.
resolve_nic() {
    local arg=$1 pci
    if is_pci "$arg"; then
        pci=$(printf '%s' "$arg" | tr 'A-F' 'a-f')
        [ "${#pci}" -eq 12 ] || pci=0000:$pci
        if [ ! -e "$SYSFS/bus/pci/devices/$pci" ]; then
            die "no PCI device $pci on this machine: list the NICs with $PROG --status (or lspci -D | grep -i ethernet)"
        fi
    elif [ -e "$SYSFS/class/net/$arg" ]; then
        if [ ! -e "$SYSFS/class/net/$arg/device" ]; then
            die "$arg is not a PCI NIC (a virtual or software interface): DPDK can only take PCI NICs here; list them with $PROG --status"
        fi
        pci=$(pci_of_iface "$arg")
        if [ -z "$pci" ]; then
            die "$arg is not on the PCI bus ($(readlink -f "$SYSFS/class/net/$arg/device")): DPDK cannot bind it; use a vdev (net_af_packet0,iface=$arg) in lb.toml instead"
        fi
    else
        die "$arg is neither a PCI address (such as 0000:3b:00.0) nor an interface on this machine (a NIC bound to DPDK has no interface any more: name it by its PCI address): list the NICs with $PROG --status"
    fi
    printf '%s\n' "$pci"
}

# This SSH session (client address, port, server address, port), from our
# environment or our callers' (found in audit: sudo and su - drop
# SSH_CONNECTION, and the check was then skipped without a word).
ssh_connection() {
    if [ -n "${SSH_CONNECTION:-}" ]; then
        printf '%s\n' "$SSH_CONNECTION"
        return 0
    fi
    local pid=$PPID hops=0 found
    while [ "$pid" -gt 1 ] && [ "$hops" -lt 32 ]; do
        found=$(tr '\0' '\n' <"$PROC/$pid/environ" 2>/dev/null | sed -n 's/^SSH_CONNECTION=//p' | head -n 1) || found=
        if [ -n "$found" ]; then
            printf '%s\n' "$found"
            return 0
        fi
        pid=$(awk '/^PPid:/ { print $2 }' "$PROC/$pid/status" 2>/dev/null) || pid=0
        pid=${pid:-0}
        hops=$((hops + 1))
    done
    return 0
}

# An interface and every interface under it, as far down as they stack:
# the ports of a bridge (brif/NAME), the members of a bond and whatever a
# VLAN, macvlan or bond sits on (lower_NAME), through any number of
# levels (found in audit: a bridge's port was read as "brport", and a
# VLAN on a bond stopped at the bond).
stacked_ifaces() {
    local name=$1 depth=${2:-0} entry
    printf '%s\n' "$name"
    [ "$depth" -lt 8 ] || return 0
    for entry in "$SYSFS/class/net/$name/lower_"* "$SYSFS/class/net/$name/brif/"*; do
        [ -e "$entry" ] || [ -L "$entry" ] || continue
        case "$entry" in
        */lower_*) stacked_ifaces "${entry##*/lower_}" $((depth + 1)) ;;
        *) stacked_ifaces "${entry##*/}" $((depth + 1)) ;;
        esac
    done
}

STATE_FILE=$STATE_DIR/nic-drivers

# The kernel driver recorded for a PCI device (empty if none).
recorded_driver() {
    [ -f "$STATE_FILE" ] || return 0
    awk -v pci="$1" '$1 == pci { d = $2 } END { if (d != "") print d }' "$STATE_FILE"
}

# Records (or, with an empty driver, forgets) a device's kernel driver.
record_driver() {
    local pci=$1 drv=$2 tmp
    if [ "$dry_run" -eq 1 ]; then
        if [ -n "$drv" ]; then
            printf '+ echo "%s %s" >> %s\n' "$pci" "$drv" "$STATE_FILE"
        else
            printf '+ sed -i "/^%s /d" %s\n' "$pci" "$STATE_FILE"
        fi
        return 0
    fi
    if ! mkdir -p "$STATE_DIR" 2>/dev/null; then
        die "cannot create $STATE_DIR (are you root?): run as root, or set STATE_DIR to a writable folder"
    fi
    tmp=$STATE_FILE.tmp.$$
    {
        [ -f "$STATE_FILE" ] && awk -v pci="$pci" '$1 != pci' "$STATE_FILE"
        [ -z "$drv" ] || printf '%s %s\n' "$pci" "$drv"
    } >"$tmp" || die "cannot write $tmp: check that $STATE_DIR is writable"
    mv "$tmp" "$STATE_FILE"
}

# ---------------------------------------------------------------- --status

if [ "$mode" = status ]; then
    rc=0
    "$DPDK_DEVBIND" --status || rc=$?
    echo
    echo "Hugepages"
    echo "========="
    for d in "$SYSFS/kernel/mm/hugepages/hugepages-"*; do
        [ -d "$d" ] || continue
        printf '%s: %s reserved, %s free\n' "${d##*hugepages-}" \
            "$(cat "$d/nr_hugepages" 2>/dev/null || echo '?')" \
            "$(cat "$d/free_hugepages" 2>/dev/null || echo '?')"
    done
    if [ -r /proc/mounts ]; then
        awk '$3 == "hugetlbfs" { print "hugetlbfs mounted at " $2 " (" $4 ")" }' /proc/mounts
    fi
    if [ -s "$STATE_FILE" ]; then
        echo
        echo "Kernel drivers recorded in $STATE_FILE (restored by --unbind)"
        cat "$STATE_FILE"
    fi
    if [ "$rc" -ne 0 ]; then
        say "$DPDK_DEVBIND --status failed (exit $rc): is the dpdk package installed (apt-get install dpdk)?"
        exit 1
    fi
    exit 0
fi

need_devbind() {
    command -v "$DPDK_DEVBIND" >/dev/null 2>&1 ||
        die "$DPDK_DEVBIND not found: install it (apt-get install dpdk), or set DPDK_DEVBIND to its path"
}

# ---------------------------------------------------------------- --unbind

if [ "$mode" = unbind ]; then
    need_devbind
    # The kernel holds an unbind from vfio-pci until the process using the
    # device lets go: with the appliance running it hung (found in audit).
    if running=$(pgrep -x "$APPLIANCE_PROC" 2>/dev/null) && [ -n "$running" ]; then
        if [ "$force" -eq 1 ]; then
            say "warning: $APPLIANCE_PROC is running (pid $(echo $running)); unbinding anyway (--force): this waits until it lets go of the NICs"
        else
            die "$APPLIANCE_PROC is running (pid $(echo $running)): stop it first (systemctl stop lb-appliance); unbinding a NIC it holds waits until it lets go. Or add --force"
        fi
    fi
    pcis=()
    if [ "${#nics[@]}" -eq 0 ]; then
        [ -s "$STATE_FILE" ] ||
            die "no NIC named and none recorded in $STATE_FILE: name the NICs to give back (see $PROG --status)"
        while read -r pci _; do
            [ -n "$pci" ] && pcis+=("$pci")
        done <"$STATE_FILE"
    else
        for n in "${nics[@]}"; do
            pcis+=("$(resolve_nic "$n")")
        done
    fi
    failed=0
    for pci in "${pcis[@]}"; do
        drv=$(recorded_driver "$pci")
        if [ -z "$drv" ]; then
            # Not recorded (bound by hand?): dpdk-devbind.py lists the
            # kernel drivers that can take the device as unused=A,B.
            drv=$("$DPDK_DEVBIND" --status 2>/dev/null |
                awk -v pci="$pci" '$1 == pci {
                    for (i = 2; i <= NF; i++) if ($i ~ /^unused=/) {
                        n = split(substr($i, 8), d, ",")
                        for (j = 1; j <= n; j++)
                            if (d[j] != "vfio-pci" && d[j] != "uio_pci_generic" && d[j] != "igb_uio") { print d[j]; exit }
                    } }')
        fi
        if [ -z "$drv" ]; then
            say "$pci: its kernel driver is not recorded in $STATE_FILE nor listed by $DPDK_DEVBIND --status: find it (lspci -k -s $pci, 'Kernel modules:') and run: $DPDK_DEVBIND -b DRIVER $pci"
            failed=1
            continue
        fi
        now=$(current_driver "$pci")
        if [ "$now" = "$drv" ]; then
            say "$pci is already on its kernel driver $drv"
            record_driver "$pci" ""
            continue
        fi
        if ! run "$DPDK_DEVBIND" -b "$drv" "$pci"; then
            say "$DPDK_DEVBIND -b $drv $pci failed (see above): is the $drv module loaded (modprobe $drv)? Is lb-appliance still running on $pci (systemctl stop lb-appliance)?"
            failed=1
            continue
        fi
        record_driver "$pci" ""
        [ "$dry_run" -eq 1 ] || say "$pci is back on $drv${now:+ (was $now)}; bring its interface up again (ip link set IFACE up, or restart networking)"
    done
    exit "$failed"
fi

# ---------------------------------------------------------------- bind

# 1. The NICs, and the SSH session's route (before anything changes).
pcis=()
for n in "${nics[@]}"; do
    pcis+=("$(resolve_nic "$n")")
done

# The management interfaces: what the SSH session's route and the default
# routes (IPv4 and IPv6) go through. A NIC under any of them is refused
# unless --force, SSH session or not: on the console or at boot a bond's
# member or an IPv6-only uplink was bound all the same, dpdk-devbind.py
# seeing only IPv4 routes on the very interface (found in audit).
forced=" "
refuse() { # refuse PCI WHY
    if [ "$force" -eq 1 ]; then
        forced="$forced$1 "
        say "warning: $1: $2; binding it anyway (--force): the box may lose that path"
    else
        die "refusing $1: $2. Binding it to $driver takes it from the kernel and cuts that path. Name another NIC, or add --force if you have a console."
    fi
}
ssh=
[ "${#pcis[@]}" -eq 0 ] || ssh=$(ssh_connection)
if [ -n "$ssh" ]; then
    client=${ssh%% *}
    server=$(printf '%s\n' "$ssh" | awk '{ print $3 }')
    if [ -n "$IP_ROUTE_GET" ]; then
        route=$IP_ROUTE_GET
    else
        # From the address the session came in on, as policy routing
        # answers it (found in audit); without, if that fails.
        route=$(ip route get "$client" from "$server" 2>/dev/null | head -n 1 | sed 's/ *$//') || route=
        [ -n "$route" ] || route=$(ip route get "$client" 2>/dev/null | head -n 1 | sed 's/ *$//') || route=
    fi
    ssh_if=$(printf '%s\n' "$route" | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }')
    # A session whose way in cannot be worked out (no route, a VRF's): none
    # of the NICs can be told safe, so none is bound (found in audit: the
    # check was skipped without a word).
    if [ -z "$ssh_if" ]; then
        for pci in "${pcis[@]}"; do
            refuse "$pci" "this SSH session's interface cannot be told (ip route get $client: '${route:-nothing}'), so it may carry the session"
        done
    fi
    if [ -n "$ssh_if" ]; then
        # The route's interface, and every interface under it.
        ssh_pcis=()
        while read -r ifname; do
            sp=$(pci_of_iface "$ifname")
            [ -z "$sp" ] || ssh_pcis+=("$sp")
        done < <(stacked_ifaces "$ssh_if")
        for pci in "${pcis[@]}"; do
            for sp in "${ssh_pcis[@]+"${ssh_pcis[@]}"}"; do
                [ "$pci" = "$sp" ] || continue
                if [ "$force" -eq 1 ]; then
                    forced="$forced$pci "
                    say "warning: $pci carries this SSH session's route ($client via $ssh_if); binding it anyway (--force): the session will drop"
                else
                    die "refusing $pci: it carries the route of this SSH session through $ssh_if (ip route get $client: $route). Binding it to $driver takes it from the kernel and cuts the session. Name another NIC, connect through another interface, or add --force if you have a console."
                fi
            done
        done
    fi
fi

if [ -n "${IP_DEFAULT_ROUTES+set}" ]; then
    defaults=$IP_DEFAULT_ROUTES
else
    defaults=$({ ip -4 route show default; ip -6 route show default; } 2>/dev/null) || defaults=
fi
if [ "${#pcis[@]}" -gt 0 ]; then
    while read -r dflt_if; do
        [ -n "$dflt_if" ] || continue
        while read -r ifname; do
            sp=$(pci_of_iface "$ifname")
            for pci in "${pcis[@]}"; do
                [ -n "$sp" ] && [ "$pci" = "$sp" ] || continue
                refuse "$pci" "it carries a default route of this box through $dflt_if (ip route show default)"
            done
        done < <(stacked_ifaces "$dflt_if")
    done < <(printf '%s\n' "$defaults" | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1) }' | sort -u)
fi

# 2. The driver, and 3. the IOMMU (vfio-pci only): checked before the
# hugepages are touched, so that a box that cannot bind is left as it was
# (found in audit).
if [ "${#pcis[@]}" -gt 0 ]; then
    need_devbind

    # The driver.
    if [ -d "$SYSFS/bus/pci/drivers/$driver" ]; then
        : # loaded already, or built into the kernel
    elif [ "$dry_run" -eq 1 ]; then
        run "$MODPROBE" "$driver"
    elif ! err=$("$MODPROBE" "$driver" 2>&1); then
        die "cannot load $driver ($MODPROBE $driver: ${err:-failed}). Check that the kernel has it (grep -E 'VFIO_PCI|UIO_PCI_GENERIC' /boot/config-\$(uname -r)), that this kernel's modules are installed (apt-get install linux-image-\$(uname -r) on Debian, linux-modules-extra-\$(uname -r) on Ubuntu), and that module loading is allowed (cat /proc/sys/kernel/modules_disabled is 0)"
    fi

    # The IOMMU (vfio-pci only).
    if [ "$driver" = vfio-pci ]; then
        groups=$SYSFS/kernel/iommu_groups
        noiommu=$SYSFS/module/vfio/parameters/enable_unsafe_noiommu_mode
        if [ -d "$groups" ] && [ -n "$(ls -A "$groups" 2>/dev/null)" ]; then
            : # IOMMU on
        elif [ -r "$noiommu" ] && grep -qE '^(Y|1)' "$noiommu"; then
            say "warning: no IOMMU; vfio runs in unsafe no-IOMMU mode ($noiommu is on): the NICs can DMA anywhere in memory. Fine for a test box, not for production."
        else
            die "the IOMMU is off ($groups is empty), and vfio-pci needs it. Turn on VT-d (Intel) or AMD-Vi (AMD) in the firmware, add  intel_iommu=on iommu=pt  (Intel) or  amd_iommu=on iommu=pt  (AMD) to GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub and reboot. Only on a test box, knowing that the NICs can then DMA anywhere in memory: echo 1 > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode (after modprobe vfio-pci), or use --driver uio_pci_generic."
        fi
    else
        say "note: $driver gives the NICs no DMA isolation and no interrupts per queue; prefer vfio-pci with the IOMMU on"
    fi
fi

# 4. Hugepages.
if [ "$do_hugepages" -eq 1 ]; then
    hp_dir=$SYSFS/kernel/mm/hugepages/hugepages-${kb}kB
    if [ ! -d "$hp_dir" ]; then
        if [ "$size" = 1G ]; then
            die "this machine has no 1G hugepages ($hp_dir is missing; the CPU needs the pdpe1gb flag): use --hugepage-size 2M"
        fi
        die "$hp_dir is missing: this kernel has no 2M hugepages (CONFIG_HUGETLBFS); use a kernel with them"
    fi
    prev=$(cat "$hp_dir/nr_hugepages" 2>/dev/null) || prev=0
    prev=${prev:-0}
    # Not given: never fewer than are reserved already.
    if [ "$hugepages_given" -eq 0 ] && [ "$prev" -gt "$hugepages" ]; then
        hugepages=$prev
    fi
    # More than three quarters of the memory would starve the kernel and
    # the OOM killer would pick processes (sshd too): refused.
    mem_kb=$(awk '/^MemTotal:/ { print $2 }' "$PROC/meminfo" 2>/dev/null) || mem_kb=
    if [ -n "$mem_kb" ] && [ $((hugepages * kb)) -gt $((mem_kb / 4 * 3)) ]; then
        die "$hugepages hugepages of $size are $((hugepages * kb / 1024)) MB, more than three quarters of this machine's $((mem_kb / 1024)) MB: ask for fewer (--hugepages N)"
    fi

    if [ "$persist" -eq 1 ]; then
        if [ "$size" = 2M ]; then
            # vm.nr_hugepages counts pages of the default size (found in
            # audit: on a box booted with default_hugepagesz=1G it would
            # reserve 1G pages).
            default_kb=$(awk '/^Hugepagesize:/ { print $2 }' "$PROC/meminfo" 2>/dev/null) || default_kb=
            if [ -n "$default_kb" ] && [ "$default_kb" != 2048 ]; then
                die "the default hugepage size here is ${default_kb} kB, not 2M, so vm.nr_hugepages would reserve pages of that size: put  hugepagesz=2M hugepages=$hugepages  on the kernel command line (GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub) instead of --persist"
            fi
            conf=$SYSCTL_DIR/$SYSCTL_FILE
            content="# Written by lb-appliance's scripts/bind-nics.sh: 2M hugepages for DPDK,
# reserved by systemd-sysctl early at boot, before memory fragments.
# vm.nr_hugepages counts pages of the default hugepage size (2M on x86).
vm.nr_hugepages = $hugepages"
            if [ "$dry_run" -eq 1 ]; then
                printf '+ cat > %s <<EOF\n%s\nEOF\n' "$conf" "$content"
            else
                mkdir -p "$SYSCTL_DIR" 2>/dev/null || die "cannot create $SYSCTL_DIR: run as root"
                printf '%s\n' "$content" >"$conf" 2>/dev/null ||
                    die "cannot write $conf: run as root"
                say "wrote $conf: $hugepages hugepages of 2M are reserved at every boot (sysctl --system applies it now; remove the file to stop)"
            fi
        else
            say "1G hugepages are best reserved on the kernel command line, at boot, before memory fragments:"
            say "  add  default_hugepagesz=1G hugepagesz=1G hugepages=$hugepages  to GRUB_CMDLINE_LINUX in /etc/default/grub,"
            say "  then run  update-grub  and reboot (check with: cat /proc/cmdline)."
            say "  Also mount them at boot: echo 'nodev /dev/hugepages-1G hugetlbfs pagesize=1G 0 0' >> /etc/fstab"
        fi
    fi

    if [ "$prev" -eq "$hugepages" ] && [ "$dry_run" -eq 0 ]; then
        say "$prev hugepages of $size reserved already ($((prev * kb / 1024)) MB)"
    else
        write_file "$hugepages" "$hp_dir/nr_hugepages" ||
            die "cannot reserve hugepages: run as root (sudo $PROG ...)"
        if [ "$dry_run" -eq 0 ]; then
            got=$(cat "$hp_dir/nr_hugepages")
            if [ "$got" -lt "$hugepages" ]; then
                # Not left half-done: the count goes back to what it was.
                write_file "$prev" "$hp_dir/nr_hugepages" || true
                if [ "$persist" -eq 1 ]; then
                    die "asked for $hugepages hugepages of $size, the kernel granted $got now (memory is too fragmented or too small), so the count is back at $prev; they are reserved at the next boot as written above: reboot, then run this again"
                fi
                die "asked for $hugepages hugepages of $size, the kernel granted $got (memory is too fragmented or too small), so the count is back at $prev. Ask for fewer (--hugepages $got), or reserve them at boot: $PROG --persist --hugepages $hugepages --hugepage-size $size, then reboot"
            fi
            say "$got hugepages of $size reserved ($((got * kb / 1024)) MB)"
        fi
    fi

    # hugetlbfs: a mount of this page size, at /dev/hugepages if free.
    # The kernel shows a 1G mount's page size as 1024M (found in audit:
    # every 1G run stacked one more mount).
    shown=$size
    [ "$size" != 1G ] || shown=1024M
    if ! awk -v ps="pagesize=$size" -v ps2="pagesize=$shown" '$3 == "hugetlbfs" && (("," $4 ",") ~ ("," ps ",") || ("," $4 ",") ~ ("," ps2 ",")) { found = 1 } END { exit !found }' /proc/mounts; then
        mnt=/dev/hugepages
        if awk -v m="$mnt" '$2 == m { found = 1 } END { exit !found }' /proc/mounts; then
            mnt=/dev/hugepages-$size
        fi
        if [ "$dry_run" -eq 1 ]; then
            run mkdir -p "$mnt"
            run mount -t hugetlbfs -o "pagesize=$size" nodev "$mnt"
        else
            mkdir -p "$mnt" 2>/dev/null || die "cannot create $mnt: run as root"
            if ! err=$(mount -t hugetlbfs -o "pagesize=$size" nodev "$mnt" 2>&1); then
                die "cannot mount hugetlbfs on $mnt: $err. Run as root: mount -t hugetlbfs -o pagesize=$size nodev $mnt"
            fi
            say "mounted hugetlbfs (pagesize=$size) on $mnt"
        fi
    fi
fi

[ "${#pcis[@]}" -gt 0 ] || exit 0

# 5. Bind, recording each NIC's kernel driver first. dpdk-devbind.py's own
# check (an interface with routes) is lifted only for the NICs --force let
# through above (found in audit: it was lifted for every NIC named).
failed=0
for pci in "${pcis[@]}"; do
    devbind_force=()
    case "$forced" in *" $pci "*) devbind_force=(--force) ;; esac
    now=$(current_driver "$pci")
    if [ "$now" = "$driver" ]; then
        say "$pci is already bound to $driver"
        continue
    fi
    if [ -n "$now" ] && ! is_dpdk_driver "$now"; then
        record_driver "$pci" "$now"
    fi
    ifs=$(ifaces_of "$pci")
    if ! run "$DPDK_DEVBIND" "${devbind_force[@]+"${devbind_force[@]}"}" -b "$driver" "$pci"; then
        say "$DPDK_DEVBIND -b $driver $pci failed (see above). If it says the interface is active (it has addresses or routes) and ${ifs:-IFACE} is not how you reach this box (check: ip route; who): ip addr flush dev ${ifs:-IFACE}; ip link set ${ifs:-IFACE} down, then run this again"
        failed=1
        continue
    fi
    [ "$dry_run" -eq 0 ] || continue
    after=$(current_driver "$pci")
    if [ "$after" != "$driver" ]; then
        say "$pci is still on ${after:-no driver} after $DPDK_DEVBIND -b $driver $pci (see its warnings above: it skips an active interface). If ${ifs:-IFACE} is not how you reach this box (check: ip route; who): ip addr flush dev ${ifs:-IFACE}; ip link set ${ifs:-IFACE} down, then run this again"
        failed=1
        continue
    fi
    say "$pci${ifs:+ (was $ifs)} is bound to $driver${now:+; $PROG --unbind gives it back to $now}"
done
exit "$failed"
