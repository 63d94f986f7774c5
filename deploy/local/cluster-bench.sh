#!/usr/bin/env bash
# The cluster figure (issue 20, docs/scaling.md): every system a process of its own on
# PostgreSQL, over a 3-node NATS cluster with R3 streams, REPLICAS copies of the mall and of
# each connector; then the peer workload (`jifen bench`, orders spread over the malls in turn).
# Prints the bench's report, the CPU per settled order of each kind of process, and the
# messages each replica handled (from its /metrics), so that every replica is seen to work.
# Everything runs in a temp folder on ports 24000-29000 (below Linux's ephemeral range) and
# stops at the end; the databases jifen_cb_* are dropped and made again first.
#   deploy/local/cluster-bench.sh [REPLICAS] [ORDERS] [CONCURRENCY]
#   JIFEN_BENCH_POSTGRES=postgres://user@host:5432 (default postgres://postgres@127.0.0.1:5432)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tools.sh
source "$root/deploy/local/tools.sh"
jifen_rust_check
jifen_tools_install
replicas=${1:-1}
orders=${2:-5000}
concurrency=${3:-64}
pg=${JIFEN_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/jifen/target}
(cd "$root" && cargo build --release --locked -p jifen-cli >&2)
bin="$CARGO_TARGET_DIR/release/jifen"
dir=$(mktemp -d "${TMPDIR:-/tmp}/jifen-cluster.XXXXXX")
pids=()
stop() {
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap stop EXIT
# JIFEN_KEEP=1 keeps the folder and its logs.
[[ -n ${JIFEN_KEEP:-} ]] && trap 'for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done; echo "logs: $dir" >&2' EXIT
start() { # NAME ARGS... — a process whose log is $dir/NAME.log
  local name=$1; shift
  "$@" > "$dir/$name.log" 2>&1 &
  pids+=($!)
  echo "$! $name" >> "$dir/processes"
}
wait_for() { # WHAT COMMAND... — retries COMMAND for up to 60 s
  local what=$1; shift
  for _ in $(seq 1 120); do "$@" > /dev/null 2>&1 && return 0; sleep 0.5; done
  echo "cluster-bench: $what did not come up; logs in $dir" >&2
  trap - EXIT; exit 1
}

# Three nats-servers, one cluster, JetStream on each.
routes="nats-route://127.0.0.1:26001,nats-route://127.0.0.1:26002,nats-route://127.0.0.1:26003"
nats_urls="nats://127.0.0.1:24001,nats://127.0.0.1:24002,nats://127.0.0.1:24003"
for n in 1 2 3; do
  cat > "$dir/n$n.conf" <<EOF
server_name: n$n
listen: 127.0.0.1:2400$n
http: 127.0.0.1:2800$n
jetstream { store_dir: "$dir/n$n" }
cluster { name: jifen-bench, listen: 127.0.0.1:2600$n, routes: [ ${routes//,/, } ] }
EOF
  start "nats-$n" nats-server -c "$dir/n$n.conf"
done
for n in 1 2 3; do
  wait_for "nats-server n$n" curl -fsS "http://127.0.0.1:2800$n/healthz"
done

for db in mall portal alpha beta gamma; do
  psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS jifen_cb_$db WITH (FORCE)" 2> /dev/null
  psql "$pg/postgres" -qc "CREATE DATABASE jifen_cb_$db"
done

channels=(alpha beta gamma)
cat > "$dir/channels.json" <<EOF
{"channels": [
  {"channel_id": "alpha", "name": "Alpha points", "endpoint": "http://127.0.0.1:24061", "quota": 1000000000},
  {"channel_id": "beta", "name": "Beta points", "endpoint": "http://127.0.0.1:24062", "quota": 1000000000},
  {"channel_id": "gamma", "name": "Gamma points", "endpoint": "http://127.0.0.1:24063", "quota": 1000000000}
]}
EOF
bus=(--nats-url "$nats_urls" --stream-replicas 3)
start portal "$bin" portal --listen 127.0.0.1:24052 --database-url "$pg/jifen_cb_portal" \
  --channels-file "$dir/channels.json"
for i in 0 1 2; do
  c=${channels[$i]}
  start "channel-$c" "$bin" channel --channel-id "$c" --listen "127.0.0.1:2406$((i + 1))" \
    --database-url "$pg/jifen_cb_$c"
done
port_open() { (: < "/dev/tcp/127.0.0.1/$1") 2> /dev/null; }
for port in 24052 24061 24062 24063; do wait_for "the server at port $port" port_open "$port"; done
malls=()
for r in $(seq 1 "$replicas"); do
  start "portal-connector-$r" "$bin" portal-connector --portal-endpoint http://127.0.0.1:24052 \
    --metrics-listen "127.0.0.1:2520$r" "${bus[@]}"
  for i in 0 1 2; do
    c=${channels[$i]}
    start "connector-$c-$r" "$bin" channel-connector --channel-id "$c" \
      --channel-endpoint "http://127.0.0.1:2406$((i + 1))" \
      --portal-endpoint http://127.0.0.1:24052 --metrics-listen "127.0.0.1:253$i$r" "${bus[@]}"
  done
  start "mall-$r" "$bin" mall --listen "127.0.0.1:2404$r" --database-url "$pg/jifen_cb_mall" \
    --portal-endpoint http://127.0.0.1:24052 --metrics-listen "127.0.0.1:2510$r" "${bus[@]}"
  malls+=("http://127.0.0.1:2404$r")
done
for r in $(seq 1 "$replicas"); do
  wait_for "mall-$r" port_open "2404$r"
done

cpu() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# PostgreSQL's own processes count too when it runs on this machine.
pg_ticks() { local t=0 p; for p in $(pgrep -x postgres); do t=$(( t + $(cpu "$p") )); done; echo "$t"; }
declare -A before
while read -r pid name; do before[$pid]=$(cpu "$pid"); done < "$dir/processes"
pg_before=$(pg_ticks)
mall_list=$(IFS=,; echo "${malls[*]}")
"$bin" bench --mall "$mall_list" --portal http://127.0.0.1:24052 --orders "$orders" \
  --concurrency "$concurrency" --user-count 10000 --fail-pct 5 --seed 42 2> "$dir/bench.err" \
  | tee "$dir/bench.out" || {
  grep -v "^ " "$dir/bench.err" | tail -8 >&2
  for log in "$dir"/*.log; do grep -m3 -iE "error|warn" "$log" | sed "s|^|$(basename "$log"): |" >&2; done
  exit 1
}
settled=$(sed -n 's/^bench:.* completed=\([0-9]*\) cancelled=\([0-9]*\).*/\1 \2/p' "$dir/bench.out" \
  | awk '{print $1 + $2}')
ticks=$(getconf CLK_TCK)
declare -A kind_ms
kind_ms[postgresql]=$(( ($(pg_ticks) - pg_before) * 1000 / ticks ))
while read -r pid name; do
  kind=${name%-[0-9]*}
  [[ $name == nats-* ]] && kind=nats-server
  ms=$(( ($(cpu "$pid") - ${before[$pid]}) * 1000 / ticks ))
  kind_ms[$kind]=$(( ${kind_ms[$kind]:-0} + ms ))
done < "$dir/processes"
echo "cpu per settled order (${settled:-0}), by kind of process (all replicas):"
total=0
for kind in $(printf '%s\n' "${!kind_ms[@]}" | sort); do
  total=$(( total + kind_ms[$kind] ))
  awk -v k="$kind" -v ms="${kind_ms[$kind]}" -v n="${settled:-0}" \
    'BEGIN { if (n > 0) printf "  %-22s %.2f ms\n", k, ms / n }'
done
awk -v ms="$total" -v n="${settled:-0}" 'BEGIN { if (n > 0) printf "  %-22s %.2f ms\n", "all", ms / n }'
echo "messages handled per replica (jifen_messages_handled_total, from /metrics):"
for port in $(seq 1 "$replicas" | sed 's/^/2510/'; seq 1 "$replicas" | sed 's/^/2520/'; \
    for i in 0 1 2; do seq 1 "$replicas" | sed "s/^/253$i/"; done); do
  if metrics=$(curl -fsS "http://127.0.0.1:$port/metrics" 2> /dev/null); then
    handled=$(awk '/^jifen_messages_handled_total/ { n += $NF } END { printf "%d", n }' <<< "$metrics")
  else
    handled="no answer"
  fi
  echo "  127.0.0.1:$port $handled"
done
