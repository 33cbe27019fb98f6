# Phase 5, the control plane, after the joins: kubelets ask for serving
# certificates signed by the cluster CA (serverTLSBootstrap), so
# metrics-server can verify them instead of skipping TLS checks. Only
# requests from the cluster's own nodes for kubelet-serving certificates
# are approved.
export KUBECONFIG=/etc/kubernetes/admin.conf

step "approve kubelet serving certificates"
nodes=" $(kubectl get nodes -o jsonpath='{.items[*].metadata.name}') "
kubectl get csr -o jsonpath='{range .items[?(@.spec.signerName=="kubernetes.io/kubelet-serving")]}{.metadata.name} {.spec.username} {.status.conditions[*].type}{"\n"}{end}' \
  | while read -r name user state; do
      [ -z "${state:-}" ] || continue
      # Only a kubelet's own identity: a user named like a node is not one.
      case "$user" in system:node:?*) ;; *) continue ;; esac
      case "$nodes" in
        *" ${user#system:node:} "*)
          kubectl certificate approve "$name" >/dev/null
          changed "approved serving certificate of ${user#system:node:}"
          ;;
      esac
    done
