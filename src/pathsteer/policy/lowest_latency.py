"""lowest-latency: one path, the one with the lowest RTT, moved only with hysteresis.

Leave the current path at once when it is no longer eligible (DOWN, SLA broken, drained, or
DEGRADED while an UP path is eligible). Otherwise move only to a path whose RTT beats the current
one's by at least ``min_improvement`` (relative) and has done so, without a break, for
``hold_down``; if several qualify, the lowest RTT wins.
"""

from __future__ import annotations

from pathsteer.routes import NextHop
from pathsteer.policy.candidates import Candidate, best_tier, latency_best, ms, passed_text, rtt_key
from pathsteer.policy.params import DestinationParams
from pathsteer.policy.state import ChangeKind, PrefixState
from pathsteer.policy.step import Step, duration, find, held_for, pct, seconds, track


def improvement(current: Candidate, other: Candidate) -> float | None:
    """How much lower ``other``'s RTT is, relative to ``current``'s (0.34 = 34 %); None when it
    is not lower or not known. A current path without an RTT is beaten by any known RTT (1.0)."""
    if other.rtt_s is None:
        return None
    if current.rtt_s is None:
        return 1.0
    if current.rtt_s <= 0 or other.rtt_s >= current.rtt_s:
        return None
    return (current.rtt_s - other.rtt_s) / current.rtt_s


def _chosen(best: Candidate, tier: tuple[Candidate, ...]) -> str:
    """Why ``best`` (from `latency_best`) in words."""
    if best.enough_samples:
        return f"{best.path} has the lowest rtt ({ms(best.rtt_s)})"
    if len(tier) == 1:
        return f"{best.path}, the only eligible path ({best.rtt_word} {ms(best.rtt_s)}, {best.samples_text()})"
    counts = ", ".join(f"{c.path} {c.samples}" for c in tier)
    return (f"{best.path}, first in the order: no path has min {best.min_samples} answered probes to win on "
            f"latency yet ({counts})")


def initial(now: float, dest: DestinationParams, candidates: tuple[Candidate, ...]) -> Step:
    tier = best_tier(candidates)
    best, passed = latency_best(tier)
    return Step((NextHop(best.path),), ChangeKind.MEASURED,
                f"first measurement: {_chosen(best, tier)}{passed_text(passed)}")


def step(now: float, dest: DestinationParams, candidates: tuple[Candidate, ...], prev: PrefixState) -> Step:
    tier = best_tier(candidates)
    best, passed = latency_best(tier)
    current = find(candidates, prev.nexthops[0].path)
    if current is None or current not in tier:
        why = "is not a candidate" if current is None else current.why_not
        moved = f"{best.path} ({best.rtt_word} {ms(best.rtt_s)})" if best.enough_samples else _chosen(best, tier)
        kind = ChangeKind.DRAIN if current is not None and current.drained else ChangeKind.LEFT
        return Step((NextHop(best.path),), kind, f"{prev.nexthops[0].path} {why}; moved to {moved}{passed_text(passed)}")
    h = dest.hysteresis
    better = {c.path: g for c in tier if c.path != current.path
              and (g := improvement(current, c)) is not None and g >= h.min_improvement
              and (current.rtt_s is None or current.rtt_s - c.rtt_s >= h.min_improvement_abs_s)}
    least = _least(h, current)
    # A path whose RTT rests on too few probes cannot displace the current one (nor start
    # its hold_down): it has to win on enough samples first.
    unproven = [c for c in tier if c.path in better and not c.enough_samples]
    gains = {p: g for p, g in better.items() if p not in {c.path for c in unproven}}
    winning = track(now, prev, list(gains))
    by_path = {c.path: c for c in tier}
    ready = [by_path[p] for p, since in winning if held_for(now, since, h.hold_down_s)]
    if ready:
        target = min(ready, key=rtt_key)
        since = prev.winning_since(target.path)
        held = now - since if since is not None else 0.0
        return Step((NextHop(target.path),), ChangeKind.BETTER,
                    f"{target.path} better than {current.path} by {pct(gains[target.path])} "
                    f"({target.rtt_word} {ms(target.rtt_s)} vs {_their(current, target)}, min {least}) "
                    f"for {seconds(held)} (hold_down {duration(h.hold_down_s)})")
    pending = None
    if winning:
        path, since = min(winning, key=lambda w: rtt_key(by_path[w[0]]))
        pending = (f"{path} better than {current.path} by {pct(gains[path])} (min {least}) "
                   f"for {seconds(now - since)} of hold_down {duration(h.hold_down_s)}")
    elif unproven:
        c = min(unproven, key=rtt_key)
        pending = (f"{c.path} better than {current.path} by {pct(better[c.path])} (min {least}), "
                   f"not chosen: {c.samples_text()}")
    return Step(prev.nexthops, winning=winning, pending=pending)


def _least(h, current: Candidate) -> str:
    """The least gain a move needs here: '10%', or '0.5 ms' where the absolute floor is more
    (a current RTT under 5 ms at the defaults)."""
    if current.rtt_s is not None and current.rtt_s * h.min_improvement < h.min_improvement_abs_s:
        return f"{h.min_improvement_abs_s * 1e3:g} ms"
    return pct(h.min_improvement)


def _their(current: Candidate, target: Candidate) -> str:
    """The current path's RTT, named when it comes from another source than the target's."""
    if current.rtt_source == target.rtt_source:
        return ms(current.rtt_s)
    return f"{current.rtt_word} {ms(current.rtt_s)}"
