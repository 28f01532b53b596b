"""steer: test_run ns/packet per step at 1k/100k/1M prefixes, /24 table vs LPM; programming of 100k and 1M prefixes; iperf3 kernel vs bpf.

Three parts, each against an anchor measured in the same run:

1. ``BPF_PROG_TEST_RUN`` ns/packet of ``tc_steer`` for a steered TCP packet with 1k, 100k and
   1M steered /24s (two-path Maglev group), and for a packet in no prefix — anchor: the empty
   TC program (baseline ``tc_pass``: what test_run itself costs), and the foundation's
   ``tc_count_in`` counter program. Two builds of the same source, compiled into a temporary
   directory here: the shipped one (IPv4: the /24 table routes_v4_24, per-length hashes
   beyond /24; IPv6: per-length hashes over route_lengths) and
   ``-DSTEER_ROUTES_LPM=1`` (the LPM tries of the first version), each also with
   ``-DSTEER_BENCH_STOP=N`` (pass after step N of enum steer_step, run against the full
   build's maps) to price each step: heartbeat, parse, lookup, Maglev, MTU check, and the rest
   (rewrite, counters, redirect). Goal (issue 12): the steered packet at 1M prefixes costs
   <= 60 ns above the empty program, and <= 1.3x its own 1k figure. Runs in a scratch
   namespace (its loopback is the ingress and the paths' device; test_run never really transmits).
2. ``BpfSteerDataPlane.apply`` of 100k and 1M fresh /24 prefixes (Maglev tables + route
   batches + Python diffing, end to end) — anchor: ``ip -batch`` of 100k routes into a table
   (PLATFORM.md's reference for bulk programming), and the route batch alone for 1M (the
   kernel's part). Goal (issue 11): 1M in <= 2 s. At 1M also ``reconcile`` of the unchanged
   table — the daemon's every-second call with the `Desired` it applied (goal <= 0.5 s) and
   with a new, equal `Desired` (a decision that changed nothing: the full diff) — and the RSS
   of a fresh process holding a 1M `Desired` and then the plane at 1M (anchor: the same
   process with the `Desired` only).
3. iperf3 (4 streams) client → router → p1 → server: kernel forwarding alone, then the same
   path chosen by the bpf data plane (rounds alternate; medians). Goal: bpf >= 1.0x kernel.

``python -m bench steer`` runs all three; ``python -c 'import bench.bench_steer as b;
[print(f.line()) for f in b.bench_testrun()]'`` the first alone (about a minute).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time

from bench.harness import Figure
from pathsteer.bpf import BpfObject, in_netns
from pathsteer.bpf.build import BPF_SOURCE_DIR, compile_object
from pathsteer.bpf.counters import Counters, Hook
from pathsteer.dataplane.bpf_steer import BpfSteerDataPlane
from pathsteer.dataplane.bpf_steer_abi import PROGRAM, key_bytes
from pathsteer.routes import Desired, NextHop, PathLink, RouteIntent
import pathsteer_lab as lab
from pathsteer_lab import measure

REPEAT = 200_000
BURST = 250  # runs per test_run call (< the 254 TTL decrements a TTL-255 packet allows)
ROUNDS = 5
IPERF_ROUNDS = 3
DST = "198.51.100.10"
NET6, DST6 = ipaddress.ip_network("2001:db8:100::/48"), "2001:db8:100::10"  # one IPv6 prefix beside the IPv4 table


def prefixes(n: int, first: ipaddress.IPv4Network | None = None) -> list[ipaddress.IPv4Network]:
    """``n`` distinct /24s spread over the space (i * odd mod 2^24 is a bijection)."""
    out = [first] if first else []
    i = 0
    while len(out) < n:
        net = ipaddress.IPv4Network((((i * 7919) % (1 << 24)) << 8, 24))
        i += 1
        if net != first:
            out.append(net)
    return out


def desired(nets, hops=(("p1", 1), ("p2", 1))) -> Desired:
    nh = tuple(NextHop(p, w) for p, w in hops)
    return Desired({n: RouteIntent(n, nh) for n in nets})


@contextlib.contextmanager
def scratch_netns():
    name = f"psb-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "dev", "lo", "up"], check=True)
        with in_netns(name):
            yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def scratch_paths() -> list[PathLink]:
    return [PathLink(f"p{i}", i, "lo", ipaddress.ip_address(f"192.0.2.{i + 1}"), ipaddress.ip_address(f"2001:db8::{i + 1}"))
            for i in (1, 2)]


def frame(dst: str) -> bytes:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    # lo's address is 00:00:00:00:00:00: test_run then sees a PACKET_HOST frame
    return bytes(Ether(dst="00:00:00:00:00:00", src="02:00:00:00:00:02") / IP(src="10.0.0.2", dst=dst, ttl=255)
                 / TCP(sport=40000, dport=443) / (b"x" * 10))


def frame6(dst: str) -> bytes:
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    return bytes(Ether(dst="00:00:00:00:00:00", src="02:00:00:00:00:02") / IPv6(src="2001:db8:200::2", dst=dst, hlim=255)
                 / TCP(sport=40000, dport=443) / (b"x" * 10))


def ns_per_packet(program, data: bytes) -> float:
    """Median over calls of the kernel's mean ns per run. test_run repeats on one skb, and a
    steered packet leaves each run with its TTL one lower: TTL 255 and BURST runs per call
    keep every run steered (the 255th would see TTL 1 and pass to the kernel)."""
    program.test_run(data, repeat=BURST)  # warm-up
    calls = REPEAT // BURST
    return statistics.median(
        statistics.fmean(program.test_run(data, repeat=BURST).duration_ns for _ in range(calls))
        for _ in range(ROUNDS))


STEPS = ("heartbeat", "parse", "lookup", "Maglev", "MTU check")  # enum steer_step 1..5, in order
VARIANTS = {"table": {}, "LPM": {"STEER_ROUTES_LPM": 1}}  # IPv4 lookup: /24 table + hashes (shipped), the first version's tries


def build_variants(tmp: str) -> dict[tuple[str, int], str]:
    """steer.bpf.c compiled as each variant, full (stop 0) and stopped after each step."""
    source = BPF_SOURCE_DIR / "steer.bpf.c"
    out = {}
    for variant, defines in VARIANTS.items():
        for stop in range(len(STEPS) + 1):
            d = {**defines, **({"STEER_BENCH_STOP": stop} if stop else {})}
            out[variant, stop] = str(compile_object(source, f"{tmp}/steer-{variant}-{stop}.bpf.o", defines=d))
    return out


@contextlib.contextmanager
def stopped_build(path: str, prog):
    """A stop build loaded against ``prog``'s maps (the tables the full build was given)."""
    obj = BpfObject.open(path)
    try:
        for name, m in prog.maps.items():
            obj.reuse_map(name, m.fd)
        obj.load()
        yield obj.program(PROGRAM)
    finally:
        obj.close()


