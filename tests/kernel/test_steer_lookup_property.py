"""Property tests of the steering lookup (issue 12): under random route tables of both families —
nested prefixes of every length, local addresses inside them — every packet gets, through
BPF_PROG_TEST_RUN, the verdict of a pure-Python longest-prefix match over the table (and the
path the Maglev model predicts); and the route_lengths ordering holds at every write of an
update (steer_structs.h: a length is announced only after its first entry is in the map and
retired before its last one is deleted).

One data plane per test lives across the examples, so each example is also an update of the
previous table (the diff path of `BpfSteerDataPlane.apply`).
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from pathsteer.bpf import Btf, ifindex_of
from pathsteer.bpf.testrun import skb_context
from pathsteer.dataplane import bpf_steer, maglev
from pathsteer.dataplane.bpf_steer import BpfSteerDataPlane, local_prefixes
from pathsteer.dataplane.bpf_steer_abi import Reason, flow_hash, flow_words
from pathsteer.routes import Desired, NextHop, PathLink, RouteIntent

TC_ACT_UNSPEC = 0xFFFFFFFF
TC_ACT_REDIRECT = 7
SRC4, SRC6 = "10.200.0.7", "2001:db8:200::2"

# Small pools so that prefixes nest and collide; 192.0.2.1 and 2001:db8::1 are the veth's own
# addresses (local entries once a steered prefix holds them).
V4_POOL = ["10.9.0.1", "10.9.0.2", "10.9.0.129", "10.9.1.200", "10.8.255.255", "192.0.2.1", "192.0.2.77", "203.0.113.5"]
V6_POOL = ["2001:db8:0:0:1::5", "2001:db8::1", "2001:db8::8001", "2001:db8:1::2", "2001:db8:1:8000::1",
           "2001:db8:ffff::1", "2400:cb00::1"]
HOPS = [(("p1", 1),), (("p2", 1),), (("p1", 1), ("p2", 3))]


def prefixes(pool, maxlen):
    return st.builds(lambda a, plen: ipaddress.ip_network(f"{a}/{plen}", strict=False),
                     st.sampled_from(pool), st.integers(0, maxlen))


tables = st.dictionaries(st.one_of(prefixes(V4_POOL, 32), prefixes(V6_POOL, 128)), st.sampled_from(HOPS), max_size=14)


@pytest.fixture
def plane(netns):
    paths = [
        PathLink("p1", 1, netns.name, ipaddress.ip_address("192.0.2.2"), ipaddress.ip_address("2001:db8::2")),
        PathLink("p2", 2, netns.name, ipaddress.ip_address("192.0.2.3"), ipaddress.ip_address("2001:db8::3")),
    ]
    p = BpfSteerDataPlane(paths, [netns.name], stale_after_s=60)
    p.apply(Desired({}))
    with Btf.from_file("/sys/kernel/btf/vmlinux") as vmlinux:
        p.test_ctx = skb_context(vmlinux, ifindex_of(netns.name))
    p.test_mac = netns.in_ns("cat", f"/sys/class/net/{netns.name}/address").stdout.strip()
    p.test_local = local_prefixes()
    yield p
    p.stop()


def desired(table) -> Desired:
    return Desired({net: RouteIntent(net, tuple(NextHop(p, w) for p, w in hops)) for net, hops in table.items()})


def model(table, local, dst: str):
    """Longest prefix match over the table plus the local-table entries inside a steered
    prefix (what the kernel delivers to the router itself): (Reason, hops or None)."""
    a = ipaddress.ip_address(dst)
    candidates = [(net.prefixlen, 1, hops) for net, hops in table.items() if a in net and net.version == a.version]
    steered = [net for net in table if net.version == a.version]
    for loc in local:
        if a in loc and any(loc.subnet_of(net) for net in steered if net.version == loc.version):
            candidates.append((loc.prefixlen, 2, None))  # a local entry equal to a route wins: it is the kernel's
    if not candidates:
        return Reason.PASS_NO_ROUTE, None
    plen, kind, hops = max(candidates, key=lambda c: (c[0], c[1]))
    if kind == 2 and not any(net.prefixlen == plen and a in net for net in table):
        return Reason.PASS_LOCAL, None
    # a route equal to a local prefix: the plane keeps the route (local entries only fill gaps)
    return Reason.STEERED, next(h for net, h in table.items() if a in net and net.prefixlen == plen)


def expected_path(plane, hops, words) -> str:
    ids = {p.name: p.id for p in plane.paths.values()}
    members: dict[int, int] = {}
    for name, w in hops:
        members[ids[name]] = members.get(ids[name], 0) + w
    ring = maglev.build(members, plane.prog.abi.ring_size)
    return plane._by_id[ring[flow_hash(words, plane.prog.abi.hash_seed) % len(ring)]].name


def run(plane, dst: str):
    sport = 1000 + sum(ipaddress.ip_address(dst).packed) % 5000
    if ":" in dst:
        pkt = Ether(dst=plane.test_mac) / IPv6(src=SRC6, dst=dst, hlim=64) / TCP(sport=sport, dport=443)
        words = flow_words(SRC6, dst, 6, sport, 443)
    else:
        pkt = Ether(dst=plane.test_mac) / IP(src=SRC4, dst=dst, ttl=64) / TCP(sport=sport, dport=443)
        words = flow_words(SRC4, dst, 6, sport, 443)
    for _ in range(5):  # the peer's own packets (neighbour discovery) also pass the attached program
        r0, p0 = plane.reason_totals(), plane.path_totals()
        result = plane.prog.program.test_run(bytes(pkt), ctx=plane.test_ctx)
        r1, p1 = plane.reason_totals(), plane.path_totals()
        reasons = [r for r in r1 if r1[r] != r0[r]]
        moved = [p for p in p1 if p1[p] != p0[p]]
        if len(reasons) == 1 and (r1[reasons[0]] - r0[reasons[0]]).packets == 1:
            return result.retval, reasons[0], moved, words
    raise AssertionError(f"{dst}: other packets kept passing the program ({reasons})")


@pytest.fixture(params=["v6-hash", "v6-trie"])
def v6_lookup(request, monkeypatch):
    """IPv6 through the per-length hash (as from V6_HASH_MIN_ROUTES prefixes on; the trie still
    past STEER_V6_HASH_LENGTHS lengths) or through the trie (a small table's default)."""
    if request.param == "v6-hash":
        monkeypatch.setattr(bpf_steer, "V6_HASH_MIN_ROUTES", 0)
    return request.param


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(table=tables, dsts=st.lists(st.sampled_from(V4_POOL + V6_POOL + ["10.9.0.3", "2001:db8:1::99"]),
                                   min_size=1, max_size=6))
def test_verdicts_are_longest_prefix_match(v6_lookup, plane, table, dsts):
    plane.apply(desired(table))
    assert plane.prog.v6_lookup_lpm() is (v6_lookup == "v6-trie")
    for dst in dsts:
        want, hops = model(table, plane.test_local, dst)
        retval, reason, moved, words = run(plane, dst)
        assert reason is want, (dst, sorted(map(str, table)))
        if want is Reason.STEERED:
            assert retval == TC_ACT_REDIRECT
            assert moved == [expected_path(plane, hops, words)], (dst, hops)
        else:
            assert retval == TC_ACT_UNSPEC and moved == []


def test_lengths_are_announced_after_entries_and_retired_before_them(plane):
    """Spy on the real program's writes: after every write route_lengths names only lengths
    with an entry in the kernel's map, and no deletion takes the last entry of a length that
    is still named."""
    prog = plane.prog
    checks = []

    def present(version):
        return {int.from_bytes(kb[:4], "little") for kb in prog.read_routes(version)}

    def named(version):
        m = prog.read_lengths(version)
        return {n for n in range(129) if m >> n & 1}

    def check(version, what):
        assert named(version) <= present(version), f"after {what}: v{version} names {named(version) - present(version)}"
        checks.append(what)

    def spy(name):
        real = getattr(prog, name)

        def wrapped(version, *args):
            if name.startswith("delete"):
                raw = args[0]
                size = 8 if version == 4 else 20
                keys = ([raw[i:i + size] for i in range(0, len(raw), size)] if isinstance(raw, bytes) else list(raw))
                left = {int.from_bytes(k[:4], "little") for k in set(prog.read_routes(version)) - set(keys)}
                assert named(version) <= left, f"{name} would empty named v{version} lengths {named(version) - left}"
            out = real(version, *args)
            check(version, name)
            return out
        setattr(prog, name, wrapped)

    for name in ("write_routes", "write_routes_packed", "delete_routes", "delete_routes_packed", "write_lengths"):
        spy(name)
    nets = lambda *xs: {ipaddress.ip_network(x): HOPS[i % 3] for i, x in enumerate(xs)}  # noqa: E731
    steps = [
        nets("10.9.0.0/24", "10.9.0.0/25", "10.9.0.128/26", "2001:db8:1::/48", "2001:db8:1:8000::/49"),
        nets("10.9.0.0/24", "10.9.0.0/28", "2001:db8:1::/48", "192.0.2.0/24", "2001:db8::/64"),
        nets("10.0.0.0/8", "2001:db8::/32"),
        nets("10.9.0.0/25", "10.9.0.1/32", "2001:db8:1:8000::/49"),
        {},
    ]
    for table in steps:
        plane.apply(desired(table))
        for version in (4, 6):
            have = {int.from_bytes(kb[:4], "little") for kb in prog.read_routes(version)}
            assert named(version) == have, f"v{version}: named {named(version)}, present {have}"
        for dst in ("10.9.0.1", "10.9.0.130", "192.0.2.1", "2001:db8:1:8000::1", "2001:db8::1"):
            want, _ = model(table, plane.test_local, dst)
            assert run(plane, dst)[1] is want, (dst, table)
    assert len(checks) > 10


def test_adopt_repaints_the_same_table(plane):
    """A restarted daemon (a new plane, by kernel ids) reads the route hashes back, repaints the
    /24 table to the same bytes, and every verdict stays the longest match."""
    table = {ipaddress.ip_network(x): HOPS[i % 3] for i, x in enumerate(
        ["0.0.0.0/0", "10.0.0.0/8", "10.9.0.0/16", "10.9.0.0/24", "10.9.0.128/25", "10.9.0.129/32", "192.0.2.0/24",
         "2001:db8::/32", "2001:db8:1::/48", "2001:db8:1:8000::/49"])}
    plane.apply(desired(table))
    before = bytes(plane._v4.t.cast("B"))
    plane.close()  # what a crash leaves: attached, our fds gone
    again = BpfSteerDataPlane(list(plane.paths.values()), plane.ingress, stale_after_s=60)
    try:
        assert again.adopt() == desired(table)
        assert bytes(again._v4.t.cast("B")) == before
        again.test_ctx, again.test_mac = plane.test_ctx, plane.test_mac
        for dst in V4_POOL + V6_POOL + ["10.9.0.3", "11.0.0.1"]:
            want, hops = model(table, plane.test_local, dst)
            retval, reason, moved, words = run(again, dst)
            assert reason is want, dst
            if want is Reason.STEERED:
                assert moved == [expected_path(again, hops, words)], dst
    finally:
        again.stop()


def test_reconcile_repaints_a_scribbled_table(plane, monkeypatch):
    """Entries of routes_v4_24 changed behind the plane's back (through the map) are put back by
    the next reconcile that checks the table (every TABLE_CHECK_S; here every one); a second
    reconcile finds nothing."""
    monkeypatch.setattr(bpf_steer, "TABLE_CHECK_S", 0.0)
    table = {ipaddress.ip_network("10.9.0.0/16"): HOPS[0], ipaddress.ip_network("10.9.0.128/25"): HOPS[1]}
    d = desired(table)
    plane.apply(d)
    assert plane.reconcile(d) == []
    before = bytes(plane._v4.t.cast("B"))
    scribble = plane.prog.v4_table()  # a second mapping of the same map
    index = int(ipaddress.ip_address("10.9.0.1")) >> 8
    scribble[index] = 0  # no route, and the longer prefix's flag gone
    scribble[index + 1] = 0x7FFF
    assert "IPv4 /24 table repainted" in plane.reconcile(d)
    assert bytes(plane._v4.t.cast("B")) == before
    assert plane.reconcile(d) == []
    for dst in ("10.9.0.1", "10.9.0.129", "10.9.1.1"):
        assert run(plane, dst)[1] is Reason.STEERED
