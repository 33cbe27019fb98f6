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
# Two builds at once: the CLI in its own unoptimised profile (Cargo.toml,
# [profile.cli]: it only waits on Docker and the network) in the
# foreground with cargo's progress, and the services, optimised, as phase 1
# builds them, in the background at the lowest priority: they take only
# the core the CLI leaves idle (most of its last minutes go to one long
# compile unit, aws-sdk-ec2), so they never slow it down (measured: at
# equal priority both builds took longer than one after the other).
# Cargo builds one thing at a time per target directory, so the CLI gets
# its own. Phase 1 then finds the services compiled (or waits for the rest).
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target"
echo "[up] compiling the services in the background (log: $target/services-build.log)" >&2
nice -n 19 cargo build --release --locked --workspace --exclude eshop >"$target/services-build.log" 2>&1 &
echo "[up] compiling the eshop CLI (about 5 minutes the first time)" >&2
CARGO_TARGET_DIR="$target/cli-build" cargo build --profile cli --locked -p eshop --bin eshop
exec "$target/cli-build/cli/eshop" up "$@"
