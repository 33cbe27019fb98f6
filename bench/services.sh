#!/usr/bin/env bash
# Service benchmark: starts the services in release mode and measures, with
# one load tool (wrk) on this machine, in one run:
#   ceiling   a bare axum hello-world (services/kit/examples/hello.rs)
#   price     GET /products/{id}/price on inventory (SQLite)
#   calc      GET /calculate_price on pricing (pricing → inventory hop)
#   calc+otlp the same with both services exporting a span per request
#             over OTLP to a do-nothing receiver (services/kit/examples/otlp_sink.rs)
#   hold      POST /reservations on inventory (SQLite): one transaction
#             holding a unit, with a bearer token checked per request
#   charge    POST /wallets/{id}/charges on payments (SQLite): one durable
#             transaction with its ledger entries and idempotency record,
#             a fresh Idempotency-Key per request
#   login     POST /tokens on users: one argon2id verification (19 MiB,
#             2 passes) and an Ed25519 signature; slow by design
# and prints req/s, p50, p99, the ratio to the ceiling, idle RSS and
# start-to-ready time per service. Load is loopback only and bounded:
# DURATION seconds per target, CONNECTIONS connections.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
WRK_THREADS="${WRK_THREADS:-1}"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk missing: run scripts/test-setup.sh (installs it)" >&2; exit 1; }
cargo build --release --quiet -p users -p inventory -p payments -p pricing
cargo build --release --quiet -p kit --example hello --example otlp_sink
bin="${CARGO_TARGET_DIR:-target}/release"

now_ms() { date +%s%3N; }
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }

# start NAME URL-TO-WAIT-FOR CMD... ; sets $started_pid and $ready_ms
start() {
  local name="$1" url="$2"; shift 2
  local t0; t0=$(now_ms)
  "$@" >"$work/$name.log" 2>&1 &
  started_pid=$!; pids+=("$started_pid")
  for _ in $(seq 1 2000); do
    if curl -fs -o /dev/null "$url"; then ready_ms=$(( $(now_ms) - t0 )); return; fi
    sleep 0.002
  done
  echo "$name did not become ready; log:" >&2; cat "$work/$name.log" >&2; exit 1
}

LISTEN_ADDR=127.0.0.1:18089 start hello http://127.0.0.1:18089/ "$bin/examples/hello"
hello_pid=$started_pid
# users for the tokens: the bench account is an admin; the per-address
# login limit is lifted so the login figure measures the hashing.
LISTEN_ADDR=127.0.0.1:18084 DATA_DIR="$work/users" LOG_LEVEL="${LOG_LEVEL:-info}" \
  ADMIN_EMAILS=bench@example.com LOGIN_MAX_ATTEMPTS_PER_ADDRESS=100000 \
  start users http://127.0.0.1:18084/readyz "$bin/users"
users_pid=$started_pid
creds='{"email":"bench@example.com","password":"bench password 1"}'
curl -fs -o /dev/null -X POST http://127.0.0.1:18084/users -H 'content-type: application/json' -d "$creds"
TOKEN=$(curl -fs -X POST http://127.0.0.1:18084/tokens -H 'content-type: application/json' -d "$creds" \
  | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
export TOKEN
export USERS_URL=http://127.0.0.1:18084
LISTEN_ADDR=127.0.0.1:18081 DATA_DIR="$work/data" LOG_LEVEL="${LOG_LEVEL:-info}" \
  start inventory http://127.0.0.1:18081/readyz "$bin/inventory"
inv_pid=$started_pid; inv_ready=$ready_ms
LISTEN_ADDR=127.0.0.1:18080 INVENTORY_URL=http://127.0.0.1:18081 LOG_LEVEL="${LOG_LEVEL:-info}" \
  start pricing http://127.0.0.1:18080/readyz "$bin/pricing"
pr_pid=$started_pid; pr_ready=$ready_ms
sleep 0.5
inv_idle=$(rss_kb "$inv_pid"); pr_idle=$(rss_kb "$pr_pid")

curl -fs -o /dev/null -X POST http://127.0.0.1:18081/products -H 'content-type: application/json' \
  -H "authorization: Bearer $TOKEN" \
  -d '{"id":"SKU-1","name":"Green tea","unit_price_minor":1999,"currency":"EUR","quantity":1000}'
curl -fs -o /dev/null -X POST http://127.0.0.1:18081/products -H 'content-type: application/json' \
  -H "authorization: Bearer $TOKEN" \
  -d '{"id":"SKU-H","name":"Held","unit_price_minor":100,"currency":"EUR","quantity":1000000000}'
# POST bodies for wrk (the token from the environment, never in a file).
cat >"$work/hold.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"items":[{"product_id":"SKU-H","quantity":1}],"ttl_secs":3600}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
LUA
# The wallet must outlast DURATION seconds of 1-cent charges at any speed.
LISTEN_ADDR=127.0.0.1:18085 DATA_DIR="$work/payments" LOG_LEVEL="${LOG_LEVEL:-info}" \
  MAX_TOP_UP_MINOR=1000000000000 start payments http://127.0.0.1:18085/readyz "$bin/payments"
pay_pid=$started_pid
WALLET=$(curl -fs http://127.0.0.1:18084/me -H "authorization: Bearer $TOKEN" | sed -E 's/.*"id":"([^"]+)".*/\1/')
curl -fs -o /dev/null -X POST "http://127.0.0.1:18085/wallets/$WALLET/top-ups" -H 'content-type: application/json' \
  -H "authorization: Bearer $TOKEN" -H 'idempotency-key: bench-top-up' -d '{"amount_minor":1000000000000,"currency":"EUR"}'
cat >"$work/charge.lua" <<'LUA'
local n = 0
local token = os.getenv("TOKEN")
request = function()
  n = n + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
    ["Idempotency-Key"] = "bench-" .. n .. "-" .. math.random(1000000000),
  }, '{"amount_minor":1,"currency":"EUR","reference":"bench"}')
