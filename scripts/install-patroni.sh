#!/usr/bin/env bash
# Installs Patroni (pinned, from PyPI, with its etcd v3 and psycopg 3 extras) into a
# virtualenv made from the system Python, idempotently, and prints the path of the
# `patroni` executable on stdout. Only the side-by-side benchmark (bench/compare.sh) uses it.
#
#   scripts/install-patroni.sh
#   HASHELL_TOOLS   where tools go (default ~/.cache/hashell-tools; as root /opt/hashell-tools,
#                   because the benchmark runs Patroni as the postgres user, who cannot read /root)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

PATRONI_VERSION=4.1.5
if [ "$(id -u)" -eq 0 ]; then default=/opt/hashell-tools; else default="$HOME/.cache/hashell-tools"; fi
root="${HASHELL_TOOLS:-$default}"
venv="$root/patroni-$PATRONI_VERSION"
patroni="$venv/bin/patroni"

works() { [ -x "$patroni" ] && "$patroni" --version 2>/dev/null | grep -qx "patroni $PATRONI_VERSION" \
    && "$venv/bin/python" -c "import etcd, psycopg" 2>/dev/null; }

if ! works; then
    /usr/bin/python3 -c "import venv, ensurepip" 2>/dev/null || ensure_debian_packages python3-venv >&2
    step "installing patroni[etcd3,psycopg3]==$PATRONI_VERSION into $venv" >&2
    mkdir -p "$root"
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q "patroni[etcd3,psycopg3]==$PATRONI_VERSION" >&2
    works || { echo "patroni $PATRONI_VERSION did not install into $venv" >&2; exit 1; }
fi
echo "$patroni"
