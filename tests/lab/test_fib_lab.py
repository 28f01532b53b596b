"""fib data plane end to end: the client's traffic follows the routes FibDataPlane programs.

p2 gets 20 ms of one-way delay, so a ping over p2 takes about 40 ms and one over p1 (the
router's own route for the server prefixes) about nothing; the router's transmit counters on
r-p1/r-p2 say the same by packets.
"""

from __future__ import annotations

import ipaddress
import json
import time

import pytest

from pathsteer.dataplane.fib import FibDataPlane
from pathsteer.routes import Desired, NextHop, PathLink, RouteIntent
import pathsteer_lab as lab
from pathsteer_lab import measure

SERVER, SERVER6 = "198.51.100.10", "2001:db8:100::10"
V4, V6 = ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("2001:db8:100::/48")


def paths_of(t: lab.Topology) -> list[PathLink]:
    return [PathLink(p.name, p.index, p.router_interface, ipaddress.ip_address(p.gateway),
                     ipaddress.ip_address(p.gateway6)) for p in t.paths]


def tx_packets(t: lab.Topology, dev: str) -> int:
    out = t.run("router", ["ip", "-j", "-s", "link", "show", "dev", dev]).stdout
    return json.loads(out)[0]["stats64"]["tx"]["packets"]


def over(t: lab.Topology, destination: str, count: int = 10) -> tuple[str, float]:
    """Which path (by the router's counters) ``count`` pings took, and their median RTT."""
    before = {p.name: tx_packets(t, p.router_interface) for p in t.paths}
    r = measure.ping(t, destination, count=count, interval=0.05)
    assert r.received >= count - 1, f"ping {destination}: {r.received}/{r.sent}"
    grown = {p.name: tx_packets(t, p.router_interface) - before[p.name] for p in t.paths}
    path = max(grown, key=grown.get)
    assert grown[path] >= count - 1, grown
    return path, r.median


@pytest.mark.parametrize("table", [200, None], ids=["own-table", "main-table"])
def test_client_traffic_moves_to_p2_and_back_after_stop(lab3, table):
    lab.set_path(lab3.name, "p2", delay="20ms")
    assert over(lab3, SERVER)[0] == "p1"
    fib = FibDataPlane(paths_of(lab3), table=table, netns=lab3.router)
    desired = Desired({V4: RouteIntent(V4, (NextHop("p2"),)), V6: RouteIntent(V6, (NextHop("p2"),))})
    fib.apply(desired)
    path, rtt = over(lab3, SERVER)
    assert path == "p2" and rtt >= 30, (path, rtt)      # 2 × 20 ms, give or take the delay line
    assert over(lab3, SERVER6)[0] == "p2"
    assert over(lab3, "203.0.113.10")[0] == "p1"          # unmanaged prefix: the router's own routing

    # A route deleted by hand comes back at the next reconcile (the daemon runs one a second).
    lab3.run("router", ["ip", "route", "del", str(V4), "table", "main" if table is None else str(table),
                        "proto", "83"])
    t0 = time.monotonic()
    assert fib.reconcile(desired)
    assert time.monotonic() - t0 < 1.0
    assert over(lab3, SERVER)[0] == "p2"

    fib.stop()
    path, rtt = over(lab3, SERVER)
    assert path == "p1" and rtt < 20, (path, rtt)
    assert over(lab3, SERVER6)[0] == "p1"


def test_restart_adopts_without_moving_traffic(lab3):
    desired = Desired({V4: RouteIntent(V4, (NextHop("p2"),))})
    first = FibDataPlane(paths_of(lab3), table=200, netns=lab3.router)
    first.apply(desired)
    first.close()                                          # a crash: routes stay
    assert over(lab3, SERVER)[0] == "p2"
    second = FibDataPlane(paths_of(lab3), table=200, netns=lab3.router)
    assert second.adopt() == desired
    assert second.reconcile(desired) == []
    assert over(lab3, SERVER)[0] == "p2"
    second.stop()
    assert over(lab3, SERVER)[0] == "p1"
