# Phase 11 in bootstrap mode, every node: leaves the cluster and removes
# what kubeadm and the network plugin wrote. The packages stay: the
# machines themselves are phase 3's to remove.
step "kubeadm reset"
if [ -f /etc/kubernetes/kubelet.conf ] || [ -f /etc/kubernetes/admin.conf ]; then
  kubeadm reset -f >/dev/null
  rm -rf /etc/cni/net.d /etc/eshop
  changed "kubeadm reset"
fi
