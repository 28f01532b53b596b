"""weighted: spread flows over the eligible paths by capacity headroom and latency.

A path's raw weight is ``capacity × free × latency`` (see `WeightedParams`): idle paths of
100/50/50 Mbit and equal RTT get 50/25/25; a path past its utilization ceiling keeps only
``min_free`` of its capacity's worth and the rest spills over to the others. Shares are
normalised to whole weights summing to about 100 (one point per percent; the kernel takes 1..255).

Flows stay put as far as possible, because every weight change moves some of them (resilient
nexthop groups and Maglev tables move about as many flows as the shares change):

* a path that stops being eligible leaves the set at once and the others keep their weights
  (their relative shares do not change, so only the leaver's flows move);
* a path that becomes eligible joins after being eligible for ``hold_down``;
* otherwise weights are recomputed from load on every call but change only when some share
  would move by more than ``min_shift`` and has wanted to for ``hold_down``, and then by at
  most ``max_step`` per share (a bigger shift is made in steps, one per ``hold_down``).

Per-path utilization counts all traffic on the path, this prefix's included; near the
ceiling a shift could overshoot and reverse itself once the moved flows arrive: ``max_step``
(steps, each measured before the next), ``min_free`` (a weight never drops to 0), ``min_shift``
and ``hold_down`` keep that bounded. When every path carries the same utilization (idle, or
all saturated by elastic TCP flows) the shares are exactly the capacity shares.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from pathsteer.dataplane.routes import NextHop
from pathsteer.policy.candidates import Candidate, best_tier, ms
from pathsteer.policy.params import DestinationParams
from pathsteer.policy.state import ChangeKind, PrefixState
from pathsteer.policy.step import EPSILON_S, Step, duration, held_for, pct, seconds, track

WEIGHT_TOTAL = 100  # weights are percent points of the flows


def target_shares(dest: DestinationParams, paths: Iterable[Candidate]) -> dict[str, float]:
    """The share (0..1) each of ``paths`` should carry, in their order."""
    paths = list(paths)
    wp = dest.weighted
    known = [c.capacity_bps for c in paths if c.capacity_bps]
    fallback = math.fsum(known) / len(known) if known else 1.0
    rtts = [c.rtt_s for c in paths if c.rtt_s is not None]
    best_rtt = min(rtts) if rtts else None
    raw = {}
    for c in paths:
        free = max(wp.min_free, wp.utilization_ceiling - (c.utilization or 0.0))
        latency = 1.0
        if wp.latency_scale_s is not None and c.rtt_s is not None and best_rtt is not None:
            scale = wp.latency_scale_s
            latency = (best_rtt + scale) / (c.rtt_s + scale) if c.rtt_s + scale > 0 else 1.0
        raw[c.path] = (c.capacity_bps or fallback) * free * latency
    total = math.fsum(raw.values())
    return {p: (w / total if total > 0 else 1.0 / len(raw)) for p, w in raw.items()}


def to_weights(shares: Mapping[str, float]) -> tuple[NextHop, ...]:
    """Whole weights (1..255) summing to about `WEIGHT_TOTAL`, by largest remainder; order kept.
    Deterministic: remainders tie-break by position."""
    exact = {p: s * WEIGHT_TOTAL for p, s in shares.items()}
    whole = {p: max(1, math.floor(v)) for p, v in exact.items()}
    left = WEIGHT_TOTAL - sum(whole.values())
    by_remainder = sorted(exact, key=lambda p: (-(exact[p] - math.floor(exact[p])), list(exact).index(p)))
    for p in by_remainder[:max(0, left)]:
        whole[p] += 1
    return tuple(NextHop(p, min(255, whole[p])) for p in shares)


def toward(current: Mapping[str, float], wanted: Mapping[str, float], max_step: float) -> dict[str, float]:
    """``current`` moved toward ``wanted`` along the straight line, no share by more than
    ``max_step`` (shares still sum to 1)."""
    shift = max(abs(wanted[p] - current[p]) for p in wanted)
    k = 1.0 if shift <= max_step else max_step / shift
    return {p: current[p] + k * (wanted[p] - current[p]) for p in wanted}


def shares_of(nexthops: Iterable[NextHop]) -> dict[str, float]:
    hops = list(nexthops)
    total = sum(nh.weight for nh in hops)
    return {nh.path: nh.weight / total for nh in hops}


def describe_shares(nexthops: Iterable[NextHop]) -> str:
    return ", ".join(f"{p} {pct(s)}" for p, s in shares_of(nexthops).items())


def describe_moves(before: Mapping[str, float], after: Mapping[str, float]) -> str:
    return ", ".join(f"{p} {pct(before.get(p, 0.0))}→{pct(s)}" for p, s in after.items())


def describe_inputs(dest: DestinationParams, paths: Iterable[Candidate]) -> str:
    """Why the shares are what they are: each path's capacity, utilization, rtt."""
    ceiling = dest.weighted.utilization_ceiling
    parts = []
    for c in paths:
        cap = f"{c.capacity_bps / 1e6:g} Mbit" if c.capacity_bps else "capacity unknown"
        util = ""
        if c.utilization is not None:
            util = f", utilization {pct(c.utilization)}" + (f" > ceiling {pct(ceiling)}" if c.utilization > ceiling else "")
        parts.append(f"{c.path} {cap}{util}, rtt {ms(c.rtt_s)}")
    return "; ".join(parts)


