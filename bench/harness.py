"""The benchmark harness: a figure, its anchor, and one line of output each."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Figure:
    """One measured figure beside the anchor it is compared with (same run, same machine)."""

    name: str
    value: float
    unit: str
    anchor_name: str
    anchor_value: float
    goal: str = ""  # e.g. "ratio <= 1.1" — informational; benchmarks do not fail

    @property
    def ratio(self) -> float:
        return self.value / self.anchor_value if self.anchor_value else float("inf")

    def line(self) -> str:
        goal = f"  goal: {self.goal}" if self.goal else ""
        return (
            f"{self.name}: {self.value:.4g} {self.unit}  "
            f"anchor {self.anchor_name}: {self.anchor_value:.4g} {self.unit}  "
            f"ratio {self.ratio:.3f}{goal}"
        )

    def as_json(self) -> str:
        return json.dumps({**asdict(self), "ratio": self.ratio})


def median_of(runs: int, fn: Callable[[], float]) -> float:
    """Median of ``runs`` calls of ``fn`` (each returning one measurement)."""
    return statistics.median(fn() for _ in range(runs))


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
