"""The fleet harness (pathsteer_lab.fleet, issue 10) with real BGP daemons, without ExaBGP or
pathsteer: two edge labs, a core (BIRD 2 or FRR 8.4) peering with both over eBGP, a client
behind the core.

- The wiring: with a static route on the core, the fleet client's pings reach the servers
  through edge a, then through edge b (counted on that edge's ``r-core`` and its p1); `down`
  leaves no namespace.
- The core config: a BIRD in each edge's router namespace stands in for the edge's speaker and
  announces 198.51.100.0/24 with a MED; the core's kernel route follows the lower MED, across
  the two edge ASes (BIRD's ``med metric yes``, FRR's ``bgp always-compare-med``: without them
  the core would keep edge 1, whose router id is lower). The core's own 192.0.2.0/24 reaches the
  edges with its large community; the edges' routes are not sent back to the edges.
- The benchmark anchor: BIRD → BIRD transfer of 10k prefixes.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from pathsteer_lab import fleet as fleet_mod, netns
from pathsteer_lab.fleet import BirdCore, BirdEdge, Fleet, FrrCore, bird_transfer_time

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(shutil.which("bird") is None or shutil.which("birdc") is None,
                                 reason="bird2 is not installed (make deps)")]
needs_frr = pytest.mark.skipif(not os.path.exists("/usr/lib/frr/bgpd") or shutil.which("vtysh") is None,
                               reason="frr is not installed (make deps)")

P = "198.51.100.0/24"
ORIGINATED = "192.0.2.0/24"


def fleet_namespaces(name: str) -> list[str]:
    return [ns for ns in netns.list_namespaces()
            if ns.startswith((f"ps-{name}-", f"ps-{name}a-", f"ps-{name}b-"))]


@pytest.fixture
def fleet(unique_name):
    name = unique_name("f")          # 7 characters: ps-f1a2b3c-core fits 15
    try:
        with Fleet.up(name) as fl:
            yield fl
    finally:
        fleet_mod.down(name)         # idempotent: also after a failed up or a failed test


def path_rx(fl: Fleet, k: int) -> int:
    """Packets edge k's p1 received from its router."""
    t = fl.edge(k)
    out = netns.run(t.path("p1").namespace, ["ip", "-j", "-s", "link", "show", "dev", "p-r"]).stdout
    return int(json.loads(out)[0]["stats64"]["rx"]["packets"])


def ping_over(fl: Fleet, k: int, count: int = 5) -> None:
    """Pings from the fleet client all answered, and carried by edge k (not the other one)."""
    other = 3 - k
    before = {e: (fl.edge_rx_packets(e), path_rx(fl, e)) for e in (1, 2)}
    r = fl.ping("198.51.100.10", count=count)
    after = {e: (fl.edge_rx_packets(e), path_rx(fl, e)) for e in (1, 2)}
    assert r.received == count, (k, r)
    assert after[k][0] - before[k][0] >= count and after[k][1] - before[k][1] >= count, (k, before, after)
    assert after[other][1] - before[other][1] < count, (k, before, after)


def test_fleet_client_reaches_the_servers_through_either_edge_and_down_removes_all(fleet):
    name = fleet.name
    assert sorted(fleet_namespaces(name)) == sorted(fleet.all_namespaces())
    assert len(fleet.edges) == 2 and [t.name for t in fleet.edges] == [f"{name}a", f"{name}b"]
    assert (fleet.core_ns, fleet.client_ns) == (f"ps-{name}-core", f"ps-{name}-fc")
    assert max(map(len, (fleet.core_ns, fleet.client_ns))) <= 15
    assert [fleet.edge_address(k) for k in (1, 2)] == ["10.100.1.2", "10.100.2.2"]
    assert [fleet.core_address(k) for k in (1, 2)] == ["10.100.1.1", "10.100.2.1"]
    assert fleet.client_address == "10.77.0.2"
    assert fleet.kernel_route(P) is None            # the core learns the prefixes from BGP only
    for k in (1, 2, 1):
        fleet.set_core_route(P, k)
        assert fleet.kernel_route(P) == fleet.edge_address(k)
        ping_over(fleet, k)
    fleet.set_core_route(P, None)
    fleet.down()
    assert fleet_namespaces(name) == []
    assert fleet_mod.down(name) is False            # idempotent: nothing left to find


