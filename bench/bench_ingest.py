"""Gateway access-log ingestion, lines per second on one core (HAProxy httplog, Apinto JSON).

Lines are parsed to records and added to the usage window; each figure is anchored by a plain
`json.loads` loop over the same JSON lines (same run, same machine, runs interleaved).

    .venv/bin/python bench/bench_ingest.py [--lines 100000] [--clients 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

from pathsteer.gateways.haproxy import HaproxyParser
from pathsteer.gateways.jsonlines import JsonLinesParser
from pathsteer.gateways.window import UsageWindow

STATUSES = [200] * 90 + [304] * 3 + [401, 403, 404, 429, 500, 502, 503]


def haproxy_lines(n: int, clients: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        c = rng.randrange(clients)
        tr = rng.randrange(1, 400)
        out.append((f"<134>Dec  3 14:19:{i % 60:02d} haproxy[1234]: 10.{c >> 16 & 255}.{c >> 8 & 255}.{c & 255}:"
                    f"{rng.randrange(1024, 65535)} [03/Dec/2026:14:19:{i % 60:02d}.{i % 1000:03d}] http-in "
                    f"app/srv{rng.randrange(8)} 0/0/1/{tr}/{tr + 2} {rng.choice(STATUSES)} {rng.randrange(200, 20000)} "
                    f"- - ---- 12/12/3/1/0 0/0 \"GET /api/v1/items/{i} HTTP/1.1\"\n").encode())
    return out


def apinto_lines(n: int, clients: int, seed: int = 2) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        c = rng.randrange(clients)
        status = rng.choice(STATUSES)
        out.append(json.dumps({
            "msec": 1796307566000 + i, "service": "orders", "provider": "team-a", "request_scheme": "https",
            "request_uri": f"/v1/orders/{i}", "remote_addr": f"10.{c >> 16 & 255}.{c >> 8 & 255}.{c & 255}",
            "src_ip": "203.0.113.1", "proxy_addr": f"10.1.0.{rng.randrange(8)}:8080", "status": status,
            "proxy_status": status, "request_time": rng.randrange(1, 400), "proxy_time": rng.randrange(1, 400),
            "response_time": 12000000, "strategy": "", "request_id": f"{i:016x}", "request_method": "GET",
            "request_length": 0, "response_length": str(rng.randrange(200, 20000)),
            "auth_status": "fail" if status == 401 else "success"}).encode())
    return out


def _rate(fn, lines) -> float:
    t0 = time.perf_counter()
    fn(lines)
    return len(lines) / (time.perf_counter() - t0)


def run_haproxy(lines) -> None:
    parse = HaproxyParser({("app", f"srv{i}"): f"10.1.0.{i}:8080" for i in range(8)}).parse
    add = UsageWindow().add
    now = 1_796_307_566.0
    for i, line in enumerate(lines):
        r = parse(line)
        if r is not None:
            add(r, now + i * 1e-5)


def run_haproxy_parse(lines) -> None:
    parse = HaproxyParser().parse
    for line in lines:
        parse(line)


def run_apinto(lines) -> None:
    parse = JsonLinesParser("apinto").parse
    add = UsageWindow().add
    now = 1_796_307_566.0
    for i, line in enumerate(lines):
        t = now + i * 1e-5
        r = parse(line, t)
        if r is not None:
            add(r, t)


def run_json_loads(lines) -> None:
    loads = json.loads
    for line in lines:
        loads(line)


def measure(n: int, clients: int, repeat: int) -> dict[str, float]:
    h, a = haproxy_lines(n, clients), apinto_lines(n, clients)
    runs: dict[str, list[float]] = {"haproxy": [], "haproxy_parse": [], "apinto": [], "json_loads": []}
    for _ in range(repeat):  # interleaved, so the machine's noise falls on all alike
        runs["json_loads"].append(_rate(run_json_loads, a))
        runs["haproxy"].append(_rate(run_haproxy, h))
        runs["haproxy_parse"].append(_rate(run_haproxy_parse, h))
        runs["apinto"].append(_rate(run_apinto, a))
    return {k: statistics.median(v) for k, v in runs.items()}


def main(argv: list[str] | None = None):
    """From ``python -m bench ingest``: figures (argv None: the defaults), lines per second."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="example: bench_ingest.py --lines 200000 --clients 100000")
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=5_000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args([] if argv is None else argv)
    m = measure(a.lines, a.clients, a.repeat)
    if argv is None:
        from bench.harness import Figure
        anchor = "json.loads of the apinto lines"
        return [Figure("haproxy httplog lines parsed + window update", m["haproxy"], "lines/s", anchor,
                       m["json_loads"], goal=">= 200k lines/s"),
                Figure("haproxy httplog lines parsed (no window)", m["haproxy_parse"], "lines/s", anchor,
                       m["json_loads"]),
                Figure("apinto JSON lines parsed + window update", m["apinto"], "lines/s", anchor,
                       m["json_loads"])]
    print(f"{a.lines} lines, {a.clients} clients, median of {a.repeat}")
    for k, v in m.items():
        print(f"{k:14} {v / 1e3:8.1f} k lines/s")
    return None


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
