"""ctypes mirrors of ``bpf/steer_structs.h``, the numbers of ``bpf/steer_common.h``, key packing
and the flow hash of ``steer.bpf.c`` in Python.

Every mirror is checked against the object's BTF when its map is opened (pathsteer.bpf.maps)
and by `check_layouts` from the object file (unit tests, no root). Limits and enum values are
read from BTF (`Abi.from_btf`), never written here; the two structs whose size depends on a
limit (``struct ch_ring``, ``struct steer_group``) are built from the compiled limits.
"""

from __future__ import annotations

import ctypes
import ipaddress
import struct
from ctypes import c_uint8, c_uint16, c_uint32, c_uint64
from dataclasses import dataclass
from enum import Enum
from functools import cached_property

from pathsteer.bpf.btf import KIND_STRUCT, Btf, check_type

OBJECT = "steer"
PROGRAM = "tc_steer"

Prefix = ipaddress.IPv4Network | ipaddress.IPv6Network


class V4Key(ctypes.Structure):
    """``struct steer_v4_key`` (struct bpf_lpm_trie_key layout)."""
    _fields_ = [("prefixlen", c_uint32), ("addr", c_uint8 * 4)]


class V6Key(ctypes.Structure):
    """``struct steer_v6_key``."""
    _fields_ = [("prefixlen", c_uint32), ("addr", c_uint8 * 16)]


class Route(ctypes.Structure):
    """``struct steer_route``: the group slot a prefix points to."""
    _fields_ = [("group", c_uint32)]


class PathC(ctypes.Structure):
    """``struct steer_path``."""
    _fields_ = [("ifindex", c_uint32), ("flags", c_uint32), ("gateway4", c_uint8 * 4), ("gateway6", c_uint8 * 16)]


class State(ctypes.Structure):
    """``struct steer_state``."""
    _fields_ = [("heartbeat_ns", c_uint64), ("stale_after_ns", c_uint64)]


class Counter(ctypes.Structure):
    """``struct steer_counter`` (one CPU's share)."""
    _fields_ = [("packets", c_uint64), ("bytes", c_uint64)]


class Reason(Enum):
    """``enum steer_reason``: what the program did with a packet (values from BTF)."""
    STEERED = "STEER_STEERED"
    PASS_STALE = "STEER_PASS_STALE"
    PASS_NOT_IP = "STEER_PASS_NOT_IP"
    PASS_MALFORMED = "STEER_PASS_MALFORMED"
    PASS_SPECIAL = "STEER_PASS_SPECIAL"
    PASS_OPTIONS = "STEER_PASS_OPTIONS"
    PASS_NO_ROUTE = "STEER_PASS_NO_ROUTE"
    PASS_TTL = "STEER_PASS_TTL"
    PASS_LOCAL = "STEER_PASS_LOCAL"
    PASS_NO_PATH = "STEER_PASS_NO_PATH"
    PASS_MTU = "STEER_PASS_MTU"


@dataclass(frozen=True)
class Abi:
    """The compiled numbers of one steer.bpf.o (from its BTF, or the kernel's copy of it)."""

    ring_size: int
    max_groups: int
    max_group_paths: int
    max_paths: int
    max_routes: int
    default_stale_after_ms: int
    hash_seed: int
    reasons: dict  # Reason → index of steer_stats
    path_flags: dict  # "STEER_PATH_HAS_GW4"/"..._GW6" → bit
    tc_handle: int
    tc_priority: int
    group_local: int  # steer_route.group of a local entry (STEER_GROUP_LOCAL)

    @classmethod
    def from_btf(cls, btf: Btf) -> Abi:
        lim = btf.enum_values("steer_limits")
        tc = btf.enum_values("steer_tc")
        return cls(
            ring_size=lim["STEER_LIMIT_RING_SIZE"], max_groups=lim["STEER_LIMIT_GROUPS"],
            max_group_paths=lim["STEER_LIMIT_GROUP_PATHS"], max_paths=lim["STEER_LIMIT_PATHS"],
            max_routes=lim["STEER_LIMIT_ROUTES"], default_stale_after_ms=lim["STEER_DEFAULT_STALE_AFTER_MS"],
            hash_seed=btf.constant("steer_hash", "STEER_HASH_SEED") & 0xFFFFFFFF,
            reasons={r: btf.constant("steer_reason", r.value) for r in Reason},  # BpfError names a missing one
            path_flags=btf.enum_values("steer_path_flags"),
            tc_handle=tc["STEER_TC_HANDLE"], tc_priority=tc["STEER_TC_PRIORITY"],
            group_local=btf.constant("steer_group_special", "STEER_GROUP_LOCAL"),
        )

    @cached_property
    def ring_type(self) -> type:
        """``struct ch_ring`` for this build's STEER_RING_SIZE."""
        return type("ChRing", (ctypes.Structure,), {"_fields_": [("path", c_uint16 * self.ring_size)],
                                                     "__doc__": "``struct ch_ring``."})

    @cached_property
    def group_type(self) -> type:
        """``struct steer_group`` for this build's STEER_MAX_GROUP_PATHS."""
        n = self.max_group_paths
        return type("SteerGroup", (ctypes.Structure,), {
            "_fields_": [("count", c_uint16), ("pad", c_uint16), ("path", c_uint16 * n), ("weight", c_uint8 * n)],
            "__doc__": "``struct steer_group``."})

    def map_types(self) -> dict[str, tuple[type, type]]:
        """Map name → (key type, value type)."""
        return {
            "routes_v4": (V4Key, Route), "routes_v6": (V6Key, Route),
            "ch_rings": (c_uint32, self.ring_type), "group_members": (c_uint32, self.group_type),
            "steer_paths": (c_uint32, PathC), "steer_state": (c_uint32, State),
            "path_counters": (c_uint32, Counter), "steer_stats": (c_uint32, Counter),
        }


