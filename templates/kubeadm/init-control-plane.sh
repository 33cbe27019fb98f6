# Phase 5, the control plane: kubeadm init from eshop's rendered
# configuration, then the pod network (Calico, which enforces
# NetworkPolicies) and metrics-server (the HPAs read it). Each step checks
# the cluster before it acts. The add-ons' manifests are the files eshop
# wrote under /etc/eshop/addons just before (add-on.sh), after checking
# each download against its sha256 pin: nothing here is fetched.
export KUBECONFIG=/etc/kubernetes/admin.conf

step "kubeadm init (Kubernetes {{k8s_version}})"
# The file travels as base64 (letters, digits, + / =): whatever the
# configuration holds, it cannot end a heredoc or become a command.
printf '%s' '{{kubeadm_config_base64}}' | base64 -d | write_file /etc/eshop/kubeadm-config.yaml 0600 || :
if [ ! -f /etc/kubernetes/admin.conf ]; then
  kubeadm init --config /etc/eshop/kubeadm-config.yaml
  changed "control plane initialised"
fi
# Which cluster this node belongs to: destroy resets only eshop's own.
printf '%s\n' '{{cluster_name}}' | write_file /etc/eshop/cluster 0644 || :

step "pod network: Calico {{calico_version}}"
if ! kubectl -n kube-system get daemonset calico-node >/dev/null 2>&1; then
  # Server-side: Calico's CRDs are too large for client-side apply's annotation.
  kubectl apply --server-side --field-manager=eshop -f /etc/eshop/addons/calico.yaml >/dev/null
  changed "calico {{calico_version}}"
fi

step "metrics-server {{metrics_server_version}}"
if ! kubectl -n kube-system get deployment metrics-server >/dev/null 2>&1; then
  kubectl apply --server-side --field-manager=eshop -f /etc/eshop/addons/metrics-server.yaml >/dev/null
  changed "metrics-server {{metrics_server_version}}"
fi

step "volumes: local-path-provisioner {{local_path_version}}"
# A bare kubeadm cluster provisions no volumes; the database's claim needs
# a default StorageClass. Local disks: the data stays on the node that
# first ran the database (set kubernetes.storage_class for a CSI driver).
if ! kubectl get storageclass local-path >/dev/null 2>&1; then
  kubectl apply --server-side --field-manager=eshop -f /etc/eshop/addons/local-path.yaml >/dev/null
  kubectl annotate storageclass local-path storageclass.kubernetes.io/is-default-class=true --overwrite >/dev/null
  changed "local-path-provisioner {{local_path_version}}"
fi
