"""Sliding window of resolved probes, and the order statistics over it. Pure; no clock."""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Sequence

from pathsteer.telemetry.snapshot import RttStats


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty sequence: the smallest value with
    at least p% of the values at or below it (p in [0, 100]; p=0 gives the minimum)."""
    if not sorted_values:
        raise ValueError("percentile of an empty sequence")
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


RECENT_PROBES = 3


def median(values: Sequence[float]) -> float | None:
    n = len(values)
    if n <= 2:  # most calls: a target's last 3 answers, a path's 2 targets
        return None if n == 0 else values[0] if n == 1 else (values[0] + values[1]) / 2
    s = sorted(values)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def rtt_stats(rtts: Sequence[float], ewma_s: float | None, recent_s: float | None = None,
              last_s: float | None = None) -> RttStats:
    return rtt_stats_sorted(sorted(rtts), ewma_s, recent_s, last_s)


def rtt_stats_sorted(s: Sequence[float], ewma_s: float | None, recent_s: float | None = None,
                     last_s: float | None = None) -> RttStats:
    """`rtt_stats` of RTTs already in ascending order (`ProbeWindow.sorted_rtts`)."""
    n = len(s)
    if not n:
        return RttStats(ewma_s=ewma_s, recent_s=recent_s, last_s=last_s)
    # `percentile` inlined (nearest rank: the ceil(p/100 × n)-th value, at least the first);
    # run for every target and path ten times a second, so the calls are worth saving (and the
    # mean is a plain sum: fsum's exactness is ~10 µs a path for digits far below a µs)
    return RttStats(ewma_s, s[0], sum(s) / n, s[max(1, math.ceil(0.5 * n)) - 1],
                    s[max(1, math.ceil(0.95 * n)) - 1], s[max(1, math.ceil(0.99 * n)) - 1], s[-1], n,
                    recent_s, last_s)


class ProbeWindow:
    """The last ``max_count`` resolved probes sent within ``max_age_s`` of now.

    Each entry is (sent_at, rtt_s or None for lost). Counts of lost entries are kept
    incrementally so loss is O(1), and the answered RTTs are kept sorted as they come and go
    (a bisect each), so order statistics cost no sort per snapshot. ``version`` changes with
    every change of the contents (a snapshot of an unchanged window can be reused).
    """

    __slots__ = ("_entries", "_lost", "_sorted", "max_count", "max_age_s", "version", "_recent", "mirror")

    def __init__(self, max_count: int, max_age_s: float) -> None:
        self._entries: deque[tuple[float, float | None]] = deque()
        self._lost = 0
        self._sorted: list[float] = []
        self.max_count = max_count
        self.max_age_s = max_age_s
        self.version = 0
        self._recent: tuple[int, list[float]] = (-1, [])  # (version, `recent()` at it)
        # A sorted list shared with other windows (a path's merged RTTs, `PathTracker`): every
        # RTT this window takes or drops is taken or dropped there too. None: no such list.
        self.mirror: list[float] | None = None

    def add(self, sent_at: float, rtt_s: float | None) -> None:
        self._entries.append((sent_at, rtt_s))
        self.version += 1
        if rtt_s is None:
            self._lost += 1
        else:
            bisect.insort(self._sorted, rtt_s)
            if self.mirror is not None:
                bisect.insort(self.mirror, rtt_s)
        while len(self._entries) > self.max_count:
            self._pop()

    def forget_lost(self) -> None:
        """Drop the lost entries (an outage's probes, once the target is back: they tell of
        the outage, which the down state reported, not of the path's loss now)."""
        if self._lost:
            self._entries = deque(e for e in self._entries if e[1] is not None)
            self._lost = 0
            self.version += 1

    def trim(self, now: float) -> None:
        horizon = now - self.max_age_s
        while self._entries and self._entries[0][0] < horizon:
            self._pop()

    def _pop(self) -> None:
        _, rtt = self._entries.popleft()
        self.version += 1
        if rtt is None:
            self._lost -= 1
        else:
            del self._sorted[bisect.bisect_left(self._sorted, rtt)]
            if self.mirror is not None:
                del self.mirror[bisect.bisect_left(self.mirror, rtt)]

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def lost(self) -> int:
        return self._lost

    def loss_pct(self) -> float | None:
        n = len(self._entries)
        return None if n == 0 else 100.0 * self._lost / n

    def rtts(self) -> list[float]:
        return [r for _, r in self._entries if r is not None]

    def sorted_rtts(self) -> list[float]:
        """The answered RTTs, ascending: the window's own list (read it, do not change it)."""
        return self._sorted

    def recent(self, n: int = RECENT_PROBES) -> list[float]:
        """The last ``n`` answered RTTs, newest first (fewer when the window has fewer). The
        default's list is kept until the window changes (read it, do not change it)."""
        if n == RECENT_PROBES and self._recent[0] == self.version:
            return self._recent[1]
        out: list[float] = []
        for _, r in reversed(self._entries):
            if r is not None:
                out.append(r)
                if len(out) == n:
                    break
        if n == RECENT_PROBES:
            self._recent = (self.version, out)
        return out


class MinFilter:
    """The lowest value seen over the last ``horizon_s`` seconds, kept in ``buckets`` buckets
    (LEDBAT's base delay, RFC 6817 §3.4.2: a running minimum that forgets old minima, so a
    lasting rise shows after at most one horizon plus one bucket and a fall at once).
    A bucket is dropped only once its newest possible value is older than the horizon, so
    nothing seen within the horizon is ever forgotten. O(buckets) memory."""

    __slots__ = ("horizon_s", "_span_s", "_buckets")

    def __init__(self, horizon_s: float, buckets: int = 10) -> None:
        if not horizon_s > 0 or buckets < 1:
            raise ValueError(f"min filter: horizon {horizon_s!r} s and {buckets!r} buckets must be positive")
        self.horizon_s = horizon_s
        self._span_s = horizon_s / buckets
        self._buckets: deque[list[float]] = deque()  # [bucket start, lowest value in it]

    def add(self, now: float, value: float) -> None:
        last = self._buckets[-1] if self._buckets else None
        if last is not None and now - last[0] < self._span_s:
            if value < last[1]:
                last[1] = value
        else:
            self._buckets.append([now, value])
        # a bucket holds values less than one span after its start (now - start < span): drop
        # it when even those are older than the horizon (written in the same form, so that
        # float rounding cannot drop a value the horizon still holds)
        oldest = now - self.horizon_s
        while self._buckets and oldest - self._buckets[0][0] >= self._span_s:
            self._buckets.popleft()

    def value(self) -> float | None:
        return min(b[1] for b in self._buckets) if self._buckets else None
