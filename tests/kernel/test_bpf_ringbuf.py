"""Ring buffer reading: records arrive as bytes, a failing callback surfaces its exception."""

from __future__ import annotations

import os
import struct

import pytest

from pathsteer.bpf import Program, RingBuffer, load_object

FRAME = bytes(14)  # the smallest frame BPF_PROG_TEST_RUN accepts (ETH_HLEN)


@pytest.fixture
def emitter(test_objects, netns):
    obj = load_object(test_objects["fixtures"])
    yield obj
    obj.close()


def test_records_arrive(emitter):
    records: list[bytes] = []
    with RingBuffer(emitter.map_fd("events"), records.append) as ring:
        prog = emitter.program("xdp_emit")
        for size in (14, 60, 1500):
            prog.test_run(FRAME + bytes(size - 14))
        assert ring.poll(timeout_ms=500) == 3
        assert ring.consume() == 0
    assert [struct.unpack("=II", r)[0] for r in records] == [14, 60, 1500]
    assert {struct.unpack("=II", r)[1] for r in records} == {1}  # test_run's ingress: loopback


def test_ring_of_a_program_found_by_id(emitter):
    """The path another process takes: program id → its ring buffer map by name."""
    records: list[bytes] = []
    with Program.from_id(emitter.program("xdp_emit").id) as prog:
        fd = prog.map_fd("events")
        try:
            with RingBuffer(fd, records.append) as ring:
                prog.test_run(FRAME)
                assert ring.poll(timeout_ms=500) == 1
        finally:
            os.close(fd)
    assert len(records) == 1


def test_callback_exception_is_raised_by_poll(emitter):
    def explode(record: bytes) -> None:
        raise ValueError(f"bad record of {len(record)} bytes")

    with RingBuffer(emitter.map_fd("events"), explode) as ring:
        emitter.program("xdp_emit").test_run(FRAME)
        with pytest.raises(ValueError, match="bad record of 8 bytes"):
            ring.poll(timeout_ms=500)
        assert ring.fileno() >= 0
