"""weighted: spread flows over the eligible paths by capacity, latency and load.

**Base shares** come from capacity and latency: ``capacity × (best rtt + latency_scale) /
(rtt + latency_scale)``, normalised (idle paths of 100/50/50 Mbit and equal RTT: 50/25/25).
A prefix's first choice and a path that joins take their base shares. The RTT that counts is
the path's own latency, not the queue traffic builds on it (`own_rtt`): a path that carried at
least `LOADED_AT` (10 %) of its capacity within the load meter's memory is judged by its base
RTT, the lowest over the last minutes (LEDBAT's base delay). Elastic flows fill every queue on
their way, so under load the probes' RTT is mostly queue — 4 ms paths read 30-90 ms under 32
TCP flows, by their buffers, not their latency — and weighing shares by it moved flows between
full paths for nothing (50/25/25 went to 39/37/24 within a second of the flows starting,
while the 1 s utilization figure still read 41-55 %). A path without a base RTT yet, or with
fewer than ``min_samples`` answered probes, is never favoured for its RTT (factor at most 1).

**Load** then moves the shares, from where they are (the weights are the controller's state):

* *spill-over*: while some path is past its ``utilization_ceiling`` and another is clearly
  under it (by at least 10 points, `SPILL_ROOM`, for the last 5 s: `telemetry.load.RECENT_PEAK_S`), each
  share is multiplied by ``1 + 3 × (mean utilization − its utilization)`` (mean over the
  paths, capacity-weighted; its utilization: the highest of the last 5 s, so a path full a
  moment ago takes no flows): flows go from busier to idler paths until utilizations are equal
  — also when the busy path is full of someone else's traffic — but no share below
  ``min_free`` of its base share (the path keeps some flows).
* *return*: while no path is past its ceiling, the shares go back toward the base shares, but
  only as far as a conservative forecast keeps every path under its ceiling (forecast: all
  the traffic now measured on the paths moves with the shares), so spill-over and return do
  not undo each other.
* *full*: while some path is past its ceiling and none is clearly under it (elastic TCP fills
  them all) there is nowhere to spill over to (moving flows between full paths trades one
  overload for another, after the noise of their offered-load figures: ±10 points with 64 TCP
  flows; with 32 flows over 100/50/50 Mbit one full path read 85 % beside 98 % and 96 %, and
  counting that as room moved 9 points of flows to it, then more on the next noisy reading:
  50/25/25 drifted to 69/17/14 in a minute; one read 74 % for two seconds beside 99 % when its
  flows backed off together, and spilling into it moved 50/25/25 to 69/16/15 for good). The shares go back
  toward the base shares as far as the forecast keeps every path no fuller than the fullest
  is now (after a capacity change on reload they reach the new capacity shares; after
  spill-over away from someone else's traffic, that path is the fullest and nothing moves
  back).

Flows stay put as far as possible, because every weight change moves some of them (resilient
nexthop groups and Maglev tables move about as many flows as the shares change):

* a path that stops being eligible (or is drained) leaves the set at once and the others keep their weights
  (their relative shares do not change, so only the leaver's flows move);
* a path that becomes eligible joins after being eligible for ``hold_down``, taking its base
  share from the others in proportion;
* load moves shares only when some share would move by more than ``min_shift`` and has wanted
  to for ``hold_down``, and then by at most ``max_step`` (the next step waits for the next
  ``hold_down``, after the load has answered the first).

**The load must answer a change before spill-over goes further.** Spill-over integrates: it
moves the shares from where they are, for as long as utilizations differ. That settles only if
the data plane moves flows when the weights change. A resilient nexthop group (fib) keeps every
busy flow where it is, so after a change the measured load stays as it was, and an integrator
would keep shifting weight every ``hold_down`` until the floor (it took p1 from 50 % to 2 %).
So every rebalance is remembered (`Shift`: the shares the data plane was last seen to carry,
the *anchor*, and the utilizations then) until the measured load answers it: the paths'
utilizations have moved at least `ANSWERED` (a third) of the way a forecast says they would
(the forecast: all the traffic measured on a path scales with its share, a path rising at most
to its capacity), by at least `NOISE` (2 points). Until then spill-over may move the shares
toward the anchor but not further from it, so the weights stay within one step (``max_step``)
of what the data plane really carries; once the load has answered (flows moved, in the bpf
plane within a second; new flows followed, in fib), the loop goes on from there. The return
toward the base shares is not held: its end point is fixed (the base shares), so it cannot
wind up.

Shares are written as whole weights summing to about 100 (one point per percent; the kernel
takes 1..255), so an eligible path never gets weight 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from pathsteer.routes import NextHop
from pathsteer.policy.candidates import Candidate, best_tier, ms
from pathsteer.policy.params import DestinationParams
from pathsteer.policy.state import ChangeKind, PrefixState, Shift
from pathsteer.policy.step import EPSILON_S, Step, duration, held_for, pct, seconds, track

WEIGHT_TOTAL = 100  # weights are percent points of the flows
MIN_FACTOR = 0.1  # spill-over never cuts a share by more than 90 % in one step
SPILL_GAIN = 3.0  # share × (1 + gain × (mean − utilization)): a path 10 points over the mean loses 30 %
SPILL_ROOM = 0.1  # spill-over needs a path this far under the ceiling: the noise of the utilization figures
LOADED_AT = 0.1  # a path that carried this much of its capacity lately is judged by its base RTT
ANSWERED = 1 / 3  # the load answered a change once it moved a third of the forecast way...
NOISE = 0.02  # ... and by at least 2 points of utilization (summed over the paths)


def _capacities(paths: list[Candidate]) -> dict[str, float]:
    """Capacity per path; unknown ones count as the mean of the known ones (1 when none is)."""
    known = [c.capacity_bps for c in paths if c.capacity_bps]
    fallback = math.fsum(known) / len(known) if known else 1.0
    return {c.path: float(c.capacity_bps or fallback) for c in paths}


def _normalise(raw: Mapping[str, float]) -> dict[str, float]:
    total = math.fsum(raw.values())
    return {p: (w / total if total > 0 else 1.0 / len(raw)) for p, w in raw.items()}


def _floored(shares: Mapping[str, float], floors: Mapping[str, float]) -> dict[str, float]:
    """``shares`` with each at least its floor, the others scaled down to make room (sum 1)."""
    fixed: dict[str, float] = {}
    while True:
        free = {p: s for p, s in shares.items() if p not in fixed}
        room = 1.0 - math.fsum(fixed.values())
        scale = room / math.fsum(free.values()) if free and math.fsum(free.values()) > 0 else 0.0
        low = {p: floors[p] for p, s in free.items() if s * scale < floors[p]}
        if not low or len(fixed) + len(low) == len(shares):
            return _normalise({p: fixed[p] if p in fixed else low.get(p, shares[p] * scale) for p in shares})
        fixed.update(low)


def busy(c: Candidate) -> float:
    """``c``'s highest utilization over the last few seconds (`Candidate.recent_utilization`),
    0 when unknown."""
    return max((u for u in (c.utilization, c.recent_utilization) if u is not None), default=0.0)


def loaded(c: Candidate) -> bool:
    """Whether ``c`` carried at least `LOADED_AT` of its capacity over the last few seconds
    (unknown capacity: never)."""
    return busy(c) >= LOADED_AT


def own_rtt(c: Candidate) -> float | None:
    """The RTT that weighs ``c``'s share: its measured RTT while it is (nearly) idle, its base
    RTT once it carries load (its queue is then in every sample: load is spill-over's business,
    not latency's); None when there is none."""
    if c.rtt_s is None:
        return None
    if loaded(c):
        return None if c.base_rtt_s is None else min(c.rtt_s, c.base_rtt_s)
    return c.rtt_s


def base_shares(dest: DestinationParams, paths: Iterable[Candidate]) -> dict[str, float]:
    """Shares from capacity and latency alone, in the paths' order."""
    paths = list(paths)
    caps = _capacities(paths)
    # The reference RTT comes from paths with enough answered probes; a path with too few is
    # never favoured for its RTT (its factor is at most 1), only held back by it. A loaded path
    # counts with its base RTT (`own_rtt`); one without a base RTT yet is left out (factor 1).
    # (Counting a saturated path's queue, an idle path rejoining beside it took 84 % of the
    # flows for its short queue.)
    own = {c.path: own_rtt(c) for c in paths}
    rtts = [own[c.path] for c in paths if own[c.path] is not None and c.enough_samples]
    best_rtt = min(rtts) if rtts else None
    scale = dest.weighted.latency_scale_s
    raw = {}
    for c in paths:
        latency = 1.0
        rtt = own[c.path]
        if scale is not None and rtt is not None and best_rtt is not None and rtt + scale > 0:
            latency = (best_rtt + scale) / (rtt + scale)
            if not c.enough_samples:
                latency = min(1.0, latency)
        raw[c.path] = caps[c.path] * latency
    return _normalise(raw)


def load_target(dest: DestinationParams, paths: list[Candidate], current: Mapping[str, float]
                ) -> tuple[dict[str, float], str, bool]:
    """Where load wants ``current`` to go (see the module docstring), why in words, and whether
    that is spill-over (True) or the return toward the base shares."""
    ceiling = dest.weighted.utilization_ceiling
    caps = _capacities(paths)
    util = {c.path: c.utilization or 0.0 for c in paths}
    recent = {c.path: max(util[c.path], busy(c)) for c in paths}
    carried = math.fsum(util[p] * caps[p] for p in util)  # bit/s on these paths now
    over = [p for p in util if util[p] > ceiling]
    base = base_shares(dest, paths)
    # Full: past the ceiling, and no path clearly under it — by SPILL_ROOM, for the last few
    # seconds (a path near the ceiling beside full ones, or one whose flows backed off together
    # for a second, is noise of the figures, not room: elastic flows fill it again).
    full = bool(over) and all(recent[p] >= ceiling - SPILL_ROOM for p in util)
    if over and not full:
        mean = carried / math.fsum(caps.values())
        factor = {p: max(MIN_FACTOR, 1.0 + SPILL_GAIN * (mean - recent[p])) for p in current}
        target = _floored(_normalise({p: current[p] * factor[p] for p in current}),
                          {p: dest.weighted.min_free * base[p] for p in current})
        return target, (f"spill-over: {', '.join(f'{p} utilization {pct(util[p])}' for p in over)} > ceiling "
                        f"{pct(ceiling)}, toward equal utilization (mean {pct(mean)})"), True
    # Back toward base, as far as a forecast keeps every path under its ceiling — or, when every
    # path is already past it (nowhere to spill over to: moving flows between full paths only
    # trades one overload for another, after the noise of their offered-load figures), as far
    # as no path gets fuller than the fullest is now.
    limit = max(util.values()) if full else ceiling
    room = 1.0
    for p in current:
        rise = (base[p] - current[p]) * carried / caps[p]
        if rise > 0:
            room = min(room, max(0.0, (limit - util[p]) / rise))
    target = {p: current[p] + room * (base[p] - current[p]) for p in current}
    if full:
        why = (f"every path past or near its ceiling {pct(ceiling)} ({', '.join(f'{p} {pct(util[p])}' for p in util)}): "
               f"nowhere to spill over to (none under {pct(ceiling - SPILL_ROOM)}); back toward the capacity and latency shares")
        if room < 1.0:
            why += f" ({pct(room)} of the way, no path fuller than the fullest, {pct(limit)})"
        return target, why, False
    why = "no path past its ceiling: back toward the capacity and latency shares"
    if room < 1.0:
        why += f" ({pct(room)} of the way, to stay under the ceiling {pct(ceiling)})"
    return target, why, False


def utilizations(paths: Iterable[Candidate]) -> dict[str, float]:
    return {c.path: c.utilization or 0.0 for c in paths}


def answer(shift: Shift, current: Mapping[str, float], util: Mapping[str, float]) -> tuple[float, float]:
    """How far the measured load has moved since ``shift`` the way the change from its anchor
    to ``current`` asked, and how far a forecast says it would (both summed over the paths, in
    utilization). Forecast: all the traffic measured on a path scales with its share; a rising
    path reaches at most its capacity (or what it already carried). Each path's own movement
    counts at most as much as its forecast, either way, so one noisy path cannot answer alone."""
    anchor, before = dict(shift.anchor), dict(shift.utilization)
    moved = expected = 0.0
    for p, share in current.items():
        if p not in anchor or p not in before or anchor[p] <= 0:
            continue
        u0 = before[p]
        forecast = u0 * share / anchor[p]
        if forecast > u0:
            forecast = min(forecast, max(u0, 1.0))
        want = forecast - u0
        if want == 0:
            continue
        got = util.get(p, 0.0) - u0
        expected += abs(want)
        moved += max(-abs(want), min(abs(want), got if want > 0 else -got))
    return moved, expected


def answered(shift: Shift, current: Mapping[str, float], util: Mapping[str, float]) -> bool:
    moved, expected = answer(shift, current, util)
    return expected < NOISE or moved >= max(ANSWERED * expected, NOISE)


def _distance(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    return max(abs(a.get(p, 0.0) - b.get(p, 0.0)) for p in set(a) | set(b))


def toward(current: Mapping[str, float], wanted: Mapping[str, float], max_step: float) -> dict[str, float]:
    """``current`` moved toward ``wanted`` along the straight line, no share by more than
    ``max_step`` (shares still sum to 1)."""
    shift = max(abs(wanted[p] - current[p]) for p in wanted)
    k = 1.0 if shift <= max_step else max_step / shift
    return {p: current[p] + k * (wanted[p] - current[p]) for p in wanted}


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
        rtt = f"rtt {ms(c.rtt_s)}"
        if loaded(c) and c.rtt_s is not None:
            rtt += f" (loaded: base rtt {ms(c.base_rtt_s)} counts)"
        parts.append(f"{c.path} {cap}{util}, {rtt}")
    return "; ".join(parts)


def initial(now: float, dest: DestinationParams, candidates: tuple[Candidate, ...]) -> Step:
    tier = list(best_tier(candidates))
    hops = to_weights(base_shares(dest, tier))
    return Step(hops, ChangeKind.MEASURED,
                f"first measurement: shares {describe_shares(hops)} ({describe_inputs(dest, tier)})")


def _joined(dest: DestinationParams, members: list[Candidate], current: Mapping[str, float]) -> dict[str, float]:
    """Joiners take their base share; the others keep their shares relative to each other."""
    base = base_shares(dest, members)
    joining = math.fsum(base[c.path] for c in members if c.path not in current)
    return {c.path: base[c.path] if c.path not in current else current[c.path] * (1.0 - joining) for c in members}


def step(now: float, dest: DestinationParams, candidates: tuple[Candidate, ...], prev: PrefixState) -> Step:
    tier = list(best_tier(candidates))
    names = {c.path for c in tier}
    h, wp = dest.hysteresis, dest.weighted
    survivors = tuple(nh for nh in prev.nexthops if nh.path in names)
    gone = [nh.path for nh in prev.nexthops if nh.path not in names]
    in_set = {nh.path for nh in prev.nexthops}
    winning = track(now, prev, [c.path for c in tier if c.path not in in_set])
    if gone:
        whys = "; ".join(f"{c.path} {c.why_not}" for c in candidates if c.path in gone)
        drained = any(c.drained for c in candidates if c.path in gone)
        kind = ChangeKind.DRAIN if drained else ChangeKind.LEFT
        if survivors:
            return Step(survivors, kind,
                        f"{whys}; {', '.join(gone)} left the set, the others keep their weights "
                        f"({describe_shares(survivors)})", winning=winning)
        hops = to_weights(base_shares(dest, tier))
        return Step(hops, kind, f"{whys}; moved to {describe_shares(hops)}", winning=winning)
    current = shares_of(prev.nexthops)
    ready = [p for p, since in winning if held_for(now, since, h.hold_down_s)]
    if ready:
        members = [c for c in tier if c.path in in_set or c.path in ready]
        hops = to_weights(_joined(dest, members, current))
        since = prev.winning_since(ready[0])
        held = now - since if since is not None else 0.0
        return Step(hops, ChangeKind.JOINED,
                    f"{', '.join(ready)} eligible for {seconds(held)} (hold_down {duration(h.hold_down_s)}); "
                    f"shares {describe_moves(current, shares_of(hops))} ({describe_inputs(dest, members)})",
                    winning=tuple(w for w in winning if w[0] not in ready))
    members = [c for c in tier if c.path in in_set]
    util = utilizations(members)
    shift = prev.shift
    if shift is not None and ({p for p, _ in shift.anchor} != set(current) or answered(shift, current, util)):
        shift = None  # the load followed the last change (or the set changed): go on from here
    wanted, why, spilling = load_target(dest, members, current)
    moving = max(abs(wanted[p] - current[p]) for p in wanted)
    pending_join = None
    if winning:
        path, since = winning[0]
        pending_join = f"{path} joins after being eligible for hold_down {duration(h.hold_down_s)} " \
                       f"(so far {seconds(now - since)})"
    if moving <= wp.min_shift + EPSILON_S:
        return Step(prev.nexthops, winning=winning, pending=pending_join, shift=shift)
    since = prev.rebalance_since if prev.rebalance_since is not None else now
    hops = to_weights(toward(current, wanted, wp.max_step))
    if shift is not None and spilling:
        anchor = dict(shift.anchor)
        if _distance(shares_of(hops), anchor) > _distance(current, anchor) + 0.5 / WEIGHT_TOTAL:
            moved, expected = answer(shift, current, util)
            pending = (f"rebalance to {describe_moves(current, wanted)} ({why}; shift {pct(moving)} > min "
                       f"{pct(wp.min_shift)}) held: the load has not followed the last change yet "
                       f"({describe_moves(anchor, current)} {seconds(now - shift.at)} ago: utilization moved "
                       f"{pct(max(0.0, moved))} of the {pct(expected)} expected, needs {pct(ANSWERED)} of it)")
            # Not wanted as a step we may take: hold_down counts again once the load has answered.
            return Step(prev.nexthops, winning=winning, shift=shift,
                        pending=pending if pending_join is None else f"{pending}; {pending_join}")
    if held_for(now, since, h.hold_down_s):
        capped = "" if moving <= wp.max_step else f", this step at most {pct(wp.max_step)}"
        if shift is None:
            shift = Shift(now, tuple(current.items()), tuple(util.items()))
        return Step(hops, ChangeKind.REBALANCED,
                    f"rebalanced: shares {describe_moves(current, shares_of(hops))} ({why}; shift {pct(moving)} > "
                    f"min {pct(wp.min_shift)} for {seconds(now - since)}, hold_down {duration(h.hold_down_s)}"
                    f"{capped}; {describe_inputs(dest, members)})", winning=winning, shift=shift)
    pending = (f"rebalance to {describe_moves(current, wanted)} ({why}; shift {pct(moving)} > min "
               f"{pct(wp.min_shift)}) for {seconds(now - since)} of hold_down {duration(h.hold_down_s)}")
    return Step(prev.nexthops, winning=winning, rebalance_since=since, shift=shift,
                pending=pending if pending_join is None else f"{pending}; {pending_join}")
