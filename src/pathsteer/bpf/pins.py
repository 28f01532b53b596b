"""Pins under bpffs: ``/sys/fs/bpf/pathsteer/...``, mounting bpffs when it is not mounted.

A pin keeps a map or program alive without a process and lets another process open it.
Caveat (docs/platform.md): ``ip netns exec`` gives every invocation a fresh /sys, so a pin made in
one invocation is invisible to the next; there, re-find attached programs by the kernel's ids
instead (`pathsteer.bpf.attach.xdp_program_id`, `tc_program_id`, `Program.from_id`).
"""

from __future__ import annotations

import ctypes
import errno
import os

from pathsteer.bpf import libbpf as lb
from pathsteer.bpf.maps import Map
from pathsteer.bpf.object import Program, prog_info
from pathsteer.errors import BpfError, UsageError

BPFFS = "/sys/fs/bpf"
PIN_ROOT = f"{BPFFS}/pathsteer"

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def bpffs_mounted(path: str = BPFFS) -> bool:
    with open("/proc/self/mounts") as mounts:
        return any(fields[1] == path and fields[2] == "bpf" for fields in (line.split() for line in mounts))


def ensure_bpffs(path: str = BPFFS) -> None:
    """Mount bpffs at ``path`` unless it already is (``mount -t bpf bpf /sys/fs/bpf``)."""
    if bpffs_mounted(path):
        return
    os.makedirs(path, exist_ok=True)
    if _libc.mount(b"bpf", path.encode(), b"bpf", 0, b"mode=0700") != 0:
        err = ctypes.get_errno()
        if err == errno.EBUSY and bpffs_mounted(path):
            return  # someone mounted it meanwhile
        raise BpfError(f"mounting bpffs at {path}: {os.strerror(err)}", err)


def pin_path(*parts: str) -> str:
    """``pin_path("lab1", "counters")`` → ``/sys/fs/bpf/pathsteer/lab1/counters``."""
    for part in parts:
        if not part or "/" in part or part in (".", ".."):
            raise UsageError(f"pin name {part!r} must be one non-empty path component")
    return "/".join((PIN_ROOT, *parts))


def pin_fd(fd: int, path: str, what: str) -> str:
    """``bpf_obj_pin``; creates the directories under bpffs. Returns ``path``."""
    ensure_bpffs()
    for _ in range(3):  # a concurrent unpin may rmdir an empty parent between makedirs and pin
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with lb.captured_log() as log:
            ret = lb.bpf_obj_pin(fd, path.encode())
        if ret != -errno.ENOENT:
            break
    lb.check_int(ret, f"pinning {what} at {path}", log)
    return path


def open_pinned_fd(path: str) -> int:
    ensure_bpffs()
    ret = lb.bpf_obj_get(path.encode())
    if ret == -errno.ENOENT:
        raise BpfError(f"nothing is pinned at {path}", errno.ENOENT)
    return lb.check_int(ret, f"opening pin {path}")


def open_pinned_map(path: str, key_type: type, value_type: type) -> Map:
    """A pinned map, typed and checked against its BTF like any other."""
    return Map.from_fd(open_pinned_fd(path), key_type, value_type)


def open_pinned_program(path: str) -> Program:
    fd = open_pinned_fd(path)
    try:
        return Program(fd, prog_info(fd).name.decode(), owns_fd=True)
    except BaseException:
        os.close(fd)
        raise


def unpin(path: str) -> bool:
    """Remove a pin (False if absent) and the directories under PIN_ROOT it leaves empty."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    parent = os.path.dirname(path)
    while parent.startswith(PIN_ROOT):
        try:
            os.rmdir(parent)
        except OSError:  # not empty (someone else's pins) or already gone
            break
        parent = os.path.dirname(parent)
    return True