def interleaved(runs: dict) -> dict:
    """ns/packet of each (program, frame) in ``runs``, measured in turns (one batch of each per
    round, ROUNDS rounds, the median of each): on a shared machine the figures that are
    subtracted from each other are taken in the same seconds."""
    seen: dict = {name: [] for name in runs}
    for program, data in runs.values():
        program.test_run(data, repeat=BURST)  # warm-up
    calls = REPEAT // BURST
    for _ in range(ROUNDS):
        for name, (program, data) in runs.items():
            seen[name].append(statistics.fmean(program.test_run(data, repeat=BURST).duration_ns
                                               for _ in range(calls)))
    return {name: statistics.median(v) for name, v in seen.items()}


def measure_variant(path: dict, variant: str, n: int, empty) -> dict:
    """ns/packet at n prefixes of the full build (steered, missed, IPv6) and of each stop build
    (run against the full build's maps), in turns with the empty program ``empty``."""
    plane = BpfSteerDataPlane(scratch_paths(), ["lo"], stale_after_s=3600, object_path=path[variant, 0])
    try:
        plane.apply(desired([*prefixes(n, ipaddress.ip_network("198.51.100.0/24")), NET6]))
        prog = plane.prog.program
        with contextlib.ExitStack() as stack:
            runs = {"empty": (empty, frame(DST)), "steered": (prog, frame(DST)), "missed": (prog, frame("240.0.0.1")),
                    "steered6": (prog, frame6(DST6))}
            for stop in range(1, len(STEPS) + 1):
                runs[stop] = (stack.enter_context(stopped_build(path[variant, stop], plane.prog)), frame(DST))
            out = interleaved(runs)
        totals = plane.path_totals()
        assert sum(t.packets for t in totals.values()) >= REPEAT * ROUNDS, totals
    finally:
        plane.stop()
    return out


