#!/usr/bin/env bash
# Runs the shop on this machine as plain release binaries (SQLite under
# ./data): users on 127.0.0.1:8082, inventory on :8081 (it checks admin
# tokens with users' keys), pricing on :8080. ADMIN_EMAILS (default
# admin@shop.test) names who is an admin once signed up. Ctrl-C stops all
# (they drain in-flight requests first).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p users -p inventory -p pricing
bin="${CARGO_TARGET_DIR:-target}/release"
ADMIN_EMAILS="${ADMIN_EMAILS:-admin@shop.test}" "$bin/users" & usr=$!
for _ in $(seq 1 100); do
  curl -fs -o /dev/null http://127.0.0.1:8082/readyz && break
  sleep 0.1
done
USERS_URL=http://127.0.0.1:8082 "$bin/inventory" & inv=$!
"$bin/pricing" & pr=$!
trap 'kill -TERM $usr $inv $pr 2>/dev/null; wait' INT TERM EXIT
for _ in $(seq 1 100); do
  curl -fs -o /dev/null http://127.0.0.1:8080/readyz && break
  sleep 0.1
done
echo "shop is up: open http://127.0.0.1:8080/  (inventory API: http://127.0.0.1:8081/products, accounts: http://127.0.0.1:8082)" >&2
wait
