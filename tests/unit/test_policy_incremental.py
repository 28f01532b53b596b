"""Incremental decisions (`decide` with the state of its last call: only the groups whose inputs
changed are visited) agree with full ones (every destination visited) on random sequences of
telemetry, load, drains and upstream figures, over many prefixes of several setups that start
from different adopted next hops; and a call where nothing changed costs no per-prefix work."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pathsteer.routes import Desired, NextHop, RouteIntent
from pathsteer.policy import (DestinationParams, Hysteresis, PathParams, PolicyKind, PolicyParams, PolicyState, Sla,
                              UpstreamFigure, decide)
from pathsteer.policy.decide import _Memo, _memo_of
from pathsteer.policy.state import RouteTable
from pathsteer.telemetry.snapshot import PathState

from test_policy_fixtures import Load, path, snap
from test_policy_properties import path_figures

PATHS = ("p1", "p2", "p3")
CAPS = {"p1": 100_000_000, "p2": 50_000_000, "p3": 50_000_000}
PREFIXES = tuple(ipaddress.ip_network(f"198.51.{i}.0/24") for i in range(12))

tick = st.tuples(
    st.sampled_from([0.0, 0.02, 0.02, 0.1, 0.5, 1.5, 6.0]),  # time step (6 s: past the startup grace)
    st.tuples(path_figures, path_figures, path_figures),
    st.sampled_from([(), (), (), ("p1",), ("p2",), ("p1", "p3")]),  # drained paths
    st.sampled_from([None, None, None, (0, "p1", 0.05), (3, "p2", 2.0), (7, "p1", 2.0)]),  # upstream figure
    st.sampled_from([False, True, True]),  # the same snapshot and load objects as the last tick (nothing probed)
)
ticks = st.lists(tick, min_size=1, max_size=40)
setups = st.lists(st.tuples(
    st.sampled_from(list(PolicyKind)),
    st.sampled_from([0.0, 0.5, 1.0]),  # hold_down
    st.sampled_from([Sla(), Sla(max_rtt_s=0.1, max_loss_pct=5.0, max_upstream_time_s=1.0)]),
    st.sampled_from([PATHS, ("p2", "p1"), ("p3", "p1", "p2")]),
), min_size=1, max_size=3)
adopted = st.lists(st.sampled_from([None, "p1", "p2", "p3"]), min_size=len(PREFIXES), max_size=len(PREFIXES))


def build(kinds) -> PolicyParams:
    dests = []
    for i, prefix in enumerate(PREFIXES):
        policy, hold, sla, paths = kinds[i % len(kinds)]
        dests.append(DestinationParams(prefix, policy, paths, Hysteresis(hold_down_s=hold), sla))
    return PolicyParams(tuple(PathParams(n, CAPS[n]) for n in PATHS), tuple(dests), startup_grace_s=5.0)


def groups(memo: _Memo) -> set[tuple]:
    """A memo's partition of the destinations, with each part's key (group ids aside)."""
    return {(memo.keys[g], tuple(m)) for g, m in memo.members.items() if m}


def same(a, b) -> None:
    assert a.desired == b.desired
    assert dict(a.state.prefixes) == dict(b.state.prefixes)
    assert a.state.started_at == b.state.started_at
    assert list(a.routes) == list(b.routes)
    assert a.events == b.events


@settings(max_examples=300, deadline=None)
@given(setups, ticks, adopted)
def test_incremental_and_full_decisions_agree(kinds, steps, adopt):
    p = build(kinds)
    installed = Desired({x: RouteIntent(x, (NextHop(a),)) for x, a in zip(PREFIXES, adopt)
                         if a is not None and a in p.destination(x).paths})
    state, now, snaps, load = PolicyState.adopt(installed, p, 0.0), 0.0, None, None
    for dt, figures, drained, figure, repeat in steps:
        now += dt
        if not repeat or snaps is None:
            snaps = [path(n, rtt, state=s, loss=loss, jitter_ms=jit, failing=3 if s is PathState.DOWN else 0)
                     for n, (s, rtt, loss, jit, _) in zip(PATHS, figures)]
            load = {n: Load(out_bps=u * CAPS[n]) for n, (*_, u) in zip(PATHS, figures)}
        upstream = None
        if figure is not None:
            i, where, p95 = figure
            upstream = {PREFIXES[i]: {where: UpstreamFigure(p95 / 2, p95, 100, now)}}
        drains = {d: None for d in drained}
        t = snap(now, *snaps)
        got = decide(now, t, load, p, state, drains, upstream)
        full = decide(now, t, load, p, replace(state, memo=None), drains, upstream)
        same(got, full)
        # the grouping carried forward is the one a full decision makes
        assert groups(got.state.memo) == groups(_memo_of(p, got.desired, got.state.prefixes))
        state = got.state


def test_a_steady_call_visits_no_prefix():
    """10k prefixes, nothing changes: the same Desired and state mapping come back (no copy), and
    the call costs a small part of a full one."""
    names = [f"p{i}" for i in range(8)]
    dests = tuple(DestinationParams(ipaddress.ip_network((0x0A000000 + (i << 8), 24)), PolicyKind.LOWEST_LATENCY,
                                    tuple(names[(i + k) % 8] for k in range(3)), sla=Sla(max_rtt_s=0.2))
                  for i in range(10_000))
    p = PolicyParams(tuple(PathParams(n) for n in names), dests)
    up = snap(0.0, *[path(n, 10.0 + j) for j, n in enumerate(names)])
    first = decide(0.0, up, None, p, PolicyState())
    second = decide(1.0, up, None, p, first.state)
    assert second.desired is first.desired and second.state.prefixes is first.state.prefixes
    assert second.events == () and isinstance(second.routes, RouteTable) and len(second.routes) == 10_000
    assert second.route(dests[42].prefix).nexthops == first.desired.routes[dests[42].prefix].nexthops
    t0 = time.perf_counter()
    for k in range(5):
        decide(2.0 + k, up, None, p, second.state)
    incremental = (time.perf_counter() - t0) / 5
    t0 = time.perf_counter()
    for k in range(5):
        decide(2.0 + k, up, None, p, replace(second.state, memo=None))
    full = (time.perf_counter() - t0) / 5
    assert incremental < full / 5, (incremental, full)  # generous: measured ~1/100


def test_a_move_visits_the_moved_groups_only():
    """A path going down moves the prefixes over it; the others' states are the same objects."""
    names = ("a", "b", "c", "d")
    dests = tuple(DestinationParams(ipaddress.ip_network((0x0A000000 + (i << 8), 24)), PolicyKind.FAILOVER,
                                    ("a", "b") if i % 2 else ("c", "d")) for i in range(1000))
    p = PolicyParams(tuple(PathParams(n) for n in names), dests)
    up = [path(n, 10.0) for n in names]
    d1 = decide(0.0, snap(0.0, *up), None, p, PolicyState())
    d2 = decide(1.0, snap(1.0, path("a", 10.0, state=PathState.DOWN, failing=3), *up[1:]), None, p, d1.state)
    assert len(d2.events) == 500 and all(e.after == (NextHop("b"),) for e in d2.events)
    for d in dests:
        if d.paths[0] == "c":
            assert d2.state.prefixes[d.prefix] is d1.state.prefixes[d.prefix]
    same(d2, decide(1.0, snap(1.0, path("a", 10.0, state=PathState.DOWN, failing=3), *up[1:]), None, p,
                    replace(d1.state, memo=None)))


