#!/usr/bin/env bash
# Installs a DynamoDB-compatible server for the tests (moto, from PyPI) into a virtualenv,
# idempotently, and prints the path of the venv's python, which runs
# scripts/dynamo-server.py (moto with every request serialized).
#   HASHELL_TOOLS: where tools go (default ~/.cache/hashell-tools)
set -euo pipefail
MOTO_VERSION=5.0.28
root="${HASHELL_TOOLS:-$HOME/.cache/hashell-tools}"
venv="$root/moto-$MOTO_VERSION"
bin="$venv/bin/python"
if [ -x "$bin" ] && "$venv/bin/python" -c "import moto.server" 2>/dev/null; then
  echo "$bin"
  exit 0
fi
if ! /usr/bin/python3 -c "import venv, ensurepip" 2>/dev/null; then
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
  $sudo_ apt-get install -y -q python3-venv >&2
fi
mkdir -p "$root"
rm -rf "$venv"
/usr/bin/python3 -m venv "$venv" >&2
"$venv/bin/pip" install -q "moto[server]==$MOTO_VERSION" >&2
"$venv/bin/python" -c "import moto.server" >&2
echo "$bin"
