"""ctypes mirrors of ``bpf/guard_structs.h`` and the numbers of ``bpf/guard_common.h``.

Every mirror is checked against the object's BTF when its map is opened (pathsteer.bpf.maps),
and `check_layouts` checks them all from the object file without root (unit tests). The enum
values are read from BTF, never written here. The program drops a packet iff its verdict is
``>= GUARD_FIRST_DROP``; Python tells drops by name (`Verdict.drops`), and `verdict_numbers`
refuses an object where the two disagree.
"""

from __future__ import annotations

import ctypes
import ipaddress
from ctypes import c_uint8, c_uint16, c_uint32, c_uint64

from pathsteer.bpf.btf import KIND_STRUCT, Btf, check_type
from pathsteer.errors import BpfError
from pathsteer.guard.rules import Action, Network, Verdict

OBJECT = "guard"
PROGRAM = "xdp_guard"


class LpmV4Key(ctypes.Structure):
    """``struct lpm_v4_key``."""
    _fields_ = [("prefixlen", c_uint32), ("addr", c_uint8 * 4)]


class LpmV6Key(ctypes.Structure):
    """``struct lpm_v6_key``."""
    _fields_ = [("prefixlen", c_uint32), ("addr", c_uint8 * 16)]


class CidrRule(ctypes.Structure):
    """``struct cidr_rule``."""
    _fields_ = [("rule_id", c_uint32)]


class AddrKey(ctypes.Structure):
    """``struct addr_key``."""
    _fields_ = [("family", c_uint32), ("addr", c_uint8 * 16)]


class SourceState(ctypes.Structure):
    """``struct source_state``."""
    _fields_ = [("limit_tat_ns", c_uint64), ("meter_tat_ns", c_uint64), ("reported_ns", c_uint64),
                ("packets", c_uint64), ("dropped", c_uint64)]


class SynState(ctypes.Structure):
    """``struct syn_state``."""
    _fields_ = [("tat_ns", c_uint64), ("syns", c_uint64), ("dropped", c_uint64)]


class PortRuleC(ctypes.Structure):
    """``struct port_rule``."""
    _fields_ = [("proto", c_uint8), ("action", c_uint8), ("pad", c_uint16),
                ("sport_min", c_uint16), ("sport_max", c_uint16), ("dport_min", c_uint16),
                ("dport_max", c_uint16), ("rule_id", c_uint32)]


class Settings(ctypes.Structure):
    """``struct guard_settings``."""
    _fields_ = [("source_interval_ns", c_uint64), ("source_tolerance_ns", c_uint64),
                ("meter_interval_ns", c_uint64), ("meter_tolerance_ns", c_uint64),
                ("syn_interval_ns", c_uint64), ("syn_tolerance_ns", c_uint64),
                ("clock_ns", c_uint64), ("port_rule_count", c_uint32), ("sample_every", c_uint32),
                ("cookie_mss4", c_uint16), ("cookie_mss6", c_uint16), ("cookie_wscale", c_uint8),
                ("cookie_ttl", c_uint8), ("cookie_enabled", c_uint8), ("pad", c_uint8)]


class Counter(ctypes.Structure):
    """``struct pathsteer_counter`` (bpf/common.h; one CPU's share)."""
    _fields_ = [("packets", c_uint64), ("bytes", c_uint64)]


class EventC(ctypes.Structure):
    """``struct guard_event``, a ring-buffer record."""
    _fields_ = [("ts_ns", c_uint64), ("kind", c_uint32), ("verdict", c_uint32), ("rule_id", c_uint32),
                ("frame_len", c_uint32), ("ifindex", c_uint32), ("family", c_uint32), ("proto", c_uint8),
                ("pad", c_uint8 * 3), ("sport", c_uint16), ("dport", c_uint16),
                ("src", c_uint8 * 16), ("dst", c_uint8 * 16)]


# map name → (key, value) mirrors
MAP_TYPES: dict[str, tuple[type, type]] = {
    "allow_v4": (LpmV4Key, CidrRule), "allow_v6": (LpmV6Key, CidrRule),
    "deny_v4": (LpmV4Key, CidrRule), "deny_v6": (LpmV6Key, CidrRule),
    "sources": (AddrKey, SourceState), "syn_dests": (AddrKey, SynState),
    "port_rules": (c_uint32, PortRuleC), "guard_settings": (c_uint32, Settings),
    "verdict_counters": (c_uint32, Counter), "rule_counters": (c_uint32, Counter),
    "drop_sampler": (c_uint32, c_uint32),
    "syncookie_ports": (c_uint32, c_uint32), "syncookie_ifaces": (c_uint32, c_uint32),
}


def check_layouts(btf: Btf) -> None:
    """BpfError unless the event record mirror matches BTF (maps are checked when opened)."""
    check_type(btf, btf.find("guard_event", KIND_STRUCT), EventC, "ring buffer guard_events record")


FIRST_DROP = "GUARD_FIRST_DROP"


def first_drop(btf: Btf) -> int:
    """``GUARD_FIRST_DROP``: the program drops a packet iff its verdict is at least this."""
    return btf.constant("guard_verdict", FIRST_DROP)


def verdict_numbers(btf: Btf) -> dict[Verdict, int]:
    """{Verdict: its number} from ``enum guard_verdict``; BpfError unless exactly the drops
    (`Verdict.drops`, by name) are at or after ``GUARD_FIRST_DROP``, which is how the program
    tells them (guard.bpf.c verdict_drops)."""
    values = btf.enum_values("guard_verdict")
    numbers = {v: values[v.c_name] for v in Verdict}
    first = first_drop(btf)
    wrong = [v.c_name for v, n in sorted(numbers.items(), key=lambda vn: vn[1]) if (n >= first) != v.drops]
    if wrong:
        raise BpfError(f"{btf.origin}: enum guard_verdict: {', '.join(wrong)} on the wrong side of "
                       f"{FIRST_DROP} = {first} (the program drops a packet iff its verdict is >= {FIRST_DROP})")
    return numbers


def action_numbers(btf: Btf) -> dict[Action, int]:
    values = btf.enum_values("guard_action")
    return {a: values[a.c_name] for a in Action}


def lpm_key(net: Network) -> LpmV4Key | LpmV6Key:
    """The trie key of a CIDR (address bytes in network order)."""
    raw = net.network_address.packed
    if net.version == 4:
        return LpmV4Key(net.prefixlen, (c_uint8 * 4)(*raw))
    return LpmV6Key(net.prefixlen, (c_uint8 * 16)(*raw))


def addr_key_network(key: AddrKey, families: dict[str, int]) -> Network:
    """A `sources` key as the network it tracks (/32, IPv6 /64)."""
    raw = bytes(key.addr)
    if key.family == families["GUARD_AF_INET"]:
        return ipaddress.IPv4Network((raw[:4], 32))
    return ipaddress.IPv6Network((raw, 64))
