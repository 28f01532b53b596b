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
from dataclasses import dataclass

from pathsteer.routes import Desired, NextHop, Prefix, RouteIntent
from pathsteer.policy import failover, lowest_latency, weighted
from pathsteer.policy.candidates import Candidate, Eligibility, LoadFigures, best_tier, evaluate, judge, least_bad
from pathsteer.policy.lowest_latency import improvement
from pathsteer.policy.params import DestinationParams, PolicyKind, PolicyParams
from pathsteer.policy.state import ChangeKind, Decision, Event, PolicyState, PrefixState, RouteTable
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

    Cost: what changed. A state made by `decide` with the same ``params`` carries how its
    destinations were grouped (`PolicyState.memo`): destinations alike in the same situation
    get one answer, so each group is judged and stepped once, and only the members of a group
    whose answer changes something are visited (`_incremental`). Fresh figures that cross no
    margin that matters (probes every 100 ms: new snapshot objects at every call) step no group:
    each path is judged once for all the setups that judge it alike and a group whose current
    path stays best by those judgments keeps its state, its status text made only when read
    (`_stays`). Without it (the first call, a reload, an adopted state) every destination is
    visited (`_full`); both give the same `Decision` (tests/unit/test_policy_incremental.py).
    """
    load = load or {}
    drains = drains or {}
    upstream = upstream or {}
    memo = previous.memo
    if isinstance(memo, _Memo) and memo.params is params and previous.started_at is not None:
        return _incremental(now, telemetry, load, params, previous, memo, drains, upstream)
    return _full(now, telemetry, load, params, previous, drains, upstream)


def _situation(state: PrefixState) -> tuple:
    """What a destination's step depends on, of its state (with its setup: its group's key)."""
    return (state.nexthops, state.measured, state.kind, state.winning, state.rebalance_since, state.shift,
            state.drained)


def _keeps(carried: PrefixState, step: Step, drained: frozenset[str]) -> bool:
    """Whether ``step`` leaves a state as it is (the same object is kept)."""
    return (step.nexthops == carried.nexthops and step.kind is None and step.winning == carried.winning
            and step.rebalance_since == carried.rebalance_since and step.shift == carried.shift
            and drained == carried.drained)


def _advance(now: float, dest: DestinationParams, prev: PrefixState | None, carried: PrefixState | None,
             step: Step, drained: frozenset[str]) -> tuple[PrefixState, Event | None]:
    """A destination's new state after ``step``, and its event if its next hops changed."""
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
    if carried is prev and carried is not None and not moved and _keeps(carried, step, drained):
        state = carried  # nothing new: keep the old object
    else:
        measured = (carried is not None and carried.measured) or step.kind not in (
            None, ChangeKind.STARTUP, ChangeKind.ADOPTED, ChangeKind.RECONFIGURED)
        state = PrefixState(dest, step.nexthops, since, reason, kind, measured, step.winning,
                            step.rebalance_since, step.shift, drained)
    event = Event(now, dest.prefix, dest.policy, before, step.nexthops, kind, reason) if moved else None
    return state, event


@dataclass(frozen=True, eq=False)
class _Memo:
    """How a decision grouped its destinations, for the next call with the same params: a
    group is the destinations of one setup (`PolicyParams.setups`) in one situation
    (`_situation` of their states). Never changed once made (a later decision copies what it
    changes)."""

    params: PolicyParams
    desired: Desired
    of: list[int]  # per destination (config order): its group
    members: dict[int, list[int]]  # per group: its destinations, ascending
    ids: dict[tuple, int]  # per (setup, situation): its group
    keys: dict[int, tuple]  # per group: its (setup, situation)
    next_id: int
    # What the call judged per setup: (its inputs, `_inputs`; its `_Judged`), and per group
    # that its step left as it was: (representative, its state, in_grace, the `_Judged`, its
    # result for `RouteTable`). The next call takes them over while their inputs are the same
    # objects.
    judged: dict[int, tuple[tuple, _Judged]] = dataclasses.field(default_factory=dict)
    kept: dict[int, tuple] = dataclasses.field(default_factory=dict)


class _Judged:
    """A setup's candidates for one call's inputs, made when first read (`evaluate`)."""

    __slots__ = ("_args", "_candidates")

    def __init__(self, dest: DestinationParams, params: PolicyParams, snapshots: Mapping, load: Mapping,
                 drains: Mapping) -> None:
        self._args: tuple | None = (dest, params, snapshots, load, drains)
        self._candidates: tuple[Candidate, ...] | None = None

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        if self._candidates is None:
            self._candidates = evaluate(*self._args)
            self._args = None
        return self._candidates


