# Phase 5 plan and status, every node: reads, never changes. One
# key=value per line.
echo "containerd=$(pkg_version containerd)"
echo "kubeadm=$(pkg_version kubeadm)"
echo "kubelet=$(pkg_version kubelet)"
if [ -f /etc/kubernetes/admin.conf ]; then
  echo "role=control-plane"
elif [ -f /etc/kubernetes/kubelet.conf ]; then
  echo "role=worker"
else
  echo "role=none"
fi
if systemctl is-active --quiet kubelet; then echo "kubelet_active=yes"; else echo "kubelet_active=no"; fi
