#!/usr/bin/env bash
# The main command: brings the shop up on this machine (`eshop up`, local
# target, embedded defaults), installing and starting Docker first if needed.
# Extra arguments go to `eshop up` (e.g. --output json).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/docker-setup.sh
base="gcr.io/distroless/cc-debian12:nonroot"
if [ -z "${ESHOP_IMAGES_BASE_IMAGE:-}" ] && ! grep -qs '^\s*base_image' eshop.toml \
   && ! docker image inspect "$base" >/dev/null 2>&1 \
   && ! timeout 30 docker pull -q "$base" >/dev/null 2>&1; then
  echo "[up] cannot pull $base (offline?); using the local base image eshop-base:local" >&2
  export ESHOP_IMAGES_BASE_IMAGE=eshop-base:local
fi
# Monitoring images (phase 7): fall back to what this machine can provide.
if [ -z "${ESHOP_MONITORING_PROMETHEUS_IMAGE:-}" ] && ! grep -qs '^\s*prometheus_image' eshop.toml \
   && ! timeout 30 docker pull -q prom/prometheus:v2.53.2 >/dev/null 2>&1; then
  echo "[up] cannot pull prom/prometheus; using eshop-prometheus:local (Debian's prometheus)" >&2
  export ESHOP_MONITORING_PROMETHEUS_IMAGE=eshop-prometheus:local
fi
if [ -z "${ESHOP_MONITORING_GRAFANA_IMAGE:-}" ] && ! grep -qs '^\s*grafana_image' eshop.toml \
   && ! timeout 30 docker pull -q grafana/grafana:11.2.0 >/dev/null 2>&1; then
  echo "[up] cannot pull grafana/grafana and no local substitute exists: Grafana is skipped" >&2
  export ESHOP_MONITORING_GRAFANA_IMAGE=none
fi
# One build of the CLI and the services together, with cargo's progress on
# screen: phase 1 then finds the services compiled (same profile, same
# features: services/workspace-hack) instead of compiling them again.
echo "[up] compiling eshop and the services (release; the first time takes a few minutes)" >&2
cargo build --release --locked --workspace --bins
# The binary itself, not `cargo run --bin eshop`: selecting one package
# would resolve other features and compile much of it again.
exec "${CARGO_TARGET_DIR:-target}/release/eshop" up "$@"
