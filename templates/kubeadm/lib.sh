# Prepended by eshop to every node script (see src/engines/ssh.rs): strict
# mode, a PATH that does not depend on the login shell, and the two kinds of
# line eshop reads back while a script runs:
#   ==> what is happening now      (shown as the node's progress)
#   changed: what was changed      (counted; a re-run that prints none did nothing)
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive
umask 022

# No single call may hang a script (the whole script is also bounded, by
# `timeout` around it: ssh.script_timeout_secs): downloads, API calls and
# apt's wait for a lock another apt holds each give up on their own.
# (Options after the arguments: all three accept them anywhere.)
curl() { command curl "$@" --connect-timeout 10 --max-time 300; }
kubectl() { command kubectl "$@" --request-timeout=60s; }
apt-get() { command apt-get "$@" -o DPkg::Lock::Timeout=300; }

step() { printf '==> %s\n' "$*"; }
changed() { printf 'changed: %s\n' "$*"; }

# write_file PATH MODE < content: replaces PATH only when the content
# differs, so an unchanged file is neither rewritten nor reported.
# Returns 0 when it wrote, 1 when the file was already right.
write_file() {
  local path="$1" mode="$2" tmp
  tmp="$(mktemp)"
  cat >"$tmp"
  if [ -f "$path" ] && cmp -s "$tmp" "$path"; then
    rm -f "$tmp"
    return 1
  fi
  install -D -m "$mode" "$tmp" "$path"
  rm -f "$tmp"
  changed "$path"
}

# pkg_version NAME: the installed version of a Debian package, or nothing.
pkg_version() {
  local s
  s="$(dpkg-query -W -f='${db:Status-Status} ${Version}' "$1" 2>/dev/null || true)"
  case "$s" in
    "installed "*) printf '%s' "${s#installed }" ;;
  esac
}
