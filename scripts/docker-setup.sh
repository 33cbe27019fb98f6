#!/usr/bin/env bash
# Makes Docker usable for eshop's local target, idempotently:
#   - installs Debian's docker.io (and docker-registry for the tests) if missing
#   - starts dockerd if no daemon answers (no systemd needed)
#   - with --registry: starts a registry on 127.0.0.1:5000 if none answers
#   - builds the local base image eshop-base:local (glibc + CA certificates +
#     a non-root user, from this machine's own files) if it is absent
#   - builds eshop-prometheus:local (Debian's prometheus on that base) if absent.
# Machines without internet cannot pull the default distroless base; the
# local base is the offline stand-in (point images.base_image at it).
set -euo pipefail
tools="${ESHOP_TOOLS_DIR:-$HOME/.cache/eshop-test-tools}"
mkdir -p "$tools"
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
log() { printf '[docker-setup] %s\n' "$*" >&2; }
want_registry=0; [ "${1:-}" = "--registry" ] && want_registry=1

pkgs=(docker.io prometheus)
[ "$want_registry" = 1 ] && pkgs+=(docker-registry)
ensure_packages "${pkgs[@]}"

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  $SUDO sh -c "setsid nohup dockerd >'$tools/dockerd.log' 2>&1 &"
  for _ in $(seq 1 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
  docker info >/dev/null 2>&1 || { log "dockerd did not start; see $tools/dockerd.log"; exit 1; }
fi

if [ "$want_registry" = 1 ] && ! curl -fs -o /dev/null http://127.0.0.1:5000/v2/; then
  log "starting a registry on 127.0.0.1:5000"
  mkdir -p "$tools/registry"
  cat > "$tools/registry/config.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $tools/registry/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
YML
  setsid nohup docker-registry serve "$tools/registry/config.yml" >"$tools/registry/log" 2>&1 &
  for _ in $(seq 1 50); do curl -fs -o /dev/null http://127.0.0.1:5000/v2/ && break; sleep 0.2; done
  curl -fs -o /dev/null http://127.0.0.1:5000/v2/ || { log "registry did not start; see $tools/registry/log"; exit 1; }
fi

if ! docker image inspect eshop-base:local >/dev/null 2>&1; then
  log "building the local base image eshop-base:local"
  root="$(mktemp -d)"
  trap 'rm -rf "$root"' EXIT
  mkdir -p "$root"/{lib/x86_64-linux-gnu,lib64,etc/ssl/certs,tmp}
  for lib in libc.so.6 libm.so.6 libgcc_s.so.1; do
    cp -L "/lib/x86_64-linux-gnu/$lib" "$root/lib/x86_64-linux-gnu/"
  done
  cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  fi
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$root/etc/group"
  chmod 1777 "$root/tmp"
  tar --numeric-owner --owner=0 --group=0 -C "$root" -c . \
    | docker import -m "eshop local base: glibc + CA certificates, non-root user 65532" - eshop-base:local >/dev/null
fi
if ! docker image inspect eshop-prometheus:local >/dev/null 2>&1; then
  log "building eshop-prometheus:local from Debian's prometheus"
  ctx="$(mktemp -d)"
  cp /usr/bin/prometheus "$ctx/prometheus"
  mkdir -p "$ctx/rootfs/prometheus" "$ctx/rootfs/etc/prometheus"
  cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM eshop-base:local
COPY prometheus /bin/prometheus
COPY --chown=65534:65534 rootfs/ /
USER 65534:65534
EXPOSE 9090
VOLUME /prometheus
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
DOCKERFILE
  docker build -q -t eshop-prometheus:local "$ctx" >/dev/null
  rm -rf "$ctx"
fi
log "docker ready"
