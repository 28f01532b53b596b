"""What status, explain and events get from a decision (`pathsteer.steering.views`): JSON
views with the figures behind a choice, events, longest-prefix match. (These assertions were
made of `policy.report`, a copy of these views that nothing used; it is gone.)"""

from __future__ import annotations

import ipaddress
import json

from pathsteer.policy import DestinationParams, PathParams, PolicyKind, PolicyParams
from pathsteer.steering import views
from pathsteer.telemetry.snapshot import PathState

from test_policy_fixtures import PREFIX, Driver, params, path

CLOCK = views.Clock(0.0, 1000.0)  # monotonic 0 is wall 1000


def test_route_view_has_the_figures_behind_the_choice():
    d = Driver(params())
    d(0.0, path("p1", 10.0), path("p2", 20.0))
    d(1.0, path("p1", 10.0, state=PathState.DOWN, failing=2), path("p2", 20.0))
    j = views.route_view(d.route(), CLOCK, candidates=True)
    json.dumps(j)
    assert j["prefix"] == "198.51.100.0/24" and j["policy"] == "lowest-latency" and j["kind"] == "left"
    assert j["nexthops"] == [{"path": "p2", "weight": 1, "share": 1.0}] and j["since"] == 1001.0
    assert j["reason"] == "p1 down (2/3 targets failing); moved to p2 (rtt 20.0 ms)"
    p1 = j["candidates"][0]
    assert p1 == {"path": "p1", "order": 0, "state": "down", "eligibility": "down",
                  "why_not": "down (2/3 targets failing)", "rtt_ms": 10.0, "loss_pct": 0.0, "jitter_ms": 0.5,
                  "utilization": None, "capacity_bps": None, "samples": 100, "enough_samples": True,
                  "rtt_source": "active", "upstream_time_ms": None, "upstream_breach": False}


def test_event_view():
    d = Driver(params(PolicyKind.WEIGHTED, capacities={"p1": 10**8, "p2": 10**8}))
    d(0.0, path("p1", 10.0), path("p2", 10.0))
    d(1.0, path("p1", 10.0), path("p2", 10.0, state=PathState.DOWN, failing=3))
    j = views.event_view(d.events[-1], CLOCK)
    assert j == {"at": 1001.0, "prefix": "198.51.100.0/24", "policy": "weighted", "from": "p1:50,p2:50", "to": "p1",
                 "kind": "left", "reason": "p2 down (3/3 targets failing); p2 left the set, the others keep "
                                           "their weights (p1 100%)"}
    assert views.event_view(d.events[0], CLOCK)["to"] == "p1:50,p2:50"


def test_longest_match_is_longest_prefix_and_per_family():
    wide, narrow = ipaddress.ip_network("198.51.0.0/16"), ipaddress.ip_network("198.51.100.0/25")
    v6 = ipaddress.ip_network("::/0")
    p = PolicyParams((PathParams("p1"),), tuple(DestinationParams(x, PolicyKind.FAILOVER, ("p1",))
                                                 for x in (wide, PREFIX, narrow, v6)))
    d = Driver(p)
    d(0.0, path("p1"))
    dec = d.decisions[-1]
    assert views.longest_match(dec, "198.51.100.7").prefix == narrow
    assert views.longest_match(dec, "198.51.100.200").prefix == PREFIX
    assert views.longest_match(dec, "198.51.7.1").prefix == wide
    assert views.longest_match(dec, "2001:db8::1").prefix == v6
    assert views.longest_match(dec, "192.0.2.1") is None
