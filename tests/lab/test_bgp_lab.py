"""Acceptance, in the lab, of the fleet over BGP (issue 10): two edge routers, each running
pathsteer (fib plane) with its own two paths to the server prefixes and ExaBGP under it, both
peering with a core router (BIRD 2, and FRR 8.4 in the last test) that installs its best route
in its kernel; a client behind the core (`pathsteer_lab.fleet`). Probes, hysteresis, BGP timers
and the announce settings are pathsteer's defaults (1 s probes, hold_down 1 s, hold time 9 s,
MED 1 per 100 µs, min_interval 1 s); only the probe targets are the lab's.

* the core sends the client's traffic for a prefix to the edge with the lower measured RTT (the
  core's kernel route, and the packets counted on that edge);
* slowing that edge's paths moves the core's route within hold_down + 2 s, and back after recovery;
* cutting all of an edge's paths withdraws its prefixes: the core's route moves within 1 s of the
  edge's own verdict, and the client's pings lose no more than that edge's failover takes;
* a clean stop withdraws at once; after a restart nothing is announced before it is measured;
  kill -9 is survived within the hold time;
* a prefix the core announces with the configured community is steered on the edge, and its
  withdrawal removes it;
* the same first two with FRR as the core.
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
import time

import pytest

from pathsteer_lab import impair
from pathsteer_lab.fleet import EDGE_ASNS, BirdCore, Fleet, FrrCore, down as fleet_down, edge_address
from pathsteer_lab.labconfig import lab_config
from pathsteer_lab.labrun import LabDaemon, logged_at

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(shutil.which("bird") is None, reason="bird2 is not installed (make deps)")]
needs_frr = pytest.mark.skipif(not os.path.exists("/usr/lib/frr/bgpd"), reason="frr is not installed (make deps)")

P, Q = "198.51.100.0/24", "203.0.113.0/24"
LEARNED, NOT_TAGGED = "192.0.2.0/24", "192.0.3.0/24"
HOLD_DOWN_S = 1.0  # the default hysteresis.hold_down
HOLD_TIME_S = 9.0  # the default bgp.hold_time


@pytest.fixture
def fleet():
    name = "f" + secrets.token_hex(3)
    fl = Fleet.up(name)
    try:
        yield fl
    finally:
        fl.down()
        fleet_down(name)


def edge_config(fl: Fleet, k: int, **bgp) -> dict:
    t = fl.edge(k)
    cfg = lab_config(t, socket=f"/run/pathsteer/{t.name}-edge.sock", interval="1s", hold=None,
                     prefixes=[P, Q, t.prefixes6[0]])
    cfg["bgp"] = {"local_as": EDGE_ASNS[k - 1], "router_id": edge_address(k),
                  "peers": [{"address": fl.core_address(k), "as": 65000, "name": "core"}], **bgp}
    return cfg


@pytest.fixture
def edges(fleet, tmp_path):
    """``start(k, **bgp)``: pathsteer on edge k; all killed at teardown."""
    made: list[LabDaemon] = []

    def start(k: int, **bgp) -> LabDaemon:
        d = LabDaemon(fleet.edge(k), edge_config(fleet, k, **bgp), str(tmp_path), name=f"edge{k}").start()
        made.append(d)
        return d

    yield start
    for d in made:
        d.kill()


def delay(fl: Fleet, k: int, ms: float) -> None:
    for p in ("p1", "p2"):
        impair.set_path(fl.edge(k).name, p, delay=f"{ms}ms")


def cut(fl: Fleet, k: int, down: bool) -> None:
    for p in ("p1", "p2"):
        impair.set_path(fl.edge(k).name, p, down=down)


def wait_route_change(core, prefix: str, gateway: str | None, timeout: float) -> float:
    """Wall-clock time at which the core kernel's route for ``prefix`` became ``gateway``."""
    core.wait_kernel_route(prefix, gateway, timeout=timeout)
    return time.time()


def traffic_goes_via(fl: Fleet, k: int) -> None:
    before = [fl.edge_rx_packets(1), fl.edge_rx_packets(2)]
    r = fl.ping("198.51.100.10", count=20, interval=0.02)
    after = [fl.edge_rx_packets(1), fl.edge_rx_packets(2)]
    assert r.received >= 18, r
    got = [a - b for a, b in zip(after, before)]
    assert got[k - 1] >= 18 and got[2 - k] < 5, f"packets at edge 1/2: {got}"


