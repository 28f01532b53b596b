"""The operator surface at scale and at rest: API latency, scrape time, SSE delivery, idle cost.

A lab with 64 paths; ``pathsteer run`` (fib) in the router namespace with 10k lowest-latency
/24 destinations over three paths each (bench_daemon's config), every default of the API,
metrics and history. Figures:
- ``GET /api/v1/routes`` (10k routes) p50 and p99 over 200 requests through the API's Unix
  socket, anchored by ``GET /api/v1/healthz`` p99 over the same socket (goal: p99 <= 50 ms);
- a ``/metrics`` scrape (median and max of 20; goal <= 200 ms), same anchor;
- SSE: a path carrying about a twentieth of the prefixes is cut; each ``steer.change`` event's
  delivery to an open event stream minus its publish time (the moment it was decided), p50 and
  p99 (goal <= 100 ms), anchored by the same delay of the ``path.state`` event that started it;
- idle cost: one path, one prefix, CPU over ``BENCH_API_SECONDS`` (default 20) with the API,
  metrics and history on (the defaults) against the same daemon with all three off (goal: <= 1 %
  of a core added).
"""

from __future__ import annotations

import gzip
import json
import os
import secrets
import statistics
import tempfile
import threading
import time

from bench.bench_daemon import config as scale_config, cpu_seconds
from bench.harness import Figure
import pathsteer_lab as lab
from pathsteer_lab.http import UnixHTTPConnection, request
from pathsteer_lab.labconfig import lab_config
from pathsteer_lab.labrun import LabDaemon

PATHS = 64
PREFIXES = 10_000
SECONDS = float(os.environ.get("BENCH_API_SECONDS", "20"))


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * len(s)) - 1))]


