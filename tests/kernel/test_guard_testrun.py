"""The guard program through BPF_PROG_TEST_RUN, as a fixture table, plus sequences.

Each row: description, input frame (scapy), expected verdict, expected rule id. Every row
also checks the counters: exactly that verdict's counter moves by one packet and the frame's
length, and the rule's counter too when the verdict names a rule. The model
(pathsteer.guard.model) is asked as well: the table is the model's golden file.
"""

from __future__ import annotations

import ipaddress

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, GRE
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from pathsteer.bpf import Btf
from pathsteer.guard.model import GuardModel
from pathsteer.guard.program import Totals
from pathsteer.guard.rules import Action, Limits, PortRule, RuleSet, Verdict

NOW = 1_000_000_000_000  # the frozen clock: 1000 s
E = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
N = ipaddress.ip_network

RULES = RuleSet(
    allow={N("10.200.0.0/24"): 1, N("2001:db8:200::/64"): 2},
    deny={N("192.0.2.0/24"): 3, N("2001:db8:bad::/48"): 4, N("10.200.0.128/25"): 5, N("198.18.0.7/32"): 9},
    port_rules=(PortRule(17, Action.DROP, dport=(11211, 11211), rule_id=6),
                PortRule(6, Action.PASS, dport=(22, 22), rule_id=7),
                PortRule(47, Action.DROP, rule_id=8),
                PortRule(17, Action.DROP, sport=(19, 19), rule_id=10)),
    limits=Limits.build(per_source_pps=1000, burst=3, syn_pps=100, syn_burst=2, threshold_pps=100_000),
)

def f(pkt) -> bytes:
    return bytes(pkt)

V4 = dict(src="203.0.113.5", dst="198.51.100.10")
V6 = dict(src="2001:db8:1::5", dst="2001:db8:100::10")
UDP4 = f(E / IP(**V4) / UDP(sport=4000, dport=53) / Raw(b"x" * 20))
PING4 = f(E / IP(**V4) / ICMP() / Raw(bytes(56)))
FRAG1 = f(E / IP(**V4, flags="MF", frag=0) / UDP(sport=1, dport=2) / Raw(b"a" * 32))

