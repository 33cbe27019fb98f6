#!/bin/sh
# Worker boot script (launch template user data): what kubeadm needs before
# it can join a node. Same intent as eshop's phase 3 worker user data.
set -eu
swapoff -a
sed -i '/\sswap\s/s/^/#/' /etc/fstab
cat > /etc/modules-load.d/k8s.conf <<MODULES
overlay
br_netfilter
MODULES
modprobe overlay
modprobe br_netfilter
