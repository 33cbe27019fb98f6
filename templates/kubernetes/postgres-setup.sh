#!/bin/sh
# Phase 5's database setup, run by the database's pod itself (a postStart
# hook of 20-database.yaml) every time it starts: one role and one
# database per service that owns data (the list in the `services` file),
# each role with the password from that service's Secret, its database
# closed to everyone else. Idempotent: what exists stays, except the
# password, which is set again (the Secret is the truth). A new service in
# the catalogue changes the list, which rolls the pod, which runs this.
set -eu
: "${PGHOST:=/var/run/postgresql}" "${PGUSER:=eshop}" "${PGDATABASE:=eshop}"
export PGHOST PGUSER PGDATABASE
secrets="${ESHOP_DB_SECRETS:-/run/secrets/db}"
services="${ESHOP_DB_SERVICES:-/etc/eshop-db/services}"
if [ -z "${PGPASSWORD:-}" ] && [ -f "$secrets/admin-password" ]; then
  PGPASSWORD="$(cat "$secrets/admin-password")"
  export PGPASSWORD
fi
tries=0
until pg_isready -q; do
  tries=$((tries + 1))
  if [ "$tries" -ge 120 ]; then
    echo "postgres-setup: the database did not start within 120 s" >&2
    exit 1
  fi
  sleep 1
done
for svc in $(cat "$services"); do
  # The values reach SQL only as psql variables, quoted by format()'s %I
  # (identifier) and %L (literal); the password is read by psql itself.
  psql -v ON_ERROR_STOP=1 -q -v svc="$svc" -v pwfile="$secrets/$svc-password" <<'SQL'
\set pw `cat :'pwfile'`
SELECT format('CREATE ROLE %I LOGIN', :'svc')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'svc') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'svc', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'svc', :'svc')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'svc') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'svc') \gexec
SQL
  echo "postgres-setup: $svc ready"
done
