#!/usr/bin/env bash
# Installs everything lb-appliance needs to build, test and run its demo on a
# fresh Debian 12 / Ubuntu 22.04+ machine, as root. Safe to run again: it only
# installs what is missing.
set -euo pipefail

log() { printf 'install-deps: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "run as root (apt-get needs it): sudo $0"
    exit 1
fi

# Debian packages: DPDK 22.11 and what bindgen needs, and what the demo
# and the lab use (network namespaces, tc-BPF, curl, Python's HTTP server,
# BIRD 2 for the scale-out lab's BGP).
packages=(
    build-essential pkg-config clang libclang-dev
    libdpdk-dev dpdk dpdk-dev
    iproute2 iputils-ping iputils-arping ethtool procps libbpf-dev linux-libc-dev
    python3 curl ca-certificates bird2
)
# With --test (scripts/test.sh): what only the tests use: dissectors and
# scapy for golden packets, Prometheus and its client for the monitoring
# tests, systemd-analyze for the unit.
# With --bench (scripts/bench-lab.sh): the peers and the load tool of the
# lab benchmark: nginx (the light build: static files are all it serves),
# HAProxy 2.6 and wrk; and valgrind, whose callgrind counts instructions
# per packet (scripts/bench-instructions.sh).
for arg in "$@"; do
    case $arg in
    --test) packages+=(tshark python3-scapy python3-prometheus-client prometheus systemd) ;;
    --bench) packages+=(nginx-light haproxy wrk valgrind) ;;
    *)
        log "unknown argument: $arg (--test, --bench)"
        exit 2
        ;;
    esac
done
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture: answer no, quietly.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The tests run their own Prometheus; one we just installed must not
    # stay running as a service on this machine.
    if printf '%s\n' "${missing[@]}" | grep -qx prometheus && [ -d /run/systemd/system ]; then
        systemctl disable --now prometheus >/dev/null 2>&1 || true
        log "stopped and disabled the packaged prometheus service (the tests start their own)"
    fi
    # Likewise BIRD, nginx and HAProxy: the lab runs its own (own config,
    # control socket and PID in the lab's or the benchmark's folder, inside
    # its namespaces); the packaged services must not run (nginx would hold
    # port 80 of this machine). Without systemd, the package's init script
    # started them: stop those through their own scripts.
    for svc in bird2:bird nginx-light:nginx haproxy:haproxy; do
        printf '%s\n' "${missing[@]}" | grep -qx "${svc%%:*}" || continue
        svc=${svc#*:}
        if [ -d /run/systemd/system ]; then
            systemctl disable --now "$svc" >/dev/null 2>&1 || true
        elif [ -x "/etc/init.d/$svc" ]; then
            "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
            update-rc.d "$svc" disable >/dev/null 2>&1 || true
        fi
        log "stopped and disabled the packaged $svc service (the lab starts its own)"
    done
fi

# Rust: use the toolchain on PATH; otherwise install rustup's stable one.
if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        log "installing the Rust toolchain (rustup, stable)"
        if ! command -v rustup >/dev/null 2>&1; then
            apt-get install -y -qq --no-install-recommends rustup >/dev/null 2>&1 ||
                { curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt; }
        fi
        export PATH="$HOME/.cargo/bin:$PATH"
        rustup toolchain install stable --profile minimal --component clippy,rustfmt >/dev/null
        rustup default stable >/dev/null
    fi
fi
for c in clippy rustfmt; do
    if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; then
        rustup component add "$c" >/dev/null
    fi
done

pkg-config --modversion libdpdk >/dev/null || { log "libdpdk not found by pkg-config after install"; exit 1; }
log "ready: DPDK $(pkg-config --modversion libdpdk), $(cargo --version)"
# A toolchain put in ~/.cargo/bin is on this script's PATH only (found in
# audit: the next step, cargo build, then said "not found").
case ":$PATH:" in
*":$HOME/.cargo/bin:"*)
    if [ "$(command -v cargo)" = "$HOME/.cargo/bin/cargo" ] &&
        ! (PATH=$(getconf PATH 2>/dev/null || echo /usr/bin:/bin) command -v cargo >/dev/null 2>&1); then
        log "cargo is in $HOME/.cargo/bin (${USER:-root}'s): run  . \"$HOME/.cargo/env\"  (or open a new login shell) before cargo build"
    fi
    ;;
esac
