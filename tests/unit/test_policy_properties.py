"""Property tests over whole sequences of telemetry: whatever the paths do, the decision keeps
its promises (never empty, a reason for every change, hold_down, leaving in the same call)."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from pathsteer.routes import Desired, NextHop, RouteIntent
from pathsteer.policy import ChangeKind, PolicyKind, PolicyState, Sla, decide
from pathsteer.policy.candidates import best_tier
from pathsteer.policy.lowest_latency import improvement
from pathsteer.telemetry.snapshot import PathState

from test_policy_fixtures import PREFIX, Load, params, path, snap

PATHS = ("p1", "p2", "p3")
CAPS = {"p1": 100_000_000, "p2": 50_000_000, "p3": 50_000_000}

path_figures = st.tuples(
    st.sampled_from([PathState.UP, PathState.UP, PathState.UP, PathState.DEGRADED, PathState.DOWN,
                     PathState.UNKNOWN]),
    st.floats(1.0, 200.0),  # rtt ms
    st.sampled_from([0.0, 0.0, 1.0, 4.0, 10.0, 100.0]),  # loss %
    st.floats(0.0, 30.0),  # jitter ms
    st.floats(0.0, 1.2),  # utilization
)
ticks = st.lists(st.tuples(st.sampled_from([0.0, 0.02, 0.02, 0.1, 0.5, 1.5]),
                           st.tuples(path_figures, path_figures, path_figures)), min_size=1, max_size=60)
setups = st.tuples(
    st.sampled_from(list(PolicyKind)),
    st.sampled_from([0.0, 0.02, 0.5, 1.0]),  # hold_down
    st.sampled_from([0.0, 0.1, 0.3]),  # min_improvement
    st.sampled_from([Sla(), Sla(max_rtt_s=0.1, max_loss_pct=5.0, max_jitter_s=0.02)]),
)


def run(setup, steps):
    policy, hold_down, min_improvement, sla = setup
    p = params(policy, PATHS, capacities=CAPS, hold_down_s=hold_down, min_improvement=min_improvement, sla=sla)
    state, now, out = PolicyState(), 0.0, []
    for dt, figures in steps:
        now += dt
        snaps = [path(name, rtt, state=st_, loss=loss, jitter_ms=jit, failing=3 if st_ is PathState.DOWN else 0)
                 for name, (st_, rtt, loss, jit, _) in zip(PATHS, figures)]
        load = {name: Load(out_bps=u * CAPS[name]) for name, (*_, u) in zip(PATHS, figures)}
        d = decide(now, snap(now, *snaps), load, p, state)
        out.append((now, d))
        state = d.state
    return p, out


@settings(max_examples=300, deadline=None)
@given(setups, ticks)
def test_decisions_keep_their_promises(setup, steps):
    policy, hold_down, min_improvement, _ = setup
    p, out = run(setup, steps)
    before = ()
    for i, (now, d) in enumerate(out):
        hops = d.desired.routes[PREFIX].nexthops
        r = d.route(PREFIX)
        # never blackholed; only listed paths; kernel weight range
        assert hops and len({nh.path for nh in hops}) == len(hops)
        assert all(nh.path in PATHS and 1 <= nh.weight <= 255 for nh in hops)
        assert policy is PolicyKind.WEIGHTED or len(hops) == 1
        # a change always comes with exactly one event and a reason
        if hops != before:
            (e,) = d.events
            assert e.before == before and e.after == hops and e.reason and e.at == now and r.since == now
        else:
            assert d.events == ()
        assert r.reason
        # leaving at once: while some path is eligible, every next hop is in the best eligible tier
        tier = best_tier(r.candidates)
        if tier and r.kind is not ChangeKind.STARTUP:
            assert {nh.path for nh in hops} <= {c.path for c in tier}, (r.reason, r.candidates)
        # hold_down: a move to a better/earlier/joining path was wanted without a break for hold_down
        if hops != before and r.kind in (ChangeKind.BETTER, ChangeKind.FAILBACK, ChangeKind.JOINED):
            new = next(nh.path for nh in hops if nh.path not in {b.path for b in before})
            j = i
            while j > 0 and _wants(out[j - 1][1], new, before, policy, min_improvement):
                j -= 1
            assert now - out[j][0] >= hold_down - 1e-9, (r.reason, now, out[j][0])
        # weighted: a path leaving moves only its own flows — the others keep their weights
        if policy is PolicyKind.WEIGHTED and hops != before and r.kind is ChangeKind.LEFT:
            kept = {b.path: b.weight for b in before}
            if set(kept) >= {nh.path for nh in hops}:
                assert all(nh.weight == kept[nh.path] for nh in hops)
        before = hops


def _wants(d, new, current, policy, min_improvement) -> bool:
    """Whether, in decision ``d``, path ``new`` was winning over the ``current`` next hops."""
    r = d.route(PREFIX)
    tier = best_tier(r.candidates)
    cand = {c.path: c for c in r.candidates}
    if policy is PolicyKind.WEIGHTED:
        # A path waiting to join keeps its timer while others leave the set: it has to have
        # been eligible (and out of the set) without a break.
        return cand[new] in tier and new not in {nh.path for nh in r.nexthops}
    if r.nexthops != current:
        return False
    if cand[new] not in tier:
        return False
    if policy is PolicyKind.LOWEST_LATENCY:
        g = improvement(cand[current[0].path], cand[new])
        return g is not None and g >= min_improvement
    if policy is PolicyKind.FAILOVER:
        return cand[new].order < cand[current[0].path].order
    return True


@settings(max_examples=100, deadline=None)
@given(setups, ticks)
def test_deterministic(setup, steps):
    assert run(setup, steps)[1] == run(setup, steps)[1]


PREFIXES = tuple(ipaddress.ip_network(f"198.51.{i}.0/24") for i in range(3))


@settings(max_examples=100, deadline=None)
@given(setups, ticks, st.tuples(*[st.sampled_from([None, "p1", "p2", "p3"])] * 3))
def test_prefixes_sharing_a_setup_are_decided_as_if_alone(setup, steps, adopted):
    """decide() decides alike destinations once per call; each must still get exactly what it
    would get on its own (prefixes start from different adopted next hops)."""
    policy, hold_down, min_improvement, sla = setup

    def dest_params(prefixes):
        p = params(policy, PATHS, capacities=CAPS, hold_down_s=hold_down, min_improvement=min_improvement, sla=sla)
        return replace(p, destinations=tuple(replace(p.destinations[0], prefix=x) for x in prefixes))

    def go(prefixes):
        p = dest_params(prefixes)
        installed = Desired({x: RouteIntent(x, (NextHop(a),)) for x, a in zip(PREFIXES, adopted)
                             if a is not None and x in prefixes})
        state, now, out = PolicyState.adopt(installed, p, 0.0), 0.0, []
        for dt, figures in steps:
            now += dt
            snaps = [path(n, rtt, state=s, loss=loss, jitter_ms=jit, failing=3 if s is PathState.DOWN else 0)
                     for n, (s, rtt, loss, jit, _) in zip(PATHS, figures)]
            d = decide(now, snap(now, *snaps), None, p, state)
            state = d.state
            out.append(d)
        return out

    together = go(PREFIXES)
    for x in PREFIXES:
        alone = go((x,))
        for t, a in zip(together, alone):
            assert t.route(x) == a.route(x)
            assert t.desired.routes[x] == a.desired.routes[x]
            assert [e for e in t.events if e.prefix == x] == list(a.events)
