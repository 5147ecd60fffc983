#!/usr/bin/env bash
# A profile-guided build of the simulator (`target/sim-pgo/`), and its speed beside the
# plain `sim` build.
#
# The profile is trained on sweeps over seeds the speed benchmark does not run (1000..1200,
# and 1000..1050 as standby clusters: 3 to 7 nodes, every fault kind), so the figure is
# not tuned to the benchmark's own runs. LLVM's `llvm-profdata` must match rustc's LLVM
# major version; Debian packages it as `llvm-<major>` (installed here if missing).
#
#   bench/sim-pgo.sh          # build, then 8 alternating rounds of the speed example
#   bench/sim-pgo.sh 4        # 4 rounds
#   bench/sim-pgo.sh 0        # build only: target/sim-pgo/{simulator,speed}
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-8}
major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
profdata=$(command -v "llvm-profdata-$major" || true)
if [ -z "$profdata" ]; then
    (. scripts/lib.sh && ensure_debian_packages "llvm-$major")
    profdata=$(command -v "llvm-profdata-$major")
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gen=target/pgo-gen
RUSTFLAGS="-Cprofile-generate=$tmp/raw" CARGO_TARGET_DIR=$gen \
    cargo build -q --profile sim -p simulator --bin simulator --example speed
"$gen/sim/simulator" sweep --seeds 1000..1200 --duration 1h --jobs 2 >/dev/null
"$gen/sim/simulator" sweep --seeds 1000..1050 --duration 1h --jobs 2 --standby on >/dev/null
"$profdata" merge -o "$tmp/sim.profdata" "$tmp/raw"
RUSTFLAGS="-Cprofile-use=$tmp/sim.profdata" CARGO_TARGET_DIR=target/pgo-use \
    cargo build -q --profile sim -p simulator --bin simulator --example speed
mkdir -p target/sim-pgo
cp target/pgo-use/sim/simulator target/pgo-use/sim/examples/speed target/sim-pgo/
echo "built target/sim-pgo/simulator and target/sim-pgo/speed"
[ "$rounds" -gt 0 ] || exit 0
cargo build -q --profile sim -p simulator --example speed
cp target/sim/examples/speed "$tmp/speed-plain"
cp target/sim-pgo/speed "$tmp/speed-pgo"
. bench/alternate.sh
alternate_rounds "$tmp" "$rounds" plain pgo
