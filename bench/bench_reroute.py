"""Reroute time of the daemon over 20 hard failures per data plane (median and p95).

A lab with two paths (p1 1 ms, p2 8 ms one way), ``pathsteer run`` in the router namespace
probing every 20 ms, lowest-latency with hold_down 0.3 s so traffic fails back between rounds.
Three probe settings: the default (adaptive timeout, nothing else written), the old default
(a fixed 50 ms timeout, what `interval: 20ms` used to get), a tuned one (timeout 15 ms on p1),
and the default again with the HTTP API hammered (200 requests/s rotating over paths, routes,
events, metrics, status, and an event stream open: a dashboard) and with a gateway's log read at
10k HAProxy lines/s over UDP syslog (and the same sender with nobody reading, its own share of
the 2-core box) — printed beside the idle ones.
Each round: a 2 ms UDP echo stream from the client, p1 set down at a random point of the probe
interval, the time from when p1 stopped carrying the stream (the last packet over it, or the
call if none came after it) to the first packet the router sent over p2 (told by its RTT), as
the lab test measures it; p1 back up, wait for the failback. Anchor: the issue's budget, 3 probe intervals +
50 ms. ``BENCH_REROUTE_ROUNDS`` changes the count, ``BENCH_REROUTE_PROBES`` (comma-separated
names of the settings above) which settings run.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time

from bench.api_load import ApiLoad
from bench.harness import Figure
import pathsteer_lab as lab
from pathsteer_lab import measure
from pathsteer_lab.labconfig import lab_config
from pathsteer_lab.labrun import LabDaemon, cut_at

ROUNDS = int(os.environ.get("BENCH_REROUTE_ROUNDS", "20"))
INTERVAL_S = 0.020
SERVER = "198.51.100.10"
PREFIX = "198.51.100.0/24"


def p95(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(0.95 * len(s)) - 1))]


PROBES = {  # name → lab_config probe arguments
    "default": {"hold": None},
    "old-default": {"timeouts": {"p1": "50ms", "p2": "50ms"}, "hold": None},  # a fixed 50 ms
    "tuned": {"timeouts": {"p1": "15ms", "p2": "60ms"}},  # 15 ms on p1, hold 0.2 s
    "default+api-load": {"hold": None},  # the default, with the HTTP API hammered (below)
    "default+gateway-logs": {"hold": None},  # the default, with 10k HAProxy log lines/s read (below)
    "default+unread-logs": {"hold": None},  # the same sender, nobody reading: its own cost on the box
}
GATEWAY_LOADED = {"default+gateway-logs"}  # a gateway's log at LOG_RATE lines/s over UDP syslog throughout
SENDER_ONLY = {"default+unread-logs"}
LOG_RATE = 10_000
SENDER = r"""
import socket, sys, time
port, rate = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n, t0 = 0, time.monotonic()
while True:
    date = time.strftime("%d/%b/%Y:%H:%M:%S")
    for _ in range(100):
        c = n % 5000
        line = (f"<134>Dec  7 00:00:00 haproxy[1]: 10.{c >> 8 & 255}.{c & 255}.9:4000 [{date}.000] fe app/s{n % 4} "
                f"0/0/1/{n % 50}/3 {200 if n % 20 else 401} 512 - - ---- 1/1/0/0/0 0/0 \"GET /x HTTP/1.1\"")
        s.sendto(line.encode(), ("127.0.0.1", port))
        n += 1
    ahead = n / rate - (time.monotonic() - t0)
    if ahead > 0:
        time.sleep(ahead)
"""
API_LOADED = {"default+api-load"}  # 200 requests/s over the API and an event stream open throughout
SETTINGS = [s for s in os.environ.get("BENCH_REROUTE_PROBES", ",".join(PROBES)).split(",") if s]


@contextlib.contextmanager
def log_sender(t, port: int):
    """HAProxy log lines at LOG_RATE a second to 127.0.0.1:port in the router namespace."""
    proc = t.popen("router", [sys.executable, "-c", SENDER, str(port), str(LOG_RATE)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def rounds(t, mode: str, workdir: str, probes: dict, api_load: bool = False,
           gateway_logs: bool = False, sender_only: bool = False) -> tuple[list[float], int]:
    cfg = lab_config(t, mode=mode, socket=f"/run/pathsteer/{t.name}-bench.sock", interval="20ms",
                     hold_down="0.3s", **probes)
    port = random.randint(20000, 40000)
    if gateway_logs:
        cfg["gateways"] = [{"name": "bench", "kind": "haproxy", "logs": [f"udp:127.0.0.1:{port}"]}]
    d = LabDaemon(t, cfg, workdir, name=mode).start()
    times, missed = [], 0
    load = ApiLoad(d.api_socket, rate=200) if api_load else contextlib.nullcontext()
    logs = log_sender(t, port) if gateway_logs or sender_only else contextlib.nullcontext()
    t0 = time.monotonic()
    try:
        with load, logs, measure.UdpEcho(t, SERVER):
            d.wait_via(PREFIX, "p1", timeout=10)
            for _ in range(ROUNDS):
                time.sleep(1.0)  # p1 up for longer than its hold time (0.5 s by default)
                stream = measure.udp_stream(t, SERVER, seconds=1.0, interval=0.002)
                time.sleep(0.4 + random.uniform(0.0, INTERVAL_S))
                asked = time.time()
                lab.set_path(t.name, "p1", down=True)
                _, replies = measure.udp_stream_result(stream)
                t_fail = cut_at(replies, asked, 10.0)
                at = next((sent for sent, rtt in replies if sent >= t_fail and 10.0 <= rtt < 30.0), None)
                if at is None:
                    missed += 1
                else:
                    times.append(at - t_fail)
                lab.set_path(t.name, "p1", down=False)
                d.wait_via(PREFIX, "p1", timeout=10)
        if gateway_logs:
            g = d.call("gateways.status")["gateways"][0]
            print(f"# gateway logs during {mode}: {g['records']} records ({g['records'] / (time.monotonic() - t0):.0f}/s), "
                  f"{g['parse_errors']} parse errors", flush=True)
        if api_load:
            print(f"# api load during {mode}: {load.done} requests ({load.done / (time.monotonic() - t0):.0f}/s), "
                  f"{load.errors} errors, {load.sse_frames} SSE frames", flush=True)
    finally:
        d.stop()
    return times, missed


def main() -> list[Figure]:
    name = f"br{secrets.token_hex(2)}"
    t = lab.up(name, 2)
    out = []
    try:
        lab.set_path(name, "p1", delay="1ms")
        lab.set_path(name, "p2", delay="8ms")
        budget_ms = (3 * INTERVAL_S + 0.050) * 1e3
        with tempfile.TemporaryDirectory() as tmp:
            for setting in SETTINGS:
                for mode in ("fib", "bpf"):
                    times, missed = rounds(t, mode, tmp, PROBES[setting], setting in API_LOADED,
                                           setting in GATEWAY_LOADED, setting in SENDER_ONLY)
                    ms = [x * 1e3 for x in times] or [float("inf")]
                    what = f"reroute {mode}, probes {setting}"
                    out.append(Figure(f"{what}: median ({len(times)} failures, {missed} missed)",
                                      statistics.median(ms), "ms", "3 x 20 ms + 50 ms", budget_ms, "ratio <= 1"))
                    out.append(Figure(f"{what}: p95", p95(ms), "ms", "3 x 20 ms + 50 ms", budget_ms,
                                      "ratio <= 1"))
                    out.append(Figure(f"{what}: max", max(ms), "ms", "3 x 20 ms + 50 ms", budget_ms))
    finally:
        lab.down(name)
    return out
