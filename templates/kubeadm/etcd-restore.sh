# Phase 5, the control plane: replaces etcd's data with a snapshot eshop
# uploaded (and checked against its recorded sha256). etcd runs as
# kubeadm's static pod: moving its manifest, and the API server's (which
# would keep writing to the old etcd), out of /etc/kubernetes/manifests
# makes the kubelet stop them; moving them back starts them again. The
# snapshot is restored into a fresh data dir before anything stops, and
# whatever fails after the stop puts the old data dir and the manifests
# back.
need_etcdctl
file='{{file}}'
held=/etc/kubernetes/eshop-restore-{{stamp}}
manifests=/etc/kubernetes/manifests
if [ ! -f "$manifest" ]; then
  echo "no $manifest: not a kubeadm control plane with a local etcd" >&2
  exit 3
fi
flag() { sed -n "s/^ *- --$1=//p" "$manifest" | head -n 1; }
name="$(flag name)" data="$(flag data-dir)"
cluster="$(flag initial-cluster)" peer="$(flag initial-advertise-peer-urls)"
if [ -z "$name" ] || [ -z "$data" ] || [ -z "$cluster" ] || [ -z "$peer" ]; then
  echo "$manifest lacks one of --name, --data-dir, --initial-cluster, --initial-advertise-peer-urls" >&2
  exit 3
fi
new="$data.restore-{{stamp}}"
old="$data.before-{{stamp}}"

step "etcdctl snapshot restore into $new"
etcdctl snapshot status "$file" -w json >/dev/null
rm -rf "$new"
etcdctl snapshot restore "$file" --data-dir "$new" --name "$name" \
  --initial-cluster "$cluster" --initial-advertise-peer-urls "$peer" >&2

healthy() { ctl --command-timeout=3s endpoint health >/dev/null 2>&1; }
# wait_for up|down SECONDS EXIT_CODE MESSAGE: until etcd is healthy (up)
# or no longer answers (down), or fail with MESSAGE.
wait_for() {
  local i=0
  while { [ "$1" = up ] && ! healthy; } || { [ "$1" = down ] && healthy; }; do
    i=$((i + 1))
    if [ "$i" -ge "$2" ]; then
      echo "$4" >&2
      exit "$3"
    fi
    sleep 1
  done
}
put_back() {
  if [ -d "$old" ] && [ ! -d "$data" ]; then mv "$old" "$data"; fi
  for f in "$held"/*.yaml; do
    if [ -e "$f" ]; then mv "$f" "$manifests/"; fi
  done
  rmdir "$held" 2>/dev/null || :
}
trap put_back EXIT

step "stopping etcd and the API server"
install -d -m 0700 "$held"
mv "$manifest" "$held/"
if [ -f "$manifests/kube-apiserver.yaml" ]; then
  mv "$manifests/kube-apiserver.yaml" "$held/"
fi
wait_for down 120 4 "etcd still answers 120 s after its manifest was moved away"

step "swapping the data dir"
mv "$data" "$old"
mv "$new" "$data"

step "starting etcd and the API server"
put_back
trap - EXIT
wait_for up 180 5 "etcd is not healthy 180 s after the restore; the previous data is in $old"
rm -f "$file"
changed "etcd restored; the previous data is in $old"
live
