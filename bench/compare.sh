#!/usr/bin/env bash
# Failover benchmark side by side with Patroni (issue 8): installs what it needs
# (PostgreSQL 15, etcd, Patroni in a venv), builds, and runs both tools on the same machine
# in one run, interleaved. Prints markdown tables (docs/benchmarks.md has the last ones).
#
#   bench/compare.sh                                  # 5 runs, defaults and fastest presets
#   bench/compare.sh --runs 3 --presets defaults --svg docs/crash-timeline.svg
#   bench/compare.sh --only hashell --runs 1
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_debian_packages protobuf-compiler etcd-server etcd-client postgresql-15 python3 python3-venv
patroni=$(scripts/install-patroni.sh)
step "build"
# The deploy build (Cargo.toml's dist profile), with the small hashell-guard next to the
# daemon under test, as an operator installs them.
cargo build -q --profile dist -p hashell -p e2e --bins
# The daemon under test is the etcd-only build (the benchmark's store is etcd; without the
# DynamoDB SDK an idle daemon keeps fewer code pages resident). E2E_DAEMON set by
# the caller (e.g. target/dist/hashell-under-test, the build with both stores) wins.
scripts/build-dist.sh --etcd-only
step "benchmark"
E2E_DAEMON=${E2E_DAEMON:-$PWD/target/dist/hashell} exec target/dist/compare --patroni "$patroni" "$@"
