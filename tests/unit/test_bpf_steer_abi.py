"""Steering ABI without root: layouts against steer.bpf.o's BTF, key packing, the flow hash."""

from __future__ import annotations

import ctypes
import ipaddress

import pytest

from pathsteer.bpf import BpfObject
from pathsteer.dataplane import bpf_steer_abi as abi


@pytest.fixture(scope="module")
def obj():
    with BpfObject.open(abi.OBJECT) as o:
        yield o


def test_layouts_match_btf(obj):
    a = abi.check_layouts(obj.btf)
    for name, (k, v) in a.map_types().items():
        obj.check_map_types(name, k, v)
    assert a.max_groups == obj.max_entries("ch_rings")
    assert ctypes.sizeof(a.ring_type) == 2 * a.ring_size


def test_constants_from_btf(obj):
    a = abi.Abi.from_btf(obj.btf)
    from pathsteer.dataplane.maglev import is_prime
    assert is_prime(a.ring_size)
    assert a.default_stale_after_ms == 10_000
    assert set(a.reasons) == set(abi.Reason) and len(set(a.reasons.values())) == len(abi.Reason)
    assert a.group_local >= a.max_groups  # never a real slot
    assert (a.tc_handle, a.tc_priority) == (0x7374, 0x0E)


@pytest.mark.parametrize("text, raw", [
    ("198.51.100.0/24", bytes([24, 0, 0, 0, 198, 51, 100, 0])),
    ("0.0.0.0/0", bytes(8)),
    ("10.1.2.3/32", bytes([32, 0, 0, 0, 10, 1, 2, 3])),
    ("2001:db8:100::/48", bytes([48, 0, 0, 0]) + ipaddress.ip_address("2001:db8:100::").packed),
])
def test_key_packing(text, raw):
    net = ipaddress.ip_network(text)
    assert abi.key_bytes(net) == raw
    key = abi.lpm_key(net)
    assert bytes(key) == raw
    assert abi.key_prefix(key) == net


def test_flow_words():
    w = abi.flow_words("10.0.0.1", "10.0.0.2", 6, 0x1234, 0x0050)
    assert w[0] == int.from_bytes(bytes([10, 0, 0, 1]), "little")
    assert w[2] == int.from_bytes(bytes([0x12, 0x34, 0x00, 0x50]), "little")
    assert w[3] == 6
    assert len(abi.flow_words("10.0.0.1", "10.0.0.2")) == 2
    assert len(abi.flow_words("::1", "::2", 17, 1, 2)) == 10
    assert len(abi.flow_words("::1", "::2", 1, 1, 2)) == 8  # not TCP/UDP: addresses only


def test_flow_hash_is_murmur3_of_the_words():
    # MurmurHash3_x86_32 of the 4 bytes of a single word equals our hash of [word]
    # (same blocks, same tail-free length, same fmix): reference value for b"\x00\x00\x00\x00"
    # with seed 0 is 0x2362F9DE.
    assert abi.flow_hash([0], 0) == 0x2362F9DE
    a = abi.flow_hash(abi.flow_words("10.0.0.1", "10.0.0.2", 6, 1, 2), 0x5EED5EED)
    b = abi.flow_hash(abi.flow_words("10.0.0.1", "10.0.0.2", 6, 1, 3), 0x5EED5EED)
    assert a != b and 0 <= a < 2**32


def test_lookup_constants_from_btf(obj):
    a = abi.Abi.from_btf(obj.btf)
    e = a.v4_entry
    # a /24 entry holds "none", slot + base for every slot, or local, in 15 bits; DEEPER above
    assert e["STEER_V4_NONE"] == 0 and e["STEER_V4_DEEPER"] == 0x8000
    assert e["STEER_V4_SLOT_BASE"] + a.max_groups - 1 < e["STEER_V4_LOCAL"] < e["STEER_V4_DEEPER"]
    assert a.length_words * 64 > 128
    assert a.lengths_index == {4: 0, 6: 1}
    assert obj.max_entries("routes_v4_24") * 4 == 1 << 24
    assert obj.btf.constant("steer_group_special", "STEER_GROUP_NONE") not in (a.group_local, *range(a.max_groups))


@pytest.mark.parametrize("mask", [0, 1, 1 << 24 | 1 << 32, (1 << 129) - 1, 1 << 64 | 1 << 128])
def test_lengths_value_round_trip(obj, mask):
    a = abi.Abi.from_btf(obj.btf)
    assert a.lengths_mask(a.lengths_value(mask)) == mask


@pytest.mark.parametrize("plen", [0, 7, 8, 16, 20, 24, 31, 32])
def test_keys_blob_is_the_packed_keys(plen):
    import random
    rnd = random.Random(plen)
    nets = sorted({ipaddress.ip_network((rnd.getrandbits(32), plen), strict=False) for _ in range(200)})
    keys = [abi.key_int(n) for n in nets]
    assert abi.keys_blob(keys, 4) == b"".join(abi.key_bytes(n) for n in nets)
    mixed = sorted(keys + [abi.key_int(ipaddress.ip_network("10.0.0.0/9"))])
    assert abi.keys_blob(mixed, 4) == b"".join(abi.int_key_bytes(k) for k in mixed)
