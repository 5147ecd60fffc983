#!/usr/bin/env bash
# Simulator throughput side by side: the speed benchmark (3 nodes, 100 client writes/s,
# each seed's default faults, 20 seeds x 1 simulated hour) of this tree's `sim` build
# and of an older commit's `--release` build, run alternately so that both see the same
# machine load. Prints each run and the median of the per-run medians.
#
#   bench/sim-speed.sh                 # against 10d3592a (before views shared records)
#   bench/sim-speed.sh <commit> 8      # another base, 8 rounds
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-10d3592a}
rounds=${2:-8}
tmp=$(mktemp -d)
trap 'git worktree remove --force "$tmp/base" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git worktree add -q --detach "$tmp/base" "$base"
(cd "$tmp/base" && CARGO_TARGET_DIR="$tmp/target" cargo build -q --release -p simulator --example speed)
cargo build -q --profile sim -p simulator --example speed
cp "$tmp/target/release/examples/speed" "$tmp/speed-base"
cp target/sim/examples/speed "$tmp/speed-this"
. bench/alternate.sh
alternate_rounds "$tmp" "$rounds" base this
