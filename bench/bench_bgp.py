"""Fleet over BGP at scale: announce N prefixes to BIRD, learn N prefixes from BIRD.

A lab with 2 paths (5 ms one way each, probes at the default 1 s); pathsteer (fib) in its
router with ExaBGP under it, BIRD 2 in the lab's client namespace peering with it over eBGP.

* **announce**: N destinations in the file (one shared setup), announced to BIRD; the time from
  the daemon's first ``bgp.announce`` to BIRD holding all N, beside a BIRD → BIRD transfer of the
  same N prefixes in the same run (`pathsteer_lab.fleet.bird_transfer_time`, the session up
  first) — goal ≤ 2×.
* **learn**: BIRD originates N prefixes tagged 65000:7:1; the daemon learns them (``learn``)
  and steers them. Times from BIRD's ``enable`` to the ``bgp.learn`` event with all N and to all
  N routes in the daemon's table; meanwhile, every 200 ms, path p1's RTT as the daemon reports
  it (its error against the same figure before) and the decision's duration (``/metrics``):
  before (the anchor) and during.

    .venv/bin/python -m bench bgp                    (root; bird2; N = 100 000)
    .venv/bin/python bench/bench_bgp.py --prefixes 20000 --part learn
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from pathsteer_lab import build, impair
from pathsteer_lab.fleet import Bird, bird_prefixes, bird_transfer_time
from pathsteer_lab.labconfig import lab_config
from pathsteer_lab.labrun import LabDaemon

EDGE_AS, CORE_AS = 65001, 65000


def _bird_config(router_id: str, local: str, neighbor: str, prefixes: list[str], tagged: bool) -> str:
    tag = " { bgp_large_community.add((65000, 7, 1)); }" if tagged else ""
    routes = "\n".join(f"  route {p} blackhole{tag};" for p in prefixes)
    static = f"protocol static originated {{\n  ipv4;\n  disabled;\n{routes}\n}}\n" if prefixes else ""
    return (f"router id {router_id};\nlog stderr all;\nprotocol device {{ scan time 10; }}\n{static}"
            f"protocol bgp edge {{\n  local {local} as {CORE_AS};\n  neighbor {neighbor} as {EDGE_AS};\n"
            f"  hold time 9;\n  connect delay time 1;\n  connect retry time 2;\n"
            f"  ipv4 {{ import all; export where source = RTS_STATIC; }};\n}}\n")


def _count(bird: Bird) -> int:
    out = bird.birdc("show", "route", "count")
    m = re.search(r"(\d+) of \d+ routes", out)
    return int(m.group(1)) if m else 0


def _logged(d: LabDaemon, name: str, *words: str) -> float | None:
    for line in d.log().splitlines():
        stamp, _, rest = line.partition(" ")
        if rest.split(" ", 1)[0] == name and all(w in rest for w in words):
            return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    return None


def _wait(pred, timeout: float, step: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(step)
    return None


def _table_routes(t, table: int = 200) -> int:
    out = subprocess.run(["ip", "-n", t.router, "route", "show", "table", str(table)], capture_output=True, text=True)
    return out.stdout.count("\n")


def _sample(d: LabDaemon, stop: threading.Event, out: list) -> None:
    while not stop.is_set():
        try:
            _status, path = d.http("GET", "/api/v1/paths/p1", timeout=5)
            _s, metrics = d.http("GET", "/metrics", timeout=10)
            last = re.search(r"^pathsteer_decision_last_duration_seconds (\S+)", metrics, re.M)
            out.append((time.time(), path.get("rtt_ms"), float(last.group(1)) * 1e3 if last else None))
        except Exception:  # noqa: BLE001 - a missed sample
            pass
        stop.wait(0.2)


def _setup(workdir: str, n_file: int, bgp: dict, bird_prefixes_: list[str], tagged: bool):
    name = "bg" + secrets.token_hex(3)
    t = build.up(name, 2)
    for p in ("p1", "p2"):
        impair.set_path(name, p, delay="5ms")
    prefixes = bird_prefixes(n_file) if n_file else []
    cfg = lab_config(t, socket=f"/run/pathsteer/{name}.sock", interval="1s", hold=None,
                     prefixes=prefixes or [t.prefixes[0]])
    cfg["bgp"] = {"local_as": EDGE_AS, "router_id": "10.200.0.1",
                  "peers": [{"address": "10.200.0.2", "as": CORE_AS, "name": "bird"}], **bgp}
    bird = Bird(t.client, workdir, name="bird", tag=name).start(
        _bird_config("10.200.0.2", "10.200.0.2", "10.200.0.1", bird_prefixes_, tagged))
    d = LabDaemon(t, cfg, workdir, name="edge")
    return t, bird, d


def announce(workdir: str, n: int) -> dict:
    t, bird, d = _setup(workdir, n, {}, [], False)
    try:
        d.start(timeout=300)
        first = _wait(lambda: _logged(d, "bgp.announce"), 120)
        done = _wait(lambda: _count(bird) >= n and time.time(), 600, 0.02)
        if first is None or done is None:
            raise RuntimeError(f"announce: first={first} done={done} bird has {_count(bird)}; {d.log_tail(10)}")
        return {"announce_s": done - first}
    finally:
        d.kill()
        bird.stop()
        build.down(t.name)


def learn(workdir: str, n: int) -> dict:
    t, bird, d = _setup(workdir, 0, {"learn": {"enabled": True, "communities": ["65000:7:1"]}},
                        bird_prefixes(n), True)
    samples: list = []
    stop = threading.Event()
    try:
        d.start(timeout=60)
        _wait(lambda: "state=up" in d.log() and "bgp.session" in d.log() and _logged(d, "bgp.announce"), 60)
        sampler = threading.Thread(target=_sample, args=(d, stop, samples), daemon=True)
        sampler.start()
        time.sleep(10)  # the anchor: 10 s of samples before
        t0 = time.time()
        bird.birdc("enable", "originated")
        learned = _wait(lambda: _logged(d, "bgp.learn", f"learned={n} ") , 900, 0.2)
        programmed = _wait(lambda: _table_routes(t) >= n and time.time(), 900, 0.2)
        time.sleep(2)
        stop.set()
        sampler.join(10)
        if learned is None or programmed is None:
            raise RuntimeError(f"learn: learned={learned} programmed={programmed}; {d.log_tail(10)}")
        before = [s for s in samples if s[0] < t0]
        during = [s for s in samples if t0 <= s[0] <= programmed]
        base = statistics.median(s[1] for s in before if s[1] is not None)

        def err(ss):
            e = sorted(abs(s[1] - base) for s in ss if s[1] is not None)
            return e[int(0.95 * (len(e) - 1))] if e else float("nan")

        def dec(ss):
            v = [s[2] for s in ss if s[2] is not None]
            return statistics.median(v) if v else float("nan"), max(v) if v else float("nan")

        return {"learned_s": learned - t0, "programmed_s": programmed - t0, "rtt_err_before_ms": err(before),
                "rtt_err_during_ms": err(during), "decide_before_ms": dec(before), "decide_during_ms": dec(during),
                "rtt_base_ms": base, "samples": (len(before), len(during))}
    finally:
        stop.set()
        d.kill()
        bird.stop()
        build.down(t.name)


def main(argv: list[str] | None = None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prefixes", type=int, default=100_000)
    ap.add_argument("--part", choices=["announce", "learn", "both"], default="both")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs) and print it")
    a = ap.parse_args([] if argv is None else argv)
    if shutil.which("bird") is None:
        raise SystemExit("bench bgp: bird2 is not installed (make deps)")
    workdir = tempfile.mkdtemp(prefix="bench-bgp-")
    figures = []
    try:
        anchor = bird_transfer_time(os.path.join(workdir, "anchor"), a.prefixes)
        if a.part in ("announce", "both"):
            r = announce(os.path.join(workdir, "announce"), a.prefixes)
            figures.append(("announce to BIRD (first announce → BIRD has all)", r["announce_s"], "s",
                            "BIRD → BIRD transfer", anchor, "ratio <= 2"))
        if a.part in ("learn", "both"):
            r = learn(os.path.join(workdir, "learn"), a.prefixes)
            figures.append(("learn from BIRD (enable → bgp.learn with all)", r["learned_s"], "s",
                            "BIRD → BIRD transfer", anchor, ""))
            figures.append(("learn from BIRD (enable → all routes programmed)", r["programmed_s"], "s",
                            "BIRD → BIRD transfer", anchor, ""))
            figures.append(("p1 RTT error p95 while learning", r["rtt_err_during_ms"], "ms",
                            "the same before", r["rtt_err_before_ms"], "within noise"))
            figures.append(("decision duration median while learning", r["decide_during_ms"][0], "ms",
                            "the same before", r["decide_before_ms"][0], "within noise"))
            figures.append(("decision duration max while learning", r["decide_during_ms"][1], "ms",
                            "the same before", r["decide_before_ms"][1], ""))
    finally:
        if a.keep:
            print(f"logs in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if argv is None:
        from bench.harness import Figure
        return [Figure(*f[:5], goal=f[5]) for f in figures]
    for name, value, unit, aname, avalue, goal in figures:
        print(f"{name}: {value:.4g} {unit}  anchor {aname}: {avalue:.4g} {unit}  ratio "
              f"{value / avalue if avalue else float('inf'):.3f}  {goal}")
    return None


if __name__ == "__main__":
    main(sys.argv[1:])
