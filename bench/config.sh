#!/usr/bin/env bash
# Phase 9 (eshop phase config) on three sshd hosts in network namespaces
# (the test harness of tests/common/ssh_hosts.rs, with its recording
# stand-ins for apt, systemctl, kubeadm and kubectl): `eshop phase config
# apply` first run and no-op re-run (median of RUNS, default 3), the
# slowest tasks of the last no-op run (TOP of them, default 12), then the same playbooks on fresh
# hosts under plain ansible-playbook defaults (one playbook per run, no
# Mitogen, no pipelining, facts gathered every time). BASELINE=0 skips the
# plain runs. Needs root (namespaces) and scripts/test-setup.sh's tools.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-setup.sh >&2
# shellcheck disable=SC1091
source "$HOME/.cache/eshop-test-tools/env"
cargo test --locked --quiet --test config_phase --no-run >&2
cargo test --locked --quiet --test config_phase benchmark_config_apply \
  -- --ignored --exact --nocapture 2>&1 \
  | grep -vE '^(running [0-9]+ test|test benchmark_config_apply|test result:)|^$'
