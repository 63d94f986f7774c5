#!/usr/bin/env bash
# One benchmark run on a fresh `jifen dev` (SQLite) in a temp folder: builds the release
# binary, starts the mesh, runs `jifen bench`, prints its report and the CPU the mesh process,
# its nats-server and the bench used — in seconds and per settled order (completed + cancelled)
# — then stops everything. See docs/performance.md.
#   deploy/local/bench.sh [CONCURRENCY] [ORDERS] [DEV ARGS...]
#   deploy/local/bench.sh 64 5000 --postgres postgres://postgres@127.0.0.1:5432/test
# On PostgreSQL the `jifen dev` databases (jifen_*) persist, and a rerun meets the users the
# last one drained: JIFEN_BENCH_FRESH_DB=1 drops them first (with psql). The CPU of the
# PostgreSQL server's processes is reported when it runs on this machine.
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
postgres=""
for (( i = 1; i <= $#; i++ )); do
  case ${!i} in
    --postgres) j=$(( i + 1 )); postgres=${!j:-} ;;
    --postgres=*) postgres=${!i#--postgres=} ;;
  esac
done
if [[ -n $postgres && -n ${JIFEN_BENCH_FRESH_DB:-} ]]; then
  for db in $(psql "$postgres" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'jifen\_%'"); do
    echo "bench.sh: dropping database $db (JIFEN_BENCH_FRESH_DB)" >&2
    psql "$postgres" -qc "DROP DATABASE \"$db\" WITH (FORCE)"
  done
fi
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
# PostgreSQL's own processes, when the server runs here (zero otherwise).
pg_ticks() { local t=0 p; for p in $(pgrep -x postgres); do t=$(( t + $(cpu "$p") )); done; echo "$t"; }
pg0=$(pg_ticks)
TIMEFORMAT='%3U %3S'
# The bench's own CPU (user, system) from bash's `time`; its output to the terminal as usual.
{ time "$bin" bench --orders "$orders" --concurrency "$concurrency" --user-count 10000 \
    --fail-pct 5 --seed 42 2>&3 | tee "$dir/bench.out" ; } 3>&2 2> "$dir/bench.time"
ticks=$(getconf CLK_TCK)
mesh_ms=$(( ($(cpu $dev) - mesh0) * 1000 / ticks ))
nats_ms=$(( ($(cpu "$nats") - nats0) * 1000 / ticks ))
pg_ms=$(( ($(pg_ticks) - pg0) * 1000 / ticks ))
bench_ms=$(awk '{printf "%d", ($1 + $2) * 1000}' "$dir/bench.time")
settled=$(sed -n 's/^bench:.* completed=\([0-9]*\) cancelled=\([0-9]*\).*/\1 \2/p' "$dir/bench.out" | awk '{print $1 + $2}')
per() { awk -v ms="$1" -v n="${settled:-0}" 'BEGIN { if (n > 0) printf "%.2f ms", ms / n; else printf "n/a" }'; }
echo "cpu: jifen dev $(( mesh_ms / 1000 )) s, nats-server $(( nats_ms / 1000 )) s, bench $(( bench_ms / 1000 )) s"
echo "cpu per settled order (${settled:-0}): jifen dev $(per $mesh_ms), nats-server $(per $nats_ms), mesh + nats-server $(per $(( mesh_ms + nats_ms ))), bench $(per $bench_ms)"
if [[ -n $postgres && $pg_ms -gt 0 ]]; then
  echo "cpu per settled order of the local PostgreSQL server's processes: $(per $pg_ms)"
fi