def test_a_hold_down_ends_while_nothing_is_probed():
    """A challenger's hold_down runs on the clock: the step is taken again even when the same
    snapshot objects come back (probes every second, decisions every 100 ms)."""
    from test_policy_fixtures import params as one

    p = one(PolicyKind.LOWEST_LATENCY, ("p1", "p2"), hold_down_s=1.0)
    d = decide(0.0, snap(0.0, path("p1", 50.0), path("p2", 50.0)), None, p, PolicyState())
    faster = (path("p1", 50.0), path("p2", 20.0))  # the same objects from here on
    for now in (0.1, 0.2, 0.6):
        d = decide(now, snap(now, *faster), None, p, d.state)
        assert d.events == () and d.routes[0].pending.endswith(f"for {now - 0.1:.1f} s of hold_down 1 s")
    d = decide(1.2, snap(1.2, *faster), None, p, d.state)
    assert [e.after for e in d.events] == [(NextHop("p2"),)]


near = st.tuples(
    st.sampled_from([PathState.UP, PathState.UP, PathState.UP, PathState.DEGRADED]),
    st.floats(18.0, 24.0),  # rtt ms: around one another, across the 10 % and 0.5 ms margins
    st.sampled_from([100, 100, 6, 5, 4, 1]),  # answered probes (min_samples 5)
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.1, 0.1, 0.6, 1.2]), st.tuples(near, near, near),
                          st.sampled_from([(), (), (), ("p2",), ("p1", "p2", "p3")]),
                          st.sampled_from([False, True])), min_size=1, max_size=60),
       st.sampled_from([0.0, 1.0]), adopted)
