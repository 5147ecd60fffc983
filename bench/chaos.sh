#!/usr/bin/env bash
# Chaos on real processes (issue 9): installs what it needs (PostgreSQL 15, etcd, iptables),
# builds, and runs a 3-node cluster in network namespaces under a seeded schedule of faults
# (process kills and freezes, etcd restarts, switchovers, partitions). Needs root.
#
#   bench/chaos.sh                                   # 200 faults, at most 20 minutes
#   bench/chaos.sh --seed 7 --faults 30 --svg /tmp/chaos.svg
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_debian_packages protobuf-compiler etcd-server etcd-client postgresql-15 iptables iproute2
step "build"
cargo build -q --profile dist -p hashell -p e2e --bins
step "chaos"
exec target/dist/chaos "$@"
