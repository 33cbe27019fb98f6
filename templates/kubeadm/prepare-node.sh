# Phase 5, every node: what kubeadm's preflight checks need, then the
# container runtime and the pinned Kubernetes packages. Each step checks
# before it acts; a prepared node prints no "changed:" line.
K8S_MINOR="{{k8s_minor}}"
K8S_PACKAGE="{{k8s_package}}"

step "swap off (kubelet refuses to run with swap)"
if [ -n "$(swapon --show --noheadings 2>/dev/null)" ]; then
  swapoff -a
  changed "swap off"
fi
if grep -qE '^[^#].*[[:space:]]swap[[:space:]]' /etc/fstab 2>/dev/null; then
  sed -i -E 's/^([^#].*[[:space:]]swap[[:space:]].*)$/# \1/' /etc/fstab
  changed "/etc/fstab: swap entries commented out"
fi

step "kernel modules and sysctls for pod networking"
write_file /etc/modules-load.d/eshop-k8s.conf 0644 <<'CONF' || :
overlay
br_netfilter
CONF
# modprobe is a no-op for a loaded module.
modprobe overlay
modprobe br_netfilter
if write_file /etc/sysctl.d/90-eshop-k8s.conf 0644 <<'CONF'
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
net.ipv4.ip_forward = 1
CONF
then
  sysctl --system >/dev/null
fi

step "containerd with the systemd cgroup driver"
if [ -z "$(pkg_version containerd)" ]; then
  apt-get update -qq
  apt-get install -y -qq containerd >/dev/null
  changed "containerd installed"
fi
# kubelet and containerd must agree on the cgroup driver: systemd.
if containerd config default | sed -E 's/SystemdCgroup = false/SystemdCgroup = true/' \
  | write_file /etc/containerd/config.toml 0644; then
  systemctl restart containerd
fi
if ! systemctl is-enabled --quiet containerd; then
  systemctl enable --now containerd
  changed "containerd enabled"
fi

step "kubelet, kubeadm, kubectl ${K8S_PACKAGE}"
keyring=/etc/apt/keyrings/kubernetes-apt-keyring.gpg
if [ ! -s "$keyring" ]; then
  mkdir -p /etc/apt/keyrings
  curl -fsSL "https://pkgs.k8s.io/core:/stable:/${K8S_MINOR}/deb/Release.key" | gpg --dearmor --yes -o "$keyring"
  changed "$keyring"
fi
echo "deb [signed-by=${keyring}] https://pkgs.k8s.io/core:/stable:/${K8S_MINOR}/deb/ /" \
  | write_file /etc/apt/sources.list.d/kubernetes.list 0644 || :
need=()
for p in kubelet kubeadm kubectl; do
  [ "$(pkg_version "$p")" = "$K8S_PACKAGE" ] || need+=("$p=$K8S_PACKAGE")
done
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -qq
  apt-mark unhold kubelet kubeadm kubectl >/dev/null
  apt-get install -y -qq --allow-downgrades --allow-change-held-packages "${need[@]}" >/dev/null
  # Held, so an unattended upgrade never moves a node off the cluster's version.
  apt-mark hold kubelet kubeadm kubectl >/dev/null
  changed "installed ${need[*]}"
fi
if ! systemctl is-enabled --quiet kubelet; then
  systemctl enable --now kubelet
  changed "kubelet enabled"
fi
