"""Updates while packets run: no packet sees half a decision; reconcile repairs map drift made
behind the data plane's back; adopt from a second process-like instance by kernel ids."""

from __future__ import annotations

import errno
import ipaddress
import threading

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from pathsteer.bpf import Btf, ifindex_of, in_netns
from pathsteer.dataplane import bpf_steer
from pathsteer.dataplane.bpf_steer import BpfSteerDataPlane
from pathsteer.dataplane.bpf_steer_abi import Reason, key_bytes
from pathsteer.routes import Desired, NextHop, PathLink, RouteIntent
from pathsteer.errors import BpfError
from pathsteer.bpf.testrun import skb_context

import pytest

TC_ACT_REDIRECT = 7  # uapi linux/pkt_cls.h


NET = ipaddress.ip_network("198.51.100.0/24")


def route(*hops) -> Desired:
    return Desired({NET: RouteIntent(NET, tuple(NextHop(p, w) for p, w in hops))})


@pytest.fixture
def plane(netns):
    paths = [PathLink(f"p{i}", i, netns.name, ipaddress.ip_address(f"192.0.2.{i + 1}"), None) for i in (1, 2, 3)]
    p = BpfSteerDataPlane(paths, [netns.name], stale_after_s=60)
    p.apply(route(("p1", 1)))
    mac = netns.in_ns("cat", f"/sys/class/net/{netns.name}/address").stdout.strip()
    with Btf.from_file("/sys/kernel/btf/vmlinux") as vmlinux:
        p.test_ctx = skb_context(vmlinux, ifindex_of(netns.name))
    p.test_mac = mac
    p.test_ns = netns.ns
    yield p
    p.stop()


def frames(mac: str, n: int) -> list[bytes]:
    return [bytes(Ether(dst=mac) / IP(src="10.0.0.2", dst="198.51.100.10", ttl=255) / TCP(sport=1000 + i, dport=80))
            for i in range(n)]


def test_no_packet_sees_half_a_decision(plane):
    """Flip the prefix between groups while another thread runs packets: every run is
    redirected (a half-written table would hold path 0 → PASS_NO_PATH)."""
    data = frames(plane.test_mac, 64)
    stop = threading.Event()
    verdicts: list[int] = []

    errors: list[BaseException] = []

    def run():
        i = 0
        try:
            with in_netns(plane.test_ns):  # setns is per thread: enter the test's namespace too
                while not stop.is_set():
                    try:
                        r = plane.prog.program.test_run(data[i % len(data)], repeat=50, ctx=plane.test_ctx)
                    except BpfError as exc:
                        if exc.errno == errno.EINTR:  # bpf_test_run gives up on a pending signal
                            continue
                        raise
                    verdicts.append(r.retval)
                    i += 1
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    try:
        for i in range(60):
            plane.apply(route(("p1", 1 + i % 5), ("p2", 1), ("p3", 1 + i % 3)) if i % 2 else route(("p2", 1)))
    finally:
        stop.set()
        t.join()
    assert not errors, errors
    assert len(verdicts) > 10
    assert set(verdicts) == {TC_ACT_REDIRECT}
    reasons = plane.reason_totals()
    assert reasons[Reason.PASS_NO_PATH].packets == 0
    assert reasons[Reason.PASS_NO_ROUTE].packets == 0