def bench_testrun() -> list[Figure]:
    figures = []
    empty = "empty TC program (baseline tc_pass)"
    with tempfile.TemporaryDirectory(prefix="pathsteer-bench-") as tmp, scratch_netns():
        path = build_variants(tmp)
        with Counters.load() as counters:
            count = ns_per_packet(counters.programs[Hook.TC_INGRESS], frame(DST))
        got = {}
        base = BpfObject.open("baseline")
        try:
            base.load()
            for n in (1_000, 100_000, 1_000_000):
                for variant in VARIANTS:
                    got[variant, n] = measure_variant(path, variant, n, base.program("tc_pass"))
        finally:
            base.close()
        for n in (1_000, 100_000, 1_000_000):
            for variant in VARIANTS:
                r = got[variant, n]
                anchor = r["empty"]
                what = f"{variant}, {n:,} prefixes"
                figures.append(Figure(f"steer test_run, steered TCP packet, {what}", r["steered"], "ns", empty, anchor))
                figures.append(Figure(f"steer test_run, packet in no prefix, {what}", r["missed"], "ns", empty, anchor))
                figures.append(Figure(f"steer test_run, steered IPv6 TCP packet (one /48), {what}", r["steered6"], "ns",
                                      empty, anchor))
                before = anchor
                for stop, step in enumerate(STEPS, 1):
                    figures.append(Figure(f"  step {stop} {step}, {what} (this build minus the one before)",
                                          r[stop] - before, "ns", empty, anchor))
                    before = r[stop]
                figures.append(Figure(f"  rest (TTL, counters, redirect), {what}", r["steered"] - before, "ns",
                                      empty, anchor))
            steered = got["table", n]["steered"]
            figures.append(Figure(f"steer test_run, steered TCP packet, table, {n:,} prefixes", steered, "ns",
                                  "counters tc_count_in", count))
        above = {k: v["steered"] - v["empty"] for k, v in got.items()}
        figures.append(Figure("steer above the empty TC program, table, 1,000,000 prefixes", above["table", 1_000_000],
                              "ns", "LPM, 1,000,000 prefixes", above["LPM", 1_000_000], goal="<= 60 ns"))
        figures.append(Figure("steer above the empty TC program, table, 1,000,000 prefixes", above["table", 1_000_000],
                              "ns", "table, 1,000 prefixes", above["table", 1_000], goal="ratio <= 1.3"))
        figures.append(Figure("steer above the empty TC program, LPM, 1,000,000 prefixes", above["LPM", 1_000_000],
                              "ns", "LPM, 1,000 prefixes", above["LPM", 1_000]))
    return figures


def ip_batch_seconds(nets) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".batch", delete=False) as f:
        for n in nets:
            f.write(f"route add {n} via 192.0.2.2 table 200\n")
        path = f.name
    try:
        subprocess.run(["ip", "link", "add", "name", "psb0", "type", "veth", "peer", "name", "psb1"], check=True)
        subprocess.run(["ip", "addr", "add", "192.0.2.1/24", "dev", "psb0"], check=True)
        subprocess.run(["ip", "link", "set", "dev", "psb0", "up"], check=True)
        t0 = time.perf_counter()
        subprocess.run(["ip", "-batch", path], check=True)
        return time.perf_counter() - t0
    finally:
        os.unlink(path)


def bench_route_batch() -> dict:
    """The routes_v4 hash batch alone (keys packed beforehand), measured first, before any large map of
    this process is being freed in the background (freeing 1M hash elements competes for the CPU)."""
    out = {}
    with scratch_netns():
        plane = BpfSteerDataPlane(scratch_paths(), ["lo"], stale_after_s=3600)
        try:
            plane.apply(Desired({}))
            for n in (100_000, 1_000_000):
                items = [(key_bytes(p), 0) for p in prefixes(n)]
                runs = []
                for _ in range(2):  # the first fill of a fresh map also grows the kernel's slabs
                    t0 = time.perf_counter()
                    plane.prog.write_routes(4, items)
                    runs.append(time.perf_counter() - t0)
                    plane.prog.delete_routes_packed(4, b"".join(k for k, _ in items))
                out[f"raw{n}"] = min(runs)
        finally:
            plane.stop()
    time.sleep(3)
    return out


