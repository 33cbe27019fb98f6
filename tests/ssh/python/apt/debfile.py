"""Test stand-in: .deb files are not emulated (tests/common/ssh_hosts.rs)."""


class DebPackage:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("apt.debfile (test stand-in): .deb files are not emulated")
