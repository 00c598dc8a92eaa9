#!/usr/bin/env bash
# The whole test suite: installs what is missing, then formatting, lints,
# and every test (unit, golden packets, the DPDK layer on virtual devices,
# the binary on net_pcap, and end-to-end tests in network namespaces, which
# need root). Run from anywhere, as root: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
export PATH="$HOME/.cargo/bin:$PATH"
# Tests that need root fail instead of skipping when this is set (CI runs
# as root and must run them all).
export LB_REQUIRE_PRIVILEGED_TESTS="${LB_REQUIRE_PRIVILEGED_TESTS:-$([ "$(id -u)" -eq 0 ] && echo 1 || echo 0)}"

echo "== shell scripts: bash -n (and shellcheck -S error where installed)"
for script in scripts/*.sh; do
    bash -n "$script"
done
if command -v shellcheck >/dev/null 2>&1; then
    shellcheck -S error scripts/*.sh
else
    echo "shellcheck is not installed: only bash -n"
fi
echo "== python scripts: py_compile, and cg-tree.py's profile reader"
python3 -m py_compile scripts/*.py
scripts/cg-tree.py --self-check
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace --all-targets -- --test-threads="${LB_TEST_THREADS:-2}"
echo "== cargo test --doc"
# --all-targets leaves out doc tests; there are none yet, and this costs
# about 2 s once the libraries are built.
cargo test --workspace --doc
echo "== DPDK linked statically (LB_DPDK_LINK=static): golden packets through that binary"
# The other way to build the appliance (README, "Deploying on a real box"),
# in its own target folder: its link is different, its packets must not be.
LB_DPDK_LINK=static cargo test --target-dir target/static --test forwarding_pcap