def check_layouts(btf: Btf) -> Abi:
    """Check every mirror against the object's BTF (BpfError naming the field on drift)."""
    abi = Abi.from_btf(btf)
    for name, ctype in (("steer_v4_key", V4Key), ("steer_v6_key", V6Key), ("steer_route", Route),
                        ("steer_path", PathC), ("steer_state", State), ("steer_counter", Counter),
                        ("ch_ring", abi.ring_type), ("steer_group", abi.group_type)):
        check_type(btf, btf.find(name, KIND_STRUCT), ctype, f"struct {name}")
    return abi


# --- keys -------------------------------------------------------------------------------------

_V4 = struct.Struct("<I4s")
_V6 = struct.Struct("<I16s")


def key_bytes(prefix: Prefix) -> bytes:
    """The trie key of ``prefix`` as raw bytes (prefixlen in host order, address in network order)."""
    # The private attributes save two property calls each: this runs once per prefix on 1M-prefix applies.
    if prefix._version == 4:
        return _V4.pack(prefix._prefixlen, prefix.network_address._ip.to_bytes(4, "big"))
    return _V6.pack(prefix._prefixlen, prefix.network_address._ip.to_bytes(16, "big"))


def lpm_key(prefix: Prefix) -> V4Key | V6Key:
    return (V4Key if prefix.version == 4 else V6Key).from_buffer_copy(key_bytes(prefix))


def key_prefix(key: V4Key | V6Key) -> Prefix:
    """The prefix a trie key holds (host bits, if any, cleared)."""
    addr = bytes(key.addr)
    cls = ipaddress.IPv4Network if len(addr) == 4 else ipaddress.IPv6Network
    return cls((addr, key.prefixlen), strict=False)


# --- flow hash (steer.bpf.c flow_hash) ----------------------------------------------------------

M32 = 0xFFFFFFFF


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & M32


def _mix(h: int, k: int) -> int:
    k = (k * 0xCC9E2D51) & M32
    k = _rotl(k, 15)
    k = (k * 0x1B873593) & M32
    h ^= k
    h = _rotl(h, 13)
    return (h * 5 + 0xE6546B64) & M32


def flow_hash(words: list[int], seed: int) -> int:
    """murmur3-style hash of 32-bit words, exactly as steer.bpf.c computes it."""
    h = seed
    for w in words:
        h = _mix(h, w)
    h ^= len(words) * 4
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    h ^= h >> 16
    return h


def flow_words(src: str, dst: str, proto: int = 0, sport: int = 0, dport: int = 0) -> list[int]:
    """The words the program hashes: addresses as loaded from the packet (little-endian loads of
    network-order bytes), then for TCP/UDP (``proto`` 6/17) the ports word and the protocol.
    Pass proto 0 for what is hashed by addresses (fragments, ICMP, ...)."""
    words = []
    for a in (src, dst):
        raw = ipaddress.ip_address(a).packed
        words += [int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw), 4)]
    if proto in (6, 17):
        words.append(int.from_bytes(struct.pack("!HH", sport, dport), "little"))
        words.append(proto)
    return words
