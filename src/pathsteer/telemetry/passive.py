"""Passive RTT of real TCP traffic, the pure side: the kernel's log-linear histogram, running
aggregates, and the figures of the samples between two reads (unit-tested without root).

::

    kernel (pathsteer.bpf.passive: bpf/passive.bpf.c at TC egress + ingress of a path's interface)
      passive_rtt[ifindex], per CPU: samples, sum_ns, min_ns, max_ns, log-linear histogram
    this module
      RttAggregate (CPUs merged) ── interval(before, after) ──► RttInterval:
                                     samples, min/mean/p50/p95/max ns
      RttMeter: successive reads per path → per-interval figures

Times are nanoseconds (``bpf_ktime_get_ns``), and every field says so (``_ns``). The histogram
layout (``PASSIVE_LIMIT_HIST_SUB_BITS``, ``..._BUCKETS``) comes from the object's BTF (``enum
passive_limits`` in ``bpf/passive_common.h``); `bucket_of` and `bucket_bounds` implement the
formula written there, and a kernel test checks that the program puts a sample in the bucket
`bucket_of` names.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pathsteer.telemetry.snapshot import PassiveSnapshot

# --- the histogram (pure) -----------------------------------------------------------------------

def bucket_of(value_ns: int, sub_bits: int, buckets: int) -> int:
    """The log-linear bucket of ``value_ns`` (the formula of bpf/passive_common.h)."""
    if value_ns < 1 << sub_bits:
        return value_ns
    m = value_ns.bit_length() - 1
    bucket = (m - sub_bits + 1) << sub_bits | (value_ns >> (m - sub_bits)) & ((1 << sub_bits) - 1)
    return min(bucket, buckets - 1)


def bucket_bounds(bucket: int, sub_bits: int) -> tuple[int, int]:
    """[lower, upper) in ns of the values bucket ``bucket`` holds (the last bucket also holds
    everything above its upper bound)."""
    sub = 1 << sub_bits
    if bucket < sub:
        return bucket, bucket + 1
    octave, index = divmod(bucket, sub)  # octave ≥ 1: values with m = octave + sub_bits - 1
    width = 1 << (octave - 1)
    lower = (sub + index) * width
    return lower, lower + width


def percentile_ns(hist: Sequence[int], q: float, sub_bits: int) -> float | None:
    """The ``q`` quantile (0..1) of the samples counted in ``hist``, interpolated linearly
    inside the bucket where the rank falls (samples assumed spread evenly across a bucket).
    None when the histogram is empty."""
    total = sum(hist)
    if total <= 0:
        return None
    rank = min(max(q, 0.0), 1.0) * total
    seen = 0
    last = 0
    for bucket, count in enumerate(hist):
        if count <= 0:
            continue
        last = bucket
        if seen + count >= rank:
            lower, upper = bucket_bounds(bucket, sub_bits)
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    lower, upper = bucket_bounds(last, sub_bits)  # q = 1 with float rounding
    return float(upper)


# --- aggregates and intervals (pure) ------------------------------------------------------------

@dataclass(frozen=True)
class RttAggregate:
    """One interface's running aggregate, CPUs merged: what the kernel has counted so far."""

    samples: int = 0
    handshake_samples: int = 0
    sum_ns: int = 0
    min_ns: int = 0  # 0 while samples == 0
    max_ns: int = 0
    recorded: int = 0  # egress entries stored
    record_failed: int = 0  # egress entries that could not be stored
    hist: tuple[int, ...] = ()

    @classmethod
    def from_cpus(cls, per_cpu: Iterable) -> RttAggregate:
        """Merge the per-CPU values of ``passive_rtt``: counts add up, min and max are taken
        over the CPUs that have samples (a CPU without samples holds min_ns 0)."""
        per_cpu = list(per_cpu)
        with_samples = [v for v in per_cpu if v.samples]
        hist = [0] * (len(per_cpu[0].hist) if per_cpu else 0)
        for v in per_cpu:
            for i, count in enumerate(v.hist):
                if count:
                    hist[i] += count
        return cls(
            samples=sum(v.samples for v in per_cpu),
            handshake_samples=sum(v.handshake_samples for v in per_cpu),
            sum_ns=sum(v.sum_ns for v in per_cpu),
            min_ns=min((v.min_ns for v in with_samples), default=0),
            max_ns=max((v.max_ns for v in with_samples), default=0),
            recorded=sum(v.recorded for v in per_cpu),
            record_failed=sum(v.record_failed for v in per_cpu),
            hist=tuple(hist),
        )

    @property
    def mean_ns(self) -> float | None:
        return self.sum_ns / self.samples if self.samples else None


@dataclass(frozen=True)
class RttInterval:
    """RTT figures of the samples taken between two reads (None when there were none).

    ``mean_ns`` is exact (sum / count); ``p50_ns``/``p95_ns`` come from the histogram, within a
    bucket's width (≤ 1/2^sub_bits of the value: 3.1 % as built); ``min_ns``/``max_ns`` are
    exact when the interval set a new all-time extreme (or is the first), otherwise the edge of
    the interval's lowest/highest bucket, clamped by the all-time extremes."""

    samples: int
    handshake_samples: int
    recorded: int
    record_failed: int
    min_ns: float | None
    mean_ns: float | None
    p50_ns: float | None
    p95_ns: float | None
    max_ns: float | None