def initial(now: float, dest: DestinationParams, candidates: tuple[Candidate, ...]) -> Step:
    tier = list(best_tier(candidates))
    hops = to_weights(target_shares(dest, tier))
    return Step(hops, ChangeKind.MEASURED,
                f"first measurement: shares {describe_shares(hops)} ({describe_inputs(dest, tier)})")


def step(now: float, dest: DestinationParams, candidates: tuple[Candidate, ...], prev: PrefixState) -> Step:
    tier = list(best_tier(candidates))
    names = {c.path for c in tier}
    h = dest.hysteresis
    survivors = tuple(nh for nh in prev.nexthops if nh.path in names)
    gone = [nh.path for nh in prev.nexthops if nh.path not in names]
    in_set = {nh.path for nh in prev.nexthops}
    winning = track(now, prev, [c.path for c in tier if c.path not in in_set])
    if gone:
        whys = "; ".join(f"{c.path} {c.why_not}" for c in candidates if c.path in gone)
        if survivors:
            return Step(survivors, ChangeKind.LEFT,
                        f"{whys}; {', '.join(gone)} left the set, the others keep their weights "
                        f"({describe_shares(survivors)})", winning=winning)
        hops = to_weights(target_shares(dest, tier))
        return Step(hops, ChangeKind.LEFT, f"{whys}; moved to {describe_shares(hops)}", winning=winning)
    ready = [p for p, since in winning if held_for(now, since, h.hold_down_s)]
    if ready:
        members = [c for c in tier if c.path in in_set or c.path in ready]
        hops = to_weights(target_shares(dest, members))
        since = prev.winning_since(ready[0])
        held = now - since if since is not None else 0.0
        return Step(hops, ChangeKind.JOINED,
                    f"{', '.join(ready)} eligible for {seconds(held)} (hold_down {duration(h.hold_down_s)}); "
                    f"shares {describe_moves(shares_of(prev.nexthops), shares_of(hops))} "
                    f"({describe_inputs(dest, members)})",
                    winning=tuple(w for w in winning if w[0] not in ready))
    members = [c for c in tier if c.path in in_set]
    current = shares_of(prev.nexthops)
    wanted = target_shares(dest, members)
    shift = max(abs(wanted[p] - current[p]) for p in wanted)
    pending_join = None
    if winning:
        path, since = winning[0]
        pending_join = f"{path} joins after being eligible for hold_down {duration(h.hold_down_s)} " \
                       f"(so far {seconds(now - since)})"
    if shift <= dest.weighted.min_shift + EPSILON_S:
        return Step(prev.nexthops, winning=winning, pending=pending_join)
    since = prev.rebalance_since if prev.rebalance_since is not None else now
    if held_for(now, since, h.hold_down_s):
        hops = to_weights(toward(current, wanted, dest.weighted.max_step))
        target = "" if shift <= dest.weighted.max_step else \
            f" toward {', '.join(f'{p} {pct(s)}' for p, s in wanted.items())} (max step {pct(dest.weighted.max_step)})"
        return Step(hops, ChangeKind.REBALANCED,
                    f"rebalanced: shares {describe_moves(current, shares_of(hops))}{target} (shift {pct(shift)} > min "
                    f"{pct(dest.weighted.min_shift)} for {seconds(now - since)}, hold_down "
                    f"{duration(h.hold_down_s)}; {describe_inputs(dest, members)})", winning=winning)
    pending = (f"rebalance to {describe_moves(current, wanted)} (shift {pct(shift)} > min "
               f"{pct(dest.weighted.min_shift)}) for {seconds(now - since)} of hold_down "
               f"{duration(h.hold_down_s)}")
    return Step(prev.nexthops, winning=winning, rebalance_since=since,
                pending=pending if pending_join is None else f"{pending}; {pending_join}")