def med_follows(fl: Fleet, core, tmp_path) -> None:
    """Fake edges announce P with MEDs: the core's kernel route and the traffic follow the lower."""
    core.originate(ORIGINATED)                       # large community (65000, 7, 1)
    core.start()
    e1 = BirdEdge.for_fleet(fl, 1, str(tmp_path), {P: 10}).start()
    e2 = BirdEdge.for_fleet(fl, 2, str(tmp_path), {P: 20}).start()
    assert core.wait_established(30) == {"edge1": "Established", "edge2": "Established"}
    core.wait_routes(P, 2)                           # Established comes before the routes
    core.wait_kernel_route(P, "10.100.1.2")
    assert core.best(P) == "10.100.1.2"
    routes = {r["from"]: r for r in core.routes(P)}
    assert set(routes) == {"10.100.1.2", "10.100.2.2"}, routes
    assert (routes["10.100.1.2"]["med"], routes["10.100.2.2"]["med"]) == (10, 20)
    assert (routes["10.100.1.2"]["as_path"], routes["10.100.2.2"]["as_path"]) == ([65001], [65002])
    assert routes["10.100.1.2"]["best"] and not routes["10.100.2.2"]["best"]
    ping_over(fl, 1)

    e1.announce(P, 30)                               # edge 1 worse now: edge 2 takes over
    took = core.wait_kernel_route(P, "10.100.2.2")
    assert core.best(P) == "10.100.2.2"
    ping_over(fl, 2)
    e2.announce(P, 40)                               # and back
    took2 = core.wait_kernel_route(P, "10.100.1.2")
    ping_over(fl, 1)
    print(f"\n{core.kind}: kernel route moved {took * 1e3:.0f} ms and {took2 * 1e3:.0f} ms after the MED change")

    # The core's own prefix reaches both edges with its large community; the edges' routes are
    # not sent on to the other edge.
    for e, k in ((e1, 1), (e2, 2)):
        deadline = time.monotonic() + 10
        while not e.routes(ORIGINATED) and time.monotonic() < deadline:
            time.sleep(0.05)
        (r,) = e.routes(ORIGINATED)
        assert r["large_communities"] == [(65000, 7, 1)] and r["as_path"] == [65000], r
        assert r["next_hop"] == fl.core_address(k)
        assert [x["protocol"] for x in e.routes(P)] == ["announced"]   # its own static route only
    assert core.count_routes() == 3 and core.count_networks() == 2
    core.withdraw(ORIGINATED)
    deadline = time.monotonic() + 10
    while e1.routes(ORIGINATED) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert e1.routes(ORIGINATED) == []
    assert ORIGINATED not in core.config_text

    # A withdrawn announcement: the other edge's route goes into the kernel.
    e1.withdraw(P)
    core.wait_kernel_route(P, "10.100.2.2")


def test_bird_core_follows_the_lowest_med_across_edge_ases(fleet, tmp_path):
    core = BirdCore(fleet, str(tmp_path))
    try:
        med_follows(fleet, core, tmp_path)
        assert "med metric yes;" in core.config_text
    finally:
        core.stop()
    assert fleet.kernel_route(P) is None             # BIRD's kernel routes go with it


@needs_frr
def test_frr_core_follows_the_lowest_med_across_edge_ases(fleet, tmp_path):
    core = FrrCore(fleet, str(tmp_path))
    try:
        med_follows(fleet, core, tmp_path)
        assert "bgp always-compare-med" in core.config_text
    finally:
        core.stop()
    assert fleet.kernel_route(P) is None             # zebra removes its routes when it stops


def test_bird_transfer_time_of_10k_prefixes(tmp_path, unique_name):
    tags = [unique_name(""), unique_name("")]
    announce = bird_transfer_time(str(tmp_path), 10_000, tag=tags[0])
    enable = bird_transfer_time(str(tmp_path), 10_000, since="enable", tag=tags[1])
    print(f"\nBIRD → BIRD, 10k prefixes: {announce:.3f} s from announce (session up), "
          f"{enable:.3f} s from enabling the session")
    assert 0 < announce < 30 and 0 < enable < 30
    assert not [ns for ns in netns.list_namespaces() if ns.startswith(tuple(f"ps-bt{t}-" for t in tags))]