def slow_edge_1_moves_the_core(fl: Fleet, core, what: str) -> float:
    """Edge 1's paths slowed to ≈ 60 ms RTT: the core's route moves to edge 2 within
    hold_down + 2 s, and the client's traffic with it. Returns when the slow-down began."""
    t0 = time.time()
    delay(fl, 1, 30)
    moved = wait_route_change(core, P, edge_address(2), timeout=20) - t0
    print(f"{what}: slowed edge 1, the core moved after {moved:.2f} s")
    assert moved <= HOLD_DOWN_S + 2.0, moved
    traffic_goes_via(fl, 2)
    return t0


def started_fleet(fl: Fleet, edges, core, **bgp):
    delay(fl, 1, 2)   # edge 1: RTT ≈ 4 ms
    delay(fl, 2, 10)  # edge 2: RTT ≈ 20 ms
    d1, d2 = edges(1, **bgp), edges(2, **bgp)
    core.wait_established(30)
    core.wait_kernel_route(P, edge_address(1), timeout=30)
    core.wait_kernel_route(Q, edge_address(1), timeout=10)
    core.wait_routes(P, 2, timeout=20)  # both edges announce
    return d1, d2


def test_core_follows_the_lower_measured_rtt_and_moves_when_an_edge_slows(fleet, edges, tmp_path):
    with BirdCore(fleet, str(tmp_path / "core")) as core:
        d1, d2 = started_fleet(fleet, edges, core)
        traffic_goes_via(fleet, 1)
        routes = {r["next_hop"]: r for r in core.routes(P)}
        assert routes[edge_address(1)]["med"] < routes[edge_address(2)]["med"], routes
        big = routes[edge_address(1)]["large_communities"]
        big = {tuple(c) for c in big}
        assert big & {(65001, 1, 1), (65001, 1, 2)} and (65001, 4, 1) in big, big  # path number, state up
        rtt_us = next(c[2] for c in big if c[1] == 2)
        assert 3000 <= rtt_us <= 8000, big  # the path's RTT: 2 × 2 ms of delay
        view = d1.call("bgp.prefix", {"prefix": "198.51.100.10"})
        assert view["announced"] and view["med"] == routes[edge_address(1)]["med"]
        assert view["why"].startswith("best eligible path") and view["peers"] == ["core"]
        status = d1.call("bgp.status")
        assert status["sessions"][0]["state"] == "up" and status["announced"] == 2

        # Edge 1 slows to ≈ 60 ms: the core moves to edge 2 within hold_down + 2 s.
        t0 = slow_edge_1_moves_the_core(fleet, core, "BIRD")
        logged_at(d1, "bgp.announce", "MED", after=t0)  # announced again for its MED, with the reason
        # Recovery: back to edge 1 (the RTT statistic comes down over ~10 probes, by design).
        t1 = time.time()
        delay(fleet, 1, 2)
        back = wait_route_change(core, P, edge_address(1), timeout=40) - t1
        print(f"edge 1 recovered: the core came back after {back:.2f} s")
        traffic_goes_via(fleet, 1)
        events = [e for e in d1.call("steer.events", {"limit": 1000})["events"]]
        assert d1.alive() and d2.alive(), events[-3:]


def test_cut_edge_withdraws_within_a_second_of_its_verdict_and_pings_survive(fleet, edges, tmp_path):
    with BirdCore(fleet, str(tmp_path / "core")) as core:
        d1, _d2 = started_fleet(fleet, edges, core)
        result = {}

        def pinger():
            result["ping"] = fleet.ping("198.51.100.10", count=300, interval=0.05, timeout=1.0)

        th = threading.Thread(target=pinger)
        th.start()
        time.sleep(2)
        t_cut = time.time()
        cut(fleet, 1, True)
        moved_at = wait_route_change(core, P, edge_address(2), timeout=20)
        verdict_at = max(logged_at(d1, "path.state", "path=p1", "to=down", after=t_cut),
                         logged_at(d1, "path.state", "path=p2", "to=down", after=t_cut))
        withdrawn_at = logged_at(d1, "bgp.withdraw", after=t_cut)
        th.join()
        ping = result["ping"]
        lost_s = (ping.sent - ping.received) * 0.05
        print(f"cut: edge verdict {verdict_at - t_cut:.2f} s after the cut, withdraw +{withdrawn_at - verdict_at:.3f} s, "
              f"core moved +{moved_at - verdict_at:.3f} s; pings lost {ping.sent - ping.received}/{ping.sent} "
              f"({lost_s:.2f} s)")
        assert moved_at - verdict_at <= 1.0
        # What the edge's own failover would lose is the time to its verdict; the fleet adds
        # at most the second the core takes.
        assert lost_s <= (verdict_at - t_cut) + 1.0 + 0.2, (lost_s, verdict_at - t_cut)
        traffic_goes_via(fleet, 2)
        view = d1.call("bgp.prefix", {"prefix": P})
        assert not view["announced"] and view["why"].startswith("no eligible path here"), view
        # The paths come back: announced again, the core returns.
        cut(fleet, 1, False)
        wait_route_change(core, P, edge_address(1), timeout=30)
        traffic_goes_via(fleet, 1)