TABLE = [
    # description, frame, verdict, rule id
    ("IPv4 UDP from an unlisted source", UDP4, Verdict.PASS, 0),
    ("IPv4 ICMP echo", PING4, Verdict.PASS, 0),
    ("IPv6 TCP ACK", f(E / IPv6(**V6) / TCP(sport=1, dport=443, flags="A")), Verdict.PASS, 0),
    ("IPv4 source in the allow list", f(E / IP(src="10.200.0.2", dst="198.51.100.10") / UDP()), Verdict.PASS_ALLOW, 1),
    ("allow wins over a deny CIDR inside it", f(E / IP(src="10.200.0.200", dst="1.1.1.1") / UDP()), Verdict.PASS_ALLOW, 1),
    ("allow wins over a port rule", f(E / IP(src="10.200.0.2", dst="1.1.1.1") / UDP(dport=11211)), Verdict.PASS_ALLOW, 1),
    ("allow wins over malformed headers", f(E / IP(src="10.200.0.2", dst="1.1.1.1", ihl=3) / UDP()), Verdict.PASS_ALLOW, 1),
    ("IPv6 source in the allow list", f(E / IPv6(src="2001:db8:200::2", dst="2001:db8:100::10") / UDP()), Verdict.PASS_ALLOW, 2),
    ("IPv4 source in a denied /24", f(E / IP(src="192.0.2.77", dst="198.51.100.10") / UDP()), Verdict.DROP_DENY, 3),
    ("IPv4 denied /32", f(E / IP(src="198.18.0.7", dst="198.51.100.10") / TCP()), Verdict.DROP_DENY, 9),
    ("IPv4 next to a denied /32", f(E / IP(src="198.18.0.8", dst="198.51.100.10") / TCP(flags="A")), Verdict.PASS, 0),
    ("IPv6 source in a denied /48", f(E / IPv6(src="2001:db8:bad:1::9", dst="2001:db8:100::10") / UDP()), Verdict.DROP_DENY, 4),
    ("deny wins over malformed headers", f(E / IP(src="192.0.2.1", dst="1.1.1.1", ihl=4) / UDP()), Verdict.DROP_DENY, 3),
    ("802.1Q-tagged denied IPv4", f(E / Dot1Q(vlan=7) / IP(src="192.0.2.1", dst="1.1.1.1") / UDP()), Verdict.DROP_DENY, 3),
    ("QinQ-tagged denied IPv6", f(E / Dot1AD(vlan=1) / Dot1Q(vlan=7) / IPv6(src="2001:db8:bad::1", dst="::1") / UDP()),
     Verdict.DROP_DENY, 4),
    ("three VLAN tags: not parsed, not IP", f(E / Dot1Q() / Dot1Q() / Dot1Q() / IP(src="192.0.2.1") / UDP()), Verdict.PASS_NOT_IP, 0),
    ("VLAN tag cut short", f(E / Dot1Q())[:16], Verdict.DROP_MALFORMED, 0),
    ("ARP", f(Ether(src="02:00:00:00:00:02", dst="ff:ff:ff:ff:ff:ff") / ARP()), Verdict.PASS_NOT_IP, 0),
    ("bare Ethernet, unknown ethertype", f(Ether(type=0x88B5)), Verdict.PASS_NOT_IP, 0),
    ("IPv4 header cut at 10 bytes: source unreadable", UDP4[:24], Verdict.DROP_MALFORMED, 0),
    ("IPv6 header cut at 30 bytes", f(E / IPv6(**V6) / UDP())[:44], Verdict.DROP_MALFORMED, 0),
    ("IPv4 total length beyond the frame", UDP4[:40], Verdict.DROP_MALFORMED, 0),
    ("IPv4 IHL 4", f(E / IP(**V4, ihl=4) / UDP()), Verdict.DROP_MALFORMED, 0),
    ("IPv4 says version 6", f(E / IP(**V4, version=6) / UDP()), Verdict.DROP_MALFORMED, 0),
    ("IPv4 total length shorter than its header", f(E / IP(**V4, len=12) / UDP()), Verdict.DROP_MALFORMED, 0),
    ("IPv4 with Ethernet padding after the datagram", f(E / IP(**V4) / UDP()) + bytes(30), Verdict.PASS, 0),
    ("TCP header cut short: 10 of 20 bytes", f(E / IP(**V4, proto=6) / Raw(b"\x00" * 10)), Verdict.DROP_MALFORMED, 0),
    ("TCP data offset 4", f(E / IP(**V4) / TCP(dataofs=4)), Verdict.DROP_MALFORMED, 0),
    ("TCP data offset beyond the packet", f(E / IP(**V4) / TCP(dataofs=15)), Verdict.DROP_MALFORMED, 0),
    ("UDP header cut short", f(E / IP(**V4, proto=17) / Raw(b"\x00" * 6)), Verdict.DROP_MALFORMED, 0),
    ("first fragment with a whole UDP header", FRAG1, Verdict.PASS, 0),
    ("first fragment too short for TCP (RFC 1858)", f(E / IP(**V4, flags="MF", proto=6) / Raw(b"\x00" * 8)),
     Verdict.DROP_MALFORMED, 0),
    ("TCP fragment at offset 1 (RFC 1858 overlap)", f(E / IP(**V4, frag=1, proto=6) / Raw(b"\x00" * 16)),
     Verdict.DROP_MALFORMED, 0),
    ("non-first UDP fragment: no ports, passes", f(E / IP(**V4, frag=100, proto=17) / Raw(b"\x00" * 16)), Verdict.PASS, 0),
    ("non-first fragment from a denied source", f(E / IP(src="192.0.2.9", dst="1.1.1.1", frag=100, proto=17) / Raw(b"x" * 8)),
     Verdict.DROP_DENY, 3),
    ("non-first fragment of GRE: a port-less rule matches", f(E / IP(**V4, frag=9, proto=47) / Raw(b"x" * 8)),
     Verdict.DROP_RULE, 8),
    ("UDP to memcached 11211: port rule drop", f(E / IP(**V4) / UDP(sport=5, dport=11211)), Verdict.DROP_RULE, 6),
    ("UDP from chargen 19: source-port rule drop", f(E / IPv6(**V6) / UDP(sport=19, dport=5000)), Verdict.DROP_RULE, 10),
    ("TCP to 22: port rule pass", f(E / IP(**V4) / TCP(dport=22, flags="S")), Verdict.PASS_RULE, 7),
    ("GRE: protocol rule drop", f(E / IP(**V4) / GRE()), Verdict.DROP_RULE, 8),
    ("TCP SYN", f(E / IP(**V4) / TCP(dport=80, flags="S")), Verdict.PASS, 0),
    ("IPv6 hop-by-hop + destination options + UDP 11211", f(E / IPv6(**V6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
                                                          / UDP(dport=11211)), Verdict.DROP_RULE, 6),
    ("IPv6 routing header + TCP", f(E / IPv6(**V6) / IPv6ExtHdrRouting() / TCP(flags="A")), Verdict.PASS, 0),
    ("IPv6 first fragment with UDP 11211", f(E / IPv6(**V6) / IPv6ExtHdrFragment(m=1, offset=0) / UDP(dport=11211)),
     Verdict.DROP_RULE, 6),
    ("IPv6 non-first fragment: no ports", f(E / IPv6(**V6) / IPv6ExtHdrFragment(offset=5, nh=17) / Raw(b"y" * 16)),
     Verdict.PASS, 0),
    ("IPv6 seven extension headers", f(E / IPv6(**V6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt()
                                       / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt()
                                       / IPv6ExtHdrDestOpt() / UDP()), Verdict.DROP_MALFORMED, 0),
    ("IPv6 six extension headers: the most walked", f(E / IPv6(**V6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
                                                     / IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt()
                                                     / IPv6ExtHdrDestOpt() / UDP()), Verdict.PASS, 0),
    ("IPv6 extension header beyond the payload", f(E / IPv6(**V6, plen=4) / IPv6ExtHdrHopByHop() / UDP()),
     Verdict.DROP_MALFORMED, 0),
    ("IPv6 payload length beyond the frame", f(E / IPv6(**V6, plen=400) / UDP()), Verdict.DROP_MALFORMED, 0),
    ("IPv6 says version 4", f(E / IPv6(**V6, version=4) / UDP()), Verdict.DROP_MALFORMED, 0),
    ("IPv6 no next header", f(E / IPv6(**V6, nh=59)), Verdict.PASS, 0),
]

def xdp_action(name: str) -> int:
    with Btf.from_file("/sys/kernel/btf/vmlinux") as vmlinux:
        return vmlinux.constant("xdp_action", name)

@pytest.mark.parametrize("description, frame, verdict, rule_id", TABLE, ids=[row[0] for row in TABLE])
def test_table(guard, description, frame, verdict, rule_id):
    guard.apply(RULES, clock_ns=NOW)
    assert GuardModel.for_limits(RULES, guard.limits).decide(frame, NOW).verdict is verdict, f"model: {description}"
    before, rules_before = guard.verdict_totals(), guard.rule_totals(range(1, 11))
    ret = guard.program.test_run(frame).retval
    assert ret == xdp_action("XDP_DROP" if verdict.drops else "XDP_PASS"), description
    after, rules_after = guard.verdict_totals(), guard.rule_totals(range(1, 11))
    moved = {v: (after[v].packets - before[v].packets, after[v].bytes - before[v].bytes)
             for v in after if after[v] != before[v]}
    assert moved == {verdict: (1, len(frame))}, description
    rmoved = {r for r in rules_after if rules_after[r] != rules_before[r]}
    assert rmoved == ({rule_id} if rule_id else set()), description
    if rule_id:
        assert rules_after[rule_id] == Totals(1, len(frame))

def test_source_token_bucket_integer_ns(guard):
    """burst 3 at 1000 pps: three pass at once, the fourth is dropped; 1 ms later one more."""
    guard.apply(RULES, clock_ns=NOW)
    verdicts = [guard.program.test_run(UDP4).retval for _ in range(4)]
    assert verdicts == [xdp_action("XDP_PASS")] * 3 + [xdp_action("XDP_DROP")]
    guard.set_clock(NOW + 999_999)
    assert guard.program.test_run(UDP4).retval == xdp_action("XDP_DROP")
    guard.set_clock(NOW + 1_000_000)
    assert guard.program.test_run(UDP4).retval == xdp_action("XDP_PASS")
    (src, packets, dropped), = guard.top_sources(1)
    assert (str(src), packets, dropped) == ("203.0.113.5/32", 6, 2)
    assert guard.verdict_totals()[Verdict.DROP_RATE].packets == 2

def test_ipv6_sources_are_tracked_per_64(guard):
    guard.apply(RULES, clock_ns=NOW)
    frames = [f(E / IPv6(src=f"2001:db8:1::{i}", dst="2001:db8:100::10") / UDP()) for i in range(1, 5)]
    rets = [guard.program.test_run(fr).retval for fr in frames]
    assert rets.count(xdp_action("XDP_DROP")) == 1
    assert [str(s) for s, *_ in guard.top_sources(5)] == ["2001:db8:1::/64"]

def test_syn_limit_per_destination(guard):
    """SYN burst 2 at 100/s per destination, from many sources; other destinations unaffected."""
    guard.apply(RULES, clock_ns=NOW)
    syn = lambda s, d: f(E / IP(src=s, dst=d) / TCP(dport=80, flags="S"))  # noqa: E731
    rets = [guard.program.test_run(syn(f"203.0.113.{i}", "198.51.100.10")).retval for i in range(1, 5)]
    assert rets == [xdp_action("XDP_PASS")] * 2 + [xdp_action("XDP_DROP")] * 2
    assert guard.program.test_run(syn("203.0.113.9", "198.51.100.11")).retval == xdp_action("XDP_PASS")
    ack = f(E / IP(src="203.0.113.10", dst="198.51.100.10") / TCP(dport=80, flags="A"))
    assert guard.program.test_run(ack).retval == xdp_action("XDP_PASS")
    guard.set_clock(NOW + 10_000_000)
    assert guard.program.test_run(syn("203.0.113.11", "198.51.100.10")).retval == xdp_action("XDP_PASS")
    assert guard.verdict_totals()[Verdict.DROP_SYN].packets == 2

def test_heavy_hitter_event_once_per_second(guard):
    rules = RuleSet(limits=Limits.build(threshold_pps=1000))  # meter burst: 200 packets
    guard.apply(rules, clock_ns=NOW)
    events = []
    with guard.event_reader(events.append) as ring:
        for _ in range(205):
            guard.program.test_run(UDP4)
        ring.consume()
        assert [(e.kind, str(e.source)) for e in events] == [("heavy-hitter", "203.0.113.5/32")]
        guard.set_clock(NOW + 999_000_000)
        guard.program.test_run(UDP4, repeat=100)
        ring.consume()
        assert len(events) == 1
        guard.set_clock(NOW + 1_000_000_000)
        guard.program.test_run(UDP4, repeat=2000)
        ring.consume()
        assert len(events) == 2
    assert guard.verdict_totals()[Verdict.PASS].packets == 205 + 100 + 2000

def test_drop_events_are_sampled(guard):
    rules = RuleSet(deny={N("203.0.113.0/24"): 3}, limits=Limits(sample_every=4))
    guard.apply(rules, clock_ns=NOW)
    events = []
    with guard.event_reader(events.append) as ring:
        guard.program.test_run(UDP4, repeat=100)
        ring.consume()
    assert len(events) == 25
    e = events[0]
    assert (e.kind, e.verdict, e.rule_id, str(e.source), e.destination, e.proto, e.sport, e.dport, e.frame_len) == \
        ("drop", Verdict.DROP_DENY, 3, "203.0.113.5/32", "198.51.100.10", 17, 0, 0, len(UDP4))

def test_sources_map_bounded_under_spoofed_flood(guard):
    """More distinct sources than the LRU holds: it stays at its size, no insert fails the verdict."""
    guard.apply(RuleSet(limits=Limits.build(per_source_pps=10, burst=1)), clock_ns=NOW)
    limit = guard.maps["sources"].max_entries
    base = int(ipaddress.IPv4Address("100.64.0.0"))
    template = bytearray(f(E / IP(src="100.64.0.0", dst="198.51.100.10", chksum=0) / UDP(sport=1, dport=2)))
    for i in range(limit + 5000):
        template[26:30] = (base + i).to_bytes(4, "big")
        guard.program.test_run(bytes(template))
    assert guard.source_count() <= limit
    assert guard.verdict_totals()[Verdict.PASS].packets == limit + 5000

def test_allowed_source_is_never_metered_nor_limited(guard):
    """An allowed source far above every limit: no heavy-hitter event, no rate drop, no entry."""
    rules = RuleSet(allow={N("203.0.113.0/24"): 1},
                    limits=Limits.build(per_source_pps=10, burst=1, threshold_pps=10, syn_pps=10, syn_burst=1))
    guard.apply(rules, clock_ns=NOW)
    events = []
    with guard.event_reader(events.append) as ring:
        guard.program.test_run(UDP4, repeat=5000)
        guard.program.test_run(f(E / IP(**V4) / TCP(dport=80, flags="S")), repeat=100)
        ring.consume()
    assert events == []
    assert guard.verdict_totals()[Verdict.PASS_ALLOW].packets == 5100
    assert guard.source_count() == 0

def test_bulk_programmed_tries_match(guard):
    """Thousands of CIDRs go in by packed batches: every one denies with its own rule id,
    a longer prefix inside a shorter one wins, and removing them all leaves nothing."""
    v4 = [ipaddress.IPv4Network(((10 << 24) + (i << 8), 24)) for i in range(3000)]
    v6 = [ipaddress.IPv6Network(((0x2001_0db8 << 96) + (i << 80), 48)) for i in range(500)]
    deny = {net: 1 + i % 60000 for i, net in enumerate(v4 + v6)}
    deny[N("10.0.5.128/25")] = 61000
    guard.apply(RuleSet(deny=deny), clock_ns=NOW)
    drop, pas = xdp_action("XDP_DROP"), xdp_action("XDP_PASS")
    for net in v4[::397] + v6[::97]:
        src = str(net.network_address + 7)
        ip = IP(src=src, dst="198.51.100.10") if net.version == 4 else IPv6(src=src, dst="2001:db8:100::10")
        before = guard.rule_totals([deny[net]])[deny[net]].packets
        assert guard.program.test_run(f(E / ip / UDP())).retval == drop, net
        assert guard.rule_totals([deny[net]])[deny[net]].packets == before + 1
    assert guard.program.test_run(f(E / IP(src="10.0.5.200", dst="1.1.1.1") / UDP())).retval == drop
    assert guard.rule_totals([61000])[61000].packets == 1
    assert guard.program.test_run(f(E / IP(src="10.12.0.1", dst="1.1.1.1") / UDP())).retval == pas
    assert guard.sync_cidrs("deny", {}) == (0, len(deny))
    assert list(guard.maps["deny_v4"].keys()) == [] and list(guard.maps["deny_v6"].keys()) == []
