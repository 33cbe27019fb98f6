#!/usr/bin/env bash
# Checkout benchmark: starts users, inventory, pricing, payments and orders
# in release mode (SQLite each), and measures complete checkouts (hold →
# quote → charge → commit, with their saga state written at every step)
# with services/orders/examples/checkout_load.rs: CONNECTIONS customers,
# each with its own cart and wallet, put one unit in the cart and check
# out for DURATION seconds. In the same run, a bare axum hello-world under
# wrk gives the ceiling the figure is a ratio of. Loopback only, bounded
# in time.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk missing: run scripts/test-setup.sh (installs it)" >&2; exit 1; }
cargo build --release --quiet -p users -p inventory -p pricing -p payments -p orders
cargo build --release --quiet -p kit --example hello
cargo build --release --quiet -p orders --example checkout_load
bin="${CARGO_TARGET_DIR:-target}/release"

start() { # start NAME URL CMD... (waits until URL answers)
  local name="$1" url="$2"; shift 2
  "$@" >"$work/$name.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 2000); do
    curl -fs -o /dev/null "$url" && return
    sleep 0.005
  done
  echo "$name did not become ready; log:" >&2; cat "$work/$name.log" >&2; exit 1
}

secret="the orders service's bench secret, long enough"
mkdir -p "$work/clients" && printf '%s' "$secret" >"$work/clients/orders" && printf '%s' "$secret" >"$work/orders-secret"
export LOG_LEVEL="${LOG_LEVEL:-info}"
LISTEN_ADDR=127.0.0.1:18389 start hello http://127.0.0.1:18389/ "$bin/examples/hello"
LISTEN_ADDR=127.0.0.1:18382 DATA_DIR="$work/users" ADMIN_EMAILS=admin@example.com \
  SERVICE_CLIENTS_DIR="$work/clients" LOGIN_MAX_ATTEMPTS_PER_ADDRESS=100000 \
  start users http://127.0.0.1:18382/readyz "$bin/users"
export USERS_URL=http://127.0.0.1:18382
LISTEN_ADDR=127.0.0.1:18381 DATA_DIR="$work/inventory" start inventory http://127.0.0.1:18381/readyz "$bin/inventory"
LISTEN_ADDR=127.0.0.1:18380 DATA_DIR="$work/pricing" INVENTORY_URL=http://127.0.0.1:18381 \
  start pricing http://127.0.0.1:18380/readyz "$bin/pricing"
LISTEN_ADDR=127.0.0.1:18383 DATA_DIR="$work/payments" MAX_TOP_UP_MINOR=1000000000000 \
  start payments http://127.0.0.1:18383/readyz "$bin/payments"
LISTEN_ADDR=127.0.0.1:18384 DATA_DIR="$work/orders" SERVICE_SECRET_FILE="$work/orders-secret" \
  INVENTORY_URL=http://127.0.0.1:18381 PRICING_URL=http://127.0.0.1:18380 PAYMENTS_URL=http://127.0.0.1:18383 \
  start orders http://127.0.0.1:18384/readyz "$bin/orders"

admin='{"email":"admin@example.com","password":"bench password 1"}'
curl -fs -o /dev/null -X POST "$USERS_URL/users" -H 'content-type: application/json' -d "$admin"
token=$(curl -fs -X POST "$USERS_URL/tokens" -H 'content-type: application/json' -d "$admin" \
  | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
curl -fs -o /dev/null -X POST http://127.0.0.1:18381/products -H 'content-type: application/json' \
  -H "authorization: Bearer $token" \
  -d '{"id":"SKU-H","name":"Bench tea","unit_price_minor":100,"currency":"EUR","quantity":1000000000}'

ceiling=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" http://127.0.0.1:18389/ | awk '/^Requests\/sec:/{print $2}')
read -r cps p50 p99 failures < <(USERS_URL="$USERS_URL" PAYMENTS_URL=http://127.0.0.1:18383 \
  ORDERS_URL=http://127.0.0.1:18384 PRODUCT=SKU-H DURATION="$DURATION" CONNECTIONS="$CONNECTIONS" \
  "$bin/examples/checkout_load")
orders_rss=$(awk '/^VmRSS:/{print $2}' "/proc/${pids[-1]}/status")

echo
echo "eshop checkout benchmark — $CONNECTIONS customers, ${DURATION}s, 2 cores, log level $LOG_LEVEL"
printf '%-36s %10s %9s %9s %9s\n' target "req/s" "p50" "p99" "vs ceil"
printf '%-36s %10.0f %9s %9s %9s\n' "ceiling: axum hello-world" "$ceiling" "" "" "100%"
printf '%-36s %10.0f %8.1fms %8.1fms %8.1f%%\n' "checkouts (hold,quote,charge,commit)" "$cps" "$p50" "$p99" \
  "$(awk -v a="$cps" -v b="$ceiling" 'BEGIN{print 100*a/b}')"
echo "failed checkouts: $failures; orders RSS after load: $((orders_rss / 1024)) MB"
echo "per checkout: orders → inventory (hold), pricing (quote; pricing → inventory per line), payments (charge), inventory (commit): 5 hops for one line, 6 with the storefront in front"
echo "goal: ≥ 1000 checkouts/s, p99 ≤ 50 ms"
