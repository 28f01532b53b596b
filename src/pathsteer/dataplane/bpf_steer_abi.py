"""ctypes mirrors of ``bpf/steer_structs.h``, the numbers of ``bpf/steer_common.h`` (and the TC
slot of ``bpf/common.h``), key packing and the flow hash of ``steer.bpf.c`` in Python.

Every mirror is checked against the object's BTF when its map is opened (pathsteer.bpf.maps)
and by `check_layouts` from the object file (unit tests, no root). Limits and enum values are
read from BTF (`Abi.from_btf`), never written here; the two structs whose size depends on a
limit (``struct ch_ring``, ``struct steer_group``) are built from the compiled limits.
"""

from __future__ import annotations

import ctypes
import ipaddress
import struct
import sys
from array import array
from ctypes import c_uint8, c_uint16, c_uint32, c_uint64
from dataclasses import dataclass
from enum import Enum
from functools import cached_property

from pathsteer.bpf.btf import KIND_STRUCT, Btf, check_type
from pathsteer.bpf.tc_order import tc_slot

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


class V4Quad(ctypes.Structure):
    """``struct steer_v4_quad``: four /24 entries of routes_v4_24."""
    _fields_ = [("entry", c_uint16 * 4)]


class PathC(ctypes.Structure):
    """``struct steer_path``."""
    _fields_ = [("ifindex", c_uint32), ("flags", c_uint32), ("gateway4", c_uint8 * 4), ("gateway6", c_uint8 * 16)]


class State(ctypes.Structure):
    """``struct steer_state`` (``fresh_jiffies`` is the program's: user space writes 0)."""
    _fields_ = [("heartbeat_ns", c_uint64), ("stale_after_ns", c_uint64), ("fresh_jiffies", c_uint64)]


