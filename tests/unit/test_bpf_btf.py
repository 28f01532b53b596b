"""The C/Python contract, without root: constants come from the object's BTF, and the ctypes
mirrors of map keys and values are checked against it (a drifted struct must be caught)."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from pathsteer.bpf.btf import Btf
from pathsteer.bpf.build import BPF_SOURCE_DIR, compile_object
from pathsteer.bpf.counters import MAP, CounterKey, CounterValue, Hook
from pathsteer.bpf.object import OBJECTS_DIR, BpfObject
from pathsteer.errors import BpfError


@pytest.fixture(scope="module")
def counters_path(tmp_path_factory) -> Path:
    """The packaged object when `make bpf` built it, else a fresh compile of the same source."""
    packaged = OBJECTS_DIR / "counters.bpf.o"
    if packaged.is_file():
        return packaged
    return compile_object(BPF_SOURCE_DIR / "counters.bpf.c", tmp_path_factory.mktemp("bpf") / "counters.bpf.o")


@pytest.fixture
def counters_obj(counters_path):
    obj = BpfObject.open(counters_path)
    yield obj
    obj.close()


def test_hook_enum_comes_from_btf(counters_path):
    with Btf.from_file(counters_path) as btf:
        values = btf.enum_values("pathsteer_hook")
    assert set(values) == {h.c_name for h in Hook}
    assert len(set(values.values())) == len(Hook)  # distinct numbers, whatever they are


def test_limit_matches_map_definition(counters_obj):
    limit = counters_obj.constants("pathsteer_limits")["PATHSTEER_LIMIT_COUNTER_KEYS"]
    assert limit == counters_obj.max_entries(MAP)


def test_limit_override_reaches_python(tmp_path):
    """-DPATHSTEER_MAX_COUNTER_KEYS changes the enumerator Python reads, not just the map."""
    out = compile_object(BPF_SOURCE_DIR / "counters.bpf.c", tmp_path / "c.bpf.o",
                         defines={"PATHSTEER_MAX_COUNTER_KEYS": 123})
    with BpfObject.open(out) as obj:
        assert obj.constants("pathsteer_limits")["PATHSTEER_LIMIT_COUNTER_KEYS"] == 123
        assert obj.max_entries(MAP) == 123


def test_mirrors_match_btf(counters_obj):
    counters_obj.check_map_types(MAP, CounterKey, CounterValue)


class NarrowPackets(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("bytes", ctypes.c_uint64)]


class Swapped(ctypes.Structure):
    _fields_ = [("bytes", ctypes.c_uint64), ("packets", ctypes.c_uint64)]


class Missing(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint64), ("other", ctypes.c_uint64)]


class TooSmall(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint64)]


@pytest.mark.parametrize(
    "drifted, words",
    [
        (Swapped, ["Swapped.packets", "offset 8", "pathsteer_counter.packets", "offset 0"]),
        (Missing, ["Missing.other", "no counterpart", "pathsteer_counter"]),
        (TooSmall, ["TooSmall", "8 bytes", "pathsteer_counter", "16 bytes"]),
        (NarrowPackets, ["NarrowPackets.pad", "no counterpart"]),
    ],
    ids=["swapped-fields", "renamed-field", "wrong-size", "extra-field"],
)
def test_drifted_value_is_caught(counters_obj, drifted, words):
    with pytest.raises(BpfError) as info:
        counters_obj.check_map_types(MAP, CounterKey, drifted)
    message = str(info.value)
    assert message.startswith(f"map {MAP} value")
    for word in words:
        assert word in message


def test_drifted_field_size_is_caught(counters_obj):
    class NarrowHook(ctypes.Structure):
        _fields_ = [("ifindex", ctypes.c_uint32), ("hook", ctypes.c_uint16), ("pad", ctypes.c_uint16)]

    with pytest.raises(BpfError, match=r"NarrowHook\.pad has no counterpart"):
        counters_obj.check_map_types(MAP, NarrowHook, CounterValue)

    class ShortHook(ctypes.Structure):
        _fields_ = [("ifindex", ctypes.c_uint32), ("hook", ctypes.c_uint16)]
        _pack_ = 1

    with pytest.raises(BpfError, match=r"ShortHook is 6 bytes, BTF struct counter_key is 8 bytes"):
        counters_obj.check_map_types(MAP, ShortHook, CounterValue)


def test_c_struct_drift_is_caught(tmp_path):
    """The other direction: the C struct changes and Python does not. The value is common.h's
    struct pathsteer_counter: a drifted copy of common.h next to the source is the one its
    #include "common.h" finds (the real one is then skipped by its include guard)."""
    src = tmp_path / "drift.bpf.c"
    src.write_text((BPF_SOURCE_DIR / "counters.bpf.c").read_text())
    (tmp_path / "common.h").write_text(
        (BPF_SOURCE_DIR / "common.h").read_text()
        .replace("__u64 packets;", "__u32 packets;\n\t__u32 drops;"))
    out = compile_object(src, tmp_path / "drift.bpf.o")
    with BpfObject.open(out) as obj, pytest.raises(BpfError, match=r"pathsteer_counter\.packets.*size 4|drops"):
        obj.check_map_types(MAP, CounterKey, CounterValue)


def test_unknown_enum_and_member_are_named(counters_path):
    with Btf.from_file(counters_path) as btf:
        with pytest.raises(BpfError, match="no enum 'nope'"):
            btf.enum_values("nope")
        with pytest.raises(BpfError, match="has no PATHSTEER_HOOK_NOPE .*PATHSTEER_HOOK_XDP"):
            btf.constant("pathsteer_hook", "PATHSTEER_HOOK_NOPE")
