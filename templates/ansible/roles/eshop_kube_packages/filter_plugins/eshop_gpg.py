# eshop: reads `gpg --show-keys --with-colons` output (the pkgs.k8s.io key
# check, as prepare-node.sh's primary_keys).
from __future__ import annotations

DOCUMENTATION = r"""
name: eshop_primary_fingerprints
short_description: The primary keys' fingerprints in gpg --with-colons output
description:
  - The fingerprint of every primary key (the C(fpr) record right after a
    C(pub) record), joined by spaces; subkeys are left out.
positional: _input
options:
  _input:
    description: the standard output of C(gpg --batch --show-keys --with-colons FILE)
    type: str
    required: true
"""


def eshop_primary_fingerprints(text):
    out = []
    want = False
    for line in str(text).splitlines():
        fields = line.split(":")
        if fields[0] == "pub":
            want = True
        elif fields[0] == "fpr" and want and len(fields) > 9:
            out.append(fields[9])
            want = False
    return " ".join(out)


class FilterModule:
    def filters(self):
        return {"eshop_primary_fingerprints": eshop_primary_fingerprints}
