#!/usr/bin/env bash
# The console in a real browser: starts `jifen dev` on ports of its own, makes one order whose
# deduct is dead-lettered (channel alpha down) and one left pending (beta's connector paused),
# then drives headless Chromium (deploy/local/console-check.mjs): login, the order, its dead
# letter, redrive, completion, a compensation; screenshots into docs/img/ (or $1).
# Needs node >= 20 and Chromium (installed from Debian's `chromium` package when missing and
# this runs as root). Also runs `jifen admin` against the same mall.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=tools.sh
source deploy/local/tools.sh
jifen_rust_check
jifen_tools_install
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/jifen/target}
shots=$(realpath -m "${1:-docs/img}")
mkdir -p "$shots"

chromium=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$chromium" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "console-check: installing chromium (Debian package)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >&2
    chromium=$(command -v chromium)
  else
    echo "console-check: Chromium is missing: install Debian's chromium package" >&2
    exit 2
  fi
fi
command -v node >/dev/null || { echo "console-check: node >= 20 is missing" >&2; exit 2; }

cargo build -q -p jifen-cli
jifen="$CARGO_TARGET_DIR/debug/jifen"
data=$(mktemp -d)
token=console-check-token
mall=127.0.0.1:51051
console=http://127.0.0.1:18080
devtools=19222
cleanup() {
  [ -n "${browser:-}" ] && kill "$browser" 2>/dev/null && wait "$browser" 2>/dev/null || true
  [ -n "${dev:-}" ] && kill "$dev" 2>/dev/null && wait "$dev" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

"$jifen" --metrics-listen 127.0.0.1:19090 dev --data-dir "$data" --nats-port 0 \
  --mall-listen $mall --portal-listen 127.0.0.1:51052 --channel-listen 127.0.0.1:51061 \
  --http-channel-listen 127.0.0.1:51070 --console-listen 127.0.0.1:18080 \
  --admin-token $token --backoff 200ms --max-deliver 3 > "$data/dev.log" 2>&1 &
dev=$!
for _ in $(seq 100); do grep -q "Operator's console" "$data/dev.log" && break; sleep 0.2; done
grep -q "Operator's console" "$data/dev.log" || { cat "$data/dev.log" >&2; exit 1; }

wait_log() { # text
  for _ in $(seq 100); do grep -q "$1" "$data/dev.log" && return 0; sleep 0.1; done
  echo "console-check: jifen dev never said: $1" >&2; exit 1
}
submit() { # order id, channel
  buf curl --protocol grpc --http2-prior-knowledge --schema proto \
    -d "{\"order_id\":\"$1\",\"customer_id\":\"c-1\",\"lines\":[{\"channel_id\":\"$2\",\"user_id\":\"alice\",\"points\":300}]}" \
    "http://$mall/jifen.v1.MallService/SubmitOrder" > /dev/null
}
faults="$data/faults"
# alpha's deduct meets its channel down until its three deliveries run out.
touch "$faults/alpha.paused"; wait_log "connector of alpha is paused"
submit check-redrive alpha
touch "$faults/alpha.down"; wait_log "channel alpha is down"
rm "$faults/alpha.paused"
export JIFEN_ADMIN_TOKEN=$token JIFEN_MALL_ENDPOINT=http://$mall
for _ in $(seq 150); do
  "$jifen" admin dead-letters list --order check-redrive --json | grep -q '"id"' && break; sleep 0.2
done
"$jifen" admin dead-letters list --order check-redrive
rm "$faults/alpha.down"
# beta's connector paused: an order that stays pending, to compensate.
touch "$faults/beta.paused"; wait_log "connector of beta is paused"
submit check-compensate beta
"$jifen" admin orders list --attention

profile="$data/chromium"
"$chromium" --headless=new --no-sandbox --disable-gpu --remote-debugging-port=$devtools \
  --user-data-dir="$profile" about:blank > "$data/chromium.log" 2>&1 &
browser=$!
for _ in $(seq 100); do curl -s "http://127.0.0.1:$devtools/json/version" > /dev/null && break; sleep 0.2; done
node --experimental-websocket --no-warnings deploy/local/console-check.mjs \
  $devtools $console $token check-redrive check-compensate "$shots"
rm "$faults/beta.paused"
"$jifen" admin orders show check-compensate
echo "console-check: screenshots in $shots"
