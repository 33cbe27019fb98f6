# Phase 5, every node: what kubeadm's preflight checks need, then the
# container runtime and the pinned Kubernetes packages. Each step checks
# before it acts; a prepared node prints no "changed:" line.
K8S_MINOR="{{k8s_minor}}"
K8S_PACKAGE="{{k8s_package}}"
K8S_KEY_FINGERPRINT="{{apt_key_fingerprint}}"

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

step "containerd with the systemd cgroup driver, openssl"
# openssl: finish-cluster.sh reads the kubelets' certificate requests.
missing=()
for p in containerd openssl; do
  [ -n "$(pkg_version "$p")" ] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
  changed "installed ${missing[*]}"
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
# primary_keys FILE: the fingerprints of the primary keys in FILE (armored
# or not), one per line; subkeys are not listed.
primary_keys() {
  { gpg --batch --show-keys --with-colons "$1" 2>/dev/null || :; } \
    | awk -F: '$1 == "pub" { want = 1; next } $1 == "fpr" && want { print $10; want = 0 }'
}
# The keyring must hold the pinned key and nothing else: apt trusts every
# key in it for this repository.
if [ "$(primary_keys "$keyring" 2>/dev/null)" != "$K8S_KEY_FINGERPRINT" ]; then
  mkdir -p /etc/apt/keyrings
  key="$(mktemp)"
  curl -fsSL "https://pkgs.k8s.io/core:/stable:/${K8S_MINOR}/deb/Release.key" -o "$key"
  got="$(primary_keys "$key" | paste -sd ' ' -)"
  if [ "$got" != "$K8S_KEY_FINGERPRINT" ]; then
    rm -f "$key"
    echo "the Kubernetes apt key from pkgs.k8s.io has fingerprint ${got:-(none)}, not ${K8S_KEY_FINGERPRINT} (kubernetes.apt_key_fingerprint): refused, nothing installed" >&2
    exit 1
  fi
  gpg --batch --dearmor --yes -o "$keyring" "$key"
  rm -f "$key"
  changed "$keyring (key ${K8S_KEY_FINGERPRINT})"
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
