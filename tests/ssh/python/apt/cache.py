"""Test stand-in for python3-apt's apt.cache (tests/common/ssh_hosts.rs):
the high-level cache over apt_pkg.py's emulated package state."""

import subprocess

import apt_pkg


class FetchFailedException(IOError):
    pass


class LockFailedException(IOError):
    pass


class _Installed:
    def __init__(self, version):
        self.version = version


class Package:
    def __init__(self, name):
        self.name = name
        v = apt_pkg.installed_version(name)
        self.installed = _Installed(v) if v else None
        self.is_installed = v is not None
        # Files of an installed package (a purge is needed once they exist).
        self.installed_files = ["/usr/share/doc/" + name] if v else []


class Cache:
    def __init__(self, progress=None):
        self._cache = apt_pkg.Cache()

    def open(self, progress=None):
        self._cache = apt_pkg.Cache()

    def update(self, *args, **kwargs):
        # The apt-get stand-in's update: it records the call and snapshots
        # the configured repositories.
        r = subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise FetchFailedException(r.stderr.strip())
        return True

    def __getitem__(self, name):
        self._cache[name]  # KeyError when apt knows no such package
        return Package(name)

    def __contains__(self, name):
        return name in self._cache

    def __iter__(self):
        return iter(())

    def get_providing_packages(self, name):
        return []

    def is_virtual_package(self, name):
        return False
