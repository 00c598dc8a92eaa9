#!/usr/bin/env bash
# Installs lb-appliance as a systemd service, from a clone of this repository:
#
#   scripts/install-service.sh [--prefix /usr/local] [--no-enable] [--force]
#
#   PREFIX/bin/lb-appliance                  the binary (built with
#                                            `cargo build --release` if missing)
#   /etc/lb-appliance/lb.toml                examples/lb.toml, only if there is
#                                            no lb.toml yet (never overwritten)
#   PREFIX/share/lb-appliance/examples/      every example configuration
#   /etc/systemd/system/lb-appliance.service packaging/systemd/lb-appliance.service
#                                            (its paths follow --prefix)
#   PREFIX/sbin/lb-appliance-bind-nics       scripts/bind-nics.sh
#   /etc/systemd/system/lb-appliance-bind-nics.service
#                                            binds the NICs named in
#                                            /etc/lb-appliance/nics at boot,
#                                            before the service (enable it
#                                            once that file names them)
#
# then `systemctl daemon-reload` and `systemctl enable lb-appliance` when
# systemd runs this machine (else it says what to run). It does not start
# the service: bind the NICs (scripts/bind-nics.sh) and edit lb.toml first.
#
# Environment:
#   DESTDIR     stage everything under this folder instead of / (packaging,
#               tests); systemctl is then not run
#   LB_BINARY   the binary to install [CARGO_TARGET_DIR or target, then
#               release/lb-appliance]
#
# Exit status: 0 done, 1 something failed, 2 bad arguments.
set -euo pipefail

say() { printf 'install-service: %s\n' "$*" >&2; }
die() {
    say "$@"
    exit 1
}

usage() {
    cat <<EOF
Usage: ${0##*/} [--prefix DIR] [--no-enable] [--force]

Installs lb-appliance as a systemd service: the binary to DIR/bin, the
example configurations to DIR/share/lb-appliance/examples,
/etc/lb-appliance/lb.toml (only if absent),
/etc/systemd/system/lb-appliance.service, and bind-nics.sh as
DIR/sbin/lb-appliance-bind-nics with the unit lb-appliance-bind-nics.service
that runs it at boot for the NICs in /etc/lb-appliance/nics (enable it
yourself once that file names them); then reloads systemd and enables the
service (not with --no-enable). It does not start it.

Options:
  --prefix DIR   installation prefix (default /usr/local)
  --no-enable    do not enable the service (a re-run also leaves a
                 service that was disabled disabled)
  --force        install even a binary that refuses the existing
                 /etc/lb-appliance/lb.toml (else nothing is installed)
  -h, --help     this text

Environment: DESTDIR stages the files under a folder instead of /;
LB_BINARY names the binary to install (default: target/release/lb-appliance,
built with cargo build --release if missing).
EOF
}

prefix=/usr/local
enable=1
force=0
while [ $# -gt 0 ]; do
    case "$1" in
    --prefix)
        [ $# -ge 2 ] || {
            say "--prefix needs a folder"
            exit 2
        }
        prefix=$2
        shift 2
        ;;
    --prefix=*)
        prefix=${1#*=}
        shift
        ;;
    --no-enable) enable=0 && shift ;;
    --force) force=1 && shift ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        say "unknown argument $1 (see --help)"
        exit 2
        ;;
    esac
