#!/usr/bin/env bash
# Installs the DynamoDB-compatible server the tests run (moto, pinned, from PyPI) into a
# virtualenv made from the system Python, idempotently, and prints the path of the venv's
# python on stdout. The test harness (crates/backend-dynamo/src/testing.rs) runs
# `<that python> scripts/dynamo-server.py HOST PORT` (moto with every request serialized)
# and looks for it at the same path, or at $HASHELL_MOTO_PYTHON.
#
#   scripts/install-dynamo-server.sh
#   HASHELL_TOOLS   where tools go (default ~/.cache/hashell-tools)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

# Keep in step with MOTO_VERSION in crates/backend-dynamo/src/testing.rs.
MOTO_VERSION=5.0.28
root="${HASHELL_TOOLS:-$HOME/.cache/hashell-tools}"
venv="$root/moto-$MOTO_VERSION"
python="$venv/bin/python"

works() { [ -x "$python" ] && "$python" -c "import moto, moto.server, werkzeug; assert moto.__version__ == '$MOTO_VERSION'" 2>/dev/null; }

if ! works; then
    # Debian's python3 needs python3-venv for `python3 -m venv` (with ensurepip).
    /usr/bin/python3 -c "import venv, ensurepip" 2>/dev/null || ensure_debian_packages python3-venv >&2
    step "installing moto[server]==$MOTO_VERSION into $venv" >&2
    mkdir -p "$root"
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q "moto[server]==$MOTO_VERSION" >&2
    works || { echo "moto $MOTO_VERSION did not install into $venv" >&2; exit 1; }
fi
echo "$python"
