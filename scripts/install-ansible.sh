#!/usr/bin/env bash
# Installs the pinned Ansible that phase 9 (eshop phase config) runs into a
# private virtualenv under eshop's tools directory, and prints the path of
# its ansible-playbook on stdout (the only line on stdout; progress goes to
# stderr). Idempotent: when the venv already holds exactly the pinned
# versions, nothing is downloaded or changed.
#
#   scripts/install-ansible.sh          ansible-core (scripts/ansible-requirements.txt)
#   scripts/install-ansible.sh --lint   also ansible-lint (scripts/ansible-lint-requirements.txt)
#
# Where: ${ESHOP_TOOLS_DIR:-$HOME/.cache/eshop-tools}/ansible. The Python used
# to create the venv: $ESHOP_PYTHON, else python3 (ansible-core 2.19 needs
# Python >= 3.11).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
tools="${ESHOP_TOOLS_DIR:-$HOME/.cache/eshop-tools}"
venv="$tools/ansible"
python="${ESHOP_PYTHON:-python3}"

log() { printf '[install-ansible] %s\n' "$*" >&2; }
die() { printf '[install-ansible] error: %s\n' "$*" >&2; exit 1; }

lint=0
for arg in "$@"; do
  case "$arg" in
    --lint) lint=1 ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $arg (usage: $0 [--lint])" ;;
  esac
done

reqs=("$here/ansible-requirements.txt")
[ "$lint" = 1 ] && reqs+=("$here/ansible-lint-requirements.txt")

# satisfied: every pinned name==version is what the venv has (names compared
# the way pip normalises them: lower case, . and _ as -).
satisfied() {
  [ -x "$venv/bin/python" ] || return 1
  local want have
  want="$(grep -hE '^[A-Za-z0-9._-]+==' "${reqs[@]}" | sed 's/==/ /' \
    | awk '{ n = tolower($1); gsub(/[._]/, "-", n); print n "==" $2 }' | sort -u)"
  have="$("$venv/bin/python" -m pip list --disable-pip-version-check --format=freeze 2>/dev/null \
    | sed 's/==/ /' | awk '{ n = tolower($1); gsub(/[._]/, "-", n); print n "==" $2 }' | sort -u)"
  [ -z "$(comm -23 <(printf '%s\n' "$want") <(printf '%s\n' "$have"))" ]
}

if satisfied; then
  log "pinned Ansible already in $venv"
else
  "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null \
    || die "$python is not Python >= 3.11 (ansible-core 2.19 needs it): set ESHOP_PYTHON to one"
  if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv"
    mkdir -p "$tools"
    "$python" -m venv "$venv" || die "cannot create a venv with $python (Debian: apt-get install python3-venv)"
  fi
  log "installing $(grep -hE '^ansible(-core|-lint)==' "${reqs[@]}" | paste -sd ' ' -) into $venv"
  req_args=()
  for r in "${reqs[@]}"; do req_args+=(-r "$r"); done
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${req_args[@]}" >&2
  satisfied || die "$venv does not hold the pinned versions after pip install"
fi

"$venv/bin/ansible-playbook" --version >/dev/null || die "$venv/bin/ansible-playbook does not run"
printf '%s\n' "$venv/bin/ansible-playbook"
