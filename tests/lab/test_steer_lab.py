"""The bpf data plane in the lab: steering proven by RTT and per-path counters, fail-open after
stale_after, kill -9 and adopt from a new ``ip netns exec`` process, iperf3 through it.

The lab's router sends the server prefixes over p1 by its own routing; p2 gets a one-way delay
of DELAY_MS, so a ping that takes p2 shows about 2 x DELAY_MS and one that takes p1 < 5 ms.
"""

from __future__ import annotations

import ipaddress
import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from pathsteer.bpf import in_netns
from pathsteer.dataplane.bpf_steer import BpfSteerDataPlane
from pathsteer.dataplane.bpf_steer_abi import Reason
from pathsteer.routes import Desired, NextHop, PathLink, RouteIntent
import pathsteer_lab as lab
from pathsteer_lab import measure

pytestmark = pytest.mark.lab

DELAY_MS = 20
SERVER, SERVER6 = "198.51.100.10", "2001:db8:100::10"
PREFIXES = ("198.51.100.0/24", "2001:db8:100::/48")


def path_links(t) -> list[PathLink]:
    return [PathLink(p.name, p.index, p.router_interface, ipaddress.ip_address(p.gateway),
                     ipaddress.ip_address(p.gateway6)) for p in t.paths]


def via(*hops: tuple[str, int]) -> Desired:
    routes = {}
    for text in PREFIXES:
        net = ipaddress.ip_network(text)
        routes[net] = RouteIntent(net, tuple(NextHop(p, w) for p, w in hops))
    return Desired(routes)


def on_p2(r: measure.PingResult) -> bool:
    return r.median > 1.5 * DELAY_MS


def on_p1(r: measure.PingResult) -> bool:
    return r.median < 0.5 * DELAY_MS


@pytest.fixture
def steer_lab(lab3):
    lab.set_path(lab3.name, "p2", delay=f"{DELAY_MS}ms")
    planes: list[BpfSteerDataPlane] = []

    def make(stale_after_s: float = 10.0) -> BpfSteerDataPlane:
        with in_netns(lab3.router):
            plane = BpfSteerDataPlane(path_links(lab3), [lab3.ingress_interface], stale_after_s)
        planes.append(plane)
        return plane

    yield lab3, make
    for plane in planes:
        with in_netns(lab3.router):
            plane.stop()


def test_ping_takes_the_path_the_route_names(steer_lab):
    t, make = steer_lab
    assert on_p1(measure.ping(t, SERVER, count=10, interval=0.02)), "the kernel's own route is p1"
    plane = make()
    with in_netns(t.router):
        plane.apply(via(("p2", 1)))
    before = plane.path_totals()
    for dst in (SERVER, SERVER6):
        r = measure.ping(t, dst, count=20, interval=0.02)
        assert r.received == 20 and on_p2(r), (dst, r.rtts_ms)
    after = plane.path_totals()
    assert after["p2"].packets - before["p2"].packets >= 40
    assert after["p1"] == before["p1"] and after["p3"] == before["p3"]
    with in_netns(t.router):
        plane.apply(via(("p3", 1)))
    r = measure.ping(t, SERVER, count=20, interval=0.02)
    assert r.received == 20 and on_p1(r)  # p3 is undelayed
    assert plane.path_totals()["p3"].packets >= 20


def test_fail_open_after_stale_after(steer_lab):
    t, make = steer_lab
    plane = make(stale_after_s=1.0)
    with in_netns(t.router):
        plane.apply(via(("p2", 1)))
    assert on_p2(measure.ping(t, SERVER, count=5, interval=0.02))
    time.sleep(1.5)  # no heartbeat
    stale0 = plane.reason_totals()[Reason.PASS_STALE].packets
    r = measure.ping(t, SERVER, count=20, interval=0.02)
    assert r.received == 20 and on_p1(r), r.rtts_ms
    assert plane.reason_totals()[Reason.PASS_STALE].packets - stale0 >= 20
    plane.heartbeat()
    assert on_p2(measure.ping(t, SERVER, count=5, interval=0.02))


RUNNER = textwrap.dedent("""
    import ipaddress, json, sys, time
    from pathsteer.dataplane.bpf_steer import BpfSteerDataPlane
    from pathsteer.routes import Desired, NextHop, PathLink, RouteIntent
    spec = json.loads(sys.argv[1])
    paths = [PathLink(p["name"], p["id"], p["interface"], ipaddress.ip_address(p["gw"]),
                      ipaddress.ip_address(p["gw6"])) for p in spec["paths"]]
    plane = BpfSteerDataPlane(paths, ["r-c"], spec["stale_after"])
    if spec["mode"] == "apply":
        routes = {}
        for text in spec["prefixes"]:
            net = ipaddress.ip_network(text)
            routes[net] = RouteIntent(net, (NextHop(spec["path"], 1),))
        plane.apply(Desired(routes))
    else:
        got = plane.adopt()
        out = None if got is None else {str(p): [[h.path, h.weight] for h in r.nexthops] for p, r in got.routes.items()}
        print(json.dumps(out), flush=True)
        if spec["mode"] == "adopt-stop":
            plane.stop()
            sys.exit(0)
    print("ready", flush=True)
    while True:
        plane.heartbeat()
        time.sleep(0.2)
""")


