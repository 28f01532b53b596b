"""BPF_PROG_TEST_RUN (``bpf_prog_test_run_opts``): run a program on a packet in the kernel.

The kernel builds the context from ``data`` (an Ethernet frame, at least ETH_HLEN bytes) in
the calling thread's network namespace: XDP sees ingress_ifindex = that namespace's loopback
unless ``ctx`` (a ``struct xdp_md``) names another device; TC sees skb->ifindex = loopback
unless ``ctx`` (a ``struct __sk_buff``) sets ``ifindex`` (net/bpf/test_run.c).

Live frames (``flags=BPF_F_TEST_XDP_LIVE_FRAMES``, XDP only, kernel >= 5.18): the kernel
copies ``data`` into page-pool pages, runs the program ``repeat`` times, ``batch_size`` frames
per batch (default 64, at most 256), and *performs* the verdicts: XDP_REDIRECT really sends the
frame (as an xdp_frame through the target's ``ndo_xdp_xmit``), XDP_TX is a redirect out of the
ctx's ingress device, XDP_PASS builds an skb for the stack. Nothing comes back: no output
frame or context (passing room for one is -EINVAL), no ``retval``, no ``duration``. Between
batches bottom halves are enabled, so receive work the frames caused on this CPU (a veth
peer's NAPI poll) runs in the calling thread and is charged to it. See `prog_test_run_live`.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pathsteer.bpf import libbpf as lb
from pathsteer.errors import BpfError

if TYPE_CHECKING:
    from pathsteer.bpf.btf import Btf
    from pathsteer.bpf.object import Program

# Room for a program that grows the frame (bpf_xdp_adjust_head/tail, bpf_skb_change_tail).
OUTPUT_HEADROOM = 4096

# BPF_PROG_TEST_RUN flags (uapi linux/bpf.h)
BPF_F_TEST_RUN_ON_CPU = 1 << 0  # raw_tracepoint programs only: run on ``cpu``
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1  # XDP: perform the verdicts on real frames (5.18)
LIVE_FRAMES_MAX_BATCH = 256  # TEST_XDP_MAX_BATCH (net/bpf/test_run.c)


@dataclass(frozen=True)
class RunResult:
    """What one BPF_PROG_TEST_RUN returned."""

    __test__ = False  # not a pytest test class

    retval: int  # the verdict: XDP_* or TC_ACT_*
    data_out: bytes  # the frame as the program left it
    duration_ns: int  # mean time per repetition, as the kernel measured it
    ctx_out: bytes = b""


def prog_test_run(program: Program, data: bytes, *, repeat: int = 1,
                  ctx: bytes | ctypes.Structure | None = None, flags: int = 0,
                  batch_size: int = 0, cpu: int = 0) -> RunResult:
    """Run ``program`` ``repeat`` times on ``data``; the verdict, output frame and ns/run.

    ``flags``/``batch_size``/``cpu`` are ``bpf_test_run_opts``'s: with
    BPF_F_TEST_XDP_LIVE_FRAMES no output buffers are passed (the kernel refuses them) and the
    result has no frame, verdict or duration (see the module docstring)."""
    live = bool(flags & BPF_F_TEST_XDP_LIVE_FRAMES)
    if batch_size and not live:
        raise BpfError("BPF_PROG_TEST_RUN: batch_size needs BPF_F_TEST_XDP_LIVE_FRAMES")
    if not 0 <= batch_size <= LIVE_FRAMES_MAX_BATCH:
        raise BpfError(f"BPF_PROG_TEST_RUN: batch_size {batch_size} is beyond 0..{LIVE_FRAMES_MAX_BATCH}")
    data_in = ctypes.create_string_buffer(bytes(data), len(data))
    o = lb.opts(lb.bpf_test_run_opts, data_in=ctypes.addressof(data_in), data_size_in=len(data),
                repeat=repeat, flags=flags, batch_size=batch_size, cpu=cpu)
    data_out = None
    if not live:
        data_out = ctypes.create_string_buffer(len(data) + OUTPUT_HEADROOM)
        o.data_out, o.data_size_out = ctypes.addressof(data_out), len(data_out)
    ctx_in = ctx_out = None
    if ctx is not None:
        raw = bytes(ctx)
        ctx_in = ctypes.create_string_buffer(raw, len(raw))
        o.ctx_in, o.ctx_size_in = ctypes.addressof(ctx_in), len(raw)
        if not live:
            ctx_out = ctypes.create_string_buffer(len(raw))
            o.ctx_out, o.ctx_size_out = ctypes.addressof(ctx_out), len(raw)
    with lb.captured_log() as log:
        ret = lb.bpf_prog_test_run_opts(program.fd, ctypes.byref(o))
    what = "live frames " if live else ""
    lb.check_int(ret, f"BPF_PROG_TEST_RUN {what}of {program.name} ({len(data)} bytes in, repeat {repeat})", log)
    if live:
        return RunResult(retval=o.retval, data_out=b"", duration_ns=o.duration)
    return RunResult(
        retval=o.retval,
        data_out=data_out.raw[: o.data_size_out] if data_out is not None else b"",
        duration_ns=o.duration,
        ctx_out=ctx_out.raw[: o.ctx_size_out] if ctx_out is not None else b"",
    )


def prog_test_run_live(program: Program, frame: bytes, count: int, *, batch_size: int = 0,
                       ingress_ifindex: int = 0) -> None:
    """Send ``count`` copies of ``frame`` through ``program`` in live-frames mode: its
    verdicts happen for real (a generator program returns ``bpf_redirect(ifindex, 0)``).
    ``ingress_ifindex``: the device the frames seem to arrive on (the target of XDP_TX;
    default the calling thread's loopback); it must be in the thread's network namespace."""
    ctx = None
    if ingress_ifindex:
        ctx = XdpMd(ingress_ifindex=ingress_ifindex)
    prog_test_run(program, frame, repeat=count, ctx=ctx, flags=BPF_F_TEST_XDP_LIVE_FRAMES,
                  batch_size=batch_size)


def skb_context(btf: Btf, ifindex: int) -> bytes:
    """A ``struct __sk_buff`` test_run context naming ``ifindex`` (the TC programs' skb->ifindex),
    laid out from ``btf`` (the object's or the kernel's) rather than a hand-copied struct."""
    from pathsteer.bpf.btf import KIND_STRUCT

    skb = btf.find("__sk_buff", KIND_STRUCT)
    buf = bytearray(btf.size_of(skb))
    offset = next(m.offset for m in btf.members(skb) if m.name == "ifindex")
    buf[offset:offset + 4] = ifindex.to_bytes(4, "little")
    return bytes(buf)


class XdpMd(ctypes.Structure):
    """``struct xdp_md`` (uapi linux/bpf.h), the XDP test_run context: data offsets are set by
    the kernel from ``data``; ``ingress_ifindex``/``rx_queue_index`` name the receiving queue."""
    _fields_ = [("data", ctypes.c_uint32), ("data_end", ctypes.c_uint32), ("data_meta", ctypes.c_uint32),
                ("ingress_ifindex", ctypes.c_uint32), ("rx_queue_index", ctypes.c_uint32),
                ("egress_ifindex", ctypes.c_uint32)]


SIOCETHTOOL = 0x8946  # uapi linux/sockios.h
ETHTOOL_GGRO, ETHTOOL_SGRO = 0x2B, 0x2C  # uapi linux/ethtool.h, with struct ethtool_value


def gro(interface: str, on: bool | None = None) -> bool:
    """GRO of ``interface`` in the calling thread's namespace, set first when ``on`` is given
    (``ethtool -K IF gro on|off``, through the legacy ioctl: no ethtool binary needed).

    Why live frames care: a veth end takes xdp_frames redirected at its peer only while it
    runs NAPI, which it does with an XDP program attached or with GRO on (veth.c sets the
    peer's NETDEV_XDP_ACT_NDO_XMIT then); otherwise the redirect fails and the frame is dropped."""
    import fcntl
    import socket
    import struct

    value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_GGRO if on is None else ETHTOOL_SGRO,
                                                    int(bool(on))), 8)
    ifreq = struct.pack("16sP", interface.encode(), ctypes.addressof(value)) + bytes(16)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
        except OSError as exc:
            raise BpfError(f"{'reading' if on is None else 'setting'} GRO of {interface}: {exc.strerror}",
                           exc.errno) from None
    return bool(struct.unpack("II", value.raw)[1]) if on is None else bool(on)
