"""steer: test_run ns/packet at 1k and 1M prefixes; LPM programming of 100k and 1M prefixes; iperf3 kernel vs bpf.

Three parts, each against an anchor measured in the same run:

1. ``BPF_PROG_TEST_RUN`` ns/packet of ``tc_steer`` for a steered TCP packet with 1k and 1M
   steered /24s (two-path Maglev group), and for a packet in no prefix — anchor: the
   foundation's ``tc_count_in`` counter program. Runs in a scratch namespace (its loopback is
   the ingress and the paths' device; test_run never really transmits).
2. ``BpfSteerDataPlane.apply`` of 100k and 1M fresh /24 prefixes (Maglev tables + trie
   batches + Python diffing, end to end) — anchor: ``ip -batch`` of 100k routes into a table
   (PLATFORM.md's reference for bulk programming). Goal: 1M in <= 2 s.
3. iperf3 (4 streams) client → router → p1 → server: kernel forwarding alone, then the same
   path chosen by the bpf data plane (rounds alternate; medians). Goal: bpf >= 1.0x kernel.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import statistics
import subprocess
import tempfile
import time

from bench.harness import Figure
from pathsteer import lab
from pathsteer.bpf import in_netns
from pathsteer.bpf.counters import Counters, Hook
from pathsteer.dataplane.bpf_steer import BpfSteerDataPlane
from pathsteer.dataplane.bpf_steer_abi import key_bytes
from pathsteer.dataplane.routes import Desired, NextHop, PathLink, RouteIntent
from pathsteer.lab import measure

REPEAT = 200_000
BURST = 250  # runs per test_run call (< the 254 TTL decrements a TTL-255 packet allows)
ROUNDS = 5
IPERF_ROUNDS = 3
DST = "198.51.100.10"


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
    return [PathLink(f"p{i}", i, "lo", ipaddress.ip_address(f"192.0.2.{i + 1}"), None) for i in (1, 2)]


def frame(dst: str) -> bytes:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    # lo's address is 00:00:00:00:00:00: test_run then sees a PACKET_HOST frame
    return bytes(Ether(dst="00:00:00:00:00:00", src="02:00:00:00:00:02") / IP(src="10.0.0.2", dst=dst, ttl=255)
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


def bench_testrun() -> list[Figure]:
    figures = []
    with scratch_netns():
        with Counters.load() as counters:
            anchor = ns_per_packet(counters.programs[Hook.TC_INGRESS], frame(DST))
        for n in (1_000, 1_000_000):
            plane = BpfSteerDataPlane(scratch_paths(), ["lo"], stale_after_s=3600)
            try:
                plane.apply(desired(prefixes(n, ipaddress.ip_network("198.51.100.0/24"))))
                prog = plane.prog.program
                steered = ns_per_packet(prog, frame(DST))
                missed = ns_per_packet(prog, frame("240.0.0.1"))
                totals = plane.path_totals()
                assert sum(t.packets for t in totals.values()) >= REPEAT * ROUNDS, totals
            finally:
                plane.stop()
            figures.append(Figure(f"steer test_run, steered TCP packet, {n:,} prefixes", steered, "ns",
                                  "counters tc_count_in", anchor))
            figures.append(Figure(f"steer test_run, packet in no prefix, {n:,} prefixes", missed, "ns",
                                  "counters tc_count_in", anchor))
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


def bench_lpm_batch() -> dict:
    """The trie batch alone (keys packed beforehand), measured first, before any large map of
    this process is being freed in the background (freeing 1M trie nodes competes for the CPU)."""
    out = {}
    with scratch_netns():
        plane = BpfSteerDataPlane(scratch_paths(), ["lo"], stale_after_s=3600)
        try:
            plane.apply(Desired({}))
            for n in (100_000, 1_000_000):
                items = [(key_bytes(p), 0) for p in prefixes(n)]
                t0 = time.perf_counter()
                plane.prog.write_routes(4, items)
                out[f"raw{n}"] = time.perf_counter() - t0
                plane.prog.delete_routes(4, (k for k, _ in items))
        finally:
            plane.stop()
    time.sleep(3)
    return out


def bench_programming() -> list[Figure]:
    out = bench_lpm_batch()
    with scratch_netns():
        anchor = ip_batch_seconds(prefixes(100_000))
        for n in (100_000, 1_000_000):
            d = desired(prefixes(n))
            plane = BpfSteerDataPlane(scratch_paths(), ["lo"], stale_after_s=3600)
            try:
                plane.apply(Desired({}))  # load and attach outside the timing
                t0 = time.perf_counter()
                plane.apply(d)
                out[n] = time.perf_counter() - t0
                # a weight change for every prefix: one new table, every trie value flipped
                t0 = time.perf_counter()
                plane.apply(desired(d.routes, (("p1", 2), ("p2", 1))))
                out[f"flip{n}"] = time.perf_counter() - t0
            finally:
                plane.stop()
            time.sleep(3)  # let the kernel free the old maps before the next timing
    return [
        Figure("bpf LPM batch (bpf_map_update_batch) 1,000,000 prefixes", out["raw1000000"], "s",
               "same, 100,000 prefixes", out["raw100000"], goal="<= 2 s"),
        Figure("bpf apply 100,000 prefixes", out[100_000], "s", "ip -batch 100,000 routes", anchor),
        Figure("bpf apply 1,000,000 prefixes (end to end, Python diff included)", out[1_000_000], "s",
               "ip -batch 100,000 routes", anchor),
        Figure("bpf re-point 1,000,000 prefixes to a new group", out["flip1000000"], "s",
               "ip -batch 100,000 routes", anchor),
    ]


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
