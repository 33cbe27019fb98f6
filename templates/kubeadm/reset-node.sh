# Phase 11 in bootstrap mode, every node: leaves the cluster and removes
# what kubeadm and the network plugin wrote. The packages stay: the
# machines themselves are phase 3's to remove.
# Only a cluster eshop built for this project: kubeadm init/join wrote
# its name to /etc/eshop/cluster (a configured node may be someone else's).
step "kubeadm reset"
if [ -f /etc/kubernetes/kubelet.conf ] || [ -f /etc/kubernetes/admin.conf ]; then
  have="$(cat /etc/eshop/cluster 2>/dev/null || :)"
  if [ "$have" != '{{cluster_name}}' ]; then
    echo "this node is in a cluster eshop did not build for {{cluster_name}} (/etc/eshop/cluster: ${have:-absent}): not resetting it" >&2
    exit 3
  fi
  kubeadm reset -f >/dev/null
  rm -rf /etc/cni/net.d /etc/eshop
  changed "kubeadm reset"
fi