class Counter(ctypes.Structure):
    """``struct pathsteer_counter`` (bpf/common.h; one CPU's share)."""
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
    length_words: int  # u64 words of struct steer_lengths (STEER_LENGTH_WORDS)
    mtu_floor_v4: int  # IPv4 packets up to this size skip bpf_check_mtu (STEER_MTU_FLOOR_V4)
    v4_entry: dict  # enum steer_v4_entry: STEER_V4_NONE, _SLOT_BASE, _LOCAL, _DEEPER
    v6_hash_lengths: int  # IPv6 looks up routes_v6_lpm above this many lengths (STEER_V6_HASH_LENGTHS)
    lengths_index: dict  # version (4/6) → index of route_lengths (enum steer_family_index)
    tc_handle: int  # PATHSTEER_TC_HANDLE_STEER (bpf/common.h)
    tc_priority: int  # PATHSTEER_TC_PRIO_STEER: after passive RTT, before the counters
    group_local: int  # steer_route.group of a local entry (STEER_GROUP_LOCAL)

    @classmethod
    def from_btf(cls, btf: Btf) -> Abi:
        lim = btf.enum_values("steer_limits")
        tc = tc_slot(btf, OBJECT)
        return cls(
            ring_size=lim["STEER_LIMIT_RING_SIZE"], max_groups=lim["STEER_LIMIT_GROUPS"],
            max_group_paths=lim["STEER_LIMIT_GROUP_PATHS"], max_paths=lim["STEER_LIMIT_PATHS"],
            max_routes=lim["STEER_LIMIT_ROUTES"], default_stale_after_ms=lim["STEER_DEFAULT_STALE_AFTER_MS"],
            hash_seed=btf.constant("steer_hash", "STEER_HASH_SEED") & 0xFFFFFFFF,
            reasons={r: btf.constant("steer_reason", r.value) for r in Reason},  # BpfError names a missing one
            path_flags=btf.enum_values("steer_path_flags"),
            length_words=lim["STEER_LENGTH_WORDS"], mtu_floor_v4=lim["STEER_LIMIT_MTU_FLOOR_V4"],
            v4_entry=btf.enum_values("steer_v4_entry"), v6_hash_lengths=lim["STEER_LIMIT_V6_HASH_LENGTHS"],
            lengths_index={4: btf.constant("steer_family_index", "STEER_LENGTHS_V4"),
                           6: btf.constant("steer_family_index", "STEER_LENGTHS_V6")},
            tc_handle=tc.handle, tc_priority=tc.priority,
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

    @cached_property
    def lengths_type(self) -> type:
        """``struct steer_lengths`` (bit L of ``bits[L // 64]``: length L present)."""
        return type("SteerLengths", (ctypes.Structure,), {
            "_fields_": [("bits", c_uint64 * self.length_words), ("lookup_lpm", c_uint32), ("pad", c_uint32)],
            "__doc__": "``struct steer_lengths``."})

    def lengths_value(self, mask: int, lookup_lpm: bool = False):
        """A `lengths_type` value holding the integer bit set ``mask`` (bit L: length L)."""
        v = self.lengths_type(lookup_lpm=int(lookup_lpm))
        for i in range(self.length_words):
            v.bits[i] = (mask >> (64 * i)) & 0xFFFFFFFFFFFFFFFF
        return v

    @staticmethod
    def lengths_mask(value) -> int:
        """The integer bit set a `lengths_type` value holds."""
        return sum(int(w) << (64 * i) for i, w in enumerate(value.bits))

    def map_types(self) -> dict[str, tuple[type, type]]:
        """Map name → (key type, value type)."""
        return {
            "routes_v4": (V4Key, Route), "routes_v6": (V6Key, Route), "routes_v6_lpm": (V6Key, Route),
            "route_lengths": (c_uint32, self.lengths_type),
            "routes_v4_24": (c_uint32, V4Quad),
            "ch_rings": (c_uint32, self.ring_type), "group_members": (c_uint32, self.group_type),
            "steer_paths": (c_uint32, PathC), "path_slots": (c_uint32, c_uint32), "steer_state": (c_uint32, State),
            "path_counters": (c_uint32, Counter), "steer_stats": (c_uint32, Counter),
        }


def check_layouts(btf: Btf) -> Abi:
    """Check every mirror against the object's BTF (BpfError naming the field on drift)."""
    abi = Abi.from_btf(btf)
    for name, ctype in (("steer_v4_key", V4Key), ("steer_v6_key", V6Key), ("steer_route", Route),
                        ("steer_path", PathC), ("steer_state", State), ("pathsteer_counter", Counter),
                        ("ch_ring", abi.ring_type), ("steer_group", abi.group_type),
                        ("steer_lengths", abi.lengths_type), ("steer_v4_quad", V4Quad)):
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


# Integer keys: what the data plane's mirror of the tries is keyed by (an int hashes in C; an
# ipaddress network's __hash__ is Python code, and 1M of them dominated a 1M-prefix apply).
# IPv4 ``prefixlen << 56 | network number`` (the address shifted right by its host bits), IPv6
# likewise with `V6_FLAG` above, so both families share one dict. The network number, not the
# address, sits in the low bits: a dict indexes by the low bits of the hash (an int's hash is
# the int), and the zero host bits of 1M /24 addresses made every lookup probe several slots.

V6_FLAG = 1 << 168
_M32 = (1 << 32) - 1
_M128 = (1 << 128) - 1
_LOW56 = (1 << 56) - 1
_LOW152 = (1 << 152) - 1


def key_int(prefix: Prefix) -> int:
    """``prefix`` as an integer key (see above)."""
    plen = prefix._prefixlen
    if prefix._version == 4:
        return (plen << 56) | (prefix.network_address._ip >> (32 - plen))
    return V6_FLAG | (plen << 152) | (prefix.network_address._ip >> (128 - plen))


def key_int_of(version: int, address: int, prefixlen: int) -> int:
    """The integer key of ``address/prefixlen`` (host bits dropped)."""
    if version == 4:
        return (prefixlen << 56) | ((address & _M32) >> (32 - prefixlen))
    return V6_FLAG | (prefixlen << 152) | ((address & _M128) >> (128 - prefixlen))


def int_version(k: int) -> int:
    return 4 if k < V6_FLAG else 6


def int_prefixlen(k: int) -> int:
    return k >> 56 if k < V6_FLAG else (k >> 152) & 0xFF


def int_address(k: int) -> int:
    if k < V6_FLAG:
        return (k & _LOW56) << (32 - (k >> 56))
    plen = (k >> 152) & 0xFF
    return (k & _LOW152) << (128 - plen)


def int_key_bytes(k: int) -> bytes:
    """The trie key (as `key_bytes`) of an integer key."""
    if k < V6_FLAG:
        return _V4.pack(k >> 56, ((k & _LOW56) << (32 - (k >> 56))).to_bytes(4, "big"))
    plen = (k >> 152) & 0xFF
    return _V6.pack(plen, ((k & _LOW152) << (128 - plen)).to_bytes(16, "big"))


def bytes_key_int(kb: bytes) -> int:
    """The integer key of a raw trie key (8 bytes: IPv4, 20: IPv6); host bits are dropped."""
    plen = int.from_bytes(kb[:4], "little")
    if len(kb) == 8:
        return (plen << 56) | (int.from_bytes(kb[4:], "big") >> (32 - plen))
    return V6_FLAG | (plen << 152) | (int.from_bytes(kb[4:], "big") >> (128 - plen))


def int_prefix(k: int) -> Prefix:
    """The prefix of an integer key."""
    if k < V6_FLAG:
        return ipaddress.IPv4Network((int_address(k), k >> 56))
    return ipaddress.IPv6Network((int_address(k), (k >> 152) & 0xFF))


def supernet_keys(k: int):
    """The integer keys of every strictly shorter prefix containing ``k``'s, longest first."""
    if k < V6_FLAG:
        plen, net, flag, shift = k >> 56, k & _LOW56, 0, 56
    else:
        plen, net, flag, shift = (k >> 152) & 0xFF, k & _LOW152, V6_FLAG, 152
    for p in range(plen - 1, -1, -1):
        yield flag | (p << shift) | (net >> (plen - p))


def keys_blob(keys: list[int], version: int) -> bytes:
    """Integer keys of one family packed back to back as trie keys (one buffer for a batch);
    sorted keys come out in address order within each prefix length."""
    if version == 6:
        return b"".join([int_key_bytes(k) for k in keys])
    # a trie key read as a big-endian u64 is ``prefixlen << 56 | address``
    if keys and min(keys) >> 56 == max(keys) >> 56:  # one prefix length (1M /24s): one shift
        head = keys[0] & ~_LOW56
        shift = 32 - (head >> 56)
        if shift % 8 == 0 and sys.byteorder == "little":
            # a whole number of bytes (/24, /16, /8): the integer keys as big-endian u64s are
            # ``prefixlen, 0, 0, 0, 0, network number bytes``; moving the network number's
            # bytes up by shift/8 gives the key — slices at C speed, no Python per key
            a = array("Q", keys)
            a.byteswap()
            raw, out, n = a.tobytes(), bytearray(8 * len(keys)), shift // 8
            out[0::8] = raw[0::8]
            for i in range(4 - n):
                out[4 + i::8] = raw[4 + n + i::8]
            return bytes(out)
        a = array("Q", [head | ((k ^ head) << shift) for k in keys])
    else:
        a = array("Q", [(k & ~_LOW56) | ((k & _LOW56) << (32 - (k >> 56))) for k in keys])
    if sys.byteorder == "little":
        a.byteswap()
    return a.tobytes()


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