def test_steady_groups_read_late_agree_with_full_decisions(steps, hold, adopt):
    """Paths close to one another (RTTs within the hysteresis' margins, probes around
    min_samples, DEGRADED now and then, drains): the groups that keep their state without being
    stepped (their status made only when read) read, after every later call, what a full
    decision said at their own call — the setups share paths but judge them alike or not (two
    SLAs), lowest-latency and failover both."""
    kinds = [(PolicyKind.LOWEST_LATENCY, PATHS, Sla()), (PolicyKind.FAILOVER, ("p2", "p1"), Sla()),
             (PolicyKind.LOWEST_LATENCY, ("p3", "p1", "p2"), Sla(max_rtt_s=0.0225)),
             (PolicyKind.FAILOVER, ("p3", "p2"), Sla(max_rtt_s=0.0225))]
    dests = tuple(DestinationParams(x, kinds[i % 4][0], kinds[i % 4][1], Hysteresis(hold_down_s=hold), kinds[i % 4][2])
                  for i, x in enumerate(PREFIXES))
    p = PolicyParams(tuple(PathParams(n, CAPS[n]) for n in PATHS), dests, startup_grace_s=0.5)
    installed = Desired({x: RouteIntent(x, (NextHop(a),)) for x, a in zip(PREFIXES, adopt)
                         if a is not None and a in p.destination(x).paths})
    state, now, t = PolicyState.adopt(installed, p, 0.0), 0.0, None
    made = []
    for dt, figures, drained, repeat in steps:
        now += dt
        if not repeat or t is None:
            t = snap(now, *[path(n, rtt, state=s, samples=k) for n, (s, rtt, k) in zip(PATHS, figures)])
        drains = {d: None for d in drained}
        got = decide(now, t, None, p, state, drains)
        full = decide(now, t, None, p, replace(state, memo=None), drains)
        assert got.desired == full.desired and got.events == full.events
        assert dict(got.state.prefixes) == dict(full.state.prefixes)
        made.append((got, full))
        state = got.state
    for got, full in made:  # read once every call has been made
        assert list(got.routes) == list(full.routes)


def test_fresh_figures_that_change_nothing_step_no_group(monkeypatch):
    """Every call brings new snapshot objects (probes every 100 ms), but no figure crosses a
    margin that matters: no group is stepped (each path is judged once for all the setups that
    judge it alike); what a group would say is made when read — the faster p4, on too few
    probes, is named as not chosen."""
    import importlib

    module = importlib.import_module("pathsteer.policy.decide")

    names = [f"p{i}" for i in range(8)]
    dests = tuple(DestinationParams(ipaddress.ip_network((0x0A000000 + (i << 8), 24)),
                                    PolicyKind.LOWEST_LATENCY if i % 2 else PolicyKind.FAILOVER,
                                    tuple(names[(i + k) % 8] for k in range(3))) for i in range(10_000))
    p = PolicyParams(tuple(PathParams(n) for n in names), dests)

    def figures(now: float, wobble: float):
        return snap(now, *[path(n, (12.0 if n == "p4" else 20.0 + j * 0.01) + wobble, samples=3 if n == "p4" else 100)
                           for j, n in enumerate(names)])

    d = decide(0.0, figures(0.0, 0.0), None, p, PolicyState())
    d = decide(6.0, figures(6.0, 0.0), None, p, d.state)  # past the startup grace: measured
    steps = []
    real = module._decide_prefix
    monkeypatch.setattr(module, "_decide_prefix", lambda *a: steps.append(a) or real(*a))
    calls = [decide(6.0 + k / 10, figures(6.0 + k / 10, k * 0.003), None, p, d.state) for k in range(1, 6)]
    assert steps == [] and all(c.events == () and c.state.prefixes is d.state.prefixes for c in calls)
    lowest = next(i for i, x in enumerate(dests) if x.policy is PolicyKind.LOWEST_LATENCY and "p4" in x.paths[1:])
    route = calls[0].routes[lowest]
    assert route.pending is not None and "p4" in route.pending and "3 of min 5 answered probes" in route.pending
    assert [c.rtt_s for c in route.candidates if c.path == "p4"] == [pytest.approx(0.012003)]
