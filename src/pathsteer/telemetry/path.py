"""A path: its targets, the quorum over them, and its state. Pure; explicit ``now``."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence

from pathsteer.telemetry.config import PathProbeConfig
from pathsteer.telemetry.snapshot import PathSnapshot, PathState, TargetSnapshots, TelemetrySnapshot
from pathsteer.telemetry.state import MIN_PROBES_JUDGED, PathFigures, next_path_state
from pathsteer.telemetry.target import TargetTracker
from pathsteer.telemetry.window import MinFilter, median, rtt_stats_sorted

# How long the path's base RTT (its lowest RTT, `PathSnapshot.base_rtt_s`) remembers a minimum:
# long enough to span the minutes a path may stay full of our own traffic (whose queue lifts
# every sample then), short enough that a lasting rise of the path's own latency shows.
BASE_RTT_HORIZON_S = 300.0


def _median(values: list[float]) -> float | None:
    if len(values) <= 1:
        return values[0] if values else None
    return statistics.median(values)


class PathTracker:
    def __init__(self, config: PathProbeConfig, now: float) -> None:
        self.config = config
        self.targets: dict[str, TargetTracker] = {
            addr: TargetTracker(
                addr,
                timeout_s=config.timeout_s,
                window=config.window,
                thresholds=config.thresholds,
                now=now,
                adaptive=config.adaptive_timeout,
            )
            for addr in config.targets
        }
        self._all = list(self.targets.values())
        self._quorum = config.quorum_k
        self._resolved = False
        self.state = PathState.UNKNOWN
        self.since = now
        self.base_rtt = MinFilter(BASE_RTT_HORIZON_S)
        self._figures: PathFigures | None = None  # of the last `update`
        self._rtt_key: tuple | None = None  # (live windows and their versions, ewma) of `_rtt`
        self._rtt = None
        self._snap_key: tuple | None = None  # what `_snap` was made of
        self._snap: PathSnapshot | None = None
        self._merged_of: tuple = ()  # the live targets `_merged_rtts` is of (ids)
        self._merged_rtts: list[float] = []

    def handed_over(self) -> PathTracker:
        """This tracker, for a new engine (a reload): the measurements and the state stay, the
        probes in flight are forgotten (the new engine numbers its probes afresh)."""
        for t in self._all:
            t.handed_over()
        return self

    @property
    def name(self) -> str:
        return self.config.name

    def _live(self) -> list[TargetTracker]:
        """Targets whose figures count for the path: the non-failing ones, or all if none is."""
        live = [t for t in self._all if not t.failing]
        return live or self._all

    def figures(self, now: float) -> PathFigures:
        """The state machine's inputs. Called after every probe event: kept cheap."""
        live = self._live()
        resolved = lost = 0
        for t in live:
            t.window.trim(now)
            resolved += len(t.window)
            lost += t.window.lost
        ewmas = [t.ewma_s for t in live if t.ewma_s is not None]
        jitters = [t.jitter_s for t in live if t.jitter_s is not None]
        return PathFigures(
            failing=sum(t.failing for t in self._all),
            quorum=self._quorum,
            resolved=self._resolved or self._check_resolved(),
            loss_pct=100.0 * lost / resolved if resolved else None,
            judged_loss_pct=100.0 * lost / max(resolved, len(live) * min(self.config.window.count, MIN_PROBES_JUDGED))
            if resolved else None,
            rtt_ewma_s=_median(ewmas),
            jitter_s=_median(jitters),
            lost=lost,
        )

    def _check_resolved(self) -> bool:
        self._resolved = any(t.answered or t.lost for t in self._all)
        return self._resolved

    def answer_cannot_change_state(self) -> bool:
        """True when one more answer (that changes no target's state) cannot change the
        path's state, so the caller may skip `update`: an UP path with no RTT or jitter
        threshold (an answer never raises window loss: it adds an answer and at most
        evicts one entry)."""
        th = self.config.thresholds
        return self.state is PathState.UP and th.degraded_rtt_s is None and th.degraded_jitter_s is None

    def update(self, now: float) -> PathState:
        """Re-evaluate the state machine; call after probe events. Returns the state."""
        self._figures = self.figures(now)
        self.state, self.since = next_path_state(self.state, self.since, self._figures, self.config.thresholds, now)
        return self.state

    def _merged(self, live: list[TargetTracker]) -> list[float]:
        """The answered RTTs of the ``live`` targets' windows, ascending: one list the windows
        keep up to date as they take and drop RTTs (`ProbeWindow.mirror`), made again only
        when the live targets change — not a merge of every window at every snapshot."""
        ids = tuple(id(t) for t in live)
        if ids != self._merged_of:
            merged = sorted(itertools.chain.from_iterable(t.window.sorted_rtts() for t in live))  # runs: linear
            for t in self._all:
                t.window.mirror = None
            for t in live:
                t.window.mirror = merged
            self._merged_of, self._merged_rtts = ids, merged
        return self._merged_rtts

    def snapshot(self, now: float, updated: bool = False) -> PathSnapshot:
        """The path's figures at ``now``; ``updated``: `update` ran at ``now`` and nothing
        happened since (its figures are used as they are)."""
        if not updated or self._figures is None:
            self.update(now)
        f = self._figures
        live = self._live()
        key = (tuple((id(t.window), t.window.version) for t in live), f.rtt_ewma_s)
        if key == self._rtt_key:
            rtt = self._rtt  # no answer, loss or ageing out since the last snapshot
        else:
            ordered = live[0].window.sorted_rtts() if len(live) == 1 else self._merged(live)
            recents = [t.window.recent() for t in live]
            rtt = rtt_stats_sorted(ordered, f.rtt_ewma_s,
                                   median([m for m in (median(r) for r in recents) if m is not None]),
                                   median([r[0] for r in recents if r]))
            self._rtt_key, self._rtt = key, rtt
        if rtt.min_s is not None:
            self.base_rtt.add(now, rtt.min_s)
        captures = [t.capture(now) for t in self._all]
        key = (self.state, self.since, rtt, self.base_rtt.value(), f.jitter_s, f.loss_pct, f.failing, f.quorum)
        last = self._snap
        if last is not None and key == self._snap_key and all(a is b for a, b in zip(captures, last.targets.captures)):
            return last  # nothing changed: the same object (`decide` reuses what it judged of it)
        self._snap_key = key
        self._snap = PathSnapshot(
            name=self.name,
            state=self.state,
            since=self.since,
            rtt=rtt,
            base_rtt_s=key[3],
            jitter_s=f.jitter_s,
            loss_pct=f.loss_pct,
            failing=f.failing,
            quorum=f.quorum,
            targets=TargetSnapshots(captures),
        )
        return self._snap


def snapshot_of(paths: Sequence[PathTracker], now: float, updated: bool = False) -> TelemetrySnapshot:
    """Every path's snapshot at ``now`` (``updated``: each path's `update` ran at ``now``)."""
    return TelemetrySnapshot(taken_at=now, paths=tuple(p.snapshot(now, updated) for p in paths))
