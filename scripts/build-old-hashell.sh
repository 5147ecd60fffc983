#!/usr/bin/env bash
# Builds the hashell of an older commit (etcd-only, debug) for the rolling-upgrade test,
# once: sources from `git archive`, the binary kept as target/old/<commit>/hashell and its
# build tree removed (disk is scarce on CI machines). Prints the binary.
#
#   scripts/build-old-hashell.sh <commit>
set -euo pipefail
cd "$(dirname "$0")/.."
commit=$(git rev-parse --verify --quiet "${1:?usage: $0 <commit>}^{commit}") || {
    echo "commit $1 is not in this repository (a shallow clone? fetch the history: git fetch --unshallow)" >&2
    exit 1
}
out="$PWD/target/old/$commit"
bin="$out/hashell"
if [ ! -x "$bin" ]; then
    rm -rf "$out/src"
    mkdir -p "$out/src"
    git archive "$commit" | tar -x -C "$out/src"
    echo "building hashell $commit (etcd only) in $out" >&2
    CARGO_TARGET_DIR="$out/target" CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=0 \
        cargo build -q --manifest-path "$out/src/Cargo.toml" \
        -p hashell --no-default-features --bin hashell >&2
    cp "$out/target/debug/hashell" "$bin.tmp" && mv "$bin.tmp" "$bin"
    rm -rf "$out/target" "$out/src"
fi
echo "$bin"
