#!/usr/bin/env bash
# Runs the shop on this machine as plain release binaries (SQLite under
# ./data), without eshop: users on 127.0.0.1:8082, inventory on :8081 and
# payments on :8083 (both check tokens with users' keys), pricing on :8080,
# orders on :8084 (signed in to users as the service client `orders`, its
# secret made once in data/clients/orders, 0600), and the storefront on
# :8085 in front of them. ADMIN_EMAILS (default
# admin@shop.test) names who is an admin once signed up. Ctrl-C stops all
# (they drain in-flight requests first).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p users -p inventory -p pricing -p payments -p orders -p storefront
bin="${CARGO_TARGET_DIR:-target}/release"
wait_ready() {
  for _ in $(seq 1 100); do
    curl -fs -o /dev/null "$1/readyz" && return
    sleep 0.1
  done
  echo "shop.sh: $1 did not become ready" >&2
  exit 1
}
mkdir -p data/clients
if [ ! -s data/clients/orders ]; then
  (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '\n' >data/clients/orders)
fi
ADMIN_EMAILS="${ADMIN_EMAILS:-admin@shop.test}" SERVICE_CLIENTS_DIR=data/clients "$bin/users" & usr=$!
wait_ready http://127.0.0.1:8082
export USERS_URL=http://127.0.0.1:8082
"$bin/inventory" & inv=$!
"$bin/payments" & pay=$!
"$bin/pricing" & pr=$!
SERVICE_SECRET_FILE=data/clients/orders "$bin/orders" & ord=$!
"$bin/storefront" & sf=$!
trap 'kill -TERM $usr $inv $pay $pr $ord $sf 2>/dev/null; wait' INT TERM EXIT
wait_ready http://127.0.0.1:8085
echo "shop is up: open http://127.0.0.1:8085/  (API: http://127.0.0.1:8085/api/<service>/…; price calculator: http://127.0.0.1:8085/api/pricing/)" >&2
wait
