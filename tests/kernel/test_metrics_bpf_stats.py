"""``pathsteer_bpf_program_runs_total``'s reader (api.metrics.prog_run_stats): the kernel's run
count and run time of a loaded program, zero while bpf stats are off, counted once they are on
(BPF_ENABLE_STATS: on while its fd is open, off again when the test closes it)."""

from __future__ import annotations

import ctypes
import os

import pytest

from pathsteer.api import metrics
from pathsteer.bpf.counters import Counters, Hook

BPF_STATS_RUN_TIME = 0
FRAME = bytes(12) + b"\x08\x00" + bytes([0x45]) + bytes(39)


@pytest.fixture
def counters():
    c = Counters.load()
    yield c
    c.close()


def enable_stats() -> int:
    lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    fd = lib.bpf_enable_stats(BPF_STATS_RUN_TIME)
    if fd < 0:
        pytest.skip(f"BPF_ENABLE_STATS refused: {os.strerror(ctypes.get_errno())}")
    return fd


def test_runs_are_counted_only_while_stats_are_on(counters):
    prog = counters.programs[Hook.TC_INGRESS]
    if not metrics.bpf_stats_enabled():
        prog.test_run(FRAME, repeat=5)
        assert metrics.prog_run_stats(prog.fd) == (0, 0)
    before = metrics.prog_run_stats(prog.fd)[0]
    fd = enable_stats()
    try:
        prog.test_run(FRAME, repeat=10)
        runs, ns = metrics.prog_run_stats(prog.fd)
    finally:
        os.close(fd)
    assert runs == before + 10
    assert ns > 0
