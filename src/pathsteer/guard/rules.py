"""The guard's rules as plain data: what the XDP program enforces and the model predicts.

Pure: no I/O. `RuleSet` is built from the config and the block table (`pathsteer.guard.service`),
written into the maps by `pathsteer.guard.program`, and evaluated by `pathsteer.guard.model`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import Enum


from pathsteer.units import PROTOCOLS, Network, parse_cidr, parse_port_range  # noqa: F401 - guard's vocabulary

NS_PER_S = 1_000_000_000


class Verdict(Enum):
    """Names the enumerators of ``enum guard_verdict`` (bpf/guard_common.h); the numbers come
    from the object's BTF (`pathsteer.guard.abi.verdict_numbers`)."""

    PASS = "pass"
    PASS_ALLOW = "pass-allow"
    PASS_RULE = "pass-rule"
    PASS_NOT_IP = "pass-not-ip"
    DROP_MALFORMED = "drop-malformed"
    DROP_DENY = "drop-deny"
    DROP_RULE = "drop-rule"
    DROP_RATE = "drop-rate"
    DROP_SYN = "drop-syn"
    TX_SYNCOOKIE = "tx-syncookie"
    PASS_COOKIE = "pass-cookie"
    DROP_COOKIE = "drop-cookie"

    @property
    def c_name(self) -> str:
        return f"GUARD_{self.name}"

    @property
    def drops(self) -> bool:
        return self.name.startswith("DROP")

    @property
    def answers(self) -> bool:
        """The frame goes back out of the interface it came in on (XDP_TX): a SYN-ACK cookie."""
        return self is Verdict.TX_SYNCOOKIE


class Action(Enum):
    """``enum guard_action``."""

    DROP = "drop"
    PASS = "pass"

    @property
    def c_name(self) -> str:
        return f"GUARD_ACTION_{self.name}"


def gcra(pps: int, burst: int) -> tuple[int, int]:
    """(interval_ns, tolerance_ns) of a token bucket of ``burst`` packets refilled at ``pps``:
    GCRA admits a packet iff tat - now <= tolerance, then tat = max(tat, now) + interval."""
    interval = max(1, NS_PER_S // pps)
    return interval, (burst - 1) * interval


@dataclass(frozen=True)
class PortRule:
    """One protocol/port rule (``struct port_rule``)."""

    proto: int  # 0 = any
    action: Action
    sport: tuple[int, int] = (0, 65535)
    dport: tuple[int, int] = (0, 65535)
    rule_id: int = 0

    @property
    def any_port(self) -> bool:
        return self.sport == (0, 65535) and self.dport == (0, 65535)


@dataclass(frozen=True)
class Limits:
    """``struct guard_settings`` minus the clock: every interval and tolerance in integer ns; 0 = off."""

    source_interval_ns: int = 0
    source_tolerance_ns: int = 0
    meter_interval_ns: int = 0
    meter_tolerance_ns: int = 0
    syn_interval_ns: int = 0
    syn_tolerance_ns: int = 0
    sample_every: int = 0

    @classmethod
    def build(cls, *, per_source_pps: int | None = None, burst: int | None = None,
              syn_pps: int | None = None, syn_burst: int | None = None,
              threshold_pps: int | None = None, sample_every: int = 0) -> Limits:
        """From config figures. The auto-block meter tolerates a fifth of a second of traffic
        at the threshold rate before it reports, so a burst does not block a source."""
        src = gcra(per_source_pps, burst or per_source_pps) if per_source_pps else (0, 0)
        syn = gcra(syn_pps, syn_burst or syn_pps) if syn_pps else (0, 0)
        meter = gcra(threshold_pps, max(1, threshold_pps // 5)) if threshold_pps else (0, 0)
        return cls(*src, *meter, *syn, sample_every)


@dataclass(frozen=True)
class SynCookies:
    """``guard.syn_cookies`` as the program needs it (``struct guard_settings``' cookie fields,
    maps ``syncookie_ports`` and ``syncookie_ifaces``)."""

    ports: tuple[tuple[int, int], ...]  # inclusive TCP destination port ranges
    ifindexes: frozenset[int]  # interfaces on which the ports are protected
    mss4: int = 1460
    mss6: int = 1440
    wscale: int = 7
    ttl: int = 64

    def protects(self, port: int, ifindex: int) -> bool:
        return ifindex in self.ifindexes and any(lo <= port <= hi for lo, hi in self.ports)

    def port_words(self) -> dict[int, int]:
        """The port bitmap: word index (port >> 5) → bits (1 << (port & 31)); only non-zero words."""
        words: dict[int, int] = {}
        for lo, hi in self.ports:
            for port in range(lo, hi + 1):
                words[port >> 5] = words.get(port >> 5, 0) | 1 << (port & 31)
        return words


@dataclass(frozen=True)
class RuleSet:
    """Everything the program enforces: CIDRs with their rule ids, port rules, limits."""

    allow: dict[Network, int] = field(default_factory=dict)
    deny: dict[Network, int] = field(default_factory=dict)
    port_rules: tuple[PortRule, ...] = ()
    limits: Limits = Limits()
    syn_cookies: SynCookies | None = None


def lookup(table: dict[Network, int], address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int | None:
    """Longest-prefix match, as BPF_MAP_TYPE_LPM_TRIE does: the rule id, or None."""
    best: tuple[int, int] | None = None
    for net, rule_id in table.items():
        if net.version == address.version and address in net and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, rule_id)
    return best[1] if best else None


def source_network(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Network:
    """What the guard tracks (and auto-blocks) for a source: its /32, or its IPv6 /64."""
    plen = 32 if address.version == 4 else 64
    return ipaddress.ip_network(f"{address}/{plen}", strict=False)