def bench_programming() -> list[Figure]:
    out = bench_route_batch()
    with scratch_netns():
        anchor = ip_batch_seconds(prefixes(100_000))
        for n in (100_000, 1_000_000):
            d = desired(prefixes(n))
            plane = BpfSteerDataPlane(scratch_paths(), ["lo"], stale_after_s=3600)
            try:
                plane.apply(Desired({}))  # load and attach outside the timing
                t0, c0 = time.perf_counter(), time.process_time()
                plane.apply(d)
                out[n], out[f"cpu{n}"] = time.perf_counter() - t0, time.process_time() - c0
                if n == 1_000_000:
                    t0 = time.perf_counter()
                    repaired = plane.reconcile(d)  # the daemon's case: the Desired it applied
                    out["reconcile"] = time.perf_counter() - t0
                    assert not repaired, repaired[:3]
                    again = desired(d.routes)      # a decision that changed nothing: new objects
                    t0 = time.perf_counter()
                    repaired = plane.reconcile(again)
                    out["rediff"] = time.perf_counter() - t0
                    assert not repaired, repaired[:3]
                # a weight change for every prefix: one new table, every route value flipped
                t0 = time.perf_counter()
                plane.apply(desired(d.routes, (("p1", 2), ("p2", 1))))
                out[f"flip{n}"] = time.perf_counter() - t0
            finally:
                plane.stop()
            time.sleep(3)  # let the kernel free the old maps before the next timing
    rss = rss_in_child(1_000_000)
    return [
        Figure("bpf routes_v4 batch (write_routes: packing + bpf_map_update_batch) 1,000,000 prefixes", out["raw1000000"], "s",
               "same, 100,000 prefixes", out["raw100000"], goal="<= 2 s"),
        Figure("bpf apply 100,000 prefixes", out[100_000], "s", "ip -batch 100,000 routes", anchor),
        Figure("bpf apply 1,000,000 prefixes (end to end, Python diff included)", out[1_000_000], "s",
               "ip -batch 100,000 routes", anchor, goal="<= 2 s"),
        Figure("bpf apply 1,000,000 prefixes (end to end)", out[1_000_000], "s",
               "routes_v4 batch alone, 1,000,000 prefixes", out["raw1000000"]),
        # the machine is shared: CPU time (both threads, and the kernel's work on our behalf)
        Figure("bpf apply 1,000,000 prefixes, CPU time of the process", out["cpu1000000"], "s",
               "wall time", out[1_000_000]),
        Figure("bpf reconcile 1,000,000 prefixes, unchanged (the Desired applied)", out["reconcile"], "s",
               "bpf apply 1,000,000 prefixes", out[1_000_000], goal="<= 0.5 s"),
        Figure("bpf reconcile 1,000,000 prefixes, unchanged (a new, equal Desired: full diff)", out["rediff"], "s",
               "bpf apply 1,000,000 prefixes", out[1_000_000]),
        Figure("bpf re-point 1,000,000 prefixes to a new group", out["flip1000000"], "s",
               "ip -batch 100,000 routes", anchor),
        Figure("bpf process RSS, 1,000,000 prefixes applied", rss["applied"], "MiB",
               "same process, the 1,000,000-prefix Desired only", rss["desired"]),
    ]


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def rss_child(n: int) -> None:
    """In a fresh process: RSS with a ``n``-prefix Desired, then with it applied and reconciled."""
    out = {"start": rss_mib()}
    d = desired(prefixes(n))
    out["desired"] = rss_mib()
    with scratch_netns():
        plane = BpfSteerDataPlane(scratch_paths(), ["lo"], stale_after_s=3600)
        try:
            plane.apply(d)
            plane.reconcile(d)
            out["applied"] = rss_mib()
        finally:
            plane.stop()
    print(json.dumps(out))


def rss_in_child(n: int) -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", f"import bench.bench_steer as b; b.rss_child({n})"], cwd=root,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_iperf() -> list[Figure]:
    name = f"bs{secrets.token_hex(2)}"
    t = lab.up(name, 3)
    try:
        p1 = [PathLink(p.name, p.index, p.router_interface, ipaddress.ip_address(p.gateway),
                       ipaddress.ip_address(p.gateway6)) for p in t.paths]
        d = Desired({ipaddress.ip_network(x): RouteIntent(ipaddress.ip_network(x), (NextHop("p1", 1),))
                     for x in t.prefixes})
        kernel, bpf = [], []
        with measure.IperfServer(t):
            for _ in range(IPERF_ROUNDS):
                kernel.append(measure.iperf3_bps(t, DST, seconds=3, streams=4))
                with in_netns(t.router):
                    plane = BpfSteerDataPlane(p1, [t.ingress_interface], stale_after_s=60)
                    plane.apply(d)
                try:
                    before = plane.path_totals()["p1"].bytes
                    bpf.append(measure.iperf3_bps(t, DST, seconds=3, streams=4))
                    assert plane.path_totals()["p1"].bytes - before > 0, "bpf mode carried nothing"
                finally:
                    with in_netns(t.router):
                        plane.stop()
        return [Figure("iperf3 4 streams via bpf data plane (p1)", statistics.median(bpf) / 1e9, "Gbit/s",
                       "kernel forwarding (p1)", statistics.median(kernel) / 1e9, goal="ratio >= 1.0")]
    finally:
        lab.down(name)


def main():
    """Figures as each part finishes (a generator: the harness prints them as they come)."""
    for part in (bench_testrun, bench_programming, bench_iperf):
        yield from part()
