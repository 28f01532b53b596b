"""What one policy returns for one prefix on one call (`Step`), and helpers all policies share."""

from __future__ import annotations

from dataclasses import dataclass

from pathsteer.routes import NextHop
from pathsteer.policy.candidates import Candidate
from pathsteer.policy.state import ChangeKind, PrefixState, Shift

EPSILON_S = 1e-9  # float slack when comparing a held time with hold_down


@dataclass(frozen=True)
class Step:
    """``kind``/``reason`` None: the choice stands as it was (its since, kind and reason kept).
    A Step with a kind but the same next hops re-labels the choice without moving traffic."""

    nexthops: tuple[NextHop, ...]
    kind: ChangeKind | None = None
    reason: str | None = None
    winning: tuple[tuple[str, float], ...] = ()
    rebalance_since: float | None = None
    pending: str | None = None
    shift: Shift | None = None  # weighted: the last rebalance, while the load has not answered it


def held_for(now: float, since: float, hold_down_s: float) -> bool:
    return now - since >= hold_down_s - EPSILON_S


def track(now: float, prev: PrefixState, paths: list[str]) -> tuple[tuple[str, float], ...]:
    """(path, since) for each of ``paths``: since when it has been winning without a break."""
    out = []
    for p in paths:
        since = prev.winning_since(p)
        out.append((p, now if since is None else since))
    return tuple(out)


def find(candidates: tuple[Candidate, ...], path: str) -> Candidate | None:
    for c in candidates:
        if c.path == path:
            return c
    return None


def seconds(value: float) -> str:
    """'1.0 s' — a held time, to one decimal."""
    return f"{value:.1f} s"


def duration(value: float) -> str:
    """'1 s', '0.5 s' — a configured duration."""
    return f"{value:g} s"


def pct(fraction: float) -> str:
    return f"{fraction * 100:.0f}%"
