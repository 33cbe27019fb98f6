"""Test stand-in for python3-apt's apt_pkg (tests/common/ssh_hosts.rs).

Not python-apt: just what ansible.builtin.apt asks of it, answered from the
package state of the apt-get stand-in ($STANDIN_STATE/packages/<pkg> holds an
installed version; apt-k8s-repos the pkgs.k8s.io minors that the last
`apt-get update` saw), never from the real dpkg or apt databases. The harness
puts this directory on the test hosts' user site-packages (/root/.local),
where the real python3 finds it. Availability is the apt-get stand-in's:
kubelet, kubeadm, kubectl, kubernetes-cni and cri-tools only from a
configured pkgs.k8s.io repository (in its minor version), anything else at
its default version (containerd 1.7.24-0stand-in, others 1.0-0stand-in) or
at the version asked for.
"""

import os
import subprocess

CURSTATE_NOT_INSTALLED = 0
CURSTATE_INSTALLED = 6

_K8S = ("kubelet", "kubeadm", "kubectl", "kubernetes-cni", "cri-tools")


def _env():
    """The paths the harness baked in for this host (standin-env)."""
    out = {}
    with open("/usr/local/sbin/standin-env", encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                out[k] = v.strip("'")
    return out


def state_dir():
    return _env()["STANDIN_STATE"]


def installed_version(name):
    try:
        with open(os.path.join(state_dir(), "packages", name), encoding="utf-8") as f:
            return f.read().strip() or None
    except FileNotFoundError:
        return None


def k8s_repos():
    try:
        with open(os.path.join(state_dir(), "apt-k8s-repos"), encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        return []


def available(name, pinned=None):
    """The version apt would install, or None when it cannot."""
    if name in _K8S:
        repos = k8s_repos()
        if not repos:
            return None
        if pinned:
            minor = "v" + ".".join(pinned.split(".")[:2])
            return pinned if minor in repos else None
        latest = sorted(repos, key=lambda r: [int(x) for x in r[1:].split(".")])[-1]
        return latest[1:] + ".0-1.1"
    if pinned:
        return pinned
    return "1.7.24-0stand-in" if name == "containerd" else "1.0-0stand-in"


def version_compare(a, b):
    """<0, 0, >0 as dpkg orders Debian versions (the real dpkg, no state)."""
    if a == b:
        return 0
    lt = subprocess.run(["/usr/bin/dpkg", "--compare-versions", a, "lt", b], check=False).returncode == 0
    return -1 if lt else 1


VersionCompare = version_compare


class _Config(dict):
    def find_file(self, key, default=""):
        return {"Dir::Etc::preferences": "/etc/apt/preferences",
                "Dir::Etc::preferencesparts": "/etc/apt/preferences.d"}.get(key, default)

    def find(self, key, default=""):
        return self.get(key, default)


config = Config = _Config()


def init():
    pass


def get_architectures():
    return ["amd64"]


class Version:
    def __init__(self, ver_str):
        self.ver_str = ver_str


class Package:
    """The low-level package: its name and dpkg's state."""

    def __init__(self, name):
        self.name = name
        v = installed_version(name)
        self.current_ver = Version(v) if v else None
        self.current_state = CURSTATE_INSTALLED if v else CURSTATE_NOT_INSTALLED


class Cache:
    """Every package the stand-in can install or has installed."""

    def __init__(self, progress=None):
        pass

    def __getitem__(self, name):
        if installed_version(name) is None and available(name) is None:
            raise KeyError(name)
        return Package(name)

    def __contains__(self, name):
        try:
            self[name]
        except KeyError:
            return False
        return True


class Policy:
    """Pins: only `Version` pins (what `apt-get install name=version` does)."""

    def __init__(self, cache):
        self._pins = {}

    def read_pinfile(self, path):
        pass

    def read_pindir(self, path):
        pass

    def create_pin(self, kind, name, value, priority):
        if kind == "Version":
            self._pins[name] = value

    def get_candidate_ver(self, pkg):
        v = available(pkg.name, self._pins.get(pkg.name))
        return Version(v) if v else None