done
case "$prefix" in
/*) ;;
*)
    say "--prefix must be an absolute path, not '$prefix'"
    exit 2
    ;;
esac
# It goes into sed and into the units' ExecStart lines (found in audit: a
# '#', '&' or a space broke the install half way).
case "$prefix" in
*[!A-Za-z0-9/._+-]*)
    say "--prefix may hold letters, digits and / . _ + - only, not '$prefix'"
    exit 2
    ;;
esac
# Without its trailing slash ("" for /), so that "$p/bin" is right.
p=${prefix%/}

root=$(cd "$(dirname "$0")/.." && pwd)
destdir=${DESTDIR:-}
destdir=${destdir%/}
unit_src=$root/packaging/systemd/lb-appliance.service
bind_unit_src=$root/packaging/systemd/lb-appliance-bind-nics.service
for f in "$unit_src" "$bind_unit_src" "$root/scripts/bind-nics.sh"; do
    [ -f "$f" ] || die "$f is missing: run this script from a clone of the repository"
done

if [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (it writes $prefix, /etc and /etc/systemd/system): sudo $0, or stage with DESTDIR=DIR"
fi

# The binary.
binary=${LB_BINARY:-${CARGO_TARGET_DIR:-$root/target}/release/lb-appliance}
if [ ! -x "$binary" ]; then
    if [ -n "${LB_BINARY:-}" ]; then
        die "LB_BINARY=$binary is not an executable file"
    fi
    command -v cargo >/dev/null 2>&1 ||
        die "$binary is missing and cargo is not on PATH: run scripts/install-deps.sh, then cargo build --release"
    say "$binary is missing: building it (cargo build --release)"
    (cd "$root" && cargo build --release -p lb-appliance) ||
        die "cargo build --release failed (see above); scripts/install-deps.sh installs what the build needs"
fi

bindir=$destdir$p/bin
sbindir=$destdir$p/sbin
etcdir=$destdir/etc/lb-appliance
sharedir=$destdir$p/share/lb-appliance/examples
unitdir=$destdir/etc/systemd/system

# An upgrade: the new binary must take the configuration the box runs, or
# the next restart (a watchdog's too) fails its ExecStartPre check (found
# in audit: it was installed all the same, with a warning after the fact).
checked=0
[ ! -e "$etcdir/lb.toml" ] || checked=1
if [ "$checked" -eq 1 ] && ! check=$("$binary" -c "$etcdir/lb.toml" --check 2>&1); then
    printf '%s\n' "$check" >&2
    [ "$force" -eq 1 ] ||
        die "$binary refuses the existing $etcdir/lb.toml (above): nothing installed. Fix the configuration for this version first, or install anyway with --force"
    say "warning: installing anyway (--force); the service will not start until $etcdir/lb.toml validates"
fi

# The configuration folder keeps the mode an operator gave it (found in
# audit: a re-run made 0750 into 0755).
[ -d "$etcdir" ] || install -d -m 0755 "$etcdir"
install -d -m 0755 "$bindir" "$sbindir" "$sharedir" "$unitdir"
unit_existed=0
[ ! -e "$unitdir/lb-appliance.service" ] || unit_existed=1
install -m 0755 "$binary" "$bindir/lb-appliance"
say "installed $bindir/lb-appliance"

if [ -e "$etcdir/lb.toml" ]; then
    say "kept the existing $etcdir/lb.toml (never overwritten; the reference is in $sharedir/lb.toml)"
else
    install -m 0644 "$root/examples/lb.toml" "$etcdir/lb.toml"
    say "installed $etcdir/lb.toml from examples/lb.toml: edit its ports and services"
fi

for f in "$root"/examples/*.toml; do
    install -m 0644 "$f" "$sharedir/"
done
say "installed the examples in $sharedir"

# The units name /usr/local; follow --prefix.
for u in "$unit_src" "$bind_unit_src"; do
    name=${u##*/}
    sed "s#/usr/local/#$p/#g" "$u" >"$unitdir/$name.tmp"
    chmod 0644 "$unitdir/$name.tmp"
    mv "$unitdir/$name.tmp" "$unitdir/$name"
    say "installed $unitdir/$name"
done
install -m 0755 "$root/scripts/bind-nics.sh" "$sbindir/lb-appliance-bind-nics"
say "installed $sbindir/lb-appliance-bind-nics (scripts/bind-nics.sh): to bind the NICs at every boot, write them into /etc/lb-appliance/nics and run: systemctl enable lb-appliance-bind-nics"

# Is a configuration installed from the example valid? (Touches no
# device; an existing one was checked before the binary was installed.)
if [ "$checked" -eq 0 ] && ! check=$("$bindir/lb-appliance" -c "$etcdir/lb.toml" --check 2>&1); then
    say "warning: $etcdir/lb.toml does not validate yet; the service will not start until it does:"
    printf '%s\n' "$check" >&2
fi

next="edit /etc/lb-appliance/lb.toml, bind the NICs (scripts/bind-nics.sh --persist PCI...), then: systemctl start lb-appliance; journalctl -u lb-appliance -f"
if [ -n "$destdir" ]; then
    say "staged in $destdir; on the target machine run: systemctl daemon-reload && systemctl enable lb-appliance"
elif [ -d /run/systemd/system ]; then
    systemctl daemon-reload || die "systemctl daemon-reload failed (see above)"
    if systemctl is-active --quiet lb-appliance 2>/dev/null; then
        say "lb-appliance is running the binary it started with: systemctl restart lb-appliance runs this one (flows in the tables are lost; a connection-sync backup takes them over, see README)"
    fi
    # A re-run (an upgrade) leaves a service an operator disabled (a
    # standby, maintenance) disabled (found in audit: it was enabled
    # again, and started at the next boot).
    if [ "$enable" -eq 1 ] && [ "$unit_existed" -eq 1 ] &&
        [ "$(systemctl is-enabled lb-appliance 2>/dev/null)" = disabled ]; then
        say "lb-appliance was disabled and stays so (systemctl enable lb-appliance to start it at boot); $next"
    elif [ "$enable" -eq 1 ]; then
        systemctl enable lb-appliance || die "systemctl enable lb-appliance failed (see above)"
        say "enabled lb-appliance (it starts at boot); $next"
    else
        say "not enabled (--no-enable): systemctl enable lb-appliance to start it at boot; $next"
    fi
else
    say "systemd is not running this machine (PID 1 is $(cat /proc/1/comm 2>/dev/null || echo unknown)): once it is, run: systemctl daemon-reload && systemctl enable lb-appliance"
fi
