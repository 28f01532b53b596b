"""TWAMP-light at 64 paths × 20 probes/s: the engine's CPU with UDP probes, and the reflector's.

Same lab as bench_probe_cpu (64 paths, one target per path, every 50 ms), method udp, with
`pathsteer reflector` in the server namespace answering all 1280 probes/s. CPU per process
(user + system) from /proc. Anchor of the engine figure: the same engine with ICMP probes
in the same run length (the kernel answers ICMP, so the difference is the UDP path's cost).
``PATHSTEER_BENCH_PROBE_SECONDS`` sets the run length (default 20).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time

from bench.harness import Figure
from pathsteer_lab.jsonrun import Driver
import pathsteer_lab as lab

INTERVAL_S = 0.05
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (proc(5) fields 14, 15)


def _run(t: lab.Topology, method: str, seconds: float) -> dict:
    spec = {
        "paths": [
            {"name": p.name, "interface": p.router_interface, "gateway": p.gateway,
             "targets": [lab.topology.SERVER_V4[0]], "method": method,
             "interval_s": INTERVAL_S, "timeout_s": 1.0}
            for p in t.paths
        ],
        "duration_s": seconds,
    }
    d = Driver(t.namespaces["router"], spec)
    try:
        return d.wait_for(lambda e: e["event"] == "done", timeout=seconds + 60)
    finally:
        d.kill()


def main() -> list[Figure]:
    seconds = float(os.environ.get("PATHSTEER_BENCH_PROBE_SECONDS", "20"))
    name = f"bpr{secrets.token_hex(3)}"
    t = lab.up(name, 64)
    refl = None
    try:
        refl = subprocess.Popen(
            ["ip", "netns", "exec", t.namespaces["server"], sys.executable, "-m", "pathsteer", "reflector"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        assert "listening on" in refl.stderr.readline()
        time.sleep(0.5)
        icmp = _run(t, "icmp", seconds)
        r0, w0 = _cpu_s(refl.pid), time.monotonic()
        udp = _run(t, "udp", seconds)
        refl_cpu, refl_wall = _cpu_s(refl.pid) - r0, time.monotonic() - w0
    finally:
        if refl is not None:
            refl.terminate()
            _, err = refl.communicate(timeout=10)
            print(f"# {err.strip().splitlines()[-1] if err.strip() else ''}", file=sys.stderr)
        lab.down(name)
    answered = sum(p["targets"][0]["counters"]["answered"] for p in udp["snapshot"]["paths"])
    print(f"# udp: {answered} answered in {udp['wall_s']:.1f} s", file=sys.stderr)
    return [
        Figure("probe CPU 64 paths x 20/s, udp (TWAMP-light)", 100 * udp["cpu_s"] / udp["wall_s"], "% of a core",
               "same, icmp", 100 * icmp["cpu_s"] / icmp["wall_s"], goal="< 10% of a core"),
        Figure("reflector CPU at 1280 probes/s", 100 * refl_cpu / refl_wall, "% of a core",
               "probe engine, udp", 100 * udp["cpu_s"] / udp["wall_s"]),
    ]
