"""Prober CPU and memory at 64 paths × 20 probes/s (ICMP), against 64 iputils ping processes.

Runs in a 64-path lab (`pathsteer_lab`): the engine in the router namespace probes each
path's probe address through the path's gateway, one target per path, every 50 ms. CPU is
the engine process's own (user + system; the system part includes the kernel forwarding the
probe through the lab's namespaces, which on veth happens inside sendto()). Anchor: 64
``ping -i 0.05`` processes (C, one per path) for the same time, same targets.
Memory: RSS growth from 10 s into the run to its end. ``PATHSTEER_BENCH_PROBE_SECONDS``
sets the run length (default 30; the issue's 10-minute figure: 600).
"""

from __future__ import annotations

import os
import resource
import secrets
import subprocess
import sys
import time

from bench.harness import Figure
from pathsteer_lab.jsonrun import Driver
import pathsteer_lab as lab

PATHS = 64
INTERVAL_S = 0.05


def _spec(t: lab.Topology, seconds: float) -> dict:
    return {
        "paths": [
            {"name": p.name, "interface": p.router_interface, "gateway": p.gateway,
             "targets": [p.probe_address], "interval_s": INTERVAL_S, "timeout_s": 1.0}
            for p in t.paths
        ],
        "duration_s": seconds,
        "rss_mark_s": min(10.0, seconds / 2),
    }


def _pings(t: lab.Topology, seconds: float) -> tuple[float, int]:
    """CPU seconds of 64 iputils ping processes probing like the engine; and replies seen."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    procs = [
        subprocess.Popen(
            ["ip", "netns", "exec", t.namespaces["router"], "ping", "-q", "-n", "-I", p.router_interface,
             "-i", str(INTERVAL_S), "-w", str(int(seconds)), p.probe_address],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        for p in t.paths
    ]
    received = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 30)
        for line in out.splitlines():
            if "received" in line:
                received += int(line.split(",")[1].split()[0])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), received


def main() -> list[Figure]:
    seconds = float(os.environ.get("PATHSTEER_BENCH_PROBE_SECONDS", "30"))
    name = f"bpc{secrets.token_hex(3)}"
    t = lab.up(name, PATHS)
    try:
        time.sleep(1.0)
        d = Driver(t.namespaces["router"], _spec(t, seconds))
        try:
            done = d.wait_for(lambda e: e["event"] == "done", timeout=seconds + 60)
        finally:
            d.kill()
        paths = done["snapshot"]["paths"]
        answered = sum(p["targets"][0]["counters"]["answered"] for p in paths)
        sent = sum(p["targets"][0]["counters"]["sent"] for p in paths)
        wall = done["wall_s"]
        ping_cpu, ping_received = _pings(t, seconds)
    finally:
        lab.down(name)
    cpu_pct = 100.0 * done["cpu_s"] / wall
    user_pct = 100.0 * done["user_s"] / wall
    ping_pct = 100.0 * ping_cpu / seconds
    print(f"# engine: {sent} sent, {answered} answered in {wall:.1f} s "
          f"({sent / wall:.0f} probes/s); 64 pings: {ping_received} replies", file=sys.stderr)
    growth = done["rss_kb"][1] - (done["rss_mark_kb"] or done["rss_kb"][0])
    return [
        Figure("probe CPU 64 paths x 20/s (user+sys)", cpu_pct, "% of a core",
               "64 x iputils ping -i 0.05", ping_pct, goal="< 10% of a core"),
        Figure("probe CPU 64 paths x 20/s (user only)", user_pct, "% of a core",
               "goal", 10.0, goal="< 10% of a core"),
        Figure(f"probe RSS growth, 10 s to {seconds:.0f} s", float(growth), "kB",
               "RSS at 10 s", float(done["rss_mark_kb"] or done["rss_kb"][0]), goal="no growth"),
    ]
