"""The steering program through BPF_PROG_TEST_RUN, as a fixture table.

The data plane is the real `BpfSteerDataPlane` (maps written by apply) inside the test's
namespace; each row runs one frame through ``tc_steer`` with the context naming the veth
(test_run sets pkt_type from the frame's destination MAC against that device's address) and
checks: the verdict, the output frame (TTL / hop limit decremented, IPv4 checksum valid, or
unchanged when passed), which reason counter moved, and which path counter moved — the path
being predicted by the Python model (bpf_steer_abi.flow_hash over maglev.build's table).
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from pathsteer.bpf import Btf, ifindex_of
from pathsteer.dataplane import maglev
from pathsteer.dataplane.bpf_steer import BpfSteerDataPlane
from pathsteer.dataplane.bpf_steer_abi import Reason, flow_hash, flow_words
from pathsteer.routes import Desired, NextHop, PathLink, RouteIntent
from pathsteer.bpf.testrun import skb_context

TC_ACT_UNSPEC = 0xFFFFFFFF  # -1 as test_run's u32 retval: "next filter / kernel routing"
TC_ACT_REDIRECT = 7  # uapi linux/pkt_cls.h

ROUTES = {
    "198.51.100.0/24": (("p1", 1), ("p2", 1)),
    "203.0.113.0/24": (("p2", 1),),
    "2001:db8:100::/48": (("p1", 1), ("p2", 1)),
    "192.0.2.0/24": (("p1", 1),),       # holds the veth's own 192.0.2.1: a local entry
    "2001:db8::/64": (("p1", 1),),
}


def desired(routes=ROUTES) -> Desired:
    out = {}
    for text, hops in routes.items():
        net = ipaddress.ip_network(text)
        out[net] = RouteIntent(net, tuple(NextHop(p, w) for p, w in hops))
    return Desired(out)


@dataclass
class Rig:
    plane: BpfSteerDataPlane
    ifindex: int
    mac: str
    ctx: bytes

    def run(self, data: bytes, repeat: int = 1):
        return self.plane.prog.program.test_run(data, repeat=repeat, ctx=self.ctx)

    def counts(self):
        return self.plane.reason_totals(), self.plane.path_totals()

    def path_for(self, prefix: str, words: list[int]) -> str:
        """The model: which path the program must pick for a flow (hash → ring → path)."""
        key = self.plane.installed[ipaddress.ip_network(prefix)]
        table = maglev.build(dict(key), self.plane.prog.abi.ring_size)
        pid = table[flow_hash(words, self.plane.prog.abi.hash_seed) % len(table)]
        return self.plane._by_id[pid].name


@pytest.fixture
def rig(netns):
    mac = netns.in_ns("cat", f"/sys/class/net/{netns.name}/address").stdout.strip()
    paths = [
        PathLink("p1", 1, netns.name, ipaddress.ip_address("192.0.2.2"), ipaddress.ip_address("2001:db8::2")),
        PathLink("p2", 2, netns.name, ipaddress.ip_address("192.0.2.3"), ipaddress.ip_address("2001:db8::3")),
    ]
    plane = BpfSteerDataPlane(paths, [netns.name], stale_after_s=30)
    plane.apply(desired())
    with Btf.from_file("/sys/kernel/btf/vmlinux") as vmlinux:
        ctx = skb_context(vmlinux, ifindex_of(netns.name))
    yield Rig(plane, ifindex_of(netns.name), mac, ctx)
    plane.stop()


def eth(rig, **kw):
    return Ether(dst=kw.pop("dst", rig.mac), src="02:00:00:00:00:02")


SRC4, SRC6 = "10.0.0.7", "2001:db8:200::2"

# description, packet builder (rig → scapy packet), reason, prefix the path is predicted in
# (None: no path), hash words builder (None: by addresses)
TABLE = [
    ("IPv4 TCP to a two-path prefix",
     lambda r: eth(r) / IP(src=SRC4, dst="198.51.100.10", ttl=64) / TCP(sport=40000, dport=443, flags="S"),
     Reason.STEERED, "198.51.100.0/24", lambda: flow_words(SRC4, "198.51.100.10", 6, 40000, 443)),
    ("IPv4 UDP to a two-path prefix",
     lambda r: eth(r) / IP(src=SRC4, dst="198.51.100.10", ttl=64) / UDP(sport=5353, dport=53) / Raw(b"q" * 20),
     Reason.STEERED, "198.51.100.0/24", lambda: flow_words(SRC4, "198.51.100.10", 17, 5353, 53)),
    ("IPv4 ICMP echo: hashed by addresses",
     lambda r: eth(r) / IP(src=SRC4, dst="198.51.100.10", ttl=64) / ICMP() / Raw(bytes(56)),
     Reason.STEERED, "198.51.100.0/24", lambda: flow_words(SRC4, "198.51.100.10")),
    ("IPv4 UDP to a one-path prefix",
     lambda r: eth(r) / IP(src=SRC4, dst="203.0.113.77", ttl=2) / UDP(sport=1, dport=2),
     Reason.STEERED, "203.0.113.0/24", lambda: flow_words(SRC4, "203.0.113.77", 17, 1, 2)),
    ("IPv4 first fragment (MF): by addresses",
     lambda r: eth(r) / IP(src=SRC4, dst="198.51.100.10", flags="MF", ttl=64, proto=17) / UDP(sport=9, dport=9) / Raw(bytes(64)),
     Reason.STEERED, "198.51.100.0/24", lambda: flow_words(SRC4, "198.51.100.10")),
    ("IPv4 later fragment (offset): by addresses",
     lambda r: eth(r) / IP(src=SRC4, dst="198.51.100.10", frag=10, ttl=64, proto=17) / Raw(bytes(64)),
     Reason.STEERED, "198.51.100.0/24", lambda: flow_words(SRC4, "198.51.100.10")),
    ("IPv6 TCP to a two-path prefix",
     lambda r: eth(r) / IPv6(src=SRC6, dst="2001:db8:100::10", hlim=64) / TCP(sport=40001, dport=80, flags="S"),
     Reason.STEERED, "2001:db8:100::/48", lambda: flow_words(SRC6, "2001:db8:100::10", 6, 40001, 80)),
    ("IPv6 UDP",
     lambda r: eth(r) / IPv6(src=SRC6, dst="2001:db8:100::10", hlim=64) / UDP(sport=7, dport=7) / Raw(b"x" * 10),
     Reason.STEERED, "2001:db8:100::/48", lambda: flow_words(SRC6, "2001:db8:100::10", 17, 7, 7)),
    ("IPv6 ICMPv6 echo: by addresses",
     lambda r: eth(r) / IPv6(src=SRC6, dst="2001:db8:100::10", hlim=64) / ICMPv6EchoRequest(),
     Reason.STEERED, "2001:db8:100::/48", lambda: flow_words(SRC6, "2001:db8:100::10")),
    ("IPv6 fragment header: by addresses",
     lambda r: eth(r) / IPv6(src=SRC6, dst="2001:db8:100::10", hlim=64) / IPv6ExtHdrFragment(m=1) / UDP(sport=7, dport=7) / Raw(bytes(32)),
     Reason.STEERED, "2001:db8:100::/48", lambda: flow_words(SRC6, "2001:db8:100::10")),
    ("IPv4 destination in no steered prefix",
     lambda r: eth(r) / IP(src=SRC4, dst="8.8.8.8") / UDP(), Reason.PASS_NO_ROUTE, None, None),
    ("IPv6 destination in no steered prefix",
     lambda r: eth(r) / IPv6(src=SRC6, dst="2001:db8:999::1") / UDP(), Reason.PASS_NO_ROUTE, None, None),
    ("IPv4 TTL 1: the kernel sends time exceeded",
     lambda r: eth(r) / IP(src=SRC4, dst="198.51.100.10", ttl=1) / UDP(), Reason.PASS_TTL, None, None),
    ("IPv6 hop limit 1",
     lambda r: eth(r) / IPv6(src=SRC6, dst="2001:db8:100::10", hlim=1) / UDP(), Reason.PASS_TTL, None, None),
    ("IPv4 to the router's own address inside a steered prefix",
     lambda r: eth(r) / IP(src=SRC4, dst="192.0.2.1") / TCP(dport=22), Reason.PASS_LOCAL, None, None),
    ("IPv6 to the router's own address inside a steered prefix",
     lambda r: eth(r) / IPv6(src=SRC6, dst="2001:db8::1") / TCP(dport=22), Reason.PASS_LOCAL, None, None),
    ("IPv4 multicast destination",
     lambda r: eth(r) / IP(src=SRC4, dst="224.0.0.5") / UDP(), Reason.PASS_SPECIAL, None, None),
    ("IPv4 link-local destination",
     lambda r: eth(r) / IP(src=SRC4, dst="169.254.1.1") / UDP(), Reason.PASS_SPECIAL, None, None),
    ("IPv6 link-local destination",
     lambda r: eth(r) / IPv6(src=SRC6, dst="fe80::1") / UDP(), Reason.PASS_SPECIAL, None, None),
    ("IPv4 with options (router alert)",
     lambda r: eth(r) / IP(src=SRC4, dst="198.51.100.10", options=b"\x94\x04\x00\x00") / UDP(), Reason.PASS_OPTIONS, None, None),
    ("IPv6 hop-by-hop header",
     lambda r: eth(r) / IPv6(src=SRC6, dst="2001:db8:100::10") / IPv6ExtHdrHopByHop() / UDP(), Reason.PASS_OPTIONS, None, None),
    ("IPv4 total length beyond the frame",
     lambda r: bytes(eth(r) / IP(src=SRC4, dst="198.51.100.10", len=200) / UDP())[:60], Reason.PASS_MALFORMED, None, None),
    ("IPv4 TCP header cut short (total length 28)",
     lambda r: eth(r) / IP(src=SRC4, dst="198.51.100.10", proto=6, len=28) / Raw(bytes(8)), Reason.PASS_MALFORMED, None, None),
    ("IPv6 payload length beyond the frame",
     lambda r: bytes(eth(r) / IPv6(src=SRC6, dst="2001:db8:100::10", plen=500) / UDP())[:70], Reason.PASS_MALFORMED, None, None),
    ("ARP: not IP", lambda r: Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="192.0.2.1"), Reason.PASS_NOT_IP, None, None),
    ("frame for another host's MAC (PACKET_OTHERHOST)",
     lambda r: eth(r, dst="02:00:00:00:00:99") / IP(src=SRC4, dst="198.51.100.10") / UDP(), Reason.PASS_NOT_IP, None, None),
]


def check_output(data_in: bytes, data_out: bytes, steered: bool) -> None:
    if not steered:
        assert data_out == data_in
        return
    a, b = Ether(data_in), Ether(data_out)
    if IP in a:
        assert b[IP].ttl == a[IP].ttl - 1
        fixed = b[IP].copy()
        fixed.chksum = None
        assert IP(bytes(fixed))[IP].chksum == b[IP].chksum, "IPv4 header checksum must stay valid"
        assert bytes(b[IP].payload) == bytes(a[IP].payload)
    else:
        assert b[IPv6].hlim == a[IPv6].hlim - 1
        assert bytes(b[IPv6].payload) == bytes(a[IPv6].payload)
    assert data_out[:12] == data_in[:12]  # the kernel fills the MACs after the redirect, not us


@pytest.mark.parametrize("description, build, reason, prefix, words", TABLE, ids=[row[0] for row in TABLE])
def test_table(rig, description, build, reason, prefix, words):
    pkt = build(rig)
    data = bytes(pkt)
    reasons0, paths0 = rig.counts()
    result = rig.run(data)
    reasons1, paths1 = rig.counts()
    steered = reason is Reason.STEERED
    assert result.retval == (TC_ACT_REDIRECT if steered else TC_ACT_UNSPEC), description
    check_output(data, result.data_out, steered)
    moved = {r: reasons1[r] - reasons0[r] for r in reasons1 if reasons1[r] != reasons0[r]}
    assert set(moved) == {reason}, description
    assert moved[reason].packets == 1 and moved[reason].bytes == len(data)
    path_moved = {p for p in paths1 if paths1[p] != paths0[p]}
    if steered:
        assert path_moved == {rig.path_for(prefix, words())}, description
    else:
        assert path_moved == set()


def test_stale_heartbeat_passes_everything(rig):
    data = bytes(eth(rig) / IP(src=SRC4, dst="198.51.100.10") / UDP(sport=1, dport=2))
    assert rig.run(data).retval == TC_ACT_REDIRECT
    rig.plane.prog.heartbeat(rig.plane.stale_after_ns, now_ns=time.monotonic_ns() - 31 * 10**9)
    before = rig.plane.reason_totals()[Reason.PASS_STALE]
    result = rig.run(data)
    assert result.retval == TC_ACT_UNSPEC and result.data_out == data
    assert rig.plane.reason_totals()[Reason.PASS_STALE].packets == before.packets + 1
    rig.plane.heartbeat()
    assert rig.run(data).retval == TC_ACT_REDIRECT


def test_never_written_heartbeat_passes(rig):
    rig.plane.prog.write_state(0, rig.plane.stale_after_ns)
    data = bytes(eth(rig) / IP(src=SRC4, dst="198.51.100.10") / UDP(sport=1, dport=2))
    assert rig.run(data).retval == TC_ACT_UNSPEC


def flows(n: int):
    for i in range(n):
        sport = 1024 + i
        yield sport, bytes(eth_static() / IP(src=SRC4, dst="198.51.100.10") / TCP(sport=sport, dport=443))


_MAC = {}


def eth_static():
    return Ether(dst=_MAC["mac"], src="02:00:00:00:00:02")


def path_of_run(rig, data: bytes) -> str:
    before = rig.plane.path_totals()
    assert rig.run(data).retval == TC_ACT_REDIRECT
    after = rig.plane.path_totals()
    (moved,) = [p for p in after if after[p] != before[p]]
    return moved


def test_flow_stickiness_and_weight_change(rig):
    """Same 5-tuple → same path on every packet; a weight change 1:1 → 1:2 moves about the
    change in share (1/6 of flows) and no more than that + 5 points."""
    _MAC["mac"] = rig.mac
    sample = list(flows(300))
    first = {sport: path_of_run(rig, data) for sport, data in sample}
    for sport, data in sample[:50]:
        for _ in range(3):
            assert path_of_run(rig, data) == first[sport]
    shares = {p: sum(1 for v in first.values() if v == p) / len(first) for p in ("p1", "p2")}
    assert 0.40 < shares["p1"] < 0.60, shares
    rig.plane.apply(desired({**ROUTES, "198.51.100.0/24": (("p1", 1), ("p2", 2))}))
    second = {sport: path_of_run(rig, data) for sport, data in sample}
    moved = sum(first[s] != second[s] for s in first) / len(first)
    assert moved <= 1 / 6 + 0.05, moved
    assert all(second[s] == "p2" for s in first if first[s] == "p2"), "flows of the grown path stay"
    rig.plane.apply(desired())  # back: the old table came from a slot in its grace period
    third = {sport: path_of_run(rig, data) for sport, data in sample}
    assert third == first


def test_model_predicts_many_flows(rig):
    _MAC["mac"] = rig.mac
    for sport, data in list(flows(100)):
        assert path_of_run(rig, data) == rig.path_for("198.51.100.0/24", flow_words(SRC4, "198.51.100.10", 6, sport, 443))


def test_frame_larger_than_the_path_mtu_goes_to_the_kernel(rig, netns):
    """A redirect past the egress MTU would be dropped silently; the kernel fragments or
    answers "fragmentation needed" instead."""
    netns.in_ns("ip", "link", "set", "dev", netns.name, "mtu", "1280")
    big = bytes(eth(rig) / IP(src=SRC4, dst="203.0.113.9") / UDP(sport=1, dport=2) / Raw(bytes(1300)))
    small = bytes(eth(rig) / IP(src=SRC4, dst="203.0.113.9") / UDP(sport=1, dport=2) / Raw(bytes(1000)))
    before = rig.plane.reason_totals()[Reason.PASS_MTU].packets
    result = rig.run(big)
    assert result.retval == TC_ACT_UNSPEC and result.data_out == big
    assert rig.plane.reason_totals()[Reason.PASS_MTU].packets == before + 1
    assert rig.run(small).retval == TC_ACT_REDIRECT
