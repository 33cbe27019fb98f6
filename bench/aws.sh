#!/usr/bin/env bash
# eshop vs Terraform on the same AWS resource set (phases 3 infra and
# 4 schedule; bench/aws/main.tf is the Terraform twin), both against moto's
# server (each tool its own, reset before every round, so neither sees the
# other's resources). Per round and tool: apply, no-op plan, destroy, timed
# by wall clock; Terraform's init is timed too but kept out of apply.
# After every apply the emulator is checked for the whole resource set and
# after every destroy for nothing left (bench/aws/inventory.py), and the
# no-op plan must report no change, so a fast no-op cannot pass for a
# result. Prints the medians side by side, the ratios (terraform / eshop)
# and whether the goals are met: >= 10x on apply and destroy, >= 20x on a
# no-op plan.
#
#   bench/aws.sh [--rounds N] [--only eshop|terraform] [--keep]
#
# ESHOP_BIN     the eshop binary (default target/release/eshop; not built here)
# STEP_TIMEOUT  seconds any one step may take (default 600)
# If eshop is missing or fails, the script says so, still measures
# Terraform and prints the table. Exit status: 0 when every round ran, every
# check passed and every goal is met (with --only, goals are not judged);
# 1 otherwise; 2 for a usage error.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

rounds=3 only="" keep=0
usage() {
  echo "usage: bench/aws.sh [--rounds N] [--only eshop|terraform] [--keep]" >&2
  echo "  env: ESHOP_BIN (default target/release/eshop), STEP_TIMEOUT (seconds, default 600)" >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) [ $# -ge 2 ] || usage; rounds="$2"; shift 2 ;;
    --rounds=*) rounds="${1#*=}"; shift ;;
    --only) [ $# -ge 2 ] || usage; only="$2"; shift 2 ;;
    --only=*) only="${1#*=}"; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "--rounds wants a positive number" >&2; exit 2; }
case "$only" in ""|eshop|terraform) ;; *) echo "--only wants eshop or terraform" >&2; exit 2 ;; esac

STEP_TIMEOUT="${STEP_TIMEOUT:-600}"
eshop_bin="${ESHOP_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/eshop}"
tools_dir="${ESHOP_TOOLS_DIR:-$HOME/.cache/eshop-test-tools}"
venv="$tools_dir/venv"
py="$venv/bin/python"
project=bench

log() { printf '[bench/aws] %s\n' "$*" >&2; }

