# Phase 5, the control plane: one add-on manifest, downloaded by eshop and
# checked against its sha256 pin (eshop.toml or eshop.lock), written where
# init-control-plane.sh applies it from. It travels as base64 (letters,
# digits, + / =): whatever the manifest holds stays data. sha256sum checks
# it again on the node, after the trip.
step "add-on {{name}} {{version}}: sha256 {{sha256}}"
printf '%s' '{{content_base64}}' | base64 -d | write_file /etc/eshop/addons/{{name}}.yaml 0644 || :
printf '%s  %s\n' '{{sha256}}' /etc/eshop/addons/{{name}}.yaml | sha256sum --check --quiet --strict
