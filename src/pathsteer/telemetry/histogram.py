"""Cumulative RTT histogram of every answered probe, for Prometheus (``pathsteer_path_rtt_seconds``).

The window (`pathsteer.telemetry.window.ProbeWindow`) forgets; a Prometheus histogram must count
every sample since the start, so `TargetTracker` also drops each answer's RTT into fixed buckets
here. Pure and O(log buckets) per sample; fixed memory. Read from another thread (a scrape) with
`cumulative`: a copy, never a lock (a sample landing meanwhile shows in the next scrape).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left

# Upper bounds (seconds, "le"): 2.5-5 ms apart below 50 ms, where paths are compared, coarser up to
# the 2 s timeout ceiling; +Inf is implicit (the last count): 32 buckets a path.
RTT_BUCKETS_S: tuple[float, ...] = (
    0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.0175, 0.02, 0.025, 0.03,
    0.035, 0.04, 0.045, 0.05, 0.06, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0)

# Durations of decisions and applies (seconds): 0.5 ms (a few prefixes) to 10 s (1M routes).
DURATION_BUCKETS_S: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RttHistogram:
    """Counts per bucket (a sample ``v`` goes to the first bound ``>= v``, Prometheus' ``le``)."""

    __slots__ = ("bounds", "_counts", "sum_s")

    def __init__(self, bounds: tuple[float, ...] = RTT_BUCKETS_S) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError(f"histogram bounds must be ascending and distinct, got {bounds!r}")
        self.bounds = bounds
        self._counts = array("Q", [0]) * (len(bounds) + 1)
        self.sum_s = 0.0

    def observe(self, rtt_s: float) -> None:
        self._counts[bisect_left(self.bounds, rtt_s)] += 1
        self.sum_s += rtt_s

    def cumulative(self) -> tuple[list[int], float]:
        """(count of samples ``<=`` each bound, then the total), and the sum of the samples."""
        counts, total = self._counts.tolist(), self.sum_s
        run = 0
        for i, c in enumerate(counts):
            run += c
            counts[i] = run
        return counts, total

    @property
    def count(self) -> int:
        return sum(self._counts)