def test_clean_stop_withdraws_restart_waits_for_measurements_and_kill_is_survived(fleet, edges, tmp_path):
    with BirdCore(fleet, str(tmp_path / "core")) as core:
        d1, _d2 = started_fleet(fleet, edges, core)
        t0 = time.time()
        d1.stop()
        stopped = time.time()
        moved_at = wait_route_change(core, P, edge_address(2), timeout=10)
        print(f"clean stop: took {stopped - t0:.2f} s; the core moved {moved_at - t0:.2f} s after it began")
        assert moved_at - stopped <= 1.0  # withdrawn before it left: nothing waits for the hold time
        assert "bgp.withdraw" in d1.log() and "pathsteer stop" in d1.log()
        traffic_goes_via(fleet, 2)

        # Restart: the first announcement comes from a measurement, never before.
        mark = time.time()
        d1.start()
        wait_route_change(core, P, edge_address(1), timeout=30)
        first_up = min(logged_at(d1, "path.state", "path=p1", "to=up", after=mark),
                       logged_at(d1, "path.state", "path=p2", "to=up", after=mark))
        first_announce = logged_at(d1, "bgp.announce", after=mark)
        assert first_announce >= first_up, (first_announce, first_up)
        assert "measured:" in [line for line in d1.log().splitlines() if "bgp.announce" in line][-1]

        # kill -9: ExaBGP goes with it, the session drops, the core moves within the hold time.
        t1 = time.time()
        d1.kill()
        moved_at = wait_route_change(core, P, edge_address(2), timeout=HOLD_TIME_S + 5)
        print(f"kill -9: the core moved {moved_at - t1:.2f} s later (hold time {HOLD_TIME_S:g} s)")
        assert moved_at - t1 <= HOLD_TIME_S + 1.0
        traffic_goes_via(fleet, 2)


def test_a_prefix_announced_with_the_community_is_steered_and_its_withdrawal_removes_it(fleet, edges, tmp_path):
    with BirdCore(fleet, str(tmp_path / "core")) as core:
        core.originate(LEARNED)  # with the large community 65000:7:1
        core.originate(NOT_TAGGED, large_community=None)
        d1, _d2 = started_fleet(fleet, edges, core, learn={"enabled": True, "communities": ["65000:7:1"]})

        def steered() -> set[str]:
            return {r["prefix"] for r in d1.call("steer.status")["routes"]}

        deadline = time.monotonic() + 15
        while LEARNED not in steered() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert LEARNED in steered() and NOT_TAGGED not in steered(), d1.log_tail(20)
        view = d1.call("bgp.prefix", {"prefix": LEARNED})
        assert view["learned"] and view["learned_from"] == ["core"] and not view["announced"]
        status = d1.call("bgp.status")
        assert status["learned"] == 1 and status["sessions"][0]["received"] == 2, status
        # Steered for real: the learned destination has a path chosen by measurement.
        route = next(r for r in d1.call("steer.status")["routes"] if r["prefix"] == LEARNED)
        assert route["via"] in ("p1", "p2")

        core.withdraw(LEARNED)
        deadline = time.monotonic() + 10
        while LEARNED in steered() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert LEARNED not in steered(), d1.log_tail(20)
        assert d1.call("bgp.status")["learned"] == 0
        assert "bgp.learn" in d1.log()


@needs_frr
def test_frr_core_follows_the_lower_measured_rtt_and_a_clean_stop(fleet, edges, tmp_path):
    with FrrCore(fleet, str(tmp_path / "core")) as core:
        d1, _d2 = started_fleet(fleet, edges, core)
        traffic_goes_via(fleet, 1)
        slow_edge_1_moves_the_core(fleet, core, "FRR")
        delay(fleet, 1, 2)
        wait_route_change(core, P, edge_address(1), timeout=40)
        t1 = time.time()
        d1.stop()
        moved_at = wait_route_change(core, P, edge_address(2), timeout=10)
        assert moved_at - t1 <= d1_stop_bound(), moved_at - t1
        traffic_goes_via(fleet, 2)


def d1_stop_bound() -> float:
    return 5.0  # the stop itself (probes, routes) plus the withdrawal's delivery
