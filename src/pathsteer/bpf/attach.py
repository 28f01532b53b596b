"""Attach and detach programs at XDP and at TC clsact, and find what is attached.

Netlink attachments (``bpf_xdp_attach``, ``bpf_tc_attach``) outlive the process: the kernel
holds the program until it is detached or the interface goes away. That is why detaching
checks that the attached program is the expected one, and why `xdp_program_id` and
`tc_program_id` exist: another process (another ``ip netns exec``) re-finds the program, and
from it the maps, by the kernel's ids.

TC: we create the clsact qdisc when missing (-EEXIST is fine) and add *our* filter at our own
(handle, priority); we never call ``bpf_tc_hook_destroy``: on INGRESS it deletes every ingress
filter, other tools' included, and on INGRESS|EGRESS the qdisc itself (docs/platform.md).
"""

from __future__ import annotations

import ctypes
import errno
import socket
from dataclasses import dataclass
from enum import Enum

from pathsteer.bpf import libbpf as lb
from pathsteer.bpf.object import Program
from pathsteer.errors import BpfError, UsageError

# XDP_FLAGS_* (uapi linux/if_link.h)
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3
XDP_FLAGS_REPLACE = 1 << 4
# XDP_ATTACHED_* (uapi linux/if_link.h), as bpf_xdp_query reports attach_mode
_ATTACHED_NONE, _ATTACHED_DRV, _ATTACHED_SKB, _ATTACHED_HW, _ATTACHED_MULTI = range(5)
# BPF_TC_F_REPLACE (libbpf.h)
BPF_TC_F_REPLACE = 1


class XdpMode(Enum):
    """Where the XDP program runs: in the driver (native) or after the skb exists (generic)."""

    NATIVE = "native"
    GENERIC = "generic"

    @property
    def flags(self) -> int:
        return XDP_FLAGS_DRV_MODE if self is XdpMode.NATIVE else XDP_FLAGS_SKB_MODE


class TcDirection(Enum):
    """``enum bpf_tc_attach_point``: BPF_TC_INGRESS / BPF_TC_EGRESS."""

    INGRESS = 1
    EGRESS = 2


@dataclass(frozen=True)
class XdpAttachment:
    ifindex: int
    mode: XdpMode
    prog_id: int


@dataclass(frozen=True)
class TcAttachment:
    ifindex: int
    direction: TcDirection
    handle: int
    priority: int
    prog_id: int


def ifindex_of(interface: str | int) -> int:
    """The ifindex of a name in the calling thread's network namespace (ints pass through)."""
    if isinstance(interface, int):
        return interface
    try:
        return socket.if_nametoindex(interface)
    except OSError:
        raise UsageError(f"no interface {interface!r} in this network namespace") from None


# --- XDP --------------------------------------------------------------------------------------

def xdp_query(interface: str | int) -> tuple[int, XdpMode | None]:
    """(prog id, mode) of the XDP program on the interface; (0, None) when there is none."""
    ifindex = ifindex_of(interface)
    q = lb.opts(lb.bpf_xdp_query_opts)
    lb.check_int(lb.bpf_xdp_query(ifindex, 0, ctypes.byref(q)), f"querying XDP on ifindex {ifindex}")
    if q.attach_mode == _ATTACHED_NONE:
        return 0, None
    if q.attach_mode == _ATTACHED_DRV:
        return q.drv_prog_id, XdpMode.NATIVE
    if q.attach_mode == _ATTACHED_SKB:
        return q.skb_prog_id, XdpMode.GENERIC
    raise BpfError(f"ifindex {ifindex}: XDP attached in a mode pathsteer does not manage (attach_mode {q.attach_mode})")


def xdp_program_id(interface: str | int) -> int | None:
    """The id of the XDP program on the interface, or None."""
    return xdp_query(interface)[0] or None


def attach_xdp(program: Program, interface: str | int, mode: XdpMode | None = None) -> XdpAttachment:
    """Attach at XDP without replacing anyone's program (XDP_FLAGS_UPDATE_IF_NOEXIST);
    attaching the program that is already there is a no-op.

    ``mode=None`` tries native first and falls back to generic (SKB) mode when the driver
    refuses; the returned XdpAttachment says which mode it got."""
    ifindex = ifindex_of(interface)
    modes = [mode] if mode else [XdpMode.NATIVE, XdpMode.GENERIC]
    failures = []
    for m in modes:
        with lb.captured_log() as log:
            ret = lb.bpf_xdp_attach(ifindex, program.fd, XDP_FLAGS_UPDATE_IF_NOEXIST | m.flags, None)
        if ret == 0:
            return XdpAttachment(ifindex, m, program.id)
        if -ret in (errno.EBUSY, errno.EEXIST):
            other, other_mode = xdp_query(ifindex)
            if other == program.id and other_mode is not None:
                return XdpAttachment(ifindex, other_mode, other)  # already there: nothing to do
            raise BpfError(
                f"ifindex {ifindex} already has an XDP program (id {other}, {other_mode.value if other_mode else '?'} mode);"
                f" pathsteer does not replace it", -ret, "".join(log))
        failures.append(lb.error(f"attaching {program.name} at XDP ({m.value}) on ifindex {ifindex}", -ret, log))
    if len(failures) == 1:
        raise failures[0]
    raise BpfError("; ".join(str(f) for f in failures), failures[-1].errno, "".join(f.log for f in failures))


