"""Acceptance, in the lab, both data planes: ``pathsteer drain p1`` (the CLI against the daemon's
control socket) takes the best path out within 1 s, as a drain (reason "drained"), while p1's
probes go on; real packets then cross another path; ``pathsteer undrain p1`` brings the traffic
back within hold_down and a margin."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

import pathsteer_lab as lab
from pathsteer_lab import measure
from pathsteer_lab.labconfig import lab_config
from pathsteer_lab.labrun import LabDaemon

pytestmark = pytest.mark.lab

SERVER = "198.51.100.10"
PREFIX = "198.51.100.0/24"
HOLD_DOWN_S = 1.0  # lab_config's default hold_down


@pytest.fixture
def daemon(lab3, tmp_path):
    made: list[LabDaemon] = []

    def start(**kw) -> LabDaemon:
        cfg = lab_config(lab3, socket=f"/run/pathsteer/{lab3.name}-drain.sock", **kw)
        cfg["history"] = {"state_dir": str(tmp_path / "state")}  # drains.json of this test only
        d = LabDaemon(lab3, cfg, str(tmp_path)).start()
        made.append(d)
        return d

    yield lab3, start
    for d in made:
        d.kill()


def pathsteer(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pathsteer", *argv], capture_output=True, text=True, timeout=30)


def p1_view(d: LabDaemon) -> dict:
    return next(p for p in d.call("steer.status")["paths"] if p["name"] == "p1")


def probes_sent(view: dict) -> int:
    return sum(t["sent"] for t in view["target_states"])


@pytest.mark.parametrize("mode", ["fib", "bpf"])
def test_drain_moves_traffic_off_keeps_probing_and_undrain_brings_it_back(daemon, mode):
    t, start = daemon
    lab.set_path(t.name, "p1", delay="1ms")  # p1 the best path, p2 next, p3 slow
    lab.set_path(t.name, "p2", delay="5ms")
    lab.set_path(t.name, "p3", delay="20ms")
    d = start(mode=mode)
    d.wait_via(PREFIX, "p1")
    time.sleep(0.5)

    r = pathsteer("drain", "p1", "--reason", "lab maintenance", "--json", "--socket", d.socket)
    returned = time.monotonic()
    assert r.returncode == 0, r.stderr
    drained = json.loads(r.stdout)
    assert drained["drained"]["reason"] == "lab maintenance" and drained["warning"] is None
    took = d.wait_via(PREFIX, "p2", timeout=5.0)
    time.sleep(0.5)  # wait_via sees the decision; the plane's apply may trail it on a loaded box
    change = next(e for e in reversed(d.changes()) if e["prefix"] == PREFIX and e["from"] == "p1")
    moved_after = change["at"] - drained["drained"]["since"]
    print(f"{mode}: moved off p1 {moved_after * 1e3:.0f} ms after the drain "
          f"({took * 1e3:.0f} ms after the CLI returned); reason: {change['reason']}")
    assert change["kind"] == "drain" and "drained" in change["reason"]
    assert moved_after <= 1.0
    # (moved_after is the daemon's own figure; the test's wall clock around the CLI and the
    # status polls is not asserted: a loaded CI box stretched it past 1.5 s)

    before = p1_view(d)
    assert before["state"] == "drained" and before["probe_state"] == "up"
    assert before["drained"]["reason"] == "lab maintenance"
    with measure.UdpEcho(t, SERVER), measure.PathPackets(t) as crossed:
        s = measure.udp_stream(t, SERVER, seconds=1.5, interval=0.005)
        ping = measure.ping(t, SERVER, count=20, interval=0.05)
        sent, replies = measure.udp_stream_result(s)
        counts = crossed.counts()
    after = p1_view(d)
    print(f"{mode}: while drained, ping median {ping.median:.1f} ms, packets per path {counts}; "
          f"p1 probes sent {probes_sent(before)} → {probes_sent(after)}, rtt {after['rtt_ms']} ms")
    assert 5.0 <= ping.median < 30.0, "pings over p2 (2 x 5 ms), not p1 (2 x 1 ms) or p3 (2 x 20 ms)"
    assert counts["p1"] == 0 and counts["p2"] >= 0.95 * sent, counts
    assert probes_sent(after) > probes_sent(before), "p1's probes go on while it is drained"
    assert after["rtt_samples"] > 0 and after["rtt_ms"] is not None and after["rtt_ms"] < 5.0
    assert max(t["last_answer_age_s"] for t in after["target_states"]) < 1.0

    r = pathsteer("undrain", "p1", "--socket", d.socket)
    assert r.returncode == 0, r.stderr
    back = d.wait_via(PREFIX, "p1", timeout=HOLD_DOWN_S + 3.0)
    change = next(e for e in reversed(d.changes()) if e["prefix"] == PREFIX and e["to"] == "p1")
    print(f"{mode}: back on p1 {back * 1e3:.0f} ms after undrain (hold_down {HOLD_DOWN_S:g} s): {change['reason']}")
    assert change["kind"] == "undrain" and "undrained" in change["reason"]
    assert back >= HOLD_DOWN_S - 0.3  # the policy's failback rule held it
    assert p1_view(d)["state"] == "up" and p1_view(d)["drained"] is None
    assert "steer.drain path=p1" in d.log() and "steer.undrain path=p1 why=manual" in d.log()
