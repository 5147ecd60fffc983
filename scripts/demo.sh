#!/usr/bin/env bash
# The main job: a local demo cluster.
#
# Today this runs a simulated 3-node cluster driven by the real decision core (hacore)
# in virtual time: bootstrap, a primary crash, the failover and the old primary's return,
# printed as a trace. The real daemon managing real PostgreSQL and etcd arrives with
# issue #6, and this script will then start three real nodes on loopback.
#
#   ./scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_rust_components
step "building"
cargo build -q --release -p simulator --example demo
step "a simulated 3-node cluster: bootstrap, crash of the primary, failover, rejoin, switchover"
exec target/release/examples/demo
