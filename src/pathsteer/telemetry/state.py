"""The path state machine: up / degraded / down with hysteresis, quorum and hold time.

`next_path_state` is a pure function of the current state and the path's figures; the
`PathTracker` in path.py feeds it after every probe event.
"""

from __future__ import annotations

from dataclasses import dataclass

from pathsteer.telemetry.config import Thresholds
from pathsteer.telemetry.snapshot import PathState

# Loss makes a path DEGRADED only with at least this many lost probes in its window: one lost
# probe in a small window (at start, or at a 1 s interval: 1 of 4 is "25 %") is no evidence.
MIN_LOST_TO_DEGRADE = 2
# ... and a window is judged as if it held at least this many probes per target (or its size,
# when smaller): after a restart, 2 probes lost in a 2 s blip among the first 23 are not 8.7 %
# of loss that holds the path DEGRADED until they age out of the window.
MIN_PROBES_JUDGED = 50


@dataclass(frozen=True)
class PathFigures:
    """What the state machine looks at."""

    failing: int  # targets failing now
    quorum: int  # k
    resolved: bool  # at least one probe of the path has been answered or lost
    loss_pct: float | None
    rtt_ewma_s: float | None
    jitter_s: float | None
    lost: int = MIN_LOST_TO_DEGRADE  # lost probes behind loss_pct (the default: enough)
    judged_loss_pct: float | None = None  # loss over at least MIN_PROBES_JUDGED probes (None: loss_pct)


def _at_or_above(value: float | None, limit: float | None) -> bool:
    return value is not None and limit is not None and value >= limit


def _above(value: float | None, limit: float | None) -> bool:
    return value is not None and limit is not None and value > limit


def is_degraded(current: PathState, f: PathFigures, th: Thresholds) -> bool:
    """Degraded by the enter thresholds, or, while already degraded, until every figure is
    back at or below its recover threshold (hysteresis)."""
    loss = f.loss_pct if f.judged_loss_pct is None else f.judged_loss_pct
    if current is PathState.DEGRADED:
        return (
            _above(loss, th.recover_loss_pct)
            or _above(f.rtt_ewma_s, th.recover_rtt_s)
            or _above(f.jitter_s, th.recover_jitter_s)
        )
    return (
        (_at_or_above(loss, th.degraded_loss_pct) and f.lost >= MIN_LOST_TO_DEGRADE)
        or _at_or_above(f.rtt_ewma_s, th.degraded_rtt_s)
        or _at_or_above(f.jitter_s, th.degraded_jitter_s)
    )


def desired_path_state(current: PathState, f: PathFigures, th: Thresholds) -> PathState:
    if f.failing >= f.quorum:
        return PathState.DOWN
    if not f.resolved:
        return current  # nothing measured yet (UNKNOWN stays UNKNOWN; no path goes back to it)
    return PathState.DEGRADED if is_degraded(current, f, th) else PathState.UP


def next_path_state(
    current: PathState, since: float, f: PathFigures, th: Thresholds, now: float
) -> tuple[PathState, float]:
    """(state, since) after looking at ``f`` at ``now``. A state is held at least
    ``th.hold_s`` before it changes; leaving UNKNOWN is immediate."""
    want = desired_path_state(current, f, th)
    if want is current:
        return current, since
    if current is not PathState.UNKNOWN and now - since < th.hold_s:
        return current, since
    return want, now