def timed_gets(sock: str, url: str, n: int, gzip_ok: bool = True) -> list[float]:
    """Milliseconds from the request to the body's last byte (a new connection each time, as
    a script's would be), asking for gzip as browsers, Python's requests and Prometheus do; the
    body is not parsed inside the timing (json.loads of 10k routes, 2.3 MB, alone took 20-30 ms
    of the figure)."""
    out = []
    headers = {"Accept-Encoding": "gzip"} if gzip_ok else {}
    for _ in range(n):
        conn = UnixHTTPConnection(sock, 30)
        try:
            t0 = time.perf_counter()
            conn.request("GET", url, headers=headers)
            r = conn.getresponse()
            body = r.read()
            out.append((time.perf_counter() - t0) * 1e3)
        finally:
            conn.close()
        assert r.status == 200 and body, (url, r.status)
    if r.getheader("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    json.loads(body) if url.startswith("/api/") else body.decode()  # the last one is well-formed
    return out


class Stream(threading.Thread):
    """An open event stream: (receive time, event) for every ``event: event`` frame."""

    def __init__(self, sock: str) -> None:
        super().__init__(daemon=True)
        self.sock, self.got, self.stop = sock, [], threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        conn = UnixHTTPConnection(self.sock, timeout=60)
        conn.request("GET", "/api/v1/events/stream")
        r = conn.getresponse()
        conn.sock.settimeout(None)
        self.ready.set()
        buf = b""
        while not self.stop.is_set():
            chunk = r.read1(1 << 20)
            if not chunk:
                break
            now = time.time()
            buf += chunk
            while b"\n\n" in buf:
                frame, buf = buf.split(b"\n\n", 1)
                lines = dict(x.split(": ", 1) for x in frame.decode().splitlines() if ": " in x)
                if lines.get("event") == "event":
                    self.got.append((now, json.loads(lines["data"])))
        conn.close()


def scale(t, workdir: str) -> list[Figure]:
    sock = f"/run/pathsteer/{t.name}-ba.sock"
    d = LabDaemon(t, scale_config(t, "fib", PATHS, PREFIXES, sock), workdir, name="scale").start(timeout=120)
    out = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(d.call("steer.status")["routes"]) < PREFIXES:
            time.sleep(0.5)
        time.sleep(3.0)
        api = d.api_socket
        health = timed_gets(api, "/api/v1/healthz", 200)
        # The first /routes after start writes every route's JSON fragment (10 µs each); later
        # ones reuse them but for the routes that changed. It is its own figure.
        cold = timed_gets(api, "/api/v1/routes", 1)[0]
        routes = timed_gets(api, "/api/v1/routes", 200)
        plain = timed_gets(api, "/api/v1/routes", 50, gzip_ok=False)
        h99 = pct(health, 0.99)
        print(f"# slowest /routes: {[round(x) for x in sorted(routes)[-6:]]} ms; slowest healthz: "
              f"{[round(x, 1) for x in sorted(health)[-4:]]} ms", flush=True)
        out.append(Figure(f"GET /api/v1/routes, {PREFIXES} routes: the first (cold)", cold, "ms",
                          "GET /api/v1/healthz p99", h99))
        out.append(Figure(f"GET /api/v1/routes, {PREFIXES} routes: p50", statistics.median(routes), "ms",
                          "GET /api/v1/healthz p99", h99))
        out.append(Figure(f"GET /api/v1/routes, {PREFIXES} routes: p99", pct(routes, 0.99), "ms",
                          "GET /api/v1/healthz p99", h99, "<= 50 ms"))
        _, text = request(api, "GET", "/metrics", timeout=30)
        sums = {}
        for x in str(text).splitlines():
            for fam in ("pathsteer_gc_pause_seconds", "pathsteer_decision_duration_seconds"):
                for part in ("_sum", "_count"):
                    if x.startswith(fam + part):
                        key = fam + x[len(fam):].split(" ")[0].replace(part, "")
                        sums.setdefault(key, [0.0, 0.0])[part == "_count"] = float(x.rsplit(" ", 1)[1])
        print("# mean pauses so far (ms, count): " + "; ".join(
            f"{k.removeprefix('pathsteer_')} {v[0] / max(v[1], 1) * 1e3:.1f} ({v[1]:.0f})" for k, v in sorted(sums.items())),
            flush=True)
        out.append(Figure(f"GET /api/v1/routes, {PREFIXES} routes, no gzip asked (curl without --compressed): p99",
                          pct(plain, 0.99), "ms", "GET /api/v1/healthz p99", h99))
        status, _ = request(api, "GET", "/metrics", timeout=30)
        if status == 200:
            scrapes = timed_gets(api, "/metrics", 20)
            out.append(Figure(f"/metrics scrape, {PATHS} paths, {PREFIXES} prefixes: median",
                              statistics.median(scrapes), "ms", "GET /api/v1/healthz p99", h99))
            out.append(Figure(f"/metrics scrape, {PATHS} paths, {PREFIXES} prefixes: max", max(scrapes), "ms",
                              "GET /api/v1/healthz p99", h99, "<= 200 ms"))
        # SSE: cut the path most routes use first
        counts: dict[str, int] = {}
        for r in d.call("steer.status")["routes"]:
            counts[r["via"]] = counts.get(r["via"], 0) + 1
        victim = max(counts, key=counts.get)
        stream = Stream(api)
        stream.start()
        stream.ready.wait(10)
        time.sleep(1.5)
        lab.set_path(t.name, victim, down=True)
        time.sleep(5.0)
        stream.stop.set()
        lab.set_path(t.name, victim, down=False)
        changes = [(now - e["at"]) * 1e3 for now, e in stream.got if e["name"] == "steer.change"]
        states = [(now - e["at"]) * 1e3 for now, e in stream.got if e["name"] == "path.state" and e["path"] == victim]
        anchor = states[0] if states else float("nan")
        if changes:
            out.append(Figure(f"SSE delivery of {len(changes)} steer.change events ({victim} cut): p50",
                              statistics.median(changes), "ms", f"the {victim} path.state event", anchor))
            out.append(Figure(f"SSE delivery of {len(changes)} steer.change events ({victim} cut): p99",
                              pct(changes, 0.99), "ms", f"the {victim} path.state event", anchor, "<= 100 ms"))
    finally:
        d.stop(timeout=120)
    return out


def idle_cpu(t, workdir: str, surface: bool) -> float:
    sock = f"/run/pathsteer/{t.name}-bi{int(surface)}.sock"
    cfg = lab_config(t, socket=sock, interval="100ms", paths=["p1"], prefixes=[t.prefixes[0]])
    if not surface:
        cfg.update({"api": {"enabled": False}, "metrics": {"enabled": False}, "history": {"enabled": False}})
    d = LabDaemon(t, cfg, workdir, name=f"idle{int(surface)}").start()
    try:
        time.sleep(3.0)
        c0, t0 = cpu_seconds(d.proc.pid), time.monotonic()
        time.sleep(SECONDS)
        return (cpu_seconds(d.proc.pid) - c0) / (time.monotonic() - t0) * 100
    finally:
        d.stop()


def main() -> list[Figure]:
    name = f"ba{secrets.token_hex(2)}"
    t = lab.up(name, PATHS)
    out = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out += scale(t, tmp)
            off, on = idle_cpu(t, tmp, False), idle_cpu(t, tmp, True)
            out.append(Figure("daemon CPU idle with API + metrics + history (defaults), 1 path, 1 prefix", on,
                              "% of a core", "the same daemon with all three off", off, "<= off + 1 % of a core"))
    finally:
        lab.down(name)
    return out