# --- Tools -------------------------------------------------------------------
if [ ! -x "$venv/bin/moto_server" ]; then
  log "installing moto and boto3 into $venv (scripts/test-requirements.txt)"
  [ -x "$py" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$repo/scripts/test-requirements.txt"
fi
command -v terraform >/dev/null || { log "terraform is not installed"; exit 1; }
command -v curl >/dev/null || { log "curl is not installed"; exit 1; }
command -v ssh-keygen >/dev/null || { log "ssh-keygen is not installed"; exit 1; }

run_eshop=1 run_tf=1
[ "$only" = terraform ] && run_eshop=0
[ "$only" = eshop ] && run_tf=0
eshop_status=""   # why the eshop column is empty, if it is
tf_status=""
if [ "$run_eshop" = 1 ] && [ ! -x "$eshop_bin" ]; then
  eshop_status="binary $eshop_bin not found (cargo build --release --bin eshop, or set ESHOP_BIN)"
  log "eshop: $eshop_status; skipping the eshop column"
  run_eshop=0
fi

# Nothing from the caller's environment may redirect either tool: no real
# AWS profile or credentials, no ESHOP_* overrides of the config file.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(ESHOP_|AWS_|TF_)' || true)
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=eu-west-1 AWS_DEFAULT_REGION=eu-west-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
export TF_CLI_CONFIG_FILE="$repo/bench/aws/terraformrc" TF_IN_AUTOMATION=1 TF_INPUT=0

# --- Scratch space, moto servers, clean-up -----------------------------------
work="$(mktemp -d)"
moto_pids=()
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  local p
  for p in "${moto_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${moto_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$keep" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_moto NAME: a moto server on a free loopback port; prints its URL.
start_moto() {
  local name="$1" port
  port="$(free_port)"
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$work/moto-$name.log" 2>&1 &
  moto_pids+=("$!")
  for _ in $(seq 1 150); do
    if curl -fs -o /dev/null "http://127.0.0.1:$port/moto-api/"; then
      echo "http://127.0.0.1:$port"
      return
    fi
    sleep 0.2
  done
  log "moto ($name) did not start; log:"; cat "$work/moto-$name.log" >&2; exit 1
}

# Called in this shell (not in $(...)) so the pids reach cleanup().
moto_eshop="" moto_tf=""
if [ "$run_eshop" = 1 ]; then start_moto eshop >"$work/url"; moto_eshop="$(cat "$work/url")"; fi
if [ "$run_tf" = 1 ]; then start_moto terraform >"$work/url"; moto_tf="$(cat "$work/url")"; fi

# --- Inputs both tools share ---------------------------------------------------
ssh-keygen -q -t ed25519 -N '' -C "eshop-bench" -f "$work/admin_key"
# The hashicorp/archive provider is not in the mirror: zip the handler here.
"$py" - "$repo/templates/lambda/stop_shop.py" "$work/stop_shop.zip" <<'PY'
import sys, zipfile
src, out = sys.argv[1:3]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    info = zipfile.ZipInfo("stop_shop.py", date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    z.writestr(info, open(src, "rb").read())
PY

tf_dir="$work/terraform"
mkdir -p "$tf_dir"
cp "$repo"/bench/aws/*.tf "$repo/bench/aws/user-data.sh" "$tf_dir/"
export TF_VAR_endpoint="$moto_tf" TF_VAR_ssh_public_key="$work/admin_key.pub" TF_VAR_lambda_zip="$work/stop_shop.zip"

eshop_dir="$work/eshop"
write_eshop_config() {
  rm -rf "$eshop_dir"
  mkdir -p "$eshop_dir"
  cat >"$eshop_dir/eshop.toml" <<TOML
project = "$project"
target = "aws"

[aws]
endpoint = "$moto_eshop"
region = "eu-west-1"
admin_cidr = "203.0.113.0/24"
ssh_public_key = "$work/admin_key.pub"
ami_name = "ubuntu/images/hvm-ssd/ubuntu-*-amd64-server-*"

[schedule]
time_zone = "Europe/Paris"
TOML
}

# --- Measuring ---------------------------------------------------------------
results="$work/results"
mkdir -p "$results" "$work/logs"
secs=""

# timed LOG CMD...: runs CMD under the step timeout, its output in LOG;
# sets $secs to the wall time and returns CMD's status.
timed() {
  local out="$1" t0 t1 rc=0
  shift
  t0="$(date +%s.%N)"
  timeout "$STEP_TIMEOUT" "$@" >"$out" 2>&1 || rc=$?
  t1="$(date +%s.%N)"
  secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
  [ "$rc" != 124 ] || echo "(timed out after ${STEP_TIMEOUT}s)" >>"$out"
  return "$rc"
}

record() { echo "$secs" >>"$results/$1.$2"; log "round $round/$rounds: $1 $2 ${secs}s"; }

show_log() {
  log "--- last lines of $1 ---"
  tail -n 25 "$1" >&2
}

reset_moto() { curl -fsS -X POST -o /dev/null "$1/moto-api/reset"; }

# inventory URL present|absent LOG: is the resource set there / all gone?
inventory() {
  if "$py" "$repo/bench/aws/inventory.py" "$1" "$project" "$2" >"$3" 2>&1; then
    log "round $round/$rounds: $(tail -n 1 "$3")"
  else
    cat "$3" >&2
    return 1
  fi
}

# One round of eshop; returns non-zero (with the reason in $eshop_status)
# on the first failure.
eshop_round() {
  local l="$work/logs/eshop-$round"
  local -a eshop=("$eshop_bin" --config "$eshop_dir/eshop.toml")
  write_eshop_config
  reset_moto "$moto_eshop"
  inventory "$moto_eshop" absent "$l-before.txt" || { eshop_status="moto not empty before the round"; return 1; }

  if ! timed "$l-up.log" "${eshop[@]}" --yes up --from infra --to schedule; then
    show_log "$l-up.log"; eshop_status="eshop up failed (round $round)"; return 1
  fi
  record eshop apply
  inventory "$moto_eshop" present "$l-present.txt" \
    || { eshop_status="eshop up left the resource set incomplete (round $round)"; return 1; }

  if ! timed "$l-plan.log" "${eshop[@]}" --output json plan --from infra --to schedule; then
    show_log "$l-plan.log"; eshop_status="eshop plan failed (round $round)"; return 1
  fi
  # A no-op plan: phases 3 and 4 report their resources, all unchanged.
  if ! "$py" - "$l-plan.log" <<'PY'
import json, sys
changes = []
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if isinstance(e, dict) and e.get("event") == "change" and e.get("phase") in ("infra", "schedule"):
        changes.append(e)
pending = [c["message"] for c in changes if c.get("action") != "no-op"]
if not changes or pending:
    print("eshop plan is not a no-op for infra/schedule:", pending or "no change events at all")
    sys.exit(1)
PY
  then
    show_log "$l-plan.log"; eshop_status="eshop plan after up was not a no-op (round $round)"; return 1
  fi
  record eshop plan

  if ! timed "$l-destroy.log" "${eshop[@]}" --yes destroy; then
    show_log "$l-destroy.log"; eshop_status="eshop destroy failed (round $round)"; return 1
  fi
  record eshop destroy
  inventory "$moto_eshop" absent "$l-absent.txt" \
    || { eshop_status="eshop destroy left resources behind (round $round)"; return 1; }
}

tf=(terraform -chdir="$tf_dir")

tf_round() {
  local l="$work/logs/terraform-$round" rc=0
  rm -rf "$tf_dir/.terraform" "$tf_dir/.terraform.lock.hcl" "$tf_dir"/terraform.tfstate*
  reset_moto "$moto_tf"
  inventory "$moto_tf" absent "$l-before.txt" || { tf_status="moto not empty before the round"; return 1; }

  if ! timed "$l-init.log" "${tf[@]}" init -input=false -no-color; then
    show_log "$l-init.log"; tf_status="terraform init failed (round $round)"; return 1
  fi
  record terraform init

  if ! timed "$l-apply.log" "${tf[@]}" apply -auto-approve -input=false -no-color; then
    show_log "$l-apply.log"; tf_status="terraform apply failed (round $round)"; return 1
  fi
  record terraform apply
  inventory "$moto_tf" present "$l-present.txt" \
    || { tf_status="terraform apply left the resource set incomplete (round $round)"; return 1; }

  # -detailed-exitcode: 0 no changes, 2 changes, 1 error.
  timed "$l-plan.log" "${tf[@]}" plan -input=false -detailed-exitcode -no-color || rc=$?
  if [ "$rc" != 0 ]; then
    show_log "$l-plan.log"
    if [ "$rc" = 2 ]; then tf_status="terraform plan after apply was not a no-op (round $round)"
    else tf_status="terraform plan failed (round $round)"; fi
    return 1
  fi
  record terraform plan

  if ! timed "$l-destroy.log" "${tf[@]}" destroy -auto-approve -input=false -no-color; then
    show_log "$l-destroy.log"; tf_status="terraform destroy failed (round $round)"; return 1
  fi
  record terraform destroy
  inventory "$moto_tf" absent "$l-absent.txt" \
    || { tf_status="terraform destroy left resources behind (round $round)"; return 1; }
}

log "terraform $(terraform version | head -n 1 | cut -d' ' -f2), aws provider 5.100.0, $("$venv/bin/pip" list 2>/dev/null | awk '$1=="moto"{print "moto " $2}'); $rounds round(s); step timeout ${STEP_TIMEOUT}s"
[ "$run_eshop" = 1 ] && log "eshop: $eshop_bin"

for round in $(seq 1 "$rounds"); do
  if [ "$run_eshop" = 1 ] && ! eshop_round; then
    log "eshop: $eshop_status; no more eshop rounds"
    "$eshop_bin" --config "$eshop_dir/eshop.toml" --yes destroy >/dev/null 2>&1 || true
    run_eshop=0
  fi
  if [ "$run_tf" = 1 ] && ! tf_round; then
    log "terraform: $tf_status; no more terraform rounds"
    timeout "$STEP_TIMEOUT" "${tf[@]}" destroy -auto-approve -input=false -no-color >/dev/null 2>&1 || true
    run_tf=0
  fi
done

# --- Report ------------------------------------------------------------------
median() {
  [ -s "$1" ] || return 0
  sort -g "$1" | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
n_of() { if [ -s "$1" ]; then wc -l <"$1" | tr -d ' '; else echo 0; fi; }

echo
echo "eshop vs terraform on moto: phases 3-4 of project '$project' (median of completed rounds, seconds)"
printf '%-14s %12s %12s %10s %8s\n' step eshop terraform ratio goal
goal_lines=()
failed=0
for step in init apply plan destroy; do
  e="$(median "$results/eshop.$step")"
  t="$(median "$results/terraform.$step")"
  goal="" ratio="" label="$step"
  case "$step" in
    init) label="init (tf only)"; e="-" ;;
    apply|destroy) goal=10 ;;
    plan) goal=20; label="no-op plan" ;;
  esac
  if [ -n "$goal" ] && [ -n "$e" ] && [ -n "$t" ]; then
    ratio="$(awk -v t="$t" -v e="$e" 'BEGIN { if (e > 0) printf "%.1fx", t / e; else print "inf" }')"
    met="$(awk -v t="$t" -v e="$e" -v g="$goal" 'BEGIN { print (e > 0 && t / e >= g) ? "met" : "missed" }')"
    [ "$met" = met ] || failed=1
    goal_lines+=("goal $label >= ${goal}x: $met ($ratio: terraform ${t}s / eshop ${e}s, n=$(n_of "$results/eshop.$step")/$(n_of "$results/terraform.$step"))")
  elif [ -n "$goal" ]; then
    goal_lines+=("goal $label >= ${goal}x: not measured (${eshop_status:-${tf_status:-no completed round}})")
  fi
  printf '%-14s %12s %12s %10s %8s\n' "$label" "${e:-n/a}" "${t:-n/a}" "${ratio:--}" "${goal:+>=${goal}x}"
done
echo
printf '%s\n' "${goal_lines[@]}"
[ -z "$eshop_status" ] || { echo "eshop: $eshop_status"; failed=1; }
[ -z "$tf_status" ] || { echo "terraform: $tf_status"; failed=1; }
exit "$failed"
