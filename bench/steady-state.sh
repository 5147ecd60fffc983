#!/usr/bin/env bash
# Store operations per node per minute of an idle healthy 3-node cluster, counted from the
# trace of a fault-free simulator run of the real core (last 5 of 10 simulated minutes).
#
#   bench/steady-state.sh                      # defaults: ttl 30 s, loop_wait 5 s
#   bench/steady-state.sh "ttl=10s loop_wait=1s retry_timeout=1s"
set -euo pipefail
cd "$(dirname "$0")/.."
settings=${1:-"ttl=30s loop_wait=5s retry_timeout=5s"}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s/^settings .*/settings $settings sync=off failsafe=off/" bench/quiet-cluster.sim >"$tmp/q.sim"
cargo build -q --profile sim -p simulator
target/sim/simulator scenario "$tmp/q.sim" --trace "$tmp/t.jsonl" >/dev/null
python3 - "$tmp/t.jsonl" <<'PY'
import collections, json, re, sys
counts = collections.Counter()
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e["ev"] != "action" or e["t"] < 300_000:
        continue
    m = re.match(r"Dcs \{ id: OpId\(\d+\), op: (\w+)", e["action"])
    if m:
        counts[(e["node"], m.group(1))] += 1
for (node, op), n in sorted(counts.items()):
    print(f"{node} {op}: {n / 5:.1f} per minute")
PY
