"""A pure-Python model of ``bpf/guard.bpf.c``: the same checks in the same order, the same
integer-ns token buckets. Property tests feed random, truncated and crafted frames to both
and require the same verdict, rule id and state (tests/kernel/test_guard_property.py).

    model = GuardModel(rules)
    decision = model.decide(frame_bytes, now_ns)   # Decision(verdict, rule_id, heavy_hitter)

What the model leaves out: LRU eviction (tests use fewer sources than the map holds) and CAS
contention (BPF_PROG_TEST_RUN runs one packet at a time). SYN cookies: the model decides the
verdict (a SYN to a protected port is answered, an ACK passes iff its cookie is valid) but not
the SYN-ACK's bytes nor the cookie itself (the kernel's secret): ``cookie_valid`` says which
ACKs carry a valid one (default: none, as a random ACK's chance is about 2^-24), and
``known_flows`` which flows conntrack holds (default: none, as in BPF_PROG_TEST_RUN's fresh
namespace).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from pathsteer.guard.rules import (
    Action, Network, RuleSet, Verdict, lookup, source_network,
)

ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q, ETH_P_8021AD = 0x0800, 0x86DD, 0x8100, 0x88A8
# Defaults of GuardModel's limits; tests build the model with the compiled object's values
# (enum guard_limits in BTF) and a unit test checks these defaults against them.
MAX_VLAN_TAGS = 2  # GUARD_LIMIT_VLAN_TAGS
MAX_EXT_HEADERS = 6  # GUARD_LIMIT_EXT_HEADERS
HH_REPORT_NS = 1_000_000_000  # GUARD_HH_REPORT_NS
TCP, UDP = 6, 17
TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10
LOOPBACK_IFINDEX = 1  # BPF_PROG_TEST_RUN's ingress device without a ctx: the namespace's lo
HOPOPTS, ROUTING, FRAGMENT, AH, DSTOPTS = 0, 43, 44, 51, 60
EXT_HEADERS = {HOPOPTS, ROUTING, FRAGMENT, AH, DSTOPTS}


@dataclass
class Packet:
    family: int = 0  # 4 or 6
    proto: int = 0
    has_ports: bool = False
    syn: bool = False
    malformed: bool = False
    sport: int = 0
    dport: int = 0
    tcp_flags: int = 0
    src: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None


@dataclass
class SourceState:
    """``struct source_state``."""
    limit_tat_ns: int = 0
    meter_tat_ns: int = 0
    reported_ns: int = 0
    packets: int = 0
    dropped: int = 0


@dataclass
class SynState:
    """``struct syn_state``."""
    tat_ns: int = 0
    syns: int = 0
    dropped: int = 0


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    rule_id: int = 0
    heavy_hitter: Network | None = None  # a heavy-hitter event was emitted for this source
    sampled: bool = False  # a drop event was emitted (one per ``sample_every`` drops)


def gcra(state: object, attr: str, now: int, interval: int, tolerance: int) -> bool:
    """Conforming iff tat - now <= tolerance; then tat = max(tat, now) + interval."""
    tat = getattr(state, attr)
    base = max(tat, now)
    if base - now > tolerance:
        return False
    setattr(state, attr, base + interval)
    return True


def _parse_l4(frame: bytes, l4: int, l4_end: int, p: Packet) -> None:
    if p.proto == TCP:
        if l4 + 20 > len(frame) or l4 + 20 > l4_end:
            p.malformed = True
            return
        doff = frame[l4 + 12] >> 4
        if doff < 5 or l4 + doff * 4 > l4_end:
            p.malformed = True
            return
        p.sport, p.dport = struct.unpack_from("!HH", frame, l4)
        flags = frame[l4 + 13]
        p.has_ports = True
        p.tcp_flags = flags
        p.syn = bool(flags & 0x02) and not flags & 0x10
    elif p.proto == UDP:
        if l4 + 8 > len(frame) or l4 + 8 > l4_end:
            p.malformed = True
            return
        p.sport, p.dport = struct.unpack_from("!HH", frame, l4)
        p.has_ports = True


def _check_ipv4(frame: bytes, l3: int, p: Packet) -> None:
    version, ihl = frame[l3] >> 4, frame[l3] & 0xF
    total = struct.unpack_from("!H", frame, l3 + 2)[0]
    if version != 4 or ihl < 5 or total < ihl * 4 or total > len(frame) - l3:
        p.malformed = True
        return
    frag = struct.unpack_from("!H", frame, l3 + 6)[0] & 0x1FFF
    if frag:
        if p.proto == TCP and frag == 1:
            p.malformed = True
        return
    _parse_l4(frame, l3 + ihl * 4, l3 + total, p)


def _check_ipv6(frame: bytes, l3: int, p: Packet, max_ext_headers: int) -> None:
    payload = struct.unpack_from("!H", frame, l3 + 4)[0]
    end = 40 + payload
    if frame[l3] >> 4 != 6 or end > len(frame) - l3:
        p.malformed = True
        return
    end += l3
    off = l3 + 40
    nxt = frame[l3 + 6]
    for _ in range(max_ext_headers):
        if nxt not in EXT_HEADERS:
            break
        if off + 8 > len(frame) or off + 8 > end:
            p.malformed = True
            return
        if nxt == FRAGMENT:
            frag = struct.unpack_from("!H", frame, off + 2)[0] >> 3
            nxt = frame[off]
            off += 8
            if frag:
                p.proto = nxt
                return
            continue
        hlen = (frame[off + 1] + 2) * 4 if nxt == AH else (frame[off + 1] + 1) * 8
        nxt = frame[off]
        off += hlen
        if off > end:
            p.malformed = True
            return
    if nxt in EXT_HEADERS:
        p.malformed = True
        return
    p.proto = nxt
    _parse_l4(frame, off, end, p)


@dataclass
class GuardModel:
    """The guard's decision for one frame at a time, with the state the maps would hold."""

    rules: RuleSet
    sources: dict[Network, SourceState] = field(default_factory=dict)
    syn_dests: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, SynState] = field(default_factory=dict)
    drops_since_sample: int = 0  # drop_sampler (one CPU: test_run runs on the caller's CPU)
    max_vlan_tags: int = MAX_VLAN_TAGS
    max_ext_headers: int = MAX_EXT_HEADERS
    ifindex: int = LOOPBACK_IFINDEX  # the frames' ingress interface
    known_flows: set[tuple] = field(default_factory=set)  # (src, sport, dst, dport) conntrack holds
    cookie_valid: Callable[[Packet], bool] = lambda p: False

    @classmethod
    def for_limits(cls, rules: RuleSet, limits: dict[str, int]) -> GuardModel:
        """A model with the limits a compiled object has (``GuardProgram.limits``)."""
        return cls(rules, max_vlan_tags=limits["GUARD_LIMIT_VLAN_TAGS"],
                   max_ext_headers=limits["GUARD_LIMIT_EXT_HEADERS"])

    def decide(self, frame: bytes, now: int) -> Decision:
        """The verdict for ``frame`` at time ``now`` (ns), updating the state as the program does."""
        d = self._decide(frame, now)
        every = self.rules.limits.sample_every
        if d.verdict.drops and every:
            self.drops_since_sample += 1
            if self.drops_since_sample >= every:
                self.drops_since_sample = 0
                return Decision(d.verdict, d.rule_id, d.heavy_hitter, sampled=True)
        return d

    def _decide(self, frame: bytes, now: int) -> Decision:
        p = Packet()
        if len(frame) < 14:
            return Decision(Verdict.PASS_NOT_IP)
        ethertype = struct.unpack_from("!H", frame, 12)[0]
        l3 = 14
        for _ in range(self.max_vlan_tags):
            if ethertype not in (ETH_P_8021Q, ETH_P_8021AD):
                break
            if l3 + 4 > len(frame):
                return Decision(Verdict.DROP_MALFORMED)
            ethertype = struct.unpack_from("!H", frame, l3 + 2)[0]
            l3 += 4
        if ethertype == ETH_P_IP:
            if l3 + 20 > len(frame):
                return Decision(Verdict.DROP_MALFORMED)
            p.family, p.proto = 4, frame[l3 + 9]
            p.src = ipaddress.IPv4Address(frame[l3 + 12:l3 + 16])
            p.dst = ipaddress.IPv4Address(frame[l3 + 16:l3 + 20])
        elif ethertype == ETH_P_IPV6:
            if l3 + 40 > len(frame):
                return Decision(Verdict.DROP_MALFORMED)
            p.family, p.proto = 6, frame[l3 + 6]
            p.src = ipaddress.IPv6Address(frame[l3 + 8:l3 + 24])
            p.dst = ipaddress.IPv6Address(frame[l3 + 24:l3 + 40])
        else:
            return Decision(Verdict.PASS_NOT_IP)

        rule = lookup(self.rules.allow, p.src)
        if rule is not None:
            return Decision(Verdict.PASS_ALLOW, rule)
        rule = lookup(self.rules.deny, p.src)
        if rule is not None:
            return Decision(Verdict.DROP_DENY, rule)

        if p.family == 4:
            _check_ipv4(frame, l3, p)
        else:
            _check_ipv6(frame, l3, p, self.max_ext_headers)

        limits = self.rules.limits
        heavy = None
        if limits.source_interval_ns or limits.meter_interval_ns:
            key = source_network(p.src)
            st = self.sources.setdefault(key, SourceState())
            st.packets += 1
            if limits.meter_interval_ns and not gcra(st, "meter_tat_ns", now, limits.meter_interval_ns,
                                                     limits.meter_tolerance_ns):
                if not st.reported_ns or now - st.reported_ns >= HH_REPORT_NS:
                    st.reported_ns = now
                    heavy = key
            if limits.source_interval_ns and not gcra(st, "limit_tat_ns", now, limits.source_interval_ns,
                                                      limits.source_tolerance_ns):
                st.dropped += 1
                return Decision(Verdict.DROP_RATE, 0, heavy)
        if p.malformed:
            return Decision(Verdict.DROP_MALFORMED, 0, heavy)

        for r in self.rules.port_rules:
            if r.proto and r.proto != p.proto:
                continue
            if p.has_ports:
                if not (r.sport[0] <= p.sport <= r.sport[1] and r.dport[0] <= p.dport <= r.dport[1]):
                    continue
            elif not r.any_port:
                continue
            return Decision(Verdict.PASS_RULE if r.action is Action.PASS else Verdict.DROP_RULE, r.rule_id, heavy)

        sc = self.rules.syn_cookies
        if sc is not None and p.proto == TCP and p.has_ports and sc.protects(p.dport, self.ifindex):
            if (p.src, p.sport, p.dst, p.dport) in self.known_flows or (p.dst, p.dport, p.src, p.sport) in self.known_flows:
                return Decision(Verdict.PASS, 0, heavy)
            flags = p.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)
            if flags == TCP_SYN:
                return Decision(Verdict.TX_SYNCOOKIE, 0, heavy)
            if flags == TCP_ACK and self.cookie_valid(p):
                return Decision(Verdict.PASS_COOKIE, 0, heavy)
            return Decision(Verdict.DROP_COOKIE, 0, heavy)
        if p.syn and limits.syn_interval_ns:
            st = self.syn_dests.setdefault(p.dst, SynState())
            st.syns += 1
            if not gcra(st, "tat_ns", now, limits.syn_interval_ns, limits.syn_tolerance_ns):
                st.dropped += 1
                return Decision(Verdict.DROP_SYN, 0, heavy)
        return Decision(Verdict.PASS, 0, heavy)
