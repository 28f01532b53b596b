"""Counter programs: ns/packet through BPF_PROG_TEST_RUN, XDP and TC, next to an empty program.

The anchor is ``bpf/baseline.bpf.c`` (return the pass verdict, nothing else) run the same way
in the same process: what test_run itself costs per packet. The difference is what counting
adds: one LRU per-CPU hash lookup and two adds.
"""

from __future__ import annotations

from bench.harness import Figure, median_of
from pathsteer.bpf import load_object
from pathsteer.bpf.counters import Counters, Hook

REPEAT = 200_000  # runs per test_run call; the kernel reports the mean ns per run
ROUNDS = 7  # median of this many calls
FRAME = bytes.fromhex("020000000001020000000002" "0800") + bytes(50)  # a 64-byte frame


def ns_per_packet(program) -> float:
    return median_of(ROUNDS, lambda: program.test_run(FRAME, repeat=REPEAT).duration_ns)


def main() -> list[Figure]:
    with Counters.load() as counters, load_object("baseline") as baseline:
        anchors = {"xdp": baseline.program("xdp_pass"), "tc": baseline.program("tc_pass")}
        figures = []
        for hook, kind in ((Hook.XDP, "xdp"), (Hook.TC_INGRESS, "tc")):
            prog = counters.programs[hook]
            ns_per_packet(prog)  # warm-up: creates the map entry, faults pages in
            value = ns_per_packet(prog)
            anchor = ns_per_packet(anchors[kind])
            figures.append(Figure(
                name=f"counters {hook.value} ({prog.name}) per packet",
                value=value, unit="ns",
                anchor_name=f"empty {kind} program ({anchors[kind].name})", anchor_value=anchor,
                goal="counting adds <= 40 ns/packet",
            ))
            total = counters.totals("lo", hook)
            assert total.packets >= REPEAT * ROUNDS, total  # the runs really went through the program
        return figures
