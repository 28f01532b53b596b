"""Lab throughput: TCP through the router and an unimpaired path, and through the delay line.

Figures (each beside an anchor measured in the same run):
- lab TCP (iperf3, 4 streams, client → router → p1 → server) against the same iperf3 run over
  a direct veth pair between two namespaces;
- TCP through the delay line (p1 with 1 ms delay each way) against the unimpaired p1;
- TCP with the BPF counter program attached (TC ingress + egress on the router's r-c and r-p1)
  against the same run without it;
- ``lab up`` time with 64 paths against 3 paths.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time

from bench.harness import Figure
from pathsteer.bpf.counters import Counters, Hook
from pathsteer.bpf.netns import in_netns
import pathsteer_lab as lab
from pathsteer_lab import measure, netns

SECONDS = 5
STREAMS = 4


def _iperf_direct() -> float:
    """The same iperf3 run over one veth pair between two fresh namespaces."""
    tag = secrets.token_hex(3)
    a, b = f"psb-{tag}-a", f"psb-{tag}-b"
    netns.ip_batch(None, [f"netns add {a}", f"netns add {b}"])
    server = None
    try:
        netns.ip_batch(a, ["link set dev lo up", f"link add name va type veth peer name vb netns {b}",
                           "addr add 10.99.0.1/24 dev va", "link set dev va up"])
        netns.ip_batch(b, ["link set dev lo up", "addr add 10.99.0.2/24 dev vb", "link set dev vb up"])
        server = netns.popen(b, ["iperf3", "-s", "-p", "5201"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        proc = netns.run(a, ["iperf3", "-c", "10.99.0.2", "-t", str(SECONDS), "-P", str(STREAMS), "-J"],
                         timeout=SECONDS + 30)
        return float(json.loads(proc.stdout)["end"]["sum_received"]["bits_per_second"])
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        netns.ip_batch(None, [f"netns del {a}", f"netns del {b}"], force=True)


def _iperf_with_counters(t: lab.Topology) -> tuple[float, bool]:
    """iperf3 with the counter program on both router interfaces the flow crosses.

    Returns the throughput and whether the counters saw at least the bytes iperf3 reports
    (they count L2 frames, so they must see more than the TCP payload)."""
    router = t.namespaces["router"]
    with in_netns(router):
        counters = Counters.load()
        try:
            for iface in (t.ingress_interface, t.path("p1").router_interface):
                counters.attach(iface, hooks=(Hook.TC_INGRESS, Hook.TC_EGRESS))
            bps = measure.iperf3_bps(t, t.server_addresses[0], seconds=SECONDS, streams=STREAMS)
            seen = counters.totals(t.ingress_interface, Hook.TC_INGRESS).bytes * 8
            ok = seen >= 0.9 * bps * SECONDS
            for iface in (t.ingress_interface, t.path("p1").router_interface):
                counters.detach(iface)
        finally:
            counters.close()
    return bps, ok


def main() -> list[Figure]:
    name = f"bench{secrets.token_hex(2)}"
    t0 = time.perf_counter()
    t = lab.up(name, 3)
    up3 = time.perf_counter() - t0
    try:
        with measure.IperfServer(t):
            plain = measure.iperf3_bps(t, t.server_addresses[0], seconds=SECONDS, streams=STREAMS)
            lab.set_path(name, "p1", delay="1ms")
            delayed = measure.iperf3_bps(t, t.server_addresses[0], seconds=SECONDS, streams=STREAMS)
            lab.set_path(name, "p1", delay=0)
            counted, counted_ok = _iperf_with_counters(t)
            # Measure the plain figure again after the counted one: the anchor is their mean, so
            # a drift of the machine's load during the run does not land on one side only.
            plain_after = measure.iperf3_bps(t, t.server_addresses[0], seconds=SECONDS, streams=STREAMS)
    finally:
        lab.down(name)
    direct = _iperf_direct()
    name64 = f"bench{secrets.token_hex(2)}"
    t0 = time.perf_counter()
    lab.up(name64, 64)
    up64 = time.perf_counter() - t0
    lab.down(name64)
    return [
        Figure("lab TCP client→router→p1→server, 4 streams", plain / 1e9, "Gbit/s",
               "direct veth pair", direct / 1e9, goal="≥ 0.5 Gbit/s"),
        Figure("lab TCP with BPF counters on r-c and r-p1" + ("" if counted_ok else " (COUNTS SHORT)"),
               counted / 1e9, "Gbit/s", "same lab without counters (before and after)",
               (plain + plain_after) / 2e9, goal="ratio ≥ 0.9"),
        Figure("lab TCP through the delay line (p1, 1 ms each way)", delayed / 1e9, "Gbit/s",
               "unimpaired p1", plain / 1e9),
        Figure("lab up, 64 paths", up64, "s", "lab up, 3 paths", up3),
    ]
