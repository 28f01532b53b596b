"""`decide`: (now, telemetry, load, params, previous state) → `Decision`. Pure and deterministic.

Per destination, in config order:

1. Carry the prefix's previous state over: unchanged config → as is; changed config → its
   next hops (those still listed), without the hysteresis timers.
2. Judge every path for the destination (`candidates.evaluate`).
3. Until the prefix's choice has been made from telemetry (startup, adoption, new policy):
   keep the current next hops (the first configured path when there are none) while no path
   has data, or while some paths still lack data — or, for the latency policies, have fewer
   than ``min_samples`` answered probes — and the current ones are in the best eligible tier,
   for at most ``startup_grace_s``; then choose the best at once, without hysteresis (a path
   with too few probes cannot win on latency, `candidates.latency_best`).
4. No path eligible: keep the least bad one. Otherwise the destination's policy decides.

Next hops never come out empty. An `Event` is returned for each prefix whose next hops change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pathsteer.routes import Desired, NextHop, Prefix, RouteIntent
from pathsteer.policy import failover, lowest_latency, weighted
from pathsteer.policy.candidates import Candidate, Eligibility, LoadFigures, best_tier, evaluate, least_bad
from pathsteer.policy.params import DestinationParams, PolicyKind, PolicyParams
from pathsteer.policy.state import ChangeKind, Decision, Event, PolicyState, PrefixState, RouteStatus
from pathsteer.policy.step import Step
from pathsteer.telemetry.snapshot import TelemetrySnapshot

_Initial = Callable[[float, DestinationParams, tuple[Candidate, ...]], Step]
_Step = Callable[[float, DestinationParams, tuple[Candidate, ...], PrefixState], Step]

_POLICIES: dict[PolicyKind, tuple[_Initial, _Step]] = {
    PolicyKind.LOWEST_LATENCY: (lowest_latency.initial, lowest_latency.step),
    PolicyKind.WEIGHTED: (weighted.initial, weighted.step),
    PolicyKind.FAILOVER: (failover.initial, failover.step),
}


def decide(now: float, telemetry: TelemetrySnapshot, load: Mapping[str, LoadFigures] | None,
           params: PolicyParams, previous: PolicyState) -> Decision:
    """The routes every configured prefix should have at ``now`` (monotonic seconds, the
    telemetry engine's clock), with the new state, a status per prefix and the changes.

    ``load``: per path name, its measured throughput (e.g. `LoadMeter.sample()`); paths
    missing from it count as idle. Nothing is mutated; the same inputs give the same output.
    """
    load = load or {}
    started_at = previous.started_at if previous.started_at is not None else now
    in_grace = now - started_at < params.startup_grace_s
    prefixes: dict[Prefix, PrefixState] = {}
    routes: list[RouteStatus] = []
    events: list[Event] = []
    desired: dict[Prefix, RouteIntent] = {}
    snapshots = {p.name: p for p in telemetry.paths}
    # Destinations alike (same paths, SLA, policy...) in the same situation get the same answer:
    # judge and decide each such group once (10k prefixes usually share a handful of setups).
    judged: dict[int, tuple[Candidate, ...]] = {}
    stepped: dict[tuple, Step] = {}
    carried_over = 0
    for dest, setup in zip(params.destinations, params.setups):
        prev = previous.prefixes.get(dest.prefix)
        carried_over += prev is not None
        candidates = judged.get(setup)
        if candidates is None:
            candidates = judged[setup] = evaluate(dest, params, snapshots, load)
        carried = _carry(prev, dest, params)
        situation = (setup, None if carried is None else (
            carried.nexthops, carried.measured, carried.kind, carried.winning, carried.rebalance_since,
            carried.shift))
        step = stepped.get(situation)
        if step is None:
            step = stepped[situation] = _decide_prefix(now, dest, candidates, carried, in_grace)
        before = prev.nexthops if prev is not None else ()
        moved = step.nexthops != before
        if moved or carried is None:
            kind = step.kind or ChangeKind.RECONFIGURED
            reason = step.reason or "config changed"
            since = now
        elif step.kind is not None:
            kind, reason, since = step.kind, step.reason or carried.reason, carried.since
        else:
            kind, reason, since = carried.kind, carried.reason, carried.since
        if moved and prev is not None and prev.config != dest:
            reason = f"config changed; {reason}"
        if (carried is prev and carried is not None and not moved and step.kind is None
                and step.winning == carried.winning and step.rebalance_since == carried.rebalance_since
                and step.shift == carried.shift):
            state = carried  # nothing new: keep the old object
        else:
            measured = (carried is not None and carried.measured) or step.kind not in (
                None, ChangeKind.STARTUP, ChangeKind.ADOPTED, ChangeKind.RECONFIGURED)
            state = PrefixState(dest, step.nexthops, since, reason, kind, measured, step.winning,
                                step.rebalance_since, step.shift)
        prefixes[dest.prefix] = state
        desired[dest.prefix] = RouteIntent(dest.prefix, step.nexthops)
        routes.append(RouteStatus(dest.prefix, dest.policy, step.nexthops, since, kind, reason, step.pending,
                                  candidates))
        if moved:
            events.append(Event(now, dest.prefix, dest.policy, before, step.nexthops, kind, reason))
    if carried_over < len(previous.prefixes):
        for prefix, old in previous.prefixes.items():
            if prefix not in prefixes:
                events.append(Event(now, prefix, old.config.policy, old.nexthops, (), ChangeKind.REMOVED,
                                    "removed from the config"))
    return Decision(Desired(desired), PolicyState(prefixes, started_at), tuple(routes), tuple(events))


def _carry(prev: PrefixState | None, dest: DestinationParams, params: PolicyParams) -> PrefixState | None:
    """The previous state as this config sees it (see the module docstring, step 1)."""
    if prev is None or prev.config == dest:
        return prev
    hops = tuple(nh for nh in prev.nexthops if nh.path in dest.paths and params.path(nh.path).carries(dest.prefix))
    if not hops:
        return None
    same_policy = prev.config.policy is dest.policy
    if dest.policy is not PolicyKind.WEIGHTED:
        hops = (NextHop(hops[0].path),)
    return PrefixState(dest, hops, prev.since, prev.reason, prev.kind, prev.measured and same_policy)


def _startup(dest: DestinationParams, candidates: tuple[Candidate, ...], carried: PrefixState | None) -> Step:
    if carried is not None:
        return Step(carried.nexthops, pending="waiting for telemetry")
    first = next(c for c in candidates if c.eligibility is not Eligibility.NO_FAMILY)
    return Step((NextHop(first.path),), ChangeKind.STARTUP, f"no telemetry yet: first configured path {first.path}",
                pending="waiting for telemetry")


def _least_bad(candidates: tuple[Candidate, ...], carried: PrefixState | None) -> Step:
    current = carried.nexthops[0].path if carried is not None and len(carried.nexthops) == 1 else None
    keep = least_bad(candidates, current)
    hops = (NextHop(keep.path),)
    if carried is not None and carried.nexthops == hops and carried.kind is ChangeKind.LEAST_BAD:
        return Step(hops)
    whys = "; ".join(f"{c.path} {c.why_not}" for c in candidates)
    return Step(hops, ChangeKind.LEAST_BAD, f"no path eligible ({whys}); keeping the least bad, {keep.path}")


def _decide_prefix(now: float, dest: DestinationParams, candidates: tuple[Candidate, ...],
                   carried: PrefixState | None, in_grace: bool) -> Step:
    usable = [c for c in candidates if c.eligibility is not Eligibility.NO_FAMILY]
    without_data = [c for c in usable if c.eligibility is Eligibility.NO_DATA]
    # Paths whose RTT rests on too few probes: the latency policies wait for them too (failover
    # goes by the order, not by RTT).
    unproven = [] if dest.policy is PolicyKind.FAILOVER else [
        c for c in usable if c.eligible and not c.enough_samples]
    initial, step = _POLICIES[dest.policy]
    if carried is None or not carried.measured:
        if len(without_data) == len(usable):
            return _startup(dest, candidates, carried)
        if (without_data or unproven) and in_grace:
            hops = carried.nexthops if carried is not None else (NextHop(usable[0].path),)
            current = {nh.path for nh in hops}
            tier = best_tier(candidates)
            if all(c in tier for c in usable if c.path in current):
                waits = []
                if without_data:
                    waits.append(f"telemetry of {', '.join(c.path for c in without_data)}")
                if unproven:
                    waits.append(f"min {unproven[0].min_samples} answered probes of "
                                 + ", ".join(f"{c.path} (so far {c.samples})" for c in unproven))
                waiting = f"waiting for {' and '.join(waits)}"
                if carried is not None:
                    return Step(hops, pending=waiting)
                return Step(hops, ChangeKind.STARTUP, f"{waiting}: first configured path {usable[0].path}",
                            pending=waiting)
        if not any(c.eligible for c in candidates):
            return _least_bad(candidates, carried)
        return initial(now, dest, candidates)
    if not any(c.eligible for c in candidates):
        return _least_bad(candidates, carried)
    out = step(now, dest, candidates, carried)
    if out.kind is None and carried.kind is ChangeKind.LEAST_BAD:
        # The kept path is eligible again: say so instead of keeping "no path eligible".
        figures = "; ".join(f"{c.path} {c.figures()}" for c in candidates
                            if c.path in {nh.path for nh in out.nexthops})
        return Step(out.nexthops, ChangeKind.MEASURED, f"eligible again ({figures})", out.winning,
                    out.rebalance_since, out.pending, out.shift)
    return out
