"""A path: its targets, the quorum over them, and its state. Pure; explicit ``now``."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from pathsteer.telemetry.config import PathProbeConfig
from pathsteer.telemetry.snapshot import PathSnapshot, PathState, TelemetrySnapshot
from pathsteer.telemetry.state import PathFigures, next_path_state
from pathsteer.telemetry.target import TargetTracker
from pathsteer.telemetry.window import rtt_stats


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
            )
            for addr in config.targets
        }
        self.state = PathState.UNKNOWN
        self.since = now

    @property
    def name(self) -> str:
        return self.config.name

    def _live(self) -> list[TargetTracker]:
        """Targets whose figures count for the path: the non-failing ones, or all if none is."""
        live = [t for t in self.targets.values() if not t.failing]
        return live or list(self.targets.values())

    def figures(self, now: float) -> PathFigures:
        live = self._live()
        resolved = lost = 0
        for t in live:
            t.window.trim(now)
            resolved += len(t.window)
            lost += t.window.lost
        ewmas = [t.ewma_s for t in live if t.ewma_s is not None]
        jitters = [t.jitter_s for t in live if t.jitter_s is not None]
        return PathFigures(
            failing=sum(t.failing for t in self.targets.values()),
            quorum=self.config.quorum_k,
            resolved=any(t.answered or t.lost for t in self.targets.values()),
            loss_pct=100.0 * lost / resolved if resolved else None,
            rtt_ewma_s=statistics.median(ewmas) if ewmas else None,
            jitter_s=statistics.median(jitters) if jitters else None,
        )

    def update(self, now: float) -> PathState:
        """Re-evaluate the state machine; call after probe events. Returns the state."""
        self.state, self.since = next_path_state(
            self.state, self.since, self.figures(now), self.config.thresholds, now
        )
        return self.state

    def snapshot(self, now: float) -> PathSnapshot:
        self.update(now)
        f = self.figures(now)
        live = self._live()
        rtts: list[float] = []
        for t in live:
            rtts.extend(t.window.rtts())
        return PathSnapshot(
            name=self.name,
            state=self.state,
            since=self.since,
            rtt=rtt_stats(rtts, f.rtt_ewma_s),
            jitter_s=f.jitter_s,
            loss_pct=f.loss_pct,
            failing=f.failing,
            quorum=f.quorum,
            targets=tuple(t.snapshot(now) for t in self.targets.values()),
        )


def snapshot_of(paths: Sequence[PathTracker], now: float) -> TelemetrySnapshot:
    return TelemetrySnapshot(taken_at=now, paths=tuple(p.snapshot(now) for p in paths))
