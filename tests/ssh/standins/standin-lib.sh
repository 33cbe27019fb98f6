# shellcheck shell=bash
# Test stand-in support, not a command: sourced by every stand-in in this
# directory (the ssh test harness, tests/common/ssh_hosts.rs, copies them all
# into a host's bin dir, which is bind-mounted over /usr/local/sbin inside
# that host's mount namespace). It loads the paths the harness baked in for
# the host (standin-env, next to the scripts), records the call as one line
#   <epoch.nanoseconds> <host> <cmd> <args...>
# in the host's calls log, and has the helpers for the emulated state. All
# state lives on the real filesystem in the harness's directory, never in the
# host's overlaid /etc or /var/lib:
#   $STANDIN_STATE    this host: packages, holds, units, modules, sysctls, swap
#   $STANDIN_CLUSTER  shared by all hosts of one harness: the fake cluster
# (nodes, CSRs, applied manifests, bootstrap tokens, CA hash, endpoint).

standin_dir="${BASH_SOURCE[0]%/*}"
# shellcheck source=/dev/null
. "$standin_dir/standin-env"
: "${STANDIN_HOST:?}" "${STANDIN_ADDR:?}" "${STANDIN_LOG:?}" "${STANDIN_STATE:?}" "${STANDIN_CLUSTER:?}"

# standin_record CMD ARGS...: appends the call to the host's log. Inside an
# argument, a backslash, space, tab and newline are written as \\ \s \t \n so
# that the line still splits on single spaces (an empty argument is an empty
# field).
standin_record() {
  local line a
  line="$(date +%s.%N) $STANDIN_HOST $1"
  shift
  for a in "$@"; do
    a="${a//\\/\\\\}"
    a="${a// /\\s}"
    a="${a//$'\t'/\\t}"
    a="${a//$'\n'/\\n}"
    line+=" $a"
  done
  printf '%s\n' "$line" >>"$STANDIN_LOG"
}

# standin_unsupported CMD ARGS...: a use of the command that the stand-in
# does not emulate fails loudly instead of pretending to work.
standin_unsupported() {
  local cmd="$1"
  shift
  printf '%s (test stand-in): not emulated: %s %s\n' "$cmd" "$cmd" "$*" >&2
  exit 2
}

# standin_pkg_version PKG: the version the apt-get stand-in installed, or
# nothing.
standin_pkg_version() {
  if [ -f "$STANDIN_STATE/packages/$1" ]; then
    cat "$STANDIN_STATE/packages/$1"
  fi
}

# standin_require_pkg PKG CMD: a command that a package provides does not
# exist before the apt-get stand-in installed that package.
standin_require_pkg() {
  if [ -z "$(standin_pkg_version "$1")" ]; then
    printf 'bash: %s: command not found\n' "$2" >&2
    exit 127
  fi
}

# standin_unit_exists UNIT: units of the emulated packages exist once the
# package is installed; any other unit is taken to exist.
standin_unit_exists() {
  case "$1" in
    containerd | kubelet) [ -n "$(standin_pkg_version "$1")" ] ;;
    *) return 0 ;;
  esac
}

# standin_lock: serialises the stand-ins of all hosts around the shared
# cluster state (eshop runs node scripts in parallel). Held until exit.
standin_lock() {
  exec 9>>"$STANDIN_CLUSTER/lock"
  flock 9
}

# standin_cluster_up: true once some host ran kubeadm init.
standin_cluster_up() {
  [ -s "$STANDIN_CLUSTER/endpoint" ]
}

standin_has_line() { # FILE LINE
  [ -f "$1" ] && grep -qxF -- "$2" "$1"
}

standin_add_line() { # FILE LINE: once
  standin_has_line "$1" "$2" || printf '%s\n' "$2" >>"$1"
}

standin_del_line() { # FILE LINE
  local tmp
  [ -f "$1" ] || return 0
  tmp="$(mktemp)"
  grep -vxF -- "$2" "$1" >"$tmp" || :
  cat "$tmp" >"$1"
  rm -f "$tmp"
}

mkdir -p "$STANDIN_STATE"/{packages,held,units,modules,sysctl} "$STANDIN_CLUSTER"/{csr,csr-approved}