class _Lazy:
    """A group's (pending, candidates) for `RouteTable`, when `_stays` showed that its step keeps
    the state as it is: the step is run (pure: the same answer as at the call) when read."""

    __slots__ = ("_args", "_value")

    def __init__(self, now: float, dest: DestinationParams, cell: _Judged, carried: PrefixState,
                 in_grace: bool) -> None:
        self._args: tuple | None = (now, dest, cell, carried, in_grace)
        self._value: tuple[str | None, tuple[Candidate, ...]] | None = None

    @property
    def value(self) -> tuple[str | None, tuple[Candidate, ...]]:
        if self._value is None:
            now, dest, cell, carried, in_grace = self._args
            candidates = cell.candidates
            step, _ = _drain_labels(_decide_prefix(now, dest, candidates, carried, in_grace), candidates, carried)
            self._value = (step.pending, candidates)
            self._args = None
        return self._value


_QUICK = (PolicyKind.LOWEST_LATENCY, PolicyKind.FAILOVER)


def _stays(dest: DestinationParams, judging: int, carried: PrefixState, params: PolicyParams, snapshots: Mapping,
           load: Mapping, drains: Mapping, marks: dict[tuple, Candidate]) -> bool:
    """Whether the step of ``dest`` (no upstream figures) would keep ``carried`` as it is
    (`_keeps`), told from its paths' judgments alone, each made once per call for every setup
    that judges it alike (``marks``, per path and ``judging``: `PolicyParams.judgings`). True
    only where that is certain: a measured choice (no startup rule), no clock running, not a
    least-bad choice (relabelled once eligible again), the current path in the best tier, the
    same drains, and — lowest-latency — no path with enough samples better by the hysteresis'
    margins, or — failover — no eligible path of the best tier earlier in the order. Anything
    else is left to the policy's step."""
    if (dest.policy not in _QUICK or not carried.measured or _timers(carried) or len(carried.nexthops) != 1
            or carried.kind is ChangeKind.LEAST_BAD):
        return False
    current_path = carried.nexthops[0].path
    judged = []
    current = None
    current_at = -1
    best = 2
    for order, name in enumerate(dest.paths):
        # shared by the setups that judge the path alike: its ``order`` is the first one's, so
        # the order here is ``order`` (enumerate), never ``c.order``
        c = marks.get((name, judging))
        if c is None:
            c = marks[(name, judging)] = judge(dest, params, name, order, snapshots, load, drains)
        judged.append(c)
        if c.eligibility.eligible and c.tier < best:
            best = c.tier
        if name == current_path:
            current, current_at = c, order
    if current is None or not current.eligibility.eligible or current.tier != best:
        return False
    if frozenset(c.path for c in judged if c.drained) != carried.drained:
        return False
    if dest.policy is PolicyKind.FAILOVER:
        return not any(c.eligibility.eligible and c.tier == best for c in judged[:current_at])
    h = dest.hysteresis
    for c in judged:
        if c is current or not c.eligibility.eligible or c.tier != best or not c.enough_samples:
            continue
        gain = improvement(current, c)
        if (gain is not None and gain >= h.min_improvement
                and (current.rtt_s is None or current.rtt_s - c.rtt_s >= h.min_improvement_abs_s)):
            return False
    return True


_NOT_DRAINED = object()


def _inputs(dest: DestinationParams, snapshots: Mapping, load: Mapping, drains: Mapping) -> tuple:
    """What `evaluate` judges a destination without upstream figures from, per path."""
    return tuple((snapshots.get(n), load.get(n), drains.get(n, _NOT_DRAINED)) for n in dest.paths)


def _same_inputs(a: tuple, b: tuple) -> bool:
    """The same snapshot and load objects (a path's snapshot is the same object while nothing
    changed, `PathTracker.snapshot`) and the same drains."""
    return all(x[0] is y[0] and x[1] is y[1] and x[2] == y[2] for x, y in zip(a, b))


def _timers(state: PrefixState) -> bool:
    """Whether the state has a clock running (a challenger's hold_down, a rebalance, a shift
    waiting for the load): its step depends on ``now``, not on its inputs alone."""
    return bool(state.winning) or state.rebalance_since is not None or state.shift is not None


def _memo_of(params: PolicyParams, desired: Desired, states: Mapping[Prefix, PrefixState]) -> _Memo:
    of: list[int] = []
    members: dict[int, list[int]] = {}
    ids: dict[tuple, int] = {}
    for i, (dest, setup) in enumerate(zip(params.destinations, params.setups)):
        key = (setup, _situation(states[dest.prefix]))
        gid = ids.get(key)
        if gid is None:
            gid = ids[key] = len(ids)
            members[gid] = []
        of.append(gid)
        members[gid].append(i)
    return _Memo(params, desired, of, members, ids, {g: k for k, g in ids.items()}, len(ids))


