"""Entering network namespaces: in-process (setns through libc) and for child commands.

In-process entry is what the delay line uses to open each path's TUN devices inside that path's
namespace, and what the builder uses to write per-namespace sysctls: /proc/sys/net is resolved
against the *opening* task's network namespace (net/sysctl_net.c), so a write done after setns
lands in the right namespace without spawning ``ip netns exec``.

Child commands go through ``ip netns exec``, which also gives them a /sys of that namespace (it
mounts a fresh sysfs in a private mount namespace: docs/platform.md). /run is shared.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from collections.abc import Iterator, Sequence

from pathsteer.errors import LabError

NETNS_RUN_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000  # <linux/sched.h>

_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(namespace: str) -> str:
    return os.path.join(NETNS_RUN_DIR, namespace)


def exists(namespace: str) -> bool:
    return os.path.exists(netns_path(namespace))


def list_namespaces() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise LabError(f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def entered(namespace: str) -> Iterator[None]:
    """Run the body with this thread in ``namespace``; always come back to where it was."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            target = os.open(netns_path(namespace), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise LabError(f"network namespace {namespace!r} does not exist") from None
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def write_sysctls(namespace: str, values: dict[str, str]) -> None:
    """Write ``{"net/ipv4/ip_forward": "1", ...}`` under /proc/sys inside ``namespace``."""
    with entered(namespace):
        for key, value in values.items():
            with open(f"/proc/sys/{key}", "w") as f:
                f.write(value)


def exec_argv(namespace: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs ``argv`` inside ``namespace`` (through ``ip netns exec``)."""
    return ["ip", "netns", "exec", namespace, *argv]


def run(namespace: str, argv: Sequence[str], *, check: bool = True, timeout: float | None = None,
        capture: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    """Run a command inside ``namespace`` and wait for it; ``check`` raises `LabError` on failure."""
    proc = subprocess.run(exec_argv(namespace, argv), capture_output=capture, text=True,
                          timeout=timeout, input=input)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip().splitlines()
        raise LabError(f"in {namespace}: {' '.join(argv)}: exit {proc.returncode}"
                       + (f": {detail[-1]}" if detail else ""))
    return proc


def popen(namespace: str, argv: Sequence[str], **kwargs) -> subprocess.Popen:
    """Start a command inside ``namespace`` (``subprocess.Popen`` keyword arguments pass through)."""
    return subprocess.Popen(exec_argv(namespace, argv), **kwargs)


def ip_batch(namespace: str | None, commands: Sequence[str], *, force: bool = False) -> None:
    """Feed ``commands`` to ``ip [-n NS] [-force] -batch -``: one process for many changes.

    Batch lines cannot carry global options, and ``ip rule`` does not infer IPv6 from
    ``from ::/0``; so lines starting with ``-6 `` are collected into a second ``ip -6`` batch,
    run after the first. Without ``force`` a failing line raises `LabError` naming it.
    """
    v4 = [c for c in commands if not c.startswith("-6 ")]
    v6 = [c[3:] for c in commands if c.startswith("-6 ")]
    for family, lines in (("", v4), ("-6", v6)):
        if not lines:
            continue
        argv = ["ip"]
        if family:
            argv.append(family)
        if namespace:
            argv += ["-n", namespace]
        if force:
            argv.append("-force")
        argv += ["-batch", "-"]
        proc = subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True, text=True)
        if proc.returncode != 0 and not force:
            where = f" in {namespace}" if namespace else ""
            detail = " ".join(proc.stderr.split())
            raise LabError(f"ip {family + ' ' if family else ''}-batch{where} failed: {detail or 'exit ' + str(proc.returncode)}")


def pids(namespace: str) -> list[int]:
    """Processes whose network namespace is ``namespace`` (``ip netns pids``)."""
    proc = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]
