#!/bin/sh
# Runs once at first boot on every node eshop launches (phase 3): what
# kubeadm's preflight needs from the kernel, so phase 5 starts from a
# prepared machine. Idempotent: each step checks before it acts.
set -eu

# kubelet refuses to run with swap on.
swapoff -a
if grep -qE '^[^#].*[[:space:]]swap[[:space:]]' /etc/fstab; then
  sed -i -E 's/^([^#].*[[:space:]]swap[[:space:]].*)$/# \1/' /etc/fstab
fi

# containerd's overlay snapshotter and bridged pod traffic through iptables.
cat > /etc/modules-load.d/eshop-k8s.conf <<'EOF'
overlay
br_netfilter
EOF
modprobe overlay
modprobe br_netfilter

cat > /etc/sysctl.d/90-eshop-k8s.conf <<'EOF'
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
net.ipv4.ip_forward = 1
EOF
sysctl --system >/dev/null

echo "eshop project={{project}} role={{role}}" > /etc/eshop-node
