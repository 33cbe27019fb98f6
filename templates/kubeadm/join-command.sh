# Phase 5, the control plane: a fresh bootstrap token (one hour) for the
# workers that have not joined yet. eshop reads the join line from stdout
# and hands it to the workers over SSH; it is never logged.
export KUBECONFIG=/etc/kubernetes/admin.conf
kubeadm token create --ttl 1h --description "eshop {{project}}: join workers" --print-join-command
