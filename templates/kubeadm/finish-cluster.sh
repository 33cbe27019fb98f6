# Phase 5, the control plane, after the joins: kubelets ask for serving
# certificates signed by the cluster CA (serverTLSBootstrap), so
# metrics-server can verify them instead of skipping TLS checks. Only
# requests from the cluster's own nodes for kubelet-serving certificates,
# for names that are that node's own, are approved.
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
          # Every name the kubelet asks for is one of that node's own.
          node="${user#system:node:}"
          have=" $node $(kubectl get node "$node" -o jsonpath='{.status.addresses[*].address}' || :) "
          sans="$(kubectl get csr "$name" -o jsonpath='{.spec.request}' | base64 -d \
            | openssl req -noout -text 2>/dev/null | sed -n '/Subject Alternative Name/{n;p;}' | tr ',' '\n' \
            | sed -e 's/^ *//' -e 's/^DNS://' -e 's/^IP Address://' || :)"
          [ -n "$sans" ] || continue
          foreign=""
          for san in $sans; do
            case "$have" in *" $san "*) ;; *) foreign="$san" ;; esac
          done
          if [ -n "$foreign" ]; then
            echo "not approving $name: $foreign is not an address of node $node" >&2
            continue
          fi
          kubectl certificate approve "$name" >/dev/null
          changed "approved serving certificate of ${user#system:node:}"
          ;;
      esac
    done
