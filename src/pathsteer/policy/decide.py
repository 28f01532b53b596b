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

Drains (``drains``: the paths an operator took out for maintenance) make a path ineligible
for every policy (`Eligibility.DRAINED`): it is left at once, as if it had failed, with
`ChangeKind.DRAIN`; startup skips it. When every path of a destination is drained or failing,
step 4 holds: the least bad is kept — a drained path that works before a broken one — and the
reason says so (a drain never blackholes a prefix). An undrained path comes back only under
the policy's own rules (lowest-latency: better by min_improvement for hold_down; failover:
eligible for hold_down; weighted: joins after hold_down), and that change is labelled
`ChangeKind.UNDRAIN` (each prefix remembers, in `PrefixState.drained`, the paths drained and
those undrained that are still winning their way back).

Upstream figures (``upstream``: per prefix and path, the gateways' response time of the
destination's upstreams while the path carried it, with when it was seen; see
`pathsteer.policy.upstream`) are judged in step 2: a path whose p95 is above
``sla.max_upstream_time`` breaks the SLA while the figure is in force (``sla.upstream_hold``
after it was seen). A prefix with figures is judged and decided on its own (not with the
destinations of its setup).

Next hops never come out empty. An `Event` is returned for each prefix whose next hops change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from pathsteer.routes import Desired, NextHop, Prefix, RouteIntent
from pathsteer.policy import failover, lowest_latency, weighted
from pathsteer.policy.candidates import Candidate, Eligibility, LoadFigures, best_tier, evaluate, least_bad
from pathsteer.policy.params import DestinationParams, PolicyKind, PolicyParams
from pathsteer.policy.state import ChangeKind, Decision, Event, PolicyState, PrefixState, RouteStatus
from pathsteer.policy.step import Step
from pathsteer.policy.upstream import UpstreamFigure, upstream_text
from pathsteer.telemetry.snapshot import TelemetrySnapshot

_Initial = Callable[[float, DestinationParams, tuple[Candidate, ...]], Step]
_Step = Callable[[float, DestinationParams, tuple[Candidate, ...], PrefixState], Step]

_POLICIES: dict[PolicyKind, tuple[_Initial, _Step]] = {
    PolicyKind.LOWEST_LATENCY: (lowest_latency.initial, lowest_latency.step),
    PolicyKind.WEIGHTED: (weighted.initial, weighted.step),
    PolicyKind.FAILOVER: (failover.initial, failover.step),
}


def decide(now: float, telemetry: TelemetrySnapshot, load: Mapping[str, LoadFigures] | None,
           params: PolicyParams, previous: PolicyState, drains: Mapping[str, str | None] | None = None,
           upstream: Mapping[Prefix, Mapping[str, UpstreamFigure]] | None = None) -> Decision:
    """The routes every configured prefix should have at ``now`` (monotonic seconds, the
    telemetry engine's clock), with the new state, a status per prefix and the changes.

    ``load``: per path name, its measured throughput (e.g. `LoadMeter.sample()`); paths
    missing from it count as idle. ``drains``: the drained paths, each with the operator's
    note (or None); names not configured are ignored. ``upstream``: per prefix, per path, the
    gateways' upstream response time with when it was seen (same clock as ``now``); prefixes
    and paths not configured are ignored. Nothing is mutated; the same inputs give the same
    output.
    """
    load = load or {}
    drains = drains or {}
    upstream = upstream or {}
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
    stepped: dict[tuple, tuple[Step, frozenset[str]]] = {}
    carried_over = 0
    for dest, setup in zip(params.destinations, params.setups):
        prev = previous.prefixes.get(dest.prefix)
        carried_over += prev is not None
        carried = _carry(prev, dest, params)
        figures = upstream.get(dest.prefix) if upstream else None
        if figures:  # this prefix's own upstream figures: judged and decided on its own
            candidates = evaluate(dest, params, snapshots, load, drains, figures, now)
            got = _drain_labels(_decide_prefix(now, dest, candidates, carried, in_grace), candidates, carried)
        else:
            candidates = judged.get(setup)
            if candidates is None:
                candidates = judged[setup] = evaluate(dest, params, snapshots, load, drains)
            situation = (setup, None if carried is None else (
                carried.nexthops, carried.measured, carried.kind, carried.winning, carried.rebalance_since,
                carried.shift, carried.drained))
            got = stepped.get(situation)
            if got is None:
                got = stepped[situation] = _drain_labels(_decide_prefix(now, dest, candidates, carried, in_grace),
                                                        candidates, carried)
        step, drained = got
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
                and step.shift == carried.shift and drained == carried.drained):
            state = carried  # nothing new: keep the old object
        else:
            measured = (carried is not None and carried.measured) or step.kind not in (
                None, ChangeKind.STARTUP, ChangeKind.ADOPTED, ChangeKind.RECONFIGURED)
            state = PrefixState(dest, step.nexthops, since, reason, kind, measured, step.winning,
                                step.rebalance_since, step.shift, drained)
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
    if prev is None or prev.config is dest or prev.config == dest:  # `is`: the same params, the usual case
        return prev
    hops = tuple(nh for nh in prev.nexthops if nh.path in dest.paths and params.path(nh.path).carries(dest.prefix))
    if not hops:
        return None
    same_policy = prev.config.policy is dest.policy
    if dest.policy is not PolicyKind.WEIGHTED:
        hops = (NextHop(hops[0].path),)
    return PrefixState(dest, hops, prev.since, prev.reason, prev.kind, prev.measured and same_policy,
                       drained=prev.drained)


