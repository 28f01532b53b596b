"""Run the engine from a JSON spec and report JSON lines: the tool benchmarks and lab tests
use to drive probes inside a namespace (``ip netns exec NS python -m pathsteer_lab.jsonrun``).

Spec (argv[1])::

    {"paths": [{"name": "p1", "interface": "r-p1", "gateway": "10.200.1.2",
                "targets": ["198.51.100.10"], "method": "icmp", "interval_s": 0.05,
                "timeout_s": 1.0, "quorum": null, "port": 862,
                "window": {"count": 1000, "seconds": 60},
                "thresholds": {"hold_s": 0, "target_down_after_lost": 3}}],
     "count": null, "duration_s": 10, "snapshot_every_s": null, "rss_mark_s": null}

Output, one JSON object a line: ``{"event": "started", "t": ...}``, ``{"event": "state",
"path", "from", "to", "t"}`` for every path state change (``t`` on CLOCK_MONOTONIC,
shared by every namespace), ``{"event": "snapshot", ...}`` when asked for, and at the end
``{"event": "done", "snapshot": ..., "cpu_s", "user_s", "sys_s", "wall_s", "rss_kb": [at start,
at end]}`` (CPU of this process only, kernel time in ``sys_s``).
A line on stdin stops the run early.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from dataclasses import asdict

from pathsteer.probe.engine import ProbeEngine
from pathsteer.telemetry import PathProbeConfig, ProbeMethod, Thresholds, WindowConfig


def config_from(spec: dict) -> PathProbeConfig:
    spec = dict(spec)
    spec["targets"] = tuple(spec["targets"])
    spec["method"] = ProbeMethod(spec.get("method", "icmp"))
    spec["window"] = WindowConfig(**spec.get("window", {}))
    spec["thresholds"] = Thresholds(**spec.get("thresholds", {}))
    return PathProbeConfig(**spec)


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def emit(obj: dict) -> None:
    print(json.dumps(obj, default=lambda o: getattr(o, "value", str(o))), flush=True)


async def run(spec: dict) -> None:
    configs = [config_from(p) for p in spec["paths"]]

    def changed(name, old, new, now):
        emit({"event": "state", "path": name, "from": old.value, "to": new.value, "t": now})

    engine = ProbeEngine(configs, on_state_change=changed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        loop.add_reader(sys.stdin.fileno(), lambda: (sys.stdin.readline(), stop.set()))
    except (OSError, ValueError, PermissionError):
        pass  # stdin is not pollable (a file, /dev/null): no early stop
    if spec.get("duration_s"):
        loop.call_later(float(spec["duration_s"]), stop.set)
    every = spec.get("snapshot_every_s")

    async def snapshots() -> None:
        while True:
            await asyncio.sleep(every)
            emit({"event": "snapshot", "snapshot": asdict(engine.snapshot().plain())})

    task = asyncio.ensure_future(snapshots()) if every else None
    rss0 = _rss_kb()
    rss_mark: list[int] = []
    if spec.get("rss_mark_s"):
        loop.call_later(float(spec["rss_mark_s"]), lambda: rss_mark.append(_rss_kb()))
    t0 = os.times()
    cpu0, wall0 = time.process_time(), time.monotonic()
    emit({"event": "started", "t": wall0})
    snap = await engine.run(count=spec.get("count"), stop=stop)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    t1 = os.times()
    if task:
        task.cancel()
    emit({"event": "done", "snapshot": asdict(snap.plain()), "cpu_s": cpu, "user_s": t1.user - t0.user, "sys_s": t1.system - t0.system, "wall_s": wall,
          "rss_kb": [rss0, _rss_kb()], "rss_mark_kb": rss_mark[0] if rss_mark else None, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})


def main() -> int:
    asyncio.run(run(json.loads(sys.argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())


class Driver:
    """Runs this module inside network namespace ``namespace`` and reads its events:
    for benchmarks and lab tests, from the outside of the namespace."""

    def __init__(self, namespace: str, spec: dict, *, python: str = sys.executable) -> None:
        import queue
        import subprocess
        import threading

        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", namespace, python, "-m", "pathsteer_lab.jsonrun", json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.events: queue.Queue = queue.Queue()
        self.done: dict | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            event = json.loads(line)
            if event["event"] == "done":
                self.done = event
            self.events.put(event)
        self.events.put({"event": "exited"})

    def wait_for(self, predicate, timeout: float = 30.0) -> dict:
        """The first event (from now on) ``predicate`` accepts; TimeoutError otherwise."""
        import queue

        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching event from the probe engine")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if predicate(event):
                return event
            if event["event"] == "exited":
                raise RuntimeError(f"probe engine exited: {self.proc.stderr.read()[-2000:]}")

    def stop(self, timeout: float = 30.0) -> dict:
        """Stop the run; returns its ``done`` event."""
        if self.proc.poll() is None and self.done is None:
            try:
                self.proc.stdin.write("stop\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
        self.proc.wait(timeout=timeout)
        deadline = time.monotonic() + 5
        while self.done is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.done is None:
            raise RuntimeError(f"probe engine ended without a report: {self.proc.stderr.read()[-2000:]}")
        return self.done

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
