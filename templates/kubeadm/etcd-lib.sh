# Prepended (after lib.sh) to eshop's etcd scripts on the control plane:
# etcdctl against the local member with the client certificate kubeadm
# made for etcd's health checks, every call bounded.
export ETCDCTL_API=3
pki=/etc/kubernetes/pki/etcd
manifest=/etc/kubernetes/manifests/etcd.yaml
ctl() {
  etcdctl --endpoints=https://127.0.0.1:2379 --cacert="$pki/ca.crt" \
    --cert="$pki/healthcheck-client.crt" --key="$pki/healthcheck-client.key" \
    --dial-timeout=5s --command-timeout=60s "$@"
}
# kubeadm's nodes have no etcdctl of their own (etcd runs in a pod):
# Debian's and Ubuntu's etcd-client brings it.
need_etcdctl() {
  if ! command -v etcdctl >/dev/null; then
    apt-get install -y -q --no-install-recommends etcd-client >&2
    changed "etcd-client installed"
  fi
}
# One line of facts about the live member, for the plan of a restore.
# (Assignments, so a failing etcdctl fails the script with its words.)
live() {
  local status count
  status="$(ctl endpoint status -w json)"
  count="$(ctl get '' --prefix --keys-only --limit=1 -w json)"
  printf 'live_status=%s\n' "$(printf '%s' "$status" | tr -d '\n')"
  printf 'live_count=%s\n' "$(printf '%s' "$count" | tr -d '\n')"
}
