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
mall=127.0.0.1:21051
console=http://127.0.0.1:18080
devtools=19222
cleanup() {
  [ -n "${browser:-}" ] && kill "$browser" 2>/dev/null && wait "$browser" 2>/dev/null || true
  [ -n "${dev:-}" ] && kill "$dev" 2>/dev/null && wait "$dev" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

"$jifen" --metrics-listen 127.0.0.1:19090 dev --data-dir "$data" --nats-port 0 \
  --mall-listen $mall --portal-listen 127.0.0.1:21052 --channel-listen 127.0.0.1:21061 \
  --http-channel-listen 127.0.0.1:21070 --console-listen 127.0.0.1:18080 \
  --admin-token $token --backoff 200ms --max-deliver 3 > "$data/dev.log" 2>&1 &
dev=$!
for _ in $(seq 100); do grep -q "Operator's console" "$data/dev.log" && break; sleep 0.2; done
grep -q "Operator's console" "$data/dev.log" || { cat "$data/dev.log" >&2; exit 1; }

switch() { # touch|rm, fault file, text: flips a fault and waits until jifen dev says the text
  local before; before=$(grep -c "$3" "$data/dev.log" || true)
  "$1" "$faults/$2"
  for _ in $(seq 100); do
    [ "$(grep -c "$3" "$data/dev.log" || true)" -gt "$before" ] && return 0; sleep 0.1
  done
  echo "console-check: jifen dev never said: $3" >&2; exit 1
}
submit() { # order id, channel
  buf curl --protocol grpc --http2-prior-knowledge --schema proto \
    -d "{\"order_id\":\"$1\",\"customer_id\":\"c-1\",\"lines\":[{\"channel_id\":\"$2\",\"user_id\":\"alice\",\"points\":300}]}" \
    "http://$mall/jifen.v1.MallService/SubmitOrder" > /dev/null
}
faults="$data/faults"
export JIFEN_ADMIN_TOKEN=$token JIFEN_MALL_ENDPOINT=http://$mall
# The browser redrives alpha's first dead letter by hand: the mall must not do it first.
"$jifen" admin channels auto-redrive alpha off --note "console check: this one is redriven by hand"
# alpha's deduct meets its channel down until its three deliveries run out.
switch touch alpha.paused "connector of alpha is paused"
submit check-redrive alpha
switch touch alpha.down "channel alpha is down"
rm "$faults/alpha.paused"
for _ in $(seq 150); do
  "$jifen" admin dead-letters list --order check-redrive --json | grep -q '"id"' && break; sleep 0.2
done
"$jifen" admin dead-letters list --order check-redrive
rm "$faults/alpha.down"
# beta's connector paused: an order that stays pending, to compensate.
switch touch beta.paused "connector of beta is paused"
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

check() { # what, command…: the command must succeed
  local what=$1; shift
  "$@" || { echo "console-check: $what failed" >&2; tail -50 "$data/dev.log" >&2; exit 1; }
}
eventually() { # what, command…: the command succeeds within 60 s
  local what=$1; shift
  for _ in $(seq 300); do "$@" > /dev/null 2>&1 && return 0; sleep 0.2; done
  echo "console-check: $what never happened" >&2; tail -50 "$data/dev.log" >&2; exit 1
}
channel_field() { # channel, field: the field's value in `jifen admin channels list --json`
  "$jifen" admin channels list --json | python3 -c \
    'import json, sys; print({c["channel_id"]: c for c in json.load(sys.stdin)}[sys.argv[1]][sys.argv[2]])' "$1" "$2"
}
health_is() { # channel, health
  [ "$(channel_field "$1" health)" = "$2" ]
}
answering() { # channel
  [ "$(channel_field "$1" answering_since_unix_ms)" != 0 ]
}

# A partner outage from start to recovery, with nobody acting: health goes down, the dead
# letter waits, health comes back, the mall redrives it after 10 s of answers.
check "automatic redrive on" "$jifen" admin channels auto-redrive alpha on --note "console check: back to the default"
switch touch alpha.paused "connector of alpha is paused"
submit check-auto alpha
touch "$faults/alpha.down"
rm "$faults/alpha.paused"
eventually "alpha down" health_is alpha down
eventually "a dead letter of check-auto" sh -c "'$jifen' admin dead-letters list --order check-auto --json | grep -q '\"id\"'"
"$jifen" admin channels list || true
rm "$faults/alpha.down"
eventually "alpha answering again" answering alpha
eventually "check-auto completed by the automatic redrive" sh -c "'$jifen' admin orders show check-auto --json | grep -q auto-redrive"
"$jifen" admin orders show check-auto

# A pause refuses new orders with its note, and ends.
check "pause" "$jifen" admin channels pause alpha --for 10m --note "console check maintenance MNT-1"
if out=$(submit check-paused alpha 2>&1); then
  echo "console-check: an order for a paused channel was taken" >&2; exit 1
fi
check "resume" "$jifen" admin channels resume alpha --note "console check: maintenance over"
eventually "an order after the pause" submit check-resumed alpha

# A statement with one planted difference of each kind is reported exactly (exit status 1).
day=$(date -u +%F)
cat > "$data/alpha-statement.csv" <<CSV
order_id,user_id,points,state
check-resumed,alice,300,DEDUCTED
check-auto,alice,301,DEDUCTED
check-redrive,alice,300,DEDUCTED
check-redrive,alice,300,REFUNDED
not-jifens,alice,5,DEDUCTED
CSV
set +e
"$jifen" admin reconcile-statement --channel alpha --date "$day" "$data/alpha-statement.csv" > "$data/statement.txt"
status=$?
set -e
cat "$data/statement.txt"
[ "$status" = 1 ] || { echo "console-check: reconcile-statement exited $status, not 1" >&2; exit 1; }
for kind in amount_differs state_differs statement_only; do
  grep -q "^$kind" "$data/statement.txt" || { echo "console-check: no $kind in the report" >&2; exit 1; }
done
node --experimental-websocket --no-warnings deploy/local/console-check.mjs \
  $devtools $console $token --pages - "$shots"
echo "console-check: screenshots in $shots"
