#!/usr/bin/env bash
# One benchmark run on a fresh `jifen dev` (SQLite) in a temp folder: builds the release
# binary, starts the mesh, runs `jifen bench`, prints its report and the CPU seconds the mesh
# process and its nats-server used, then stops everything. See docs/performance.md.
#   deploy/local/bench.sh [CONCURRENCY] [ORDERS] [DEV ARGS...]
#   deploy/local/bench.sh 64 5000 --postgres postgres://postgres@127.0.0.1:5432/test
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tools.sh
source "$root/deploy/local/tools.sh"
jifen_rust_check
jifen_tools_install
concurrency=${1:-64}
orders=${2:-5000}
shift $(( $# < 2 ? $# : 2 ))
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/jifen/target}
(cd "$root" && cargo build --release --locked -p jifen-cli >&2)
bin="$CARGO_TARGET_DIR/release/jifen"
dir=$(mktemp -d "${TMPDIR:-/tmp}/jifen-bench.XXXXXX")
cd "$dir"
"$bin" dev "$@" > dev.log 2>&1 &
dev=$!
trap 'kill -INT $dev 2>/dev/null; wait $dev 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 120); do
  grep -q "Load it:" dev.log 2>/dev/null && break
  kill -0 $dev 2>/dev/null || { cat dev.log >&2; exit 1; }
  sleep 0.5
done
cpu() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
nats=$(pgrep -P $dev | head -1)
mesh0=$(cpu $dev); nats0=$(cpu "$nats")
"$bin" bench --orders "$orders" --concurrency "$concurrency" --user-count 10000 --fail-pct 5 --seed 42
ticks=$(getconf CLK_TCK)
echo "cpu: jifen dev $(( ($(cpu $dev) - mesh0) / ticks )) s, nats-server $(( ($(cpu "$nats") - nats0) / ticks )) s"
