"""Gateway health out: time from a path's state change (the bus event) to HAProxy's new weight.

A real HAProxy (Debian 12: 2.6) on loopback with two servers; the ``gateways`` component runs with
stand-ins for steering (a decision with one route per server, path states) and the guard. Each
round flips the path of s1 down or up, publishes ``path.state`` on the bus as the probe engine does,
and polls ``show servers state`` until HAProxy reports the new weight. The anchor is one bare
``set server app/s1 weight N`` round trip over the same stats socket, in the same run.

    .venv/bin/python -m bench gateway_health     (root; needs haproxy)
    .venv/bin/python bench/bench_gateway_health.py [--rounds 40]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

from pathsteer.config.gateways import GatewayConfig
from pathsteer.events import Bus
from pathsteer.gateways.runtime import HaproxyRuntime
from pathsteer.gateways.service import GatewaysSection, GatewaysService


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Steer:
    def __init__(self) -> None:
        self.states = {"p1": "up", "p2": "up"}
        r = lambda p, path: SimpleNamespace(prefix=ipaddress.ip_network(p),  # noqa: E731
                                            nexthops=(SimpleNamespace(path=path),))
        self.decision = SimpleNamespace(routes=(r("127.0.0.2/32", "p1"), r("127.0.0.3/32", "p2")))
        self.drains: dict = {}

    @property
    def telemetry(self):
        return SimpleNamespace(paths=[SimpleNamespace(name=n, state=SimpleNamespace(value=s))
                                      for n, s in self.states.items()])


class _Ctx:
    def __init__(self, steer) -> None:
        self.bus = Bus()
        self.config = SimpleNamespace(paths=None)
        self._c = {"steer": steer}

    def component(self, name):
        return self._c.get(name)


async def _weight(rt: HaproxyRuntime) -> int:
    return (await rt.servers_state("app"))[("app", "s1")].weight


async def _measure(sock: str, state_dir: str, rounds: int) -> tuple[list[float], list[float]]:
    rt = HaproxyRuntime(sock)
    anchor = []
    for i in range(rounds):
        t0 = time.perf_counter()
        await rt.set_weight("app", "s1", 100 if i % 2 else 99)
        anchor.append(time.perf_counter() - t0)
    await rt.set_weight("app", "s1", 100)
    steer = _Steer()
    g = GatewayConfig(name="edge", kind="haproxy", runtime=sock)
    svc = GatewaysService(GatewaysSection((g,), state_dir), _Ctx(steer))
    await svc.start()
    took = []
    try:
        await svc.tick()
        for i in range(rounds):
            down = i % 2 == 0
            steer.states["p1"] = "down" if down else "up"
            t0 = time.perf_counter()
            svc.ctx.bus.publish("path.state", path="p1", to=steer.states["p1"])
            want = 0 if down else 100
            while await _weight(rt) != want:
                pass
            took.append(time.perf_counter() - t0)
            await asyncio.sleep(0.3)  # a tick or so apart: each round starts from rest
    finally:
        await svc.stop()
    return took, anchor


def measure(rounds: int) -> dict[str, float]:
    if shutil.which("haproxy") is None:
        raise SystemExit("bench gateway_health: haproxy is not installed (make deps)")
    tmp = tempfile.mkdtemp(prefix="psbh-")
    sock = os.path.join(tmp, "admin.sock")
    cfg = os.path.join(tmp, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(f"global\n    stats socket {sock} mode 600 level admin\n"
                "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n"
                f"frontend fe\n    bind 127.0.0.1:{_port()}\n    default_backend app\n"
                f"backend app\n    server s1 127.0.0.2:{_port()} weight 100\n"
                f"    server s2 127.0.0.3:{_port()} weight 100\n")
    proc = subprocess.Popen(["haproxy", "-f", cfg, "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                asyncio.run(HaproxyRuntime(sock, timeout_s=1).command("show info"))
                break
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("bench gateway_health: haproxy did not start") from None
                time.sleep(0.05)
        took, anchor = asyncio.run(_measure(sock, tmp, rounds))
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return {"median_ms": statistics.median(took) * 1e3, "max_ms": max(took) * 1e3,
            "anchor_ms": statistics.median(anchor) * 1e3}


def main(argv: list[str] | None = None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40)
    a = ap.parse_args([] if argv is None else argv)
    m = measure(a.rounds)
    if argv is None:
        from bench.harness import Figure
        anchor = "one 'set server weight' round trip"
        return [Figure("path event → HAProxy weight (median)", m["median_ms"], "ms", anchor, m["anchor_ms"],
                       goal="<= 100 ms"),
                Figure("path event → HAProxy weight (max)", m["max_ms"], "ms", anchor, m["anchor_ms"],
                       goal="<= 100 ms")]
    print(f"{a.rounds} rounds: median {m['median_ms']:.2f} ms, max {m['max_ms']:.2f} ms; "
          f"anchor (one set weight) {m['anchor_ms']:.3f} ms")
    return None


if __name__ == "__main__":
    main(sys.argv[1:])
