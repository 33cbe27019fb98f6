#!/usr/bin/env bash
# Runs the shop on this machine as two plain release binaries: inventory on
# 127.0.0.1:8081 (SQLite under ./data) and pricing on 127.0.0.1:8080.
# Ctrl-C stops both (they drain in-flight requests first).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p inventory -p pricing
bin="${CARGO_TARGET_DIR:-target}/release"
"$bin/inventory" & inv=$!
"$bin/pricing" & pr=$!
trap 'kill -TERM $inv $pr 2>/dev/null; wait' INT TERM EXIT
for _ in $(seq 1 100); do
  curl -fs -o /dev/null http://127.0.0.1:8080/readyz && break
  sleep 0.1
done
echo "shop is up: open http://127.0.0.1:8080/  (inventory API: http://127.0.0.1:8081/products)" >&2
wait