end
LUA
cat >"$work/login.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"email":"bench@example.com","password":"bench password 1"}'
wrk.headers["Content-Type"] = "application/json"
LUA

# run NAME URL [wrk args…] → prints "req/s p50 p99"
run() {
  local name="$1" url="$2"; shift 2
  local out; out=$(wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" "$url" 2>&1)
  echo "$out" > "$work/wrk-$name.txt"
  if grep -q "Non-2xx" <<<"$out"; then echo "$name: non-2xx responses:" >&2; echo "$out" >&2; exit 1; fi
  local rps p50 p99
  rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
  p50=$(awk '$1=="50%"{print $2}' <<<"$out")
  p99=$(awk '$1=="99%"{print $2}' <<<"$out")
  echo "$rps $p50 $p99"
}

read -r c_rps c_p50 c_p99 < <(run ceiling http://127.0.0.1:18089/)
read -r p_rps p_p50 p_p99 < <(run price http://127.0.0.1:18081/products/SKU-1/price)
read -r k_rps k_p50 k_p99 < <(run calc "http://127.0.0.1:18080/calculate_price?product_id=SKU-1&quantity=3")
read -r h_rps h_p50 h_p99 < <(run hold http://127.0.0.1:18081/reservations -s "$work/hold.lua")
read -r g_rps g_p50 g_p99 < <(run charge "http://127.0.0.1:18085/wallets/$WALLET/charges" -s "$work/charge.lua")
read -r l_rps l_p50 l_p99 < <(run login http://127.0.0.1:18084/tokens -s "$work/login.lua")
inv_loaded=$(rss_kb "$inv_pid"); pr_loaded=$(rss_kb "$pr_pid"); users_loaded=$(rss_kb "$users_pid"); pay_loaded=$(rss_kb "$pay_pid")
kill "$pr_pid" "$inv_pid"

# The same pair again, now exporting traces (its own ports and data).
LISTEN_ADDR=127.0.0.1:18318 start sink http://127.0.0.1:18318/stats "$bin/examples/otlp_sink"
sink_pid=$started_pid
export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:18318
LISTEN_ADDR=127.0.0.1:18083 DATA_DIR="$work/data-otlp" LOG_LEVEL="${LOG_LEVEL:-info}" \
  start inventory-otlp http://127.0.0.1:18083/readyz "$bin/inventory"
LISTEN_ADDR=127.0.0.1:18082 INVENTORY_URL=http://127.0.0.1:18083 LOG_LEVEL="${LOG_LEVEL:-info}" \
  start pricing-otlp http://127.0.0.1:18082/readyz "$bin/pricing"
unset OTEL_EXPORTER_OTLP_ENDPOINT
curl -fs -o /dev/null -X POST http://127.0.0.1:18083/products -H 'content-type: application/json' \
  -H "authorization: Bearer $TOKEN" \
  -d '{"id":"SKU-1","name":"Green tea","unit_price_minor":1999,"currency":"EUR","quantity":1000}'
read -r t_rps t_p50 t_p99 < <(run calc-otlp "http://127.0.0.1:18082/calculate_price?product_id=SKU-1&quantity=3")
sleep 1.2 # one flush interval and then some: the last batches arrive
# metric PORT NAME → the value on that service's /metrics
metric() { curl -fs "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1==n{print $2}'; }
sent=0; dropped=0; failed=0
for port in 18082 18083; do
  sent=$(( sent + $(metric $port otlp_spans_exported_total) ))
  dropped=$(( dropped + $(metric $port otlp_spans_dropped_total) ))
  failed=$(( failed + $(metric $port otlp_spans_failed_total) ))
done
read -r sink_reqs sink_bytes < <(curl -fs http://127.0.0.1:18318/stats)
served=$(awk '/requests in/{print $1}' "$work/wrk-calc-otlp.txt")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.0f%%", 100*a/b}'; }
echo
echo "eshop services benchmark — wrk -t$WRK_THREADS -c$CONNECTIONS -d${DURATION}s, $(nproc) cores, log level ${LOG_LEVEL:-info}"
printf '%-34s %10s %9s %9s %9s\n' target "req/s" p50 p99 "vs ceil"
printf '%-34s %10.0f %9s %9s %9s\n' "ceiling: axum hello-world" "$c_rps" "$c_p50" "$c_p99" "100%"
printf '%-34s %10.0f %9s %9s %9s\n' "inventory GET price (SQLite)" "$p_rps" "$p_p50" "$p_p99" "$(ratio "$p_rps" "$c_rps")"
printf '%-34s %10.0f %9s %9s %9s\n' "pricing calculate_price (→ inv)" "$k_rps" "$k_p50" "$k_p99" "$(ratio "$k_rps" "$c_rps")"
printf '%-34s %10.0f %9s %9s %9s\n' "  the same, exporting traces" "$t_rps" "$t_p50" "$t_p99" "$(ratio "$t_rps" "$c_rps")"
printf '%-34s %10.0f %9s %9s %9s\n' "inventory POST hold (SQLite)" "$h_rps" "$h_p50" "$h_p99" "$(ratio "$h_rps" "$c_rps")"
printf '%-34s %10.0f %9s %9s %9s\n' "payments POST charge (SQLite)" "$g_rps" "$g_p50" "$g_p99" "$(ratio "$g_rps" "$c_rps")"
printf '%-34s %10.1f %9s %9s %9s\n' "users POST login (argon2id)" "$l_rps" "$l_p50" "$l_p99" "$(ratio "$l_rps" "$c_rps")"
echo
echo "traces: $served calculate_price answered → $sent spans accepted by the receiver in $sink_reqs exports ($(( sink_bytes / 1024 )) KiB), $dropped dropped, $failed refused; throughput with export $(ratio "$t_rps" "$k_rps") of without"
echo
printf '%-10s %14s %14s %16s\n' service "idle RSS" "RSS after load" "start→ready"
printf '%-10s %11.1f MB %11.1f MB %13d ms\n' inventory "$(awk -v k="$inv_idle" 'BEGIN{print k/1024}')" "$(awk -v k="$inv_loaded" 'BEGIN{print k/1024}')" "$inv_ready"
printf '%-10s %11.1f MB %11.1f MB %13d ms\n' pricing "$(awk -v k="$pr_idle" 'BEGIN{print k/1024}')" "$(awk -v k="$pr_loaded" 'BEGIN{print k/1024}')" "$pr_ready"
printf '%-10s %14s %11.1f MB %16s\n' users "" "$(awk -v k="$users_loaded" 'BEGIN{print k/1024}')" ""
printf '%-10s %14s %11.1f MB %16s\n' payments "" "$(awk -v k="$pay_loaded" 'BEGIN{print k/1024}')" ""
echo
echo "login: $(awk -v r="$l_rps" -v n="$(nproc)" 'BEGIN{printf "%.0f ms of CPU per login (%.1f logins/s on %d cores)", 1000*n/r, r, n}'); the limits refuse a 6th wrong password per account and a 31st attempt per address per 5 minutes before hashing"
echo "goals: price ≥ 60% of ceiling, calculate_price ≥ 35%, hold ≥ 15%, charge ≥ 10%, p99 ≤ 20 ms at 32 connections, idle RSS ≤ 10 MB, start→ready ≤ 200 ms"
