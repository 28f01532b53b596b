"""Per-path load: throughput in and out of each path's interface, and utilization against the
path's configured capacity, from the per-interface counters (``pathsteer.bpf.counters``).

::

    Counters (TC ingress + egress on r-pN) ── Counters.samples() ──► CounterSample(at_s, rx, tx)
    two samples of a path ── path_load() ──► PathLoad: in/out bit/s, packets/s, utilization

"in" is what arrives on the path's interface (TC ingress: from the path towards us), "out" what
leaves by it (TC egress: towards the path). Bits are what the counters count: skb lengths at
TC, Ethernet header included, no FCS, preamble or inter-frame gap. A GSO packet (up to 64 KiB
with one set of headers, as on veth) counts as one, so there the figure is within a fraction
of a percent of TCP goodput; counted as 1514-byte frames (GRO off, real NIC ingress) a
transfer's goodput is about 4.6 % below it (1448 payload bytes per frame).

Everything here is pure (explicit times; unit-tested without root): the counters are read on
the kernel side (`pathsteer.bpf.counters.Counters.samples`), which feeds `LoadMeter.update`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace

# How far back `PathLoad.recent_peak_bps` looks. The weighted policy counts a path as room for
# spill-over only when it stayed clearly under its ceiling that long: a full path's 1 s figure
# dips by 20-25 points when its TCP flows back off together after a tail drop (the lab: 74 %
# beside 99 %, twice in a row), and taking such a dip for room moved a fifth of the flows.
RECENT_PEAK_S = 5.0


@dataclass(frozen=True)
class Totals:
    """Packets and bytes (L2 frame length) of one counter, summed over all CPUs."""

    packets: int = 0
    bytes: int = 0

    def __add__(self, other: Totals) -> Totals:
        return Totals(self.packets + other.packets, self.bytes + other.bytes)

    def __sub__(self, other: Totals) -> Totals:
        return Totals(self.packets - other.packets, self.bytes - other.bytes)


@dataclass(frozen=True)
class PathCapacity:
    """Where a path's traffic is counted and how much it can carry (bit/s, each direction;
    0 = unknown, then no utilization is computed)."""

    interface: str
    capacity_bps: int = 0
    # How far back `PathLoad.peak_bps` looks: the span of the path's probe-loss window (the
    # loss a full queue caused stays in the window that long; see `policy.candidates`).
    memory_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.memory_s >= 0:
            raise ValueError(f"load memory of {self.interface}: {self.memory_s!r} s must be 0 or more")
        if isinstance(self.capacity_bps, bool) or not isinstance(self.capacity_bps, int) or self.capacity_bps < 0:
            raise ValueError(f"capacity of {self.interface}: {self.capacity_bps!r} is not a bit rate "
                             "(whole bit/s >= 0)")


@dataclass(frozen=True)
class CounterSample:
    """One read of a path's counters at monotonic time ``at_s`` (seconds)."""

    at_s: float
    rx: Totals  # TC ingress: arrived from the path
    tx: Totals  # TC egress: sent into the path


@dataclass(frozen=True)
class PathLoad:
    """A path's load over one interval."""

    interval_s: float
    in_bps: float
    out_bps: float
    in_pps: float
    out_pps: float
    capacity_bps: int  # 0: unknown
    # The busier direction's highest rate over the meter's memory (this interval included);
    # None: not tracked (a single interval's figure).
    peak_bps: float | None = None
    # The same over the last `RECENT_PEAK_S` only.
    recent_peak_bps: float | None = None

    @property
    def peak_utilization(self) -> float | None:
        """The highest utilization over the meter's memory (`utilization` when not tracked)."""
        if not self.capacity_bps:
            return None
        peak = max(self.in_bps, self.out_bps, self.peak_bps or 0.0)
        return peak / self.capacity_bps

    @property
    def in_utilization(self) -> float | None:
        """in_bps / capacity (1.0 = full); None when the capacity is unknown."""
        return self.in_bps / self.capacity_bps if self.capacity_bps else None

    @property
    def out_utilization(self) -> float | None:
        return self.out_bps / self.capacity_bps if self.capacity_bps else None

    @property
    def utilization(self) -> float | None:
        """The busier direction's utilization."""
        return max(self.in_bps, self.out_bps) / self.capacity_bps if self.capacity_bps else None


def _delta(before: Totals, after: Totals) -> Totals:
    """after - before; a counter that went backwards was reset (its map entry deleted or evicted):
    then everything ``after`` holds is new (as Prometheus' rate() treats a counter reset)."""
    if after.packets < before.packets or after.bytes < before.bytes:
        return after
    return after - before


def throughput_bps(before: Totals, after: Totals, seconds: float) -> float:
    """Bits per second between two reads of one counter ``seconds`` apart."""
    if not seconds > 0:
        raise ValueError(f"interval must be positive, got {seconds!r} s")
    return _delta(before, after).bytes * 8 / seconds


def path_load(before: CounterSample, after: CounterSample, capacity_bps: int = 0) -> PathLoad:
    """The load between two samples of one path (``after`` later than ``before``)."""
    seconds = after.at_s - before.at_s
    if not seconds > 0:
        raise ValueError(f"samples are not in time order ({before.at_s} then {after.at_s})")
    rx, tx = _delta(before.rx, after.rx), _delta(before.tx, after.tx)
    return PathLoad(interval_s=seconds, in_bps=rx.bytes * 8 / seconds, out_bps=tx.bytes * 8 / seconds,
                    in_pps=rx.packets / seconds, out_pps=tx.packets / seconds, capacity_bps=capacity_bps)


class LoadMeter:
    """Per-path load from successive counter samples.

    ``paths`` maps a path name to its `PathCapacity`. `update` is pure: the kernel side
    (`pathsteer.bpf.counters.Counters.samples`) reads the counters and gives it the samples."""

    def __init__(self, paths: Mapping[str, PathCapacity]) -> None:
        self.paths = dict(paths)
        self._last: dict[str, CounterSample] = {}
        self._recent: dict[str, deque[tuple[float, float]]] = {}  # (end of interval, busier bit/s)

    def update(self, samples: Mapping[str, CounterSample]) -> dict[str, PathLoad]:
        """The load since the previous sample of each path given (paths seen for the first
        time only remember their sample)."""
        out = {}
        for name, sample in samples.items():
            last = self._last.get(name)
            if last is not None and sample.at_s > last.at_s:
                load = path_load(last, sample, self.paths[name].capacity_bps)
                recent = self._recent.setdefault(name, deque())
                recent.append((sample.at_s, max(load.in_bps, load.out_bps)))
                memory = self.paths[name].memory_s
                while recent and recent[0][0] < sample.at_s - max(memory, RECENT_PEAK_S):
                    recent.popleft()
                out[name] = replace(load, peak_bps=max(bps for at, bps in recent if at >= sample.at_s - memory),
                                    recent_peak_bps=max(bps for at, bps in recent if at >= sample.at_s - RECENT_PEAK_S))
            self._last[name] = sample
        return out

    def last(self) -> dict[str, CounterSample]:
        """The latest sample of each path: its totals since the counters were attached (metrics)."""
        return dict(self._last)
