"""Lab structure: namespaces, addresses, reachability, symmetric replies, up/down/list life cycle."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from pathsteer.errors import UsageError
import pathsteer_lab as lab
from pathsteer_lab import delayline, measure, netns
from pathsteer_lab.topology import state_dir


def lab_namespaces(name: str) -> list[str]:
    return [ns for ns in netns.list_namespaces() if ns.startswith(f"ps-{name}-")]


def test_up_builds_every_namespace_and_nothing_in_root(lab3):
    assert sorted(lab_namespaces(lab3.name)) == sorted(lab3.all_namespaces())
    assert len(lab3.all_namespaces()) == 7
    root_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    for ifname in ("r-c", "c-r", "r-p1", "p-r", "p-s", "s-p1", "dl-out"):
        assert f" {ifname}:" not in root_links and f" {ifname}@" not in root_links
    router_links = lab3.run("router", ["ip", "-o", "link"]).stdout
    for ifname in ("r-c", "r-a", "r-p1", "r-p2", "r-p3"):
        assert f" {ifname}@" in router_links


@pytest.mark.parametrize("family", [4, 6])
def test_client_reaches_every_server_address_and_probe(lab3, family):
    targets = (lab3.server_addresses + [p.probe_address for p in lab3.paths] if family == 4
               else lab3.server_addresses6 + [p.probe_address6 for p in lab3.paths])
    for dst in targets:
        r = measure.ping(lab3, dst, count=2, interval=0.02)
        assert r.received == 2, dst
    # The whole destination prefix answers (AnyIP), not only the .10 addresses.
    other = "203.0.113.77" if family == 4 else "2001:db8:100::77"
    assert measure.ping(lab3, other, count=1, interval=0.02).received == 1


def test_attacker_reaches_server_through_router(lab3):
    r = measure.ping(lab3, lab3.server_addresses[0], count=2, interval=0.02, role="attacker")
    assert r.received == 2
    r = measure.ping(lab3, lab3.server_addresses6[1], count=2, interval=0.02, role="attacker")
    assert r.received == 2


def test_router_routes_prefixes_over_p1(lab3):
    routes = lab3.run("router", ["ip", "route", "show"]).stdout
    for pfx in lab3.prefixes:
        assert f"{pfx} via 10.200.1.2 dev r-p1" in routes
    routes6 = lab3.run("router", ["ip", "-6", "route", "show"]).stdout
    for pfx in lab3.prefixes6:
        assert f"{pfx} via 2001:db8:200:1::2 dev r-p1" in routes6


def _path_counters(t, name):
    stats = delayline.request(t.control_socket, {"op": "stats"})["paths"][name]
    return stats["out"]["sent"], stats["in"]["sent"]


@pytest.mark.parametrize("path", ["p2", "p3"])
def test_replies_come_back_over_the_path_the_request_took(lab3, path):
    """Route the prefixes over p2/p3 on the router; p1 is slow: a reply over p1 would show it."""
    p = lab3.path(path)
    lab.set_path(lab3.name, "p1", delay="40ms")
    lab.set_path(lab3.name, path, delay="2ms")
    lab3.run("router", ["ip", "route", "replace", "198.51.100.0/24", "via", p.gateway])
    lab3.run("router", ["ip", "-6", "route", "replace", "2001:db8:100::/48", "via", p.gateway6])
    before = _path_counters(lab3, path)
    r = measure.ping(lab3, "198.51.100.10", count=10, interval=0.02)
    assert r.received == 10 and r.max < 20, r.rtts_ms      # 4 ms over the path; 42 if back over p1
    r6 = measure.ping(lab3, "2001:db8:100::10", count=10, interval=0.02)
    assert r6.received == 10 and r6.max < 20, r6.rtts_ms
    out, back = _path_counters(lab3, path)
    assert out - before[0] >= 20 and back - before[1] >= 20
    # TCP: the handshake and a short transfer, both over the path.
    with measure.IperfServer(lab3):
        bps = measure.iperf3_bps(lab3, "198.51.100.10", seconds=1, streams=1)
    assert bps > 1e6
    connect_ms = _tcp_connect_ms(lab3, "198.51.100.10")
    assert 3.5 < connect_ms < 20, connect_ms


def _tcp_connect_ms(t, dst: str) -> float:
    code = ("import socket,time;s=socket.socket();t=time.perf_counter();"
            "r=s.connect_ex((%r,9));print((time.perf_counter()-t)*1e3)" % dst)   # port 9: RST
    return float(t.run("client", ["python3", "-c", code]).stdout)


def test_down_removes_everything(lab_factory):
    t = lab_factory(2)
    pid = int(open(os.path.join(t.state_dir, "delayline.pid")).read())
    sleeper = t.popen("server", ["sleep", "300"])
    lab.down(t.name)
    assert lab_namespaces(t.name) == []
    assert not os.path.exists(t.state_dir)
    assert not os.path.exists(f"/proc/{pid}") or _zombie(pid)
    assert sleeper.wait(timeout=5) != 0
    with pytest.raises(UsageError, match=t.name):
        lab.down(t.name)


def _zombie(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_crashed_lab_is_listed_and_removed(lab_factory):
    t = lab_factory(2)
    pid = int(open(os.path.join(t.state_dir, "delayline.pid")).read())
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.1)
    status = {s.name: s for s in lab.list_labs()}[t.name]
    assert status.state == "broken" and "delay line not running" in status.problems
    lab.down(t.name)
    assert lab_namespaces(t.name) == [] and not os.path.exists(t.state_dir)


def test_half_built_lab_is_listed_and_removed(unique_name):
    name = unique_name("t")
    netns.ip_batch(None, [f"netns add ps-{name}-router", f"netns add ps-{name}-p1"])
    try:
        status = {s.name: s for s in lab.list_labs()}[name]
        assert status.state == "broken"
        with pytest.raises(UsageError, match="already in use"):
            lab.up(name, 2)
        assert sorted(lab_namespaces(name)) == [f"ps-{name}-p1", f"ps-{name}-router"]
        lab.down(name)
        assert lab_namespaces(name) == []
    finally:
        netns.ip_batch(None, [f"netns del ps-{name}-router", f"netns del ps-{name}-p1"], force=True)


def test_name_in_use_leaves_the_running_lab_alone(lab3):
    with pytest.raises(UsageError, match=lab3.name):
        lab.up(lab3.name, 2)
    assert sorted(lab_namespaces(lab3.name)) == sorted(lab3.all_namespaces())
    assert measure.ping(lab3, lab3.server_addresses[0], count=1, interval=0.02).received == 1


def test_failed_up_removes_what_it_built(unique_name, monkeypatch):
    from pathsteer_lab import build
    name = unique_name("t")

    def broken_nft(t):
        return "this is not nftables\n"
    monkeypatch.setattr(build, "server_nft", broken_nft)
    with pytest.raises(Exception):
        lab.up(name, 2)
    assert lab_namespaces(name) == []
    assert not os.path.exists(state_dir(name))
    assert name not in {s.name for s in lab.list_labs()}


def test_load_and_list(lab3):
    again = lab.Topology.load(lab3.name)
    assert again == lab3
    status = {s.name: s for s in lab.list_labs()}[lab3.name]
    assert status.state == "up" and status.paths == 3 and status.problems == []


def test_64_paths(lab_factory):
    t0 = time.monotonic()
    t = lab_factory(64)
    took = time.monotonic() - t0
    assert took < 30, took
    assert len(t.paths) == 64
    for p in (t.paths[0], t.paths[31], t.paths[63]):
        assert measure.ping(t, p.probe_address, count=1, interval=0.02).received == 1
        assert measure.ping(t, p.probe_address6, count=1, interval=0.02).received == 1
    lab.set_path(t.name, "p64", delay="5ms")
    r = measure.ping(t, t.path("p64").probe_address, count=5, interval=0.02)
    assert 9 <= r.median <= 11.5