def interval(before: RttAggregate | None, after: RttAggregate, sub_bits: int) -> RttInterval:
    """The figures of the samples ``after`` has and ``before`` had not. A ``before`` with more
    samples than ``after`` means the kernel's entry was reset or evicted meanwhile: then all
    of ``after`` counts as the interval (as Prometheus treats a counter reset)."""
    if before is None or before.samples > after.samples or len(before.hist) != len(after.hist):
        before = RttAggregate(hist=(0,) * len(after.hist))
    samples = after.samples - before.samples
    common = dict(samples=samples, handshake_samples=after.handshake_samples - before.handshake_samples,
                  recorded=max(after.recorded - before.recorded, 0),
                  record_failed=max(after.record_failed - before.record_failed, 0))
    if samples <= 0:
        return RttInterval(**common, min_ns=None, mean_ns=None, p50_ns=None, p95_ns=None, max_ns=None)
    hist = [a - b for a, b in zip(after.hist, before.hist)]
    nonempty = [i for i, c in enumerate(hist) if c > 0]
    # An extreme the interval set is exact; otherwise the edge of its outermost bucket, within
    # the all-time extremes.
    if before.samples == 0 or after.min_ns < before.min_ns or not nonempty:
        low = float(after.min_ns)
    else:
        low = float(max(bucket_bounds(nonempty[0], sub_bits)[0], after.min_ns))
    if before.samples == 0 or after.max_ns > before.max_ns or not nonempty:
        high = float(after.max_ns)
    else:
        high = float(min(bucket_bounds(nonempty[-1], sub_bits)[1] - 1, after.max_ns))
    high = max(high, low)

    def clamp(v: float | None) -> float | None:
        return None if v is None else min(max(v, low), high)

    return RttInterval(**common, min_ns=low, mean_ns=(after.sum_ns - before.sum_ns) / samples,
                       p50_ns=clamp(percentile_ns(hist, 0.50, sub_bits)),
                       p95_ns=clamp(percentile_ns(hist, 0.95, sub_bits)), max_ns=high)


class RttMeter:
    """Successive reads → per-interval figures, per path (pure: give it the reads)."""

    def __init__(self, sub_bits: int) -> None:
        self.sub_bits = sub_bits
        self._last: dict[str, RttAggregate] = {}

    def update(self, reads: Mapping[str, RttAggregate]) -> dict[str, RttInterval]:
        """The interval since the previous `update` for every path in ``reads`` (the first
        read of a path covers everything the kernel counted before it)."""
        out = {name: interval(self._last.get(name), agg, self.sub_bits) for name, agg in reads.items()}
        self._last.update(reads)
        return out




class PassiveWindow:
    """A path's passive RTT over the last ``window_s`` (pure: give it the kernel's running
    aggregate with the time it was read). The figures are those of the samples between the
    read nearest ``window_s`` ago and the latest one, so a change of the path's RTT shows in
    the median within about half a window.

    When the last window had no traffic, the figures of the last one that had are given, with
    their age, for ``memory_s``: a path traffic left because real traffic found it slow keeps
    that figure while its (sparser) probes catch up, instead of looking fast again on them."""

    def __init__(self, sub_bits: int, window_s: float = 1.0, memory_s: float = 30.0) -> None:
        self.sub_bits = sub_bits
        self.window_s = window_s
        self.memory_s = memory_s
        self._reads: deque[tuple[float, RttAggregate]] = deque()
        self._busy: tuple[float, PassiveSnapshot] | None = None  # the last window with samples

    def update(self, now: float, aggregate: RttAggregate) -> None:
        reads = self._reads
        if reads and aggregate.samples < reads[-1][1].samples:
            reads.clear()  # the kernel's entry was reset: start again
        reads.append((now, aggregate))
        while len(reads) > 2 and reads[1][0] <= now - self.window_s:
            reads.popleft()  # keep one read at or before the window's start

    def snapshot(self) -> PassiveSnapshot | None:
        """None before two reads."""
        if len(self._reads) < 2:
            return None
        (t0, before), (t1, after) = self._reads[0], self._reads[-1]
        iv = interval(before, after, self.sub_bits)

        def s(ns: float | None) -> float | None:
            return None if ns is None else ns / 1e9

        snap = PassiveSnapshot(window_s=t1 - t0, samples=iv.samples, min_s=s(iv.min_ns), mean_s=s(iv.mean_ns),
                               p50_s=s(iv.p50_ns), p95_s=s(iv.p95_ns), max_s=s(iv.max_ns),
                               total_samples=after.samples)
        if iv.samples:
            self._busy = (t1, snap)
            return snap
        if self._busy is not None and t1 - self._busy[0] <= self.memory_s:
            at, busy = self._busy
            return dataclasses.replace(busy, age_s=t1 - at, total_samples=after.samples)
        return snap
