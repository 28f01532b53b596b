"""BPF_PROG_TEST_RUN (``bpf_prog_test_run_opts``): run a program on a packet in the kernel.

The kernel builds the context from ``data`` (an Ethernet frame, at least ETH_HLEN bytes) in
the calling thread's network namespace: XDP sees ingress_ifindex = that namespace's loopback
unless ``ctx`` (a ``struct xdp_md``) names another device; TC sees skb->ifindex = loopback
unless ``ctx`` (a ``struct __sk_buff``) sets ``ifindex`` (net/bpf/test_run.c).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pathsteer.bpf import libbpf as lb

if TYPE_CHECKING:
    from pathsteer.bpf.object import Program

# Room for a program that grows the frame (bpf_xdp_adjust_head/tail, bpf_skb_change_tail).
OUTPUT_HEADROOM = 4096


@dataclass(frozen=True)
class RunResult:
    """What one BPF_PROG_TEST_RUN returned."""

    __test__ = False  # not a pytest test class

    retval: int  # the verdict: XDP_* or TC_ACT_*
    data_out: bytes  # the frame as the program left it
    duration_ns: int  # mean time per repetition, as the kernel measured it
    ctx_out: bytes = b""


def prog_test_run(program: Program, data: bytes, *, repeat: int = 1,
                  ctx: bytes | ctypes.Structure | None = None) -> RunResult:
    """Run ``program`` ``repeat`` times on ``data``; the verdict, output frame and ns/run."""
    data_in = ctypes.create_string_buffer(bytes(data), len(data))
    data_out = ctypes.create_string_buffer(len(data) + OUTPUT_HEADROOM)
    o = lb.opts(lb.bpf_test_run_opts, data_in=ctypes.addressof(data_in), data_size_in=len(data),
                data_out=ctypes.addressof(data_out), data_size_out=len(data_out), repeat=repeat)
    ctx_in = ctx_out = None
    if ctx is not None:
        raw = bytes(ctx)
        ctx_in = ctypes.create_string_buffer(raw, len(raw))
        ctx_out = ctypes.create_string_buffer(len(raw))
        o.ctx_in, o.ctx_size_in = ctypes.addressof(ctx_in), len(raw)
        o.ctx_out, o.ctx_size_out = ctypes.addressof(ctx_out), len(raw)
    with lb.captured_log() as log:
        ret = lb.bpf_prog_test_run_opts(program.fd, ctypes.byref(o))
    lb.check_int(ret, f"BPF_PROG_TEST_RUN of {program.name} ({len(data)} bytes in)", log)
    return RunResult(
        retval=o.retval,
        data_out=data_out.raw[: o.data_size_out],
        duration_ns=o.duration,
        ctx_out=ctx_out.raw[: o.ctx_size_out] if ctx_out is not None else b"",
    )
