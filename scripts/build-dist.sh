#!/usr/bin/env bash
# The binaries to deploy, in target/dist: the daemon (dist profile: size-optimized, LTO,
# stripped) and the fencing guard beside it, statically linked. The guard runs next to
# every PostgreSQL and does no name lookups, so it has no use for the shared C library's
# pages (0.6 MiB resident per node, measured in docs/benchmarks.md). The daemon stays
# dynamically linked: it resolves store host names through the system's NSS.
#
#   scripts/build-dist.sh                 # both stores (etcd and DynamoDB)
#   scripts/build-dist.sh --etcd-only     # without the DynamoDB store
set -euo pipefail
cd "$(dirname "$0")/.."
features=()
if [ "${1:-}" = "--etcd-only" ]; then
    features=(--no-default-features)
fi
cargo build -q --profile dist -p hashell "${features[@]}" --bin hashell
host=$(rustc -vV | sed -n 's/^host: //p')
# With --target, RUSTFLAGS reach only the guard's own code, not build scripts or macros.
RUSTFLAGS="-C target-feature=+crt-static" cargo build -q --profile dist -p hashell --no-default-features \
    --bin hashell-guard --target "$host"
cp "target/$host/dist/hashell-guard" target/dist/hashell-guard
echo "target/dist/hashell and target/dist/hashell-guard (static)"
