"""failover: the first eligible path in the configured order.

The current path is left at once when it is no longer eligible (down, SLA broken, drained); the traffic fails back to an
earlier path only when that path has been eligible, without a break, for ``hold_down``.
"""

from __future__ import annotations

from pathsteer.routes import NextHop
from pathsteer.policy.candidates import Candidate, best_tier
from pathsteer.policy.params import DestinationParams
from pathsteer.policy.state import ChangeKind, PrefixState
from pathsteer.policy.step import Step, duration, find, held_for, seconds, track


def _order(c: Candidate) -> int:
    return c.order


def initial(now: float, dest: DestinationParams, candidates: tuple[Candidate, ...]) -> Step:
    first = min(best_tier(candidates), key=_order)
    return Step((NextHop(first.path),), ChangeKind.MEASURED,
                f"first measurement: {first.path} is the first eligible path in the order ({first.figures()})")


def step(now: float, dest: DestinationParams, candidates: tuple[Candidate, ...], prev: PrefixState) -> Step:
    tier = best_tier(candidates)
    first = min(tier, key=_order)
    current = find(candidates, prev.nexthops[0].path)
    if current is None or current not in tier:
        why = "is not a candidate" if current is None else current.why_not
        kind = ChangeKind.DRAIN if current is not None and current.drained else ChangeKind.LEFT
        return Step((NextHop(first.path),), kind,
                    f"{prev.nexthops[0].path} {why}; moved to {first.path}, the first eligible path in the order "
                    f"({first.figures()})")
    h = dest.hysteresis
    winning = track(now, prev, [c.path for c in sorted(tier, key=_order) if c.order < current.order])
    ready = [p for p, since in winning if held_for(now, since, h.hold_down_s)]
    if ready:
        target = ready[0]  # winning is in configured order
        index = [p for p, _ in winning].index(target)
        held = now - winning[index][1]
        # Earlier paths keep their timers: "eligible since" does not depend on the current path.
        return Step((NextHop(target),), ChangeKind.FAILBACK,
                    f"failback to {target}: eligible for {seconds(held)} (hold_down {duration(h.hold_down_s)}), "
                    f"before {current.path} in the order", winning=winning[:index])
    pending = None
    if winning:
        path, since = winning[0]
        pending = (f"failback to {path}: eligible for {seconds(now - since)} of hold_down "
                   f"{duration(h.hold_down_s)}")
    return Step(prev.nexthops, winning=winning, pending=pending)
