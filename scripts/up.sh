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
exec cargo run --release --quiet --bin eshop -- up "$@"