def _full(now: float, telemetry: TelemetrySnapshot, load: Mapping[str, LoadFigures], params: PolicyParams,
          previous: PolicyState, drains: Mapping[str, str | None],
          upstream: Mapping[Prefix, Mapping[str, UpstreamFigure]]) -> Decision:
    """Every destination visited (see `decide`)."""
    started_at = previous.started_at if previous.started_at is not None else now
    in_grace = now - started_at < params.startup_grace_s
    prefixes: dict[Prefix, PrefixState] = {}
    events: list[Event] = []
    desired: dict[Prefix, RouteIntent] = {}
    snapshots = {p.name: p for p in telemetry.paths}
    # Destinations alike (same paths, SLA, policy...) in the same situation get the same answer:
    # judge and decide each such group once (10k prefixes usually share a handful of setups).
    judged: dict[int, tuple[Candidate, ...]] = {}
    stepped: dict[tuple, tuple[Step, frozenset[str], int]] = {}
    results: list[tuple[str | None, tuple[Candidate, ...]]] = []
    of: list[int] = []
    alone: dict[int, tuple[str | None, tuple[Candidate, ...]]] = {}
    carried_over = 0
    for i, (dest, setup) in enumerate(zip(params.destinations, params.setups)):
        prev = previous.prefixes.get(dest.prefix)
        carried_over += prev is not None
        carried = _carry(prev, dest, params)
        figures = upstream.get(dest.prefix) if upstream else None
        if figures:  # this prefix's own upstream figures: judged and decided on its own
            candidates = evaluate(dest, params, snapshots, load, drains, figures, now)
            step, drained = _drain_labels(_decide_prefix(now, dest, candidates, carried, in_grace), candidates,
                                          carried)
            alone[i] = (step.pending, candidates)
            of.append(-1)
        else:
            candidates = judged.get(setup)
            if candidates is None:
                candidates = judged[setup] = evaluate(dest, params, snapshots, load, drains)
            situation = (setup, None if carried is None else _situation(carried))
            got = stepped.get(situation)
            if got is None:
                step, drained = _drain_labels(_decide_prefix(now, dest, candidates, carried, in_grace),
                                              candidates, carried)
                got = stepped[situation] = (step, drained, len(results))
                results.append((step.pending, candidates))
            step, drained, rid = got
            of.append(rid)
        state, ev = _advance(now, dest, prev, carried, step, drained)
        prefixes[dest.prefix] = state
        desired[dest.prefix] = RouteIntent(dest.prefix, step.nexthops)
        if ev is not None:
            events.append(ev)
    if carried_over < len(previous.prefixes):
        for prefix, old in previous.prefixes.items():
            if prefix not in prefixes:
                events.append(Event(now, prefix, old.config.policy, old.nexthops, (), ChangeKind.REMOVED,
                                    "removed from the config"))
    want = Desired(desired)
    memo = _memo_of(params, want, prefixes)
    routes = RouteTable(params, prefixes, of, dict(enumerate(results)), alone)
    return Decision(want, PolicyState(prefixes, started_at, memo), routes, tuple(events))


