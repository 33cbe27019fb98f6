# Phase 5, a worker: joins the cluster once. The token arrives from the
# control plane through eshop, in this script's standard input only.
step "kubeadm join {{endpoint}}"
if [ ! -f /etc/kubernetes/kubelet.conf ]; then
  kubeadm join "{{endpoint}}" --token "{{token}}" \
    --discovery-token-ca-cert-hash "{{ca_hash}}" --node-name "{{node_name}}"
  changed "joined {{endpoint}} as {{node_name}}"
fi
# Which cluster this node belongs to: destroy resets only eshop's own.
printf '%s\n' '{{cluster_name}}' | write_file /etc/eshop/cluster 0644 || :
