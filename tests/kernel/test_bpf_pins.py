"""Pin and re-open maps and programs under /sys/fs/bpf/pathsteer/."""

from __future__ import annotations

import ctypes
import os

import pytest

from pathsteer.bpf import load_object, open_pinned_map, open_pinned_program, pin_path, unpin
from pathsteer.bpf.pins import bpffs_mounted
from pathsteer.errors import BpfError


class Pair(ctypes.Structure):
    _fields_ = [("a", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("b", ctypes.c_uint64)]


def test_pin_and_reopen(test_objects, netns, pin_dir):
    with load_object(test_objects["fixtures"]) as obj:
        m = obj.map("test_hash", ctypes.c_uint32, Pair)
        m.update(5, Pair(a=5, b=55))
        map_pin = m.pin(pin_path(pin_dir, "maps", "test_hash"))
        prog = obj.program("xdp_emit")
        prog_pin = prog.pin(pin_path(pin_dir, "xdp_emit"))
        prog_id = prog.id
    assert bpffs_mounted()
    # The object is closed: only the pins keep the map and the program alive.
    with open_pinned_map(map_pin, ctypes.c_uint32, Pair) as again:
        assert again.lookup(5).b == 55
    with open_pinned_program(prog_pin) as again:
        assert again.id == prog_id and again.name == "xdp_emit"
    assert unpin(map_pin) and unpin(prog_pin)
    assert not unpin(map_pin)
    assert not os.path.exists(os.path.dirname(map_pin))  # emptied directories go too
    with pytest.raises(BpfError, match="nothing is pinned at"):
        open_pinned_map(map_pin, ctypes.c_uint32, Pair)