def _incremental(now: float, telemetry: TelemetrySnapshot, load: Mapping[str, LoadFigures],
                 params: PolicyParams, previous: PolicyState, memo: _Memo, drains: Mapping[str, str | None],
                 upstream: Mapping[Prefix, Mapping[str, UpstreamFigure]]) -> Decision:
    """Each group judged and stepped once (its first member, in config order, not decided
    alone: the one `_full` would step first); only the members of groups whose step changes
    their state are visited, then regrouped by their new situation (see `decide`)."""
    started_at = previous.started_at
    assert started_at is not None
    in_grace = now - started_at < params.startup_grace_s
    dests = params.destinations
    states = previous.prefixes
    snapshots = {p.name: p for p in telemetry.paths}
    alone_in: dict[int, Mapping[str, UpstreamFigure]] = {}
    if upstream:
        positions = params.positions
        for prefix, figures in upstream.items():
            i = positions.get(prefix)
            if figures and i is not None:
                alone_in[i] = figures
    judged: dict[int, tuple[tuple, _Judged]] = {}
    kept: dict[int, tuple] = {}
    results: dict[int, tuple[str | None, tuple[Candidate, ...]] | _Lazy] = {}
    changed: list[tuple[int, Step, frozenset[str]]] = []
    marks: dict[tuple, Candidate] = {}  # this call's judgments of a path, per (path, judging)
    judgings = params.judgings
    for gid, members in memo.members.items():
        rep = members[0]
        if alone_in and rep in alone_in:
            rep = next((i for i in members if i not in alone_in), -1)
            if rep < 0:
                continue  # every member decided on its own
        dest = dests[rep]
        setup = memo.keys[gid][0]
        carried = states[dest.prefix]
        got = judged.get(setup)
        if got is None:
            inputs = _inputs(dest, snapshots, load, drains)
            last = memo.judged.get(setup)
            if last is not None and _same_inputs(last[0], inputs):
                got = judged[setup] = last  # nothing it is judged from changed
            else:
                got = judged[setup] = (inputs, _Judged(dest, params, snapshots, load, drains))
        cell = got[1]
        last = memo.kept.get(gid)
        if (last is not None and last[0] == rep and last[1] is carried and last[2] == in_grace
                and last[3] is cell and not _timers(carried)):
            results[gid] = last[4]  # the same inputs, no clock running: the same step
            kept[gid] = last
            continue
        if _stays(dest, judgings[rep], carried, params, snapshots, load, drains, marks):
            # The paths' judgments show the step keeps the state as it is: what it would say
            # (its pending text, the candidates) is made only if someone reads it.
            result = _Lazy(now, dest, cell, carried, in_grace)
            results[gid] = result
            kept[gid] = (rep, carried, in_grace, cell, result)
            continue
        step, drained = _drain_labels(_decide_prefix(now, dest, cell.candidates, carried, in_grace),
                                      cell.candidates, carried)
        results[gid] = (step.pending, cell.candidates)
        if not _keeps(carried, step, drained):
            changed.append((gid, step, drained))
        else:
            kept[gid] = (rep, carried, in_grace, cell, results[gid])
    if not changed and not alone_in:
        memo = dataclasses.replace(memo, judged=judged, kept=kept)
        state = PolicyState(states, started_at, memo)
        return Decision(memo.desired, state, RouteTable(params, states, memo.of, results, {}), ())

    new_states = dict(states)
    routes_in = dict(memo.desired.routes)
    events: list[tuple[int, Event]] = []
    groups = _Regroup(memo)
    for gid, step, drained in changed:
        movers = []
        state = None
        for i in memo.members[gid]:
            if i in alone_in:
                continue
            dest = dests[i]
            prev = states[dest.prefix]
            state, ev = _advance(now, dest, prev, prev, step, drained)
            new_states[dest.prefix] = state
            if ev is not None:
                routes_in[dest.prefix] = RouteIntent(dest.prefix, step.nexthops)
                events.append((i, ev))
            movers.append(i)
        if state is not None:
            groups.move(gid, movers, (memo.keys[gid][0], _situation(state)))
    alone: dict[int, tuple[str | None, tuple[Candidate, ...]]] = {}
    for i, figures in sorted(alone_in.items()):
        dest = dests[i]
        prev = states[dest.prefix]
        candidates = evaluate(dest, params, snapshots, load, drains, figures, now)
        step, drained = _drain_labels(_decide_prefix(now, dest, candidates, prev, in_grace), candidates, prev)
        alone[i] = (step.pending, candidates)
        state, ev = _advance(now, dest, prev, prev, step, drained)
        if state is not prev:
            new_states[dest.prefix] = state
            groups.move(memo.of[i], [i], (params.setups[i], _situation(state)))
        if ev is not None:
            routes_in[dest.prefix] = RouteIntent(dest.prefix, step.nexthops)
            events.append((i, ev))
    events.sort(key=lambda e: e[0])
    want = Desired(routes_in) if events else memo.desired
    routes = RouteTable(params, new_states, memo.of, results, alone)
    return Decision(want, PolicyState(new_states, started_at, groups.memo(want, judged, kept)), routes,
                    tuple(e for _, e in events))


class _Regroup:
    """The next `_Memo`, copied from the last one as far as it changes."""

    def __init__(self, memo: _Memo) -> None:
        self.old = memo
        self.of = memo.of  # copied on the first member that changes group
        self.members = dict(memo.members)
        self.ids = dict(memo.ids)
        self.keys = dict(memo.keys)
        self.next_id = memo.next_id

    def move(self, gid: int, movers: list[int], key: tuple) -> None:
        """``movers`` (ascending, members of group ``gid``) are now in situation ``key``."""
        old_key = self.keys[gid]
        if key == old_key:
            return
        members = self.members[gid]
        whole = len(movers) == len(members)
        target = self.ids.get(key)
        if whole and target is None:  # the whole group moves on: it is relabelled, nobody moves
            del self.ids[old_key]
            self.ids[key] = gid
            self.keys[gid] = key
            return
        if self.of is self.old.of:
            self.of = list(self.old.of)
        if target is None:
            target = self.ids[key] = self.next_id
            self.keys[target] = key
            self.members[target] = []
            self.next_id += 1
        if whole:
            del self.members[gid], self.ids[old_key], self.keys[gid]
        else:
            gone = set(movers)
            self.members[gid] = [i for i in members if i not in gone]
        self.members[target] = sorted(self.members[target] + movers)  # two ascending runs: linear
        of = self.of
        for i in movers:
            of[i] = target

    def memo(self, desired: Desired, judged: dict, kept: dict) -> _Memo:
        return _Memo(self.old.params, desired, self.of, self.members, self.ids, self.keys, self.next_id, judged, kept)


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
