"""Passive RTT in the daemon (``paths[].passive: true``), in both data planes: with probes at
the default 1 s and real TCP traffic (iperf3 through the router), a slowed path is seen by its
passive RTT within 1 s (``status`` shows it beside the probes' figure); with ``rtt: best`` the
traffic leaves it on that evidence, before the sparse probes see the change. The programs are
detached on stop."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

import pathsteer_lab as lab
from pathsteer_lab import measure
from pathsteer_lab.labconfig import lab_config
from pathsteer_lab.labrun import LabDaemon

pytestmark = pytest.mark.lab

SERVER = "198.51.100.10"
PREFIX = "198.51.100.0/24"


def _path(d: LabDaemon, name: str) -> dict:
    return next(p for p in d.call("steer.status")["paths"] if p["name"] == name)


def _tc_filters(t, interface: str) -> str:
    return "".join(t.run("router", ["tc", "filter", "show", "dev", interface, kind]).stdout
                   for kind in ("ingress", "egress"))


@pytest.mark.parametrize("mode", ["fib", "bpf"])
def test_a_slowed_path_is_seen_by_passive_rtt_within_1s(lab3, tmp_path, mode):
    t = lab3
    lab.set_path(t.name, "p1", delay="5ms")
    lab.set_path(t.name, "p2", delay="15ms")
    cfg = lab_config(t, mode=mode, socket=f"/run/pathsteer/{t.name}-passive.sock", interval="1s", hold=None,
                     paths=["p1", "p2"], prefixes=[PREFIX])
    for p in cfg["paths"]:
        p["passive"] = True
    cfg["destinations"][0]["rtt"] = "best"
    d = LabDaemon(t, cfg, str(tmp_path)).start()
    p1_interface = t.path("p1").router_interface
    try:
        assert "passive" in _tc_filters(t, p1_interface)
        d.wait_via(PREFIX, "p1", timeout=15)
        with measure.IperfServer(t):
            client = t.popen("client", ["iperf3", "-c", SERVER, "-t", "12", "-b", "20M", "-J",
                                        "--connect-timeout", "3000"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            try:
                time.sleep(2.0)
                before = _path(d, "p1")
                assert before["passive"]["samples"] > 20, before
                assert before["passive"]["rtt_p50_ms"] < 20, before
                t_slow = time.monotonic()
                lab.set_path(t.name, "p1", delay="40ms")  # 10 → 80 ms round trip
                seen = None
                while time.monotonic() - t_slow < 3.0:
                    p1 = _path(d, "p1")
                    if p1["passive"]["rtt_p50_ms"] and p1["passive"]["rtt_p50_ms"] > 60:
                        seen = time.monotonic() - t_slow
                        break
                    time.sleep(0.05)
                print(f"{mode}: passive RTT saw the slowdown after {seen} s; probes then said "
                      f"{p1['rtt_ms']} ms")
                assert seen is not None and seen <= 1.0, p1
                assert p1["rtt_ms"] < 60, "the probes (every 1 s) had not seen it yet"
                left = d.wait_via(PREFIX, "p2", timeout=5)
                print(f"{mode}: left p1 {left + seen:.2f} s after the slowdown (hold_down 1 s)")
                change = [e for e in d.changes() if e["prefix"] == PREFIX][-1]
                assert (change["from"], change["to"], change["kind"]) == ("p1", "p2", "better"), change["reason"]
                assert "passive rtt" in change["reason"], change
                route = d.call("steer.explain", {"address": SERVER})
                assert any(c["rtt_source"] == "passive" for c in route["candidates"]), route
                time.sleep(3.0)  # p1 idle now: its last busy second is remembered, no move back
                assert d.via(PREFIX) == "p2", [e["reason"] for e in d.changes()[-3:]]
            finally:
                out, err = client.communicate(timeout=30)
        assert client.returncode == 0, err[-300:]
        assert json.loads(out)["end"]["sum_received"]["bytes"] > 0
        assert d.stop() == 0
        assert "passive" not in _tc_filters(t, p1_interface), "detached on stop"
    finally:
        d.kill()