def runner(t, mode: str, stale_after: float, path: str = "p2") -> subprocess.Popen:
    spec = {"mode": mode, "stale_after": stale_after, "path": path, "prefixes": list(PREFIXES),
            "paths": [{"name": p.name, "id": p.index, "interface": p.router_interface, "gw": p.gateway,
                       "gw6": p.gateway6} for p in t.paths]}
    return t.popen("router", [sys.executable, "-c", RUNNER, json.dumps(spec)],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_keeps_paths_until_stale_after_then_kernel_routes(steer_lab):
    t, _ = steer_lab
    stale_after = 3.0
    proc = runner(t, "apply", stale_after)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        assert on_p2(measure.ping(t, SERVER, count=5, interval=0.02))
        # pings all through the crash: before stale_after they take p2, after it p1
        pinger = t.popen("client", measure.ping_argv(SERVER, count=int((stale_after + 2) / 0.02), interval=0.02,
                                                     timestamps=True), stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        killed = time.time()
        proc.wait()
        out, _ = pinger.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    r = measure.parse_ping(out)
    assert r.loss_pct <= 2.0, r.loss_pct
    before = [rtt for ts, _, rtt in r.replies if ts < killed + stale_after - 0.3]
    after = [rtt for ts, _, rtt in r.replies if ts > killed + stale_after + 0.5]
    assert before and min(before) > 1.5 * DELAY_MS, "still on p2 until stale_after"
    assert after and max(after) < 0.5 * DELAY_MS, "the kernel's route (p1) after stale_after"
    with in_netns(t.router):  # the crashed run left its program: clean up through adopt
        plane = BpfSteerDataPlane(path_links(t), [t.ingress_interface], stale_after)
        assert plane.adopt() is not None
        plane.stop()


def test_restart_adopts_from_a_new_ip_netns_exec_without_loss(steer_lab):
    t, _ = steer_lab
    first = runner(t, "apply", 10.0)
    try:
        assert first.stdout.readline().strip() == "ready", first.stderr.read()
        pinger = t.popen("client", measure.ping_argv(SERVER, count=150, interval=0.02),
                         stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        first.send_signal(signal.SIGKILL)
        first.wait()
        second = runner(t, "adopt", 10.0)
        adopted = json.loads(second.stdout.readline())
        assert adopted == {p: [["p2", 1]] for p in PREFIXES}
        assert second.stdout.readline().strip() == "ready"
        r = measure.parse_ping(pinger.communicate(timeout=60)[0])
        assert r.received == r.sent == 150, "no loss across the restart"
        assert min(r.rtts_ms) > 1.5 * DELAY_MS, "every packet stayed on p2"
        second.kill()
        second.wait()
        third = runner(t, "adopt-stop", 10.0)
        out, err = third.communicate(timeout=60)
        assert json.loads(out.splitlines()[0]) == adopted, err
        assert on_p1(measure.ping(t, SERVER, count=5, interval=0.02)), "a clean stop gives traffic back"
        assert "clsact" in t.run("router", ["tc", "qdisc", "show", "dev", "r-c"]).stdout  # the qdisc stays
        assert "tc_steer" not in t.run("router", ["tc", "filter", "show", "dev", "r-c", "ingress"]).stdout
    finally:
        for p in (first,):
            if p.poll() is None:
                p.kill()


def test_reconcile_reattaches_after_a_manual_detach(steer_lab):
    t, make = steer_lab
    plane = make()
    with in_netns(t.router):
        plane.apply(via(("p2", 1)))
    t.run("router", ["tc", "filter", "del", "dev", "r-c", "ingress", "pref", str(0x0E)])
    assert on_p1(measure.ping(t, SERVER, count=5, interval=0.02))
    with in_netns(t.router):
        repaired = plane.reconcile(via(("p2", 1)))
    assert "attached to r-c" in repaired
    assert on_p2(measure.ping(t, SERVER, count=5, interval=0.02))


def test_iperf3_through_bpf_mode(steer_lab):
    t, make = steer_lab
    lab.clear_path(t.name, "p2")
    plane = make()
    with in_netns(t.router):
        plane.apply(via(("p2", 1)))
    before = plane.path_totals()["p2"]
    with measure.IperfServer(t):
        bps = measure.iperf3_bps(t, SERVER, seconds=2, streams=2)
    moved = plane.path_totals()["p2"].bytes - before.bytes
    assert bps > 100e6, bps
    assert moved * 8 >= 0.9 * bps * 2, (moved, bps)  # the transfer went through the program
