"""The engine over real sockets: many targets, quorum, state changes, a path that goes
down and comes back, and the snapshot the decision logic reads."""

import json
import os
import queue
import subprocess
import threading
import time

import pytest
from test_probe_netns import GW, PYTHON, REPO, two_paths  # noqa: F401 - fixture

DRIVER = r"""
import asyncio, json, sys, time
from dataclasses import asdict
from pathsteer.probe.engine import ProbeEngine
from pathsteer.telemetry import PathProbeConfig, ProbeMethod, Thresholds, WindowConfig

spec = json.loads(sys.argv[1])
paths = [
    PathProbeConfig(name=p["name"], interface=p["interface"], gateway=p["gateway"],
                    targets=tuple(p["targets"]), method=ProbeMethod(p.get("method", "icmp")),
                    port=p.get("port", 862), interval_s=0.02, timeout_s=0.1, quorum=p.get("quorum"),
                    window=WindowConfig(count=50, seconds=5.0),
                    thresholds=Thresholds(hold_s=0.2, target_down_after_lost=3, target_up_after_answered=3))
    for p in spec
]

def emit(obj):
    print(json.dumps(obj, default=lambda o: getattr(o, "value", str(o))), flush=True)

def changed(name, old, new, now):
    emit({"event": "state", "path": name, "from": old.value, "to": new.value, "t": now})

async def main():
    engine = ProbeEngine(paths, on_state_change=changed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), lambda: (sys.stdin.readline(), stop.set()))
    async def report():
        while not stop.is_set():
            await asyncio.sleep(0.1)
            emit({"event": "snapshot", "snapshot": asdict(engine.snapshot().plain())})
    task = asyncio.ensure_future(report())
    await engine.run(stop=stop)
    task.cancel()
    emit({"event": "stopped"})

asyncio.run(main())
"""

EXTRA = ["192.0.2.78", "192.0.2.79"]


class Driver:
    """Runs DRIVER in the prober namespace; a line on its stdin stops it."""

    def __init__(self, env, spec):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", env.prober, PYTHON, "-c", DRIVER, json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        )
        env.procs.append(self.proc)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def stop(self):
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        self.wait_for(lambda e: e["event"] == "stopped")
        self.proc.wait(timeout=10)
        assert self.proc.returncode == 0, self.proc.stderr.read()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def wait_for(self, pred, timeout=10.0):
        end = time.monotonic() + timeout
        seen = []
        while time.monotonic() < end:
            try:
                ev = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise AssertionError(f"driver exited: {self.proc.stderr.read()}")
                continue
            seen.append(ev)
            if pred(ev):
                return ev
        raise AssertionError(f"timed out; last events: {seen[-3:]}")


def state_is(path, state):
    return lambda ev: ev["event"] == "state" and ev["path"] == path and ev["to"] == state


def test_quorum_down_and_back_while_other_path_stays_up(two_paths):
    for a in EXTRA:
        two_paths.ns(two_paths.target, "ip", "addr", "add", f"{a}/32", "dev", "lo")
    spec = [
        {"name": "a", "interface": "pa", "gateway": GW["a"][0], "targets": ["192.0.2.77"]},
        {"name": "b", "interface": "pb", "gateway": GW["b"][0], "quorum": 2,
         "targets": ["192.0.2.77", *EXTRA]},
    ]
    d = Driver(two_paths, spec)

    d.wait_for(state_is("a", "up"))
    d.wait_for(state_is("b", "up"))
    # one of three targets of b stops answering: no quorum, b stays up
    two_paths.ns(two_paths.target, "ip", "addr", "del", f"{EXTRA[0]}/32", "dev", "lo")
    ev = d.wait_for(lambda e: e["event"] == "snapshot"
                    and e["snapshot"]["paths"][1]["failing"] == 1)
    b = ev["snapshot"]["paths"][1]
    assert b["state"] == "up" and b["loss_pct"] < 5.0  # the failing target's losses are left out
    assert [t["state"] for t in b["targets"]] == ["up", "down", "up"]
    # a second one: 2 of 3 fail, b goes down; a is untouched
    t0 = time.monotonic()
    two_paths.ns(two_paths.target, "ip", "addr", "del", f"{EXTRA[1]}/32", "dev", "lo")
    d.wait_for(state_is("b", "down"))
    assert time.monotonic() - t0 < 3.0
    snap = d.wait_for(lambda e: e["event"] == "snapshot")["snapshot"]
    a, b = snap["paths"]
    assert a["state"] == "up" and b["state"] == "down" and b["failing"] == 2 and b["quorum"] == 2
    assert a["rtt"]["p50_s"] is not None and a["rtt"]["p50_s"] < 0.05
    # back: both addresses return, b comes up again (after 3 answers each and the hold)
    for addr in EXTRA:
        two_paths.ns(two_paths.target, "ip", "addr", "add", f"{addr}/32", "dev", "lo")
    d.wait_for(lambda e: e["event"] == "state" and e["path"] == "b" and e["to"] in ("up", "degraded"))
    d.stop()
    rules = two_paths.ns(two_paths.prober, "ip", "rule", "show").stdout
    assert "fwmark" not in rules  # pins removed on stop


@pytest.mark.parametrize("family", [4, 6])
def test_link_down_then_up_udp(two_paths, family):
    """The kernel flushes the pin's table route when the link goes down; the engine puts it
    back and measures again once the link is up."""
    if family == 6:  # else the kernel drops pb's static IPv6 address with the link
        two_paths.ns(two_paths.prober, "sysctl", "-qw", "net.ipv6.conf.pb.keep_addr_on_down=1")
    two_paths.start_reflector("--port", "8622")
    spec = [{"name": "b", "interface": "pb", "gateway": GW["b"][family == 6],
             "targets": ["192.0.2.77" if family == 4 else "2001:db8:77::1"], "method": "udp", "port": 8622}]
    d = Driver(two_paths, spec)
    d.wait_for(state_is("b", "up"))
    time.sleep(0.3)
    two_paths.link(two_paths.prober, "pb", False)  # our own side: sends fail with ENETDOWN
    d.wait_for(state_is("b", "down"))
    two_paths.link(two_paths.prober, "pb", True)
    d.wait_for(lambda e: e["event"] == "state" and e["path"] == "b" and e["to"] in ("up", "degraded"), timeout=15)
    snap = d.wait_for(lambda e: e["event"] == "snapshot")["snapshot"]
    c = snap["paths"][0]["targets"][0]["counters"]
    assert c["lost"] > 0 and c["answered"] > 0
    d.stop()