def test_reconcile_repairs_drift(plane):
    d = route(("p1", 1), ("p2", 1))
    plane.apply(d)
    slot = plane.prog.lookup_route(4, key_bytes(NET))
    # someone deletes our route, scribbles over the table and a path, and adds a route
    plane.prog.delete_routes(4, [key_bytes(NET)])
    members, ring = plane.prog.read_group(slot)
    plane.prog.write_group(slot, members, [0] * len(ring))
    bogus = plane.prog.read_paths()[1]
    bogus.ifindex = 999
    plane.prog.write_path(1, bogus)
    stray = ipaddress.ip_network("10.9.0.0/16")
    plane.prog.write_routes(4, [(key_bytes(stray), slot)])
    repaired = plane.reconcile(d)
    assert any("restored" in r for r in repaired)
    assert any("group slot" in r for r in repaired)
    assert any("path p1" in r for r in repaired)
    assert any("10.9.0.0/16" in r for r in repaired)
    assert plane.prog.lookup_route(4, key_bytes(NET)) == slot
    assert plane.prog.lookup_route(4, key_bytes(stray)) is None
    assert 0 not in plane.prog.read_group(slot)[1]
    assert plane.reconcile(d) == []
    for data in frames(plane.test_mac, 8):
        assert plane.prog.program.test_run(data, ctx=plane.test_ctx).retval == TC_ACT_REDIRECT


def test_adopt_by_kernel_ids_and_handover(plane):
    d = route(("p1", 3), ("p3", 1))
    plane.apply(d)
    prog_id = plane.prog.id
    plane.close()  # what a crash leaves: attached, our fds gone
    again = BpfSteerDataPlane(list(plane.paths.values()), plane.ingress, stale_after_s=60)
    got = again.adopt()
    assert got == d
    assert again.prog.id == prog_id
    again.apply(got)  # nothing to change
    again.stop()
    assert BpfSteerDataPlane(list(plane.paths.values()), plane.ingress, 60).adopt() is None


def test_an_address_added_inside_a_steered_prefix_is_marked_local_at_the_next_reconcile(plane, netns):
    """The local table is read again only after a route notification of table local (no dump
    per reconcile): an address added, then removed, shows up, then goes, in the trie."""
    d = route(("p1", 1))
    plane.apply(d)
    mark = plane.prog.abi.group_local
    local = ipaddress.ip_network("198.51.100.77/32")
    entries = lambda: plane.prog.read_routes(4)  # noqa: E731 - exact keys (a lookup is longest-prefix)
    assert key_bytes(local) not in entries()
    calls = []
    real = bpf_steer.local_keys
    bpf_steer.local_keys = lambda: calls.append(1) or real()
    try:
        plane.reconcile(d)
        assert calls == [], "nothing changed in table local: not read again"
        netns.in_ns("ip", "addr", "add", "198.51.100.77/32", "dev", netns.name)
        plane.reconcile(d)
        assert calls and entries().get(key_bytes(local)) == mark
        netns.in_ns("ip", "addr", "del", "198.51.100.77/32", "dev", netns.name)
        plane.reconcile(d)
        assert key_bytes(local) not in entries()
    finally:
        bpf_steer.local_keys = real


def test_200k_prefixes_apply_and_an_unchanged_reconcile_are_quick(plane):
    """Issue 11 at a fifth of the scale, generous bounds (the machine is shared): apply; the
    daemon's reconcile with the Desired it applied (no diff); a new, equal Desired (a full diff
    that writes nothing); every entry holds its group's slot."""
    import time
    nets = [ipaddress.IPv4Network((0x14000000 + i * 256, 24)) for i in range(200_000)]   # 20.0.0.0/24 ...
    hops = (NextHop("p1", 1), NextHop("p2", 1))
    d = Desired({NET: RouteIntent(NET, hops), **{p: RouteIntent(p, hops) for p in nets}})
    t0 = time.perf_counter()
    plane.apply(d)
    assert time.perf_counter() - t0 < 8
    t0 = time.perf_counter()
    assert plane.reconcile(d) == []
    assert time.perf_counter() - t0 < 1
    again = Desired({p: RouteIntent(p, hops) for p in d.routes})
    t0 = time.perf_counter()
    assert plane.reconcile(again) == []
    assert time.perf_counter() - t0 < 4
    have = plane.prog.read_routes(4)
    slot = have[key_bytes(NET)]
    assert len(have) == 200_001 and all(have[key_bytes(p)] == slot for p in nets[::997])
    plane.apply(route(("p1", 1)))            # 200k removed in one batch
    assert list(plane.prog.read_routes(4)) == [key_bytes(NET)]
