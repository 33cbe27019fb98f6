# Phase 5, the control plane: what a restore would replace (reads etcd;
# installs etcd-client when missing, as the other etcd scripts do).
need_etcdctl
live
