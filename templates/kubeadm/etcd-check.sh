# Phase 5, the control plane: etcdctl's own check of a snapshot eshop
# uploaded for a restore, before anything stops.
need_etcdctl
# An assignment, so a failing etcdctl fails the script (with its words).
status="$(etcdctl snapshot status '{{file}}' -w json)"
printf 'status=%s\n' "$(printf '%s' "$status" | tr -d '\n')"
