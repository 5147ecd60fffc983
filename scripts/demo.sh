#!/usr/bin/env bash
# The main job: a local demo cluster. Installs what it needs first (idempotent).
#
# Starts an etcd and three hashell daemons with real PostgreSQL 15 on loopback in a temp
# directory, shows the cluster, writes continuously, kills the primary's whole node, shows
# the failover and the measured write gap, brings the old primary back as a replica, and
# cleans up. Pass --keep to keep the logs and data.
#
#   ./scripts/demo.sh [--keep]
#
# The simulated version (virtual time, no servers): cargo run --release -p simulator --example demo
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_rust_components
ensure_debian_packages protobuf-compiler etcd-server etcd-client postgresql-15
step "building"
cargo build -q --release -p hashell
step "a real 3-node cluster: bootstrap, crash of the primary, failover, rejoin"
exec target/release/hashell demo "$@"