def detach_xdp(interface: str | int, prog_id: int | None = None) -> bool:
    """Detach the XDP program; with ``prog_id``, only if that is the one attached (else
    BpfError, nothing touched). False when nothing was attached."""
    ifindex = ifindex_of(interface)
    attached, mode = xdp_query(ifindex)
    if not attached:
        return False
    if prog_id is not None and attached != prog_id:
        raise BpfError(f"ifindex {ifindex}: XDP program id {attached} is attached, not {prog_id}; left in place")
    # old_prog_fd makes the kernel detach only if that program is still the one attached
    # (XDP_FLAGS_REPLACE), closing the window between our query and the detach.
    with Program.from_id(attached) as prog:
        o = lb.opts(lb.bpf_xdp_attach_opts, old_prog_fd=prog.fd)
        with lb.captured_log() as log:
            ret = lb.bpf_xdp_detach(ifindex, mode.flags, ctypes.byref(o))
    if ret == -errno.EEXIST:  # replaced meanwhile by someone else
        raise BpfError(f"ifindex {ifindex}: XDP program changed while detaching; left in place", errno.EEXIST)
    lb.check_int(ret, f"detaching XDP from ifindex {ifindex}", log)
    return True


# --- TC ---------------------------------------------------------------------------------------

def _hook(ifindex: int, direction: TcDirection) -> lb.bpf_tc_hook:
    return lb.opts(lb.bpf_tc_hook, ifindex=ifindex, attach_point=direction.value)


def attach_tc(program: Program, interface: str | int, direction: TcDirection, *, handle: int, priority: int,
              replace: bool = False) -> TcAttachment:
    """Add a direct-action cls_bpf filter at (handle, priority) on the clsact hook, creating
    the clsact qdisc if missing. Other filters on the hook are left alone; a filter already at
    our (handle, priority) is an error unless ``replace`` (or unless it is this very program)."""
    ifindex = ifindex_of(interface)
    if not (0 < handle <= 0xFFFFFFFF and 0 < priority <= 0xFFFF):
        raise UsageError(f"TC handle {handle} / priority {priority} out of range (1..2^32-1 / 1..65535)")
    hook = _hook(ifindex, direction)
    with lb.captured_log() as log:
        ret = lb.bpf_tc_hook_create(ctypes.byref(hook))
    if ret != -errno.EEXIST:  # clsact already there: fine
        lb.check_int(ret, f"creating clsact on ifindex {ifindex}", log)
    o = lb.opts(lb.bpf_tc_opts, prog_fd=program.fd, handle=handle, priority=priority,
                flags=BPF_TC_F_REPLACE if replace else 0)
    with lb.captured_log() as log:
        ret = lb.bpf_tc_attach(ctypes.byref(hook), ctypes.byref(o))
    if ret == -errno.EEXIST:
        if tc_program_id(ifindex, direction, handle=handle, priority=priority) == program.id:
            return TcAttachment(ifindex, direction, handle, priority, program.id)  # already there
        raise BpfError(f"ifindex {ifindex}: a TC {direction.name.lower()} filter already sits at handle "
                       f"{handle:#x} priority {priority}; not replaced", errno.EEXIST, "".join(log))
    lb.check_int(ret, f"attaching {program.name} at TC {direction.name.lower()} on ifindex {ifindex}", log)
    return TcAttachment(ifindex, direction, handle, priority, o.prog_id)


def tc_program_id(interface: str | int, direction: TcDirection, *, handle: int, priority: int) -> int | None:
    """The id of the BPF program at (handle, priority) on the hook, or None."""
    ifindex = ifindex_of(interface)
    hook = _hook(ifindex, direction)
    o = lb.opts(lb.bpf_tc_opts, handle=handle, priority=priority)
    with lb.captured_log() as log:
        ret = lb.bpf_tc_query(ctypes.byref(hook), ctypes.byref(o))
    if ret in (-errno.ENOENT, -errno.EINVAL):  # no such filter / no clsact qdisc at all
        return None
    lb.check_int(ret, f"querying TC {direction.name.lower()} on ifindex {ifindex}", log)
    return o.prog_id or None


def detach_tc(interface: str | int, direction: TcDirection, *, handle: int, priority: int,
              prog_id: int | None = None) -> bool:
    """Remove our filter at (handle, priority) with ``bpf_tc_detach``; the clsact qdisc and
    every other filter stay. With ``prog_id``, only if that program is the one there. False
    when there was no filter."""
    ifindex = ifindex_of(interface)
    attached = tc_program_id(ifindex, direction, handle=handle, priority=priority)
    if attached is None:
        return False
    if prog_id is not None and attached != prog_id:
        raise BpfError(f"ifindex {ifindex}: TC {direction.name.lower()} handle {handle:#x} priority {priority} "
                       f"holds program id {attached}, not {prog_id}; left in place")
    hook = _hook(ifindex, direction)
    o = lb.opts(lb.bpf_tc_opts, handle=handle, priority=priority)
    with lb.captured_log() as log:
        ret = lb.bpf_tc_detach(ctypes.byref(hook), ctypes.byref(o))
    if ret == -errno.ENOENT:
        return False
    lb.check_int(ret, f"detaching TC {direction.name.lower()} filter from ifindex {ifindex}", log)
    return True

