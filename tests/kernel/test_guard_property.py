"""Property tests: random, truncated and crafted frames through BPF_PROG_TEST_RUN must get
exactly the decisions of the pure-Python model (pathsteer.guard.model) — verdict, rule
counters, heavy-hitter and sampled drop events — under random rule sets and a clock that
moves by random steps (the program's frozen clock, guard_settings.clock_ns)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from pathsteer.bpf import Btf
from pathsteer.guard.model import GuardModel
from pathsteer.guard.rules import Action, Limits, PortRule, RuleSet

# Small address pools so that sources, CIDRs and destinations collide often.
V4_POOL = [f"10.9.{a}.{b}" for a in (0, 1) for b in (1, 2, 129, 200)]
V6_POOL = [f"2001:db8:{a}::{b}" for a in (0, 1) for b in ("1", "2", "8001")] + ["2001:db8:0:0:1::5"]
START = 5_000_000_000_000

@pytest.fixture(scope="module")
def xdp_actions():
    with Btf.from_file("/sys/kernel/btf/vmlinux") as vmlinux:
        return {name: vmlinux.constant("xdp_action", name) for name in ("XDP_PASS", "XDP_DROP")}

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
    return RuleSet(allow_d, deny_d, prules, limits)

@st.composite
def l4(draw, v6: bool):
    kind = draw(st.sampled_from(["tcp", "udp", "icmp", "gre", "none"]))
    sport, dport = draw(st.integers(0, 65535)), draw(st.sampled_from([22, 53, 80, 11211, 19, 0, 65535]))
    if kind == "tcp":
        return TCP(sport=sport, dport=dport, flags=draw(st.sampled_from(["S", "SA", "A", "R", "F", ""])),
                   dataofs=draw(st.sampled_from([None, None, 4, 6, 15])))
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
    events = []
    now = START
    with guard.event_reader(events.append) as ring:
        for i, (frame, dt) in enumerate(sequence):
            now += dt
            guard.set_clock(now)
            want = model.decide(frame, now)
            got = guard.program.test_run(frame).retval
            ring.consume()
            assert got == xdp_actions["XDP_DROP" if want.verdict.drops else "XDP_PASS"], \
                f"packet {i}: model says {want.verdict.value}; frame {frame.hex()}"
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
    got_sources = {n: (s.packets, s.dropped) for n, s in guard.sources().items()}
    assert got_sources == {n: (s.packets, s.dropped) for n, s in model.sources.items()}