def _startup(dest: DestinationParams, usable: list[Candidate], carried: PrefixState | None,
             drained: set[str]) -> Step:
    if carried is not None and not drained & {nh.path for nh in carried.nexthops}:
        return Step(carried.nexthops, pending="waiting for telemetry")
    first = usable[0]
    return Step((NextHop(first.path),), ChangeKind.STARTUP, f"no telemetry yet: first configured path {first.path}",
                pending="waiting for telemetry")


ALL_DRAINED = "every path drained or failing"  # in the least-bad reason when a drain is part of it


def _least_bad(candidates: tuple[Candidate, ...], carried: PrefixState | None) -> Step:
    current = carried.nexthops[0].path if carried is not None and len(carried.nexthops) == 1 else None
    keep = least_bad(candidates, current)
    hops = (NextHop(keep.path),)
    drains = any(c.drained for c in candidates)
    if (carried is not None and carried.nexthops == hops and carried.kind is ChangeKind.LEAST_BAD
            and (ALL_DRAINED in carried.reason) == drains):
        return Step(hops)
    whys = "; ".join(f"{c.path} {c.why_not}" for c in candidates)
    if keep.upstream_breach and keep.upstream is not None:
        return Step(hops, ChangeKind.LEAST_BAD,
                    f"no path eligible ({whys}); keeping the least bad, {keep.path} (upstream time "
                    f"{upstream_text(keep.upstream.p95_s)}), rather than blackholing the prefix")
    if drains:
        return Step(hops, ChangeKind.LEAST_BAD,
                    f"no path eligible ({whys}); {ALL_DRAINED}: keeping the least bad, {keep.path}, "
                    f"rather than blackholing the prefix")
    return Step(hops, ChangeKind.LEAST_BAD, f"no path eligible ({whys}); keeping the least bad, {keep.path}")


def _drain_labels(step: Step, candidates: tuple[Candidate, ...], carried: PrefixState | None
                  ) -> tuple[Step, frozenset[str]]:
    """``step`` labelled by the drains, and what the prefix remembers of them
    (`PrefixState.drained`).

    A move off a drained path that the startup or first-measurement rules made is a DRAIN; a
    change onto a path undrained since the last decision (the policy's own failback, a join, a
    better path, "eligible again") is an UNDRAIN. An undrained path is remembered while it is
    winning its way back (``step.winning``: hold_down running)."""
    now_drained = frozenset(c.path for c in candidates if c.drained)
    before = carried.drained if carried is not None else frozenset()
    undrained = before - now_drained
    hops = {nh.path for nh in step.nexthops}
    if step.kind is not None and undrained & hops:
        back = [nh.path for nh in step.nexthops if nh.path in undrained]
        step = dataclasses.replace(step, kind=ChangeKind.UNDRAIN,
                                   reason=f"{', '.join(back)} undrained; {step.reason}")
    elif (step.kind in (ChangeKind.STARTUP, ChangeKind.MEASURED) and carried is not None
          and hops != {nh.path for nh in carried.nexthops}):
        left = [c for c in candidates if c.drained and c.path in {nh.path for nh in carried.nexthops}]
        if left:  # (startup keeps its kind: the choice is still not made from telemetry)
            kind = ChangeKind.DRAIN if step.kind is ChangeKind.MEASURED else step.kind
            step = dataclasses.replace(step, kind=kind, reason="; ".join(
                [f"{c.path} {c.why_not}" for c in left] + [step.reason or ""]))
    winning = {p for p, _ in step.winning}
    return step, now_drained | frozenset(p for p in undrained - hops if p in winning)


def _decide_prefix(now: float, dest: DestinationParams, candidates: tuple[Candidate, ...],
                   carried: PrefixState | None, in_grace: bool) -> Step:
    drained = {c.path for c in candidates if c.drained}
    usable = [c for c in candidates if c.eligibility not in (Eligibility.NO_FAMILY, Eligibility.DRAINED)]
    if not usable:  # every path drained (the rest cannot carry this family)
        return _least_bad(candidates, carried)
    without_data = [c for c in usable if c.eligibility is Eligibility.NO_DATA]
    # Paths whose RTT rests on too few probes: the latency policies wait for them too (failover
    # goes by the order, not by RTT).
    unproven = [] if dest.policy is PolicyKind.FAILOVER else [
        c for c in usable if c.eligible and not c.enough_samples]
    initial, step = _POLICIES[dest.policy]
    if carried is None or not carried.measured:
        if len(without_data) == len(usable):
            return _startup(dest, usable, carried, drained)
        if (without_data or unproven) and in_grace:
            hops = carried.nexthops if carried is not None else (NextHop(usable[0].path),)
            current = {nh.path for nh in hops}
            tier = best_tier(candidates)
            if all(c in tier for c in usable if c.path in current) and not current & drained:
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
