"""Test stand-in for python3-apt's apt package (tests/common/ssh_hosts.rs);
see apt_pkg.py beside it."""

from apt import cache, debfile  # noqa: F401
from apt.cache import Cache  # noqa: F401
