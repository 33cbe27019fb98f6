#!/usr/bin/env bash
# `eshop up` on the local target: cold (no images, containers, network or
# volume; service binaries already compiled), warm no-op (nothing changed,
# five runs), and the image sizes. Uses its own project name and free ports,
# and removes everything it created at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/docker-setup.sh --registry >/dev/null
cargo build --release --quiet --bin eshop
eshop="${CARGO_TARGET_DIR:-target}/release/eshop"
work="$(mktemp -d)"
project="bench$$"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cat > "$work/eshop.toml" <<TOML
project = "$project"
[build]
source_dir = "$PWD"
[images]
registry = "localhost:5000"
base_image = "${ESHOP_IMAGES_BASE_IMAGE:-eshop-base:local}"
[local]
pricing_port = $(port)
inventory_port = $(port)
[monitoring]
prometheus_image = "${ESHOP_MONITORING_PROMETHEUS_IMAGE:-eshop-prometheus:local}"
grafana_image = ""
prometheus_port = $(port)
TOML
run() { "$eshop" --config "$work/eshop.toml" -q "$@"; }
cleanup() { run destroy --yes --purge-data >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
ms() { date +%s%3N; }

run phase build apply >/dev/null          # binaries compiled: not part of "cold"
run destroy --yes --purge-data >/dev/null
run phase build apply >/dev/null
t0=$(ms); run up >/dev/null; cold=$(( $(ms) - t0 ))
warm=()
for _ in 1 2 3 4 5; do t0=$(ms); run up >/dev/null; warm+=($(( $(ms) - t0 ))); done
sorted=($(printf '%s\n' "${warm[@]}" | sort -n))
echo "eshop up (local target, $(nproc) cores)"
echo "  cold up (2 images built+pushed, network, volumes, 2 service containers, Prometheus image+container, all ready): ${cold} ms"
echo "  warm no-op up, 5 runs: ${warm[*]} ms (median ${sorted[2]} ms; goal ≤ 3000 ms)"
echo "  images (goal ≤ 25 MB):"
docker images --filter "label=eshop/project=$project" --format '{{.Repository}}:{{.Tag}} {{.Size}}' | sed 's/^/    /'
