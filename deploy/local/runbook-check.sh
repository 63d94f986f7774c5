#!/usr/bin/env bash
# Runs the runbook's staging recipes (the ```sh stage blocks of docs/operations.md, in order)
# against a fresh `jifen dev` on ports of its own (below the ephemeral range, so that no
# connection of a test running beside it holds one), so the runbook cannot drift from the product.
# Each recipe checks its own outcome; the first that fails stops the run with the dev log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=tools.sh
source deploy/local/tools.sh
jifen_rust_check
jifen_tools_install
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/jifen/target}
cargo build -q -p jifen-cli
jifen="$CARGO_TARGET_DIR/debug/jifen"
data=$(mktemp -d)
token=runbook-check-token
cleanup() {
  [ -n "${dev:-}" ] && kill "$dev" 2>/dev/null && wait "$dev" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

"$jifen" --metrics-listen 127.0.0.1:0 dev --data-dir "$data" --nats-port 0 \
  --mall-listen 127.0.0.1:22051 --portal-listen 127.0.0.1:22052 --channel-listen 127.0.0.1:22061 \
  --http-channel-listen 127.0.0.1:22070 --console-listen 127.0.0.1:22180 \
  --admin-token $token --backoff 1s,2s --max-deliver 3 --stuck-after 20s > "$data/dev.log" 2>&1 &
dev=$!
for _ in $(seq 150); do grep -q "Operator's console" "$data/dev.log" && break; sleep 0.2; done
grep -q "Operator's console" "$data/dev.log" || { cat "$data/dev.log" >&2; exit 1; }

python3 - docs/operations.md > "$data/recipes.sh" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
print("set -euo pipefail")
for n, block in enumerate(re.findall(r"```sh stage\n(.*?)```", text, re.S)):
    first = block.strip().splitlines()[0]
    print(f'echo "runbook-check: recipe {n}: {first}" >&2')
    print(block)
print('echo "runbook-check: every recipe ran" >&2')
PY
export JIFEN_ADMIN_TOKEN=$token MALL=127.0.0.1:22051 FAULTS="$data/faults"
export PATH="$CARGO_TARGET_DIR/debug:$PATH"
if ! timeout 600 bash "$data/recipes.sh"; then
  echo "runbook-check: a recipe failed; the dev log's end:" >&2
  tail -40 "$data/dev.log" >&2
  exit 1
fi
