"""Run a block inside a named network namespace (``/run/netns/NAME``, as ``ip netns add`` makes).

Interface names, ifindexes and the netlink calls behind XDP/TC attach all resolve in the
calling thread's network namespace; BPF programs and maps do not belong to any namespace. So
a process can load the counters once and attach them to interfaces in several namespaces::

    with in_netns("lab1-router"):
        counters.attach("p1")

Only the network namespace changes (not the mount namespace, unlike ``ip netns exec``), and
only for the calling thread (setns(2)); it is restored when the block ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

from pathsteer.errors import UsageError

CLONE_NEWNET = 0x40000000  # uapi linux/sched.h
NETNS_RUN_DIR = "/run/netns"

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int, what: str) -> None:
    # os.setns exists only from Python 3.12.
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns into {what}: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """The calling thread is in network namespace ``name`` for the duration of the block."""
    path = name if name.startswith("/") else f"{NETNS_RUN_DIR}/{name}"
    try:
        target = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise UsageError(f"no network namespace {name!r} (looked for {path})") from None
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(target, name)
        try:
            yield
        finally:
            _setns(home, "the original namespace")
    finally:
        os.close(target)
        os.close(home)
