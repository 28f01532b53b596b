"""Property tests: random, truncated and crafted frames through BPF_PROG_TEST_RUN must get
exactly the decisions of the pure-Python model (pathsteer.guard.model) — verdict, rule
counters, heavy-hitter and sampled drop events — under random rule sets (SYN cookies on some
ports, on the test's interface or another) and a clock that moves by random steps (the
program's frozen clock, guard_settings.clock_ns)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from pathsteer.bpf import Btf
from pathsteer.guard.model import GuardModel
from pathsteer.guard.model import LOOPBACK_IFINDEX
from pathsteer.guard.rules import Action, Limits, PortRule, RuleSet, SynCookies

# Small address pools so that sources, CIDRs and destinations collide often.
V4_POOL = [f"10.9.{a}.{b}" for a in (0, 1) for b in (1, 2, 129, 200)]
V6_POOL = [f"2001:db8:{a}::{b}" for a in (0, 1) for b in ("1", "2", "8001")] + ["2001:db8:0:0:1::5"]
START = 5_000_000_000_000

@pytest.fixture(scope="module")
def xdp_actions():
    with Btf.from_file("/sys/kernel/btf/vmlinux") as vmlinux:
        return {name: vmlinux.constant("xdp_action", name) for name in ("XDP_PASS", "XDP_DROP", "XDP_TX")}

def cidrs(pool, max_plen):
    return st.builds(lambda a, plen: ipaddress.ip_network(f"{a}/{plen}", strict=False),
                     st.sampled_from(pool), st.integers(max_plen - 10, max_plen))

networks = st.one_of(cidrs(V4_POOL, 32), cidrs(V6_POOL, 128))
ports = st.one_of(st.just((0, 65535)), st.integers(0, 65535).map(lambda p: (p, p)),
                  st.tuples(st.integers(0, 1000), st.integers(1000, 65535)))
port_rules = st.builds(PortRule, st.sampled_from([0, 1, 6, 17, 47, 58]), st.sampled_from(list(Action)),
                       ports, ports)

@st.composite
def rulesets(draw):
    allow = draw(st.lists(networks, max_size=3))
    deny = draw(st.lists(networks, max_size=4))
    rid = iter(range(1, 100))
    allow_d = {n: next(rid) for n in allow}
    deny_d = {n: next(rid) for n in deny if n not in allow_d}
    prules = tuple(PortRule(r.proto, r.action, r.sport, r.dport, next(rid))
                   for r in draw(st.lists(port_rules, max_size=4)))
    pps = draw(st.sampled_from([None, 1000, 3]))
    limits = Limits.build(
        per_source_pps=pps, burst=draw(st.integers(1, 4)) if pps else None,
        syn_pps=draw(st.sampled_from([None, 50])), syn_burst=draw(st.integers(1, 3)),
        threshold_pps=draw(st.sampled_from([None, 20, 5000])),
        sample_every=draw(st.sampled_from([0, 1, 3])))
    cookies = draw(st.sampled_from([None, ((80, 80),), ((22, 22), (53, 80))]))
    if cookies is not None:
        ifindex = draw(st.sampled_from([LOOPBACK_IFINDEX, LOOPBACK_IFINDEX, 999]))
        cookies = SynCookies(cookies, frozenset({ifindex}))
    return RuleSet(allow_d, deny_d, prules, limits, cookies)

@st.composite
def l4(draw, v6: bool):
    kind = draw(st.sampled_from(["tcp", "udp", "icmp", "gre", "none"]))
    sport, dport = draw(st.integers(0, 65535)), draw(st.sampled_from([22, 53, 80, 80, 80, 11211, 19, 0, 65535]))
    if kind == "tcp":
        options = draw(st.sampled_from([[], [("MSS", 1460)], [("MSS", 1400), ("SAckOK", b""), ("Timestamp", (7, 0)),
                                                              ("NOP", None), ("WScale", 9)], [("WScale", 15), ("EOL", None)]]))
        return TCP(sport=sport, dport=dport, flags=draw(st.sampled_from(["S", "S", "S", "SA", "A", "A", "R", "F", "", "SEC", "PA"])),
                   dataofs=draw(st.sampled_from([None, None, None, 4, 6, 15])), options=options)
    if kind == "udp":
        return UDP(sport=sport, dport=dport)
    if kind == "icmp":
        return ICMP()
    return Raw(b"\x00" * draw(st.integers(0, 24)))

@st.composite
def frames(draw):
    v6 = draw(st.booleans())
    eth = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    for _ in range(draw(st.integers(0, 3) if draw(st.integers(0, 9)) == 0 else st.just(0))):
        eth = eth / draw(st.sampled_from([Dot1Q(), Dot1AD()]))
    payload = draw(l4(v6)) / Raw(b"p" * draw(st.integers(0, 40)))
    if v6:
        ip = IPv6(src=draw(st.sampled_from(V6_POOL)), dst=draw(st.sampled_from(V6_POOL)))
        for _ in range(draw(st.integers(0, 8) if draw(st.integers(0, 3)) == 0 else st.just(0))):
            ip = ip / draw(st.sampled_from([IPv6ExtHdrHopByHop(), IPv6ExtHdrDestOpt(), IPv6ExtHdrRouting(),
                                            IPv6ExtHdrFragment(m=1, offset=0), IPv6ExtHdrFragment(offset=3)]))
        if draw(st.integers(0, 5)) == 0:
            ip.plen = draw(st.integers(0, 200))
        pkt = eth / ip / payload
    else:
        ip = IP(src=draw(st.sampled_from(V4_POOL)), dst=draw(st.sampled_from(V4_POOL)))
        if draw(st.integers(0, 4)) == 0:
            ip.frag = draw(st.sampled_from([0, 1, 2, 100]))
            ip.flags = draw(st.sampled_from(["MF", ""]))
        if draw(st.integers(0, 5)) == 0:
            ip.ihl = draw(st.integers(0, 15))
        if draw(st.integers(0, 5)) == 0:
            ip.len = draw(st.integers(0, 200))
        if draw(st.integers(0, 9)) == 0:
            ip.version = draw(st.integers(0, 15))
        pkt = eth / ip / payload
    data = bytearray(bytes(pkt))
    for _ in range(draw(st.integers(0, 2) if draw(st.integers(0, 3)) == 0 else st.just(0))):
        pos = draw(st.integers(12, len(data) - 1))
        data[pos] = draw(st.integers(0, 255))
    if draw(st.integers(0, 3)) == 0:
        data = data[:draw(st.integers(14, len(data)))]
    data += bytes(draw(st.sampled_from([0, 0, 0, 7])))  # sometimes Ethernet padding
    return bytes(data)

raw_frames = st.builds(lambda t, rest: t + rest, st.sampled_from([b"\x08\x00", b"\x86\xdd", b"\x81\x00", b"\x08\x06"]),
                       st.binary(min_size=0, max_size=80)).map(lambda b: bytes(12) + b)
steps = st.lists(st.tuples(st.one_of(frames(), raw_frames), st.sampled_from([0, 0, 1, 333_333, 10_000_000, 2_000_000_000])),
                 min_size=1, max_size=25)

@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(rules=rulesets(), sequence=steps)
def test_program_matches_model(guard, xdp_actions, rules, sequence):
    # a fresh program state for each example: new maps would be slow, so clear the stateful ones
    for name in ("sources", "syn_dests"):
        for key in list(guard.maps[name].keys()):
            guard.maps[name].delete(key)
    guard.maps["drop_sampler"].update(0, 0)
    for kind in ("allow", "deny"):
        guard.sync_cidrs(kind, {})
    guard.apply(rules, clock_ns=START)
    model = GuardModel.for_limits(rules, guard.limits)
    rule_ids = sorted({*rules.allow.values(), *rules.deny.values(), *(r.rule_id for r in rules.port_rules)})
    for rid in rule_ids:
        guard.reset_rule_counter(rid)
    expected_rules = dict.fromkeys(rule_ids, 0)
    expected_verdicts = dict.fromkeys(guard.verdicts, 0)
    verdicts_before = {v: t.packets for v, t in guard.verdict_totals().items()}
    events = []
    now = START
    with guard.event_reader(events.append) as ring:
        for i, (frame, dt) in enumerate(sequence):
            now += dt
            guard.set_clock(now)
            want = model.decide(frame, now)
            got = guard.program.test_run(frame).retval
            ring.consume()
            action = "XDP_DROP" if want.verdict.drops else "XDP_TX" if want.verdict.answers else "XDP_PASS"
            assert got == xdp_actions[action], f"packet {i}: model says {want.verdict.value}; frame {frame.hex()}"
            expected_verdicts[want.verdict] += 1
            hypothesis_event(want.verdict.value)
            hh = [e for e in events if e.kind == "heavy-hitter"]
            drops = [e for e in events if e.kind == "drop"]
            assert [str(e.source) for e in hh] == ([str(want.heavy_hitter)] if want.heavy_hitter else []), f"packet {i}"
            assert len(drops) == int(want.sampled), f"packet {i}"
            if want.sampled:
                assert (drops[0].verdict, drops[0].rule_id) == (want.verdict, want.rule_id), f"packet {i}"
            events.clear()
            if want.rule_id:
                expected_rules[want.rule_id] += 1
    assert {r: t.packets for r, t in guard.rule_totals(rule_ids).items()} == expected_rules
    assert {v: t.packets - verdicts_before[v] for v, t in guard.verdict_totals().items()} == expected_verdicts
    got_sources = {n: (s.packets, s.dropped) for n, s in guard.sources().items()}
    assert got_sources == {n: (s.packets, s.dropped) for n, s in model.sources.items()}


# --- SYN cookies: TCP to a protected port, every flag combination ---------------------------

@st.composite
def tcp_frames(draw):
    """TCP to port 80 (protected) or 81 (not), any flags and options, sometimes VLAN-tagged,
    behind IPv6 extension headers or IPv4 options, sometimes cut short."""
    eth = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    if draw(st.integers(0, 4)) == 0:
        eth = eth / Dot1Q(vlan=draw(st.integers(1, 4094)))
    options = draw(st.lists(st.sampled_from([("MSS", 536), ("MSS", 9000), ("SAckOK", b""), ("Timestamp", (99, 0)),
                                             ("WScale", 0), ("WScale", 14), ("WScale", 200), ("NOP", None)]),
                            max_size=6))
    tcp = TCP(sport=draw(st.integers(1, 65535)), dport=draw(st.sampled_from([80, 80, 80, 81])),
              flags=draw(st.integers(0, 255)), seq=draw(st.integers(0, 2**32 - 1)),
              ack=draw(st.integers(0, 2**32 - 1)), options=options) / Raw(b"d" * draw(st.sampled_from([0, 0, 10])))
    if draw(st.booleans()):
        ip = IPv6(src=draw(st.sampled_from(V6_POOL)), dst="2001:db8:100::10")
        if draw(st.integers(0, 3)) == 0:
            ip = ip / IPv6ExtHdrDestOpt()
    else:
        ip = IP(src=draw(st.sampled_from(V4_POOL)), dst="198.51.100.10")
        if draw(st.integers(0, 3)) == 0:
            ip.options = [b"\x01\x01\x01\x00"]  # NOPs and an end of list: IHL 6
    data = bytes(eth / ip / tcp)
    if draw(st.integers(0, 5)) == 0:
        data = data[:draw(st.integers(14, len(data)))]
    return data


def check_synack(syn: bytes, out: bytes) -> None:
    """The SYN-ACK the program made of ``syn``: addresses and ports swapped, ack = seq + 1,
    SYN|ACK, valid checksums (scapy recomputes them and must get the same bytes)."""
    a, b = Ether(syn), Ether(out)
    ip_a = a[IP] if IP in a else a[IPv6]
    ip_b = b[IP] if IP in b else b[IPv6]
    assert (b.src, b.dst, ip_b.src, ip_b.dst) == (a.dst, a.src, ip_a.dst, ip_a.src)
    assert (b[TCP].sport, b[TCP].dport, b[TCP].ack, b[TCP].flags & 0x12) == \
        (a[TCP].dport, a[TCP].sport, (a[TCP].seq + 1) % 2**32, 0x12)
    again = b.copy()
    del again[TCP].chksum
    if IP in again:
        del again[IP].chksum
    assert bytes(again) == out, "checksums"


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(allow=st.lists(networks, max_size=2), deny=st.lists(networks, max_size=2),
       syn_pps=st.sampled_from([None, 5]), sequence=st.lists(tcp_frames(), min_size=1, max_size=20))
def test_syncookie_verdicts_match_model(guard, xdp_actions, allow, deny, syn_pps, sequence):
    for key in list(guard.maps["syn_dests"].keys()):
        guard.maps["syn_dests"].delete(key)
    rid = iter(range(1, 100))
    allow_d = {n: next(rid) for n in allow}
    rules = RuleSet(allow_d, {n: next(rid) for n in deny if n not in allow_d},
                    limits=Limits.build(syn_pps=syn_pps, syn_burst=2),
                    syn_cookies=SynCookies(((80, 80),), frozenset({LOOPBACK_IFINDEX})))
    for kind in ("allow", "deny"):
        guard.sync_cidrs(kind, {})
    guard.apply(rules, clock_ns=START)
    model = GuardModel.for_limits(rules, guard.limits)
    for i, frame in enumerate(sequence):
        want = model.decide(frame, START)
        result = guard.program.test_run(frame)
        action = "XDP_DROP" if want.verdict.drops else "XDP_TX" if want.verdict.answers else "XDP_PASS"
        assert result.retval == xdp_actions[action], f"packet {i}: model says {want.verdict.value}; {frame.hex()}"
        hypothesis_event(want.verdict.value)
        if want.verdict.answers:
            check_synack(frame, result.data_out)
