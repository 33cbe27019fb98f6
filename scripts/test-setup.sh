#!/usr/bin/env bash
# Installs and starts everything the test suite talks to, idempotently, on a
# fresh Debian bookworm machine (run as root, or with sudo available).
# Each step checks before it acts, so re-running is cheap.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
tools="${ESHOP_TOOLS_DIR:-$HOME/.cache/eshop-test-tools}"
mkdir -p "$tools"
# shellcheck source=scripts/lib.sh
. "$here/scripts/lib.sh"
AS_PG=(runuser -u postgres --)
[ "$(id -u)" = 0 ] || AS_PG=(sudo -u postgres)

log() { printf '[test-setup] %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------
# sudo: Ansible's become on the ssh test hosts (tests/config_phase.rs).
ensure_packages postgresql chromium chromium-driver wrk prometheus openssh-server shellcheck busybox-static openssl groovy rsync git sudo etcd-server etcd-client

# --- PostgreSQL: a cluster on 127.0.0.1:5432 and a role that may create DBs --
pg_ver="$(ls /usr/lib/postgresql | sort -V | tail -1)"
if ! pg_lsclusters -h 2>/dev/null | grep -q "^$pg_ver main"; then
  $SUDO pg_createcluster "$pg_ver" main >/dev/null
fi
if ! pg_lsclusters -h | awk -v v="$pg_ver" '$1==v && $2=="main"{print $4}' | grep -q online; then
  log "starting PostgreSQL $pg_ver"
  $SUDO pg_ctlcluster "$pg_ver" main start
fi
for _ in $(seq 1 50); do
  pg_isready -q -h 127.0.0.1 -p 5432 && break
  sleep 0.2
done
# The role only ever exists on a throwaway test machine; the password is not a secret.
"${AS_PG[@]}" psql -q -h /var/run/postgresql -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'eshop_test') THEN
    CREATE ROLE eshop_test LOGIN CREATEDB PASSWORD 'eshop_test';
  END IF;
  -- The database's superuser as phase 5 runs it in a cluster (the setup
  -- script creates roles and databases owned by them): tests/postgres_setup.rs.
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'eshop_test_admin') THEN
    CREATE ROLE eshop_test_admin LOGIN SUPERUSER PASSWORD 'eshop_test_admin';
  END IF;
END $$;
SQL

# --- Python tools (pinned) in a private virtualenv --------------------------
venv="$tools/venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r "$here/scripts/test-requirements.txt"
venv_k8s="$tools/venv-k8s"
if [ ! -x "$venv_k8s/bin/python" ]; then
  python3 -m venv "$venv_k8s"
fi
"$venv_k8s/bin/pip" install -q --disable-pip-version-check -r "$here/scripts/test-requirements-k8s.txt"

# --- gitlab-ci-local (npm, pinned: 4.74+ crash on Debian's Node 20) ------------
glci="$tools/npm/node_modules/.bin/gitlab-ci-local"
if [ ! -x "$glci" ] || ! "$glci" --version 2>/dev/null | grep -qx '4.72.0'; then
  log "installing gitlab-ci-local 4.72.0"
  npm install --silent --no-audit --no-fund --prefix "$tools/npm" gitlab-ci-local@4.72.0 >/dev/null
fi

# --- Docker, a registry on 127.0.0.1:5000 and the local base image ---------
bash "$here/scripts/docker-setup.sh" --registry

# --- A Grafana STAND-IN image ------------------------------------------------
# No Grafana image can be pulled here, and Grafana is in no registry this
# machine reaches. Phase 7's local path (derived image with the provisioning
# files, labelled hardened container, readiness wait, destroy) is exercised
# with this stand-in instead: busybox httpd on Grafana's port answering
# /api/health and serving the image's files, so a test can read back what
# eshop provisioned. It is not Grafana and the tests say so.
standin=eshop-grafana-standin:1
if ! docker image inspect "$standin" >/dev/null 2>&1; then
  log "building $standin (busybox httpd; NOT Grafana)"
  ctx="$(mktemp -d)"
  cp /bin/busybox "$ctx/busybox"
  mkdir -p "$ctx/rootfs/api" "$ctx/rootfs/var/lib/grafana"
  printf '{"database":"ok","version":"stand-in"}\n' > "$ctx/rootfs/api/health"
  cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM eshop-base:local
COPY busybox /bin/busybox
COPY --chown=472:0 rootfs/ /
USER 472:0
EXPOSE 3000
ENTRYPOINT ["/bin/busybox", "httpd", "-f", "-p", "3000", "-h", "/"]
DOCKERFILE
  docker build -q -t "$standin" "$ctx" >/dev/null
  rm -rf "$ctx"
fi

# --- Ansible (phase 9): the pinned ansible-core and ansible-lint --------------
# install-ansible.sh is idempotent (nothing is downloaded when the venv holds
# the pinned versions) and prints the path of ansible-playbook.
ansible_playbook="$("$here/scripts/install-ansible.sh" --lint)"

# --- What the tests read ----------------------------------------------------
cat > "$tools/env" <<ENV
export ESHOP_TEST_PG_URL=postgres://eshop_test:eshop_test@127.0.0.1:5432/postgres
export ESHOP_TEST_SCHEMATHESIS=$venv/bin/schemathesis
export ESHOP_TEST_CHROMEDRIVER=/usr/bin/chromedriver
export ESHOP_TEST_CHROMIUM=/usr/bin/chromium
export ESHOP_TEST_REGISTRY=localhost:5000
export ESHOP_TEST_BASE_IMAGE=eshop-base:local
export ESHOP_TEST_PROMETHEUS_IMAGE=eshop-prometheus:local
export ESHOP_TEST_GRAFANA_STANDIN_IMAGE=$standin
export ESHOP_TEST_KUBERNETES_VALIDATE=$venv_k8s/bin/kubernetes-validate
export ESHOP_TEST_CHECKOV=$venv_k8s/bin/checkov
export ESHOP_TEST_GITLAB_CI_LOCAL=$glci
export ESHOP_TEST_ACT=$venv/bin/act
export ESHOP_TEST_GROOVY=/usr/bin/groovy
export ESHOP_TEST_ANSIBLE_PLAYBOOK=$ansible_playbook
export ESHOP_TEST_ANSIBLE_LINT=$(dirname "$ansible_playbook")/ansible-lint
export ESHOP_TEST_JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
ENV
log "ready; test environment in $tools/env"
