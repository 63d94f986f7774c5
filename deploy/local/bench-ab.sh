#!/usr/bin/env bash
# Before/after in one sitting: alternates two `jifen` binaries, each run on a fresh `jifen dev`
# (SQLite, temp folder) loaded by `jifen bench` as deploy/local/bench.sh does, and prints each
# run's report line and the CPU ticks (1/100 s) the mesh process and its nats-server used. Build the "before"
# binary from a git worktree and copy it aside first. The machine is shared and noisy: quote
# medians, and compare only runs of one sitting.
#   deploy/local/bench-ab.sh BEFORE_BIN AFTER_BIN [RUNS] [CONCURRENCY] [ORDERS]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tools.sh
source "$root/deploy/local/tools.sh"
jifen_tools_install
before=$(realpath "$1"); after=$(realpath "$2")
runs=${3:-3}; concurrency=${4:-64}; orders=${5:-5000}
cpu() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
run() {
  local bin=$1 dir dev m0
  dir=$(mktemp -d "${TMPDIR:-/tmp}/jifen-ab.XXXXXX")
  (cd "$dir" && exec "$bin" dev > dev.log 2>&1) &
  dev=$!
  for _ in $(seq 1 120); do grep -q "Load it:" "$dir/dev.log" 2>/dev/null && break; sleep 0.5; done
  local nats n0
  nats=$(pgrep -P "$dev" nats-server | head -1)
  m0=$(cpu $dev); n0=$(cpu "${nats:-0}")
  "$bin" bench --orders "$orders" --concurrency "$concurrency" --user-count 10000 --fail-pct 5 --seed 42 2>/dev/null | grep "^bench:"
  echo "cpu ticks of jifen dev: $(( $(cpu $dev) - m0 )); of its nats-server: $(( $(cpu "${nats:-0}") - n0 ))"
  kill -INT $dev; wait $dev 2>/dev/null || true
  rm -rf "$dir"
}
for _ in $(seq "$runs"); do
  echo "== before ($before)"; run "$before"
  echo "== after ($after)"; run "$after"
done
