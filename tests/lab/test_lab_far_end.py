"""`far_end_threads`: the CPU benchmarks' lab, whose far end (the paths' forwarding and the
server's answers) runs in kernel threads of its own instead of inside the router's sendto()."""

from __future__ import annotations

import os
import resource
import subprocess
import time

import pytest

from pathsteer_lab import measure
from pathsteer_lab.build import far_end_threads


def _threaded(t, p) -> str:
    return t.run(p.namespace, ["cat", "/sys/class/net/p-r/threaded"]).stdout.strip()


def test_paths_still_answer_and_each_far_end_has_its_thread(lab3):
    far_end_threads(lab3)
    for p in lab3.paths:
        assert _threaded(lab3, p) == "1"
        r = measure.ping(lab3, p.probe_address, count=5, interval=0.02)
        assert r.received == 5
    # the kernel's NAPI threads of the lab's paths exist (named napi/p-r-<id>)
    names = [open(f"/proc/{pid}/comm").read().strip() for pid in os.listdir("/proc") if pid.isdigit()
             and os.path.exists(f"/proc/{pid}/comm")]
    assert sum(n.startswith("napi/p-r") for n in names) >= len(lab3.paths)


def test_the_sender_no_longer_pays_the_far_end(lab_factory):
    """The same pings cost the pinging processes less once the far end has its threads (the
    path's forwarding and the server's answer leave the sender's sendto())."""
    t = lab_factory(8)

    def ping_cpu() -> float:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        procs = [t.popen("router", ["ping", "-q", "-n", "-I", p.router_interface, "-i", "0.005", "-w", "3",
                                    p.probe_address], stdout=subprocess.DEVNULL) for p in t.paths]
        for proc in procs:
            proc.wait(timeout=30)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return after.ru_stime - before.ru_stime

    plain = min(ping_cpu() for _ in range(2))
    far_end_threads(t)
    time.sleep(0.2)
    threaded = min(ping_cpu() for _ in range(2))
    if plain < 0.05:
        pytest.skip(f"the pings' system time is too small to compare here ({plain:.3f} s)")
    assert threaded < plain, (plain, threaded)
