"""Passive RTT programs: ns/packet through BPF_PROG_TEST_RUN, next to the counter program.

The anchor is the foundation's counter program at TC (``tc_count_in``: one LRU per-CPU hash
lookup and two adds), run the same way in the same process; the counter program's own line
shows the empty TC program (``baseline.bpf.c``), what test_run itself costs.

Steady state (repeat=200000, one frame over and over, median of 7 calls):
- egress, repeated TSval: parse + one lookup (passive_flows, hit: same TSval as stored) —
  every data segment after the first of its TSval (Linux's TSval ticks once per ms);
- ingress, echo without entry: parse + one lookup (miss) — most ACKs, since only the first
  echo of a TSval matches;
- ingress, UDP: parse only.

Per packet that changes the map (repeat=1, since a repeated frame would find its entry there
from the second run on; median of 3000 calls, each a new TSval, the anchor run the same way):
- egress, new TSval: parse + flow lookup and update + LRU insert + aggregate lookup;
- ingress, the matching echo: parse + lookup (hit) + delete + histogram update.
A repeat=1 figure includes the kernel's per-call timer overhead, so it is compared with the
counter program measured the same way.
"""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from bench.harness import Figure, median_of
from pathsteer.bpf import Btf, TcDirection, load_object
from pathsteer.bpf.counters import Counters, Hook
from pathsteer.bpf.passive import PassiveRtt
from pathsteer.bpf import testrun

REPEAT = 200_000
ROUNDS = 7
SINGLE_RUNS = 3000  # repeat=1 calls per figure that changes the map
A, B = "192.0.2.1", "192.0.2.2"
MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}  # given: scapy would ARP for them


def ts(val: int, ecr: int) -> list:
    return [("NOP", None), ("NOP", None), ("Timestamp", (val, ecr))]


def data_frame(tsval: int) -> bytes:
    return bytes(Ether(**MACS) / IP(src=A, dst=B) / TCP(sport=40000, dport=5201, flags="PA", options=ts(tsval, 1)) / Raw(bytes(1400)))


ACK = bytes(Ether(**MACS) / IP(src=B, dst=A) / TCP(sport=5201, dport=40000, flags="A", options=ts(9, 424242)))
def echo_frame(tsecr: int) -> bytes:
    return bytes(Ether(**MACS) / IP(src=B, dst=A) / TCP(sport=5201, dport=40000, flags="A", options=ts(9, tsecr)))


UDP_FRAME = bytes(Ether(**MACS) / IP(src=B, dst=A) / UDP(sport=53, dport=4000) / Raw(bytes(50)))


def skb_context(path: Path, ifindex: int = 1) -> bytes:
    with Btf.from_file(path) as btf:
        return testrun.skb_context(btf, ifindex)


def ns_per_packet(program, frame: bytes, ctx: bytes | None = None) -> float:
    return median_of(ROUNDS, lambda: program.test_run(frame, repeat=REPEAT, ctx=ctx).duration_ns)


def single_runs(program, frames: list[bytes], ctx: bytes | None = None) -> float:
    """Median ns of one run per frame (repeat=1)."""
    durations = sorted(program.test_run(f, ctx=ctx).duration_ns for f in frames)
    return durations[len(durations) // 2]


def record_and_match(egress, ingress, ctx: bytes) -> tuple[float, float]:
    """Median ns of egress runs that each store a new TSval, and of the ingress runs that each
    match one (interleaved: send i, echo i)."""
    sent, echoed = [], []
    for i in range(SINGLE_RUNS):
        tsval = 10_000_000 + i
        sent.append(egress.test_run(data_frame(tsval), ctx=ctx).duration_ns)
        echoed.append(ingress.test_run(echo_frame(tsval), ctx=ctx).duration_ns)
    return sorted(sent)[len(sent) // 2], sorted(echoed)[len(echoed) // 2]


def main() -> list[Figure]:
    with PassiveRtt.load() as passive, Counters.load() as counters, load_object("baseline") as baseline:
        ctx = skb_context(Path(passive._obj.path))
        egress, ingress = passive.programs[TcDirection.EGRESS], passive.programs[TcDirection.INGRESS]
        anchor_prog = counters.programs[Hook.TC_INGRESS]
        empty = baseline.program("tc_pass")
        frame = data_frame(1)
        ns_per_packet(egress, frame, ctx)  # warm-up; stores TSval 1 (and the aggregate entry)
        anchor = ns_per_packet(anchor_prog, frame)
        anchor_name = f"counter program ({anchor_prog.name})"
        steady = [
            ("egress, repeated TSval (lookup hit)", ns_per_packet(egress, frame, ctx)),
            ("ingress, echo without entry (lookup miss)", ns_per_packet(ingress, ACK, ctx)),
            ("ingress, UDP (parse only)", ns_per_packet(ingress, UDP_FRAME, ctx)),
        ]
        before = passive.aggregate(1)
        record_ns, match_ns = record_and_match(egress, ingress, ctx)
        after = passive.aggregate(1)
        assert after.recorded - before.recorded == SINGLE_RUNS, (before, after)  # every run stored
        assert after.samples - before.samples == SINGLE_RUNS, (before, after)  # and every echo matched
        frames = [data_frame(20_000_000 + i) for i in range(SINGLE_RUNS)]
        anchor_single = single_runs(anchor_prog, frames)
        empty_single = single_runs(empty, frames)
        figures = [Figure(name=f"passive {name}", value=value, unit="ns", anchor_name=anchor_name,
                          anchor_value=anchor, goal="informational")
                   for name, value in steady]
        figures += [Figure(name=f"passive {name}, repeat=1", value=value, unit="ns",
                           anchor_name=f"{anchor_name}, repeat=1", anchor_value=anchor_single, goal="informational")
                    for name, value in (("egress, new TSval (insert)", record_ns),
                                        ("ingress, matching echo (sample)", match_ns))]
        figures.append(Figure(name=f"{anchor_name}", value=anchor, unit="ns",
                              anchor_name="empty tc program (tc_pass)", anchor_value=ns_per_packet(empty, frame)))
        figures.append(Figure(name=f"{anchor_name}, repeat=1", value=anchor_single, unit="ns",
                              anchor_name="empty tc program (tc_pass), repeat=1", anchor_value=empty_single))
        return figures
