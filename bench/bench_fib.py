"""Programming 100k and 1M prefixes through FibDataPlane against plain ``ip -batch``.

Per size, in the same run, each in a fresh network namespace with two veth paths:

- anchor: ``ip -batch FILE`` of ``route replace PFX table 200 proto 83 nhid ID`` lines (the
  same routes: /24s via the path's nexthop object, made beforehand), then ``ip -batch`` of
  ``route del`` lines for cleanup (iproute2 6.1's ``ip route flush table`` fails with EINVAL
  on routes with ``nhid``);
- ours: ``FibDataPlane(paths, table=200).apply(desired)`` (validation, diff, encoding and
  sending included; building the `Desired` is not), a ``reconcile`` with nothing to repair
  (one dump), one with 1% of the routes deleted by hand, and ``stop``.

Goal from issue 5: apply ≤ 1.1× ``ip -batch``. ``BENCH_FIB_SIZES=100000`` runs fewer sizes.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import tempfile
import time
import uuid

from bench.harness import Figure
from pathsteer.dataplane.fib import FibDataPlane
from pathsteer.dataplane.fib_plan import RTPROT_PATHSTEER, path_nh_id
from pathsteer.dataplane.routes import Desired, NextHop, PathLink, RouteIntent

TABLE = 200
SIZES = tuple(int(s) for s in os.environ.get("BENCH_FIB_SIZES", "100000,1000000").split(","))
PATHS = [PathLink("p1", 1, "bf1", ipaddress.IPv4Address("10.200.1.2")),
         PathLink("p2", 2, "bf2", ipaddress.IPv4Address("10.200.2.2"))]


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def fresh_netns() -> str:
    ns = f"psbf-{uuid.uuid4().hex[:8]}"
    sh("ip", "netns", "add", ns)
    for p in PATHS:
        sh("ip", "-n", ns, "link", "add", "name", p.interface, "type", "veth", "peer", "name", p.interface + "x")
        for dev in (p.interface, p.interface + "x"):
            sh("ip", "-n", ns, "link", "set", "dev", dev, "up")
        sh("ip", "-n", ns, "addr", "add", f"10.200.{p.id}.1/24", "dev", p.interface)
    return ns


def prefixes(n: int) -> list[ipaddress.IPv4Network]:
    """``n`` distinct /24s spread over 1.0.0.0-223.255.255.0 (i * odd mod 2^24 is a bijection)."""
    out, i = [], 0
    while len(out) < n:
        base = ((i * 7919) % (1 << 24)) << 8
        i += 1
        if 0x01000000 <= base < 0xE0000000 and not 0x0AC80000 <= base < 0x0AC90000:
            out.append(ipaddress.IPv4Network((base, 24)))
    return out


def anchor(nets: list[ipaddress.IPv4Network]) -> tuple[float, float]:
    """Seconds of ``ip -batch`` adding the routes and deleting them, fresh namespace."""
    ns = fresh_netns()
    try:
        nh = path_nh_id(1, 4)
        sh("ip", "-n", ns, "nexthop", "add", "id", str(nh), "via", "10.200.1.2", "dev", "bf1")
        with tempfile.NamedTemporaryFile("w", suffix=".batch") as f:
            f.write("".join(f"route replace {n} table {TABLE} proto {RTPROT_PATHSTEER} nhid {nh}\n" for n in nets))
            f.flush()
            t0 = time.perf_counter()
            sh("ip", "-n", ns, "-batch", f.name)
            program = time.perf_counter() - t0
        with tempfile.NamedTemporaryFile("w", suffix=".batch") as f:
            f.write("".join(f"route del {n} table {TABLE}\n" for n in nets))
            f.flush()
            t0 = time.perf_counter()
            sh("ip", "-n", ns, "-batch", f.name)
            return program, time.perf_counter() - t0
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def ours(nets: list[ipaddress.IPv4Network]) -> dict[str, float]:
    ns = fresh_netns()
    try:
        hop = (NextHop("p1"),)
        desired = Desired({n: RouteIntent(n, hop) for n in nets})
        fib = FibDataPlane(PATHS, table=TABLE, netns=ns)
        out = {}
        t0 = time.perf_counter()
        fib.apply(desired)
        out["apply"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        repaired = fib.reconcile(desired)       # after our own nexthop/rule changes: a full dump
        out["reconcile"] = time.perf_counter() - t0
        assert not repaired, repaired[:3]
        t0 = time.perf_counter()
        repaired = fib.reconcile(desired)       # nothing happened since: notifications only
        out["quiet"] = time.perf_counter() - t0
        assert not repaired, repaired[:3]
        gone = nets[:: 100]
        with tempfile.NamedTemporaryFile("w", suffix=".batch") as f:
            f.write("".join(f"route del {n} table {TABLE}\n" for n in gone))
            f.flush()
            sh("ip", "-n", ns, "-batch", f.name)
        t0 = time.perf_counter()
        repaired = fib.reconcile(desired)
        out["repair"] = time.perf_counter() - t0
        assert len(repaired) == len(gone), (len(repaired), len(gone))
        t0 = time.perf_counter()
        fib.stop()
        out["stop"] = time.perf_counter() - t0
        fib.close()
        return out
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def main():
    for n in SIZES:
        nets = prefixes(n)
        label = f"{n // 1000}k" if n < 1_000_000 else f"{n // 1_000_000}M"
        ip_program, ip_flush = anchor(nets)
        mine = ours(nets)
        yield Figure(f"fib apply {label} routes", mine["apply"], "s", "ip -batch", ip_program, "ratio <= 1.1")
        yield Figure(f"fib stop (cleanup) {label} routes", mine["stop"], "s", "ip -batch route del", ip_flush)
        yield Figure(f"fib reconcile {label} routes, full dump, nothing to repair", mine["reconcile"], "s",
                     "ip -batch (programming)", ip_program)
        yield Figure(f"fib reconcile {label} routes, no change notified", mine["quiet"], "s",
                     "ip -batch (programming)", ip_program)
        yield Figure(f"fib reconcile {label} routes, {len(nets[::100])} deleted by hand (from notifications)",
                     mine["repair"], "s", "ip -batch (programming)", ip_program)


if __name__ == "__main__":
    for figure in main():
        print(figure.line())
