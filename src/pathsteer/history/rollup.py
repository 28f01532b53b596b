"""Per-path samples → rollups: one row per path per ``interval_s`` window. Pure.

The history's sampler reads steering's path views once a second and hands them to
`Accumulator.add`; when a sample falls in a later window than the one being filled, the
finished window's rows come back (one per path seen in it). Windows are aligned on the wall
clock (``floor(at / interval) * interval``: with 10 s, rows cover :00-:10, :10-:20, ...), so
rows of different paths and different runs line up. `Accumulator.flush` returns the window
under way (at stop, or when the interval changes), ending at the flush time.

    acc = Accumulator(10.0)
    rows = acc.add(time.time(), steer.view_paths())   # [] until a window is complete
    rows += acc.flush(time.time())
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

# Worst last: a window's worst_state is the highest rank seen. A state this table does not know
# (a later one) ranks with "unknown": worse than up, better than degraded.
STATE_RANK = {"up": 0, "drained": 1, "unknown": 2, "degraded": 3, "down": 4}
_UNKNOWN_RANK = STATE_RANK["unknown"]


def state_rank(state: str) -> int:
    return STATE_RANK.get(state, _UNKNOWN_RANK)


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values``, linear between the closest ranks (q=0.5 of
    [1, 2, 3, 4] is 2.5); None for no values."""
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _number(value: Any) -> float | None:
    """A view's figure as a float; None, booleans, NaN and anything not a number → None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or math.isinf(value):
        return None
    return float(value)


@dataclass(frozen=True)
class Rollup:
    """One path over one window. Figures are None when no sample of the window had them."""

    path: str
    start: float
    end: float
    state: str            # at the last sample
    worst_state: str      # the worst seen (STATE_RANK)
    samples: int
    rtt_p50_ms: float | None  # of the sampled RTTs (each sample: the path's robust RTT then)
    rtt_p95_ms: float | None
    rtt_max_ms: float | None
    jitter_ms: float | None   # mean
    loss_pct: float | None    # mean
    utilization_mean: float | None
    utilization_max: float | None
    in_bps: float | None      # mean
    out_bps: float | None     # mean

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _PathWindow:
    state: str = "unknown"
    worst: str = "up"
    samples: int = 0
    rtt: list[float] = field(default_factory=list)
    jitter: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    util: list[float] = field(default_factory=list)
    in_bps: list[float] = field(default_factory=list)
    out_bps: list[float] = field(default_factory=list)

    def add(self, view: Mapping[str, Any]) -> None:
        state = view.get("state")
        state = state if isinstance(state, str) and state else "unknown"
        if self.samples == 0 or state_rank(state) > state_rank(self.worst):
            self.worst = state
        self.state = state
        self.samples += 1
        for values, value in ((self.rtt, view.get("rtt_ms")), (self.jitter, view.get("jitter_ms")),
                              (self.loss, view.get("loss_pct")), (self.util, view.get("utilization"))):
            if (v := _number(value)) is not None:
                values.append(v)
        load = view.get("load")
        if isinstance(load, Mapping):
            for values, key in ((self.in_bps, "in_bps"), (self.out_bps, "out_bps")):
                if (v := _number(load.get(key))) is not None:
                    values.append(v)

    def row(self, path: str, start: float, end: float) -> Rollup:
        return Rollup(
            path=path, start=start, end=end, state=self.state, worst_state=self.worst, samples=self.samples,
            rtt_p50_ms=_round(percentile(self.rtt, 0.5)), rtt_p95_ms=_round(percentile(self.rtt, 0.95)),
            rtt_max_ms=_round(max(self.rtt, default=None)), jitter_ms=_round(_mean(self.jitter)),
            loss_pct=_round(_mean(self.loss)), utilization_mean=_round(_mean(self.util), 4),
            utilization_max=_round(max(self.util, default=None), 4), in_bps=_round(_mean(self.in_bps), 0),
            out_bps=_round(_mean(self.out_bps), 0))


class Accumulator:
    """Samples of every path for the window under way; see the module's docstring."""

    def __init__(self, interval_s: float) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be above 0, not {interval_s!r}")
        self.interval_s = float(interval_s)
        self._start: float | None = None  # the window under way (aligned)
        self._paths: dict[str, _PathWindow] = {}

    def window_of(self, at: float) -> float:
        return math.floor(at / self.interval_s) * self.interval_s

    def add(self, at: float, views: Iterable[Mapping[str, Any]]) -> list[Rollup]:
        """Add one sample of every path in ``views`` (steering's ``view_paths()``), taken at
        ``at`` (wall clock). Returns the rows of the window this sample closed, if any (a clock
        stepped backwards also closes the window under way)."""
        out: list[Rollup] = []
        window = self.window_of(at)
        if self._start is not None and window != self._start:
            out = self._rows(self._start + self.interval_s)
        if self._start is None or window != self._start:
            self._start, self._paths = window, {}
        for view in views:
            name = view.get("name")
            if isinstance(name, str) and name:
                self._paths.setdefault(name, _PathWindow()).add(view)
        return out

    def flush(self, at: float) -> list[Rollup]:
        """The window under way, ending at ``at`` (or its own end, if earlier); then empty."""
        if self._start is None:
            return []
        out = self._rows(min(max(at, self._start), self._start + self.interval_s))
        self._start, self._paths = None, {}
        return out

    def _rows(self, end: float) -> list[Rollup]:
        return [w.row(name, self._start, end) for name, w in self._paths.items() if w.samples]

    @property
    def pending(self) -> int:
        """Paths with samples in the window under way."""
        return len(self._paths)
