"""Typed map access on real kernel maps: single ops, flags, iteration, batches, per-CPU."""

from __future__ import annotations

import ctypes
import errno

import pytest

from pathsteer.bpf import BpfObject, Map, UpdateFlag, load_object, sum_values
from pathsteer.bpf.libbpf import possible_cpus
from pathsteer.errors import BpfError


class Pair(ctypes.Structure):
    """``struct pair`` of tests/kernel/bpf/fixtures.bpf.c."""
    _fields_ = [("a", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("b", ctypes.c_uint64)]


@pytest.fixture
def fixtures(test_objects, netns) -> BpfObject:
    obj = load_object(test_objects["fixtures"])
    yield obj
    obj.close()


def test_lookup_update_delete(fixtures):
    m = fixtures.map("test_hash", ctypes.c_uint32, Pair)
    assert m.lookup(7) is None
    m.update(7, Pair(a=1, b=2))
    got = m.lookup(7)
    assert (got.a, got.b) == (1, 2)
    m.update(7, (3, 0, 4), UpdateFlag.EXIST)
    assert m.lookup(7).b == 4
    with pytest.raises(BpfError) as info:
        m.update(7, Pair(), UpdateFlag.NOEXIST)
    assert info.value.errno == errno.EEXIST and "NOEXIST" in str(info.value)
    with pytest.raises(BpfError) as info:
        m.update(8, Pair(), UpdateFlag.EXIST)
    assert info.value.errno == errno.ENOENT
    assert m.delete(7) is True
    assert m.delete(7) is False


def test_iterate(fixtures):
    m = fixtures.map("test_hash", ctypes.c_uint32, Pair)
    for k in range(50):
        m.update(k, Pair(a=k, b=k * k))
    assert sorted(m.keys()) == list(range(50))
    assert {k: v.b for k, v in m.items()} == {k: k * k for k in range(50)}


def test_batch_update_and_lookup(fixtures):
    m = fixtures.map("test_hash", ctypes.c_uint32, Pair)
    assert m.update_batch((k, Pair(a=k, b=2 * k)) for k in range(3000)) == 3000
    entries = m.lookup_batch(batch_size=64)  # many batches; the last one ends with -ENOENT
    assert len(entries) == 3000
    assert {k: v.b for k, v in entries} == {k: 2 * k for k in range(3000)}
    with pytest.raises(BpfError, match="update_batch"):
        m.update_batch([(1, Pair())], UpdateFlag.NOEXIST)


def test_batch_on_empty_map(fixtures):
    assert fixtures.map("test_hash", ctypes.c_uint32, Pair).lookup_batch() == []


def test_per_cpu_values(fixtures):
    m = fixtures.map("test_percpu", ctypes.c_uint32, ctypes.c_uint64)
    ncpu = possible_cpus()
    assert m.per_cpu
    m.update(1, 5)  # one value: every CPU's slot
    assert m.lookup(1) == [5] * ncpu
    assert m.sum(1) == 5 * ncpu
    m.update(2, list(range(ncpu)))
    assert m.lookup(2) == list(range(ncpu))
    assert m.sum(2) == sum(range(ncpu))
    with pytest.raises(BpfError, match=f"needs {ncpu} values"):
        m.update(2, [1] * (ncpu + 1))
    assert dict(m.lookup_batch(batch_size=2))[2] == list(range(ncpu))
    m.update_batch([(3, [7] * ncpu)])
    assert sum_values(m.lookup(3), ctypes.c_uint64) == 7 * ncpu


def test_kernel_btf_check_on_reopen(fixtures):
    """A map opened by id is checked against the BTF the kernel holds for it."""
    m = fixtures.map("test_hash", ctypes.c_uint32, Pair)

    class Wrong(ctypes.Structure):
        _fields_ = [("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]

    with pytest.raises(BpfError, match=r"map test_hash value: Python Wrong.a is at offset 0 \(size 8\), BTF struct pair.a"):
        Map.from_id(m.id, ctypes.c_uint32, Wrong)
    with pytest.raises(BpfError, match=r"key type c_ushort is 2 bytes, the map's key is 4 bytes"):
        Map.from_id(m.id, ctypes.c_uint16, Pair)
    with Map.from_id(m.id, ctypes.c_uint32, Pair) as again:
        m.update(1, Pair(a=9))
        assert again.lookup(1).a == 9


# Map.delete_batch (bpf_map_delete_batch) on a hash map

def test_hash_delete_batch(fixtures):
    m = fixtures.map("test_hash", ctypes.c_uint32, Pair)
    m.update_batch((k, Pair(a=k)) for k in range(3000))
    assert m.delete_batch(range(0, 3000, 2), batch_size=100) == 1500  # 15 syscalls
    assert sorted(k for k, _ in m.lookup_batch()) == list(range(1, 3000, 2))
    assert m.delete_batch([]) == 0


def test_missing_key_stops_or_is_skipped(fixtures):
    m = fixtures.map("test_hash", ctypes.c_uint32, Pair)
    m.update_batch((k, Pair(a=k)) for k in range(10))
    with pytest.raises(BpfError) as info:
        m.delete_batch([0, 1, 42, 2])  # the kernel stops at 42: 0 and 1 are gone, 2 stays
    assert info.value.errno == errno.ENOENT and "2 of 4 keys removed" in str(info.value)
    assert sorted(k for k, _ in m.lookup_batch()) == list(range(2, 10))
    assert m.delete_batch([2, 42, 43, 3, 9], missing_ok=True) == 3
    assert sorted(k for k, _ in m.lookup_batch()) == [4, 5, 6, 7, 8]


def test_packed_keys_must_be_whole_keys(fixtures):
    m = fixtures.map("test_hash", ctypes.c_uint32, Pair)
    m.update(5, Pair())
    with pytest.raises(BpfError, match="not a multiple of the key size 4"):
        m.delete_batch(b"\x05\x00\x00")
    assert m.delete_batch((5).to_bytes(4, "little")) == 1
    assert m.lookup(5) is None
