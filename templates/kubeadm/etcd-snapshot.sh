# Phase 5, the control plane: a snapshot of the cluster's etcd, checked
# where it was taken. eshop then copies it back, compares the sha256 and
# removes it here (the node keeps no copy: etcd-backup.yml's timer does).
need_etcdctl
dir=/var/lib/eshop/etcd-snapshots
file="$dir/{{name}}"
install -d -m 0700 "$dir"
step "etcdctl snapshot save"
ctl snapshot save "$file" >&2
chmod 0600 "$file"
step "etcdctl snapshot status"
# Assignments, so a failing command fails the script (with its words).
status="$(etcdctl snapshot status "$file" -w json)"
sum="$(sha256sum "$file")"
printf 'status=%s\n' "$(printf '%s' "$status" | tr -d '\n')"
printf 'sha256=%s\n' "${sum%% *}"
printf 'path=%s\n' "$file"
