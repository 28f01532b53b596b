"""Drains in the pure decide: a drained path is ineligible for every policy (kind drain, reason
"drained (maintenance)…"), comes back under the policy's failback rules (kind undrain), and a
destination whose paths are all drained or down keeps the least bad (never blackholed)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from pathsteer.policy import ChangeKind, Eligibility, PolicyKind, PolicyState, decide
from pathsteer.policy.weighted import shares_of
from pathsteer.routes import Desired, NextHop, RouteIntent
from pathsteer.telemetry.snapshot import PathState

from test_policy_fixtures import PREFIX, Driver, params, path, snap

DOWN = dict(state=PathState.DOWN, failing=3)


class DrainDriver(Driver):
    """`Driver` with the drained paths passed to every call (``drains``, set by the test)."""

    drains: Mapping[str, str | None] = {}

    def __call__(self, now, *paths, load=None, params=None):
        if params is not None:
            self.params = params
        d = decide(now, snap(now, *paths), load, self.params, self.state, drains=self.drains)
        self.state = d.state
        self.decisions.append(d)
        return d


def three(policy: PolicyKind, hold_down_s: float = 2.0, **kw) -> DrainDriver:
    return DrainDriver(params(policy, ("p1", "p2", "p3"), hold_down_s=hold_down_s, **kw))


def fine(p1: float = 10.0, p2: float = 20.0, p3: float = 30.0):
    return path("p1", p1), path("p2", p2), path("p3", p3)


@pytest.mark.parametrize("policy", [PolicyKind.LOWEST_LATENCY, PolicyKind.FAILOVER])
def test_a_drain_takes_the_path_out_at_once_with_its_own_kind(policy):
    d = three(policy)
    d(0.0, *fine())
    assert d.paths() == ("p1",)
    d.drains = {"p1": "swap the modem"}
    d(0.1, *fine())
    assert d.paths() == ("p2",)
    e = d.events[-1]
    assert e.kind is ChangeKind.DRAIN
    assert e.reason.startswith("p1 drained (maintenance: swap the modem); moved to p2"), e.reason
    c = d.route().candidates[0]
    assert c.eligibility is Eligibility.DRAINED and c.health is Eligibility.ELIGIBLE
    assert c.rtt_s == pytest.approx(0.010)  # its figures stay visible
    assert c.why_not == "drained (maintenance: swap the modem)"


def test_a_drained_path_never_wins_however_good():
    d = three(PolicyKind.LOWEST_LATENCY, hold_down_s=0.5)
    d.drains = {"p1": None}
    d(0.0, *fine())
    assert d.paths() == ("p2",) and d.route().kind is ChangeKind.MEASURED
    for t in range(1, 20):
        d(t * 0.5, *fine(p1=1.0))
    assert d.paths() == ("p2",)
    assert d.route().candidates[0].why_not == "drained (maintenance)"


def test_a_drained_down_path_says_both():
    d = three(PolicyKind.FAILOVER)
    d.drains = {"p1": None}
    d(0.0, path("p1", **DOWN), path("p2"), path("p3"))
    c = d.route().candidates[0]
    assert c.why_not == "drained (maintenance); otherwise down (3/3 targets failing)"
    assert c.health is Eligibility.DOWN


def test_lowest_latency_undrain_comes_back_after_hold_down_as_undrain():
    d = three(PolicyKind.LOWEST_LATENCY, hold_down_s=2.0)
    d(0.0, *fine())
    d.drains = {"p1": None}
    d(0.1, *fine())
    assert d.paths() == ("p2",)
    d.drains = {}
    d(1.0, *fine())
    assert d.paths() == ("p2",)  # hold_down counts from the undrain
    assert d.route().pending.startswith("p1 better than p2 by 50%")
    d(2.9, *fine())
    assert d.paths() == ("p2",)
    d(3.0, *fine())
    assert d.paths() == ("p1",)
    e = d.events[-1]
    assert e.kind is ChangeKind.UNDRAIN
    assert e.reason.startswith("p1 undrained; p1 better than p2 by 50%"), e.reason
    assert d.state.prefixes[PREFIX].drained == frozenset()


def test_an_undrained_path_that_is_no_better_stays_out_and_is_forgotten():
    d = three(PolicyKind.LOWEST_LATENCY, hold_down_s=1.0)
    d(0.0, *fine())
    d.drains = {"p1": None}
    d(0.1, *fine())
    d.drains = {}
    d(0.2, *fine(p1=50.0))
    assert d.paths() == ("p2",)
    assert d.state.prefixes[PREFIX].drained == frozenset()
    d(5.0, *fine(p1=50.0))
    assert d.paths() == ("p2",)


def test_failover_undrain_fails_back_after_hold_down():
    d = three(PolicyKind.FAILOVER, hold_down_s=2.0)
    d(0.0, *fine())
    d.drains = {"p1": None}
    d(1.0, *fine())
    assert d.paths() == ("p2",)
    d.drains = {}
    d(2.0, *fine())
    assert d.paths() == ("p2",)
    assert d.route().pending == "failback to p1: eligible for 0.0 s of hold_down 2 s"
    d(4.0, *fine())
    assert d.paths() == ("p1",)
    e = d.events[-1]
    assert e.kind is ChangeKind.UNDRAIN
    assert e.reason == "p1 undrained; failback to p1: eligible for 2.0 s (hold_down 2 s), before p2 in the order"


def weighted(hold_down_s: float = 2.0) -> DrainDriver:
    return three(PolicyKind.WEIGHTED, hold_down_s, capacities={"p1": 100_000_000, "p2": 50_000_000,
                                                               "p3": 50_000_000})


def test_weighted_a_drained_path_leaves_the_set_the_others_keep_their_weights():
    d = weighted()
    d(0.0, *fine(10.0, 10.0, 10.0))
    before = shares_of(d.decisions[-1].desired.routes[PREFIX].nexthops)
    assert set(before) == {"p1", "p2", "p3"}
    d.drains = {"p2": None}
    d(0.1, *fine(10.0, 10.0, 10.0))
    assert d.paths() == ("p1", "p3")
    hops = {nh.path: nh.weight for nh in d.decisions[-1].desired.routes[PREFIX].nexthops}
    assert hops["p1"] / hops["p3"] == pytest.approx(before["p1"] / before["p3"], rel=0.05)
    e = d.events[-1]
    assert e.kind is ChangeKind.DRAIN
    assert e.reason.startswith("p2 drained (maintenance); p2 left the set, the others keep their weights"), e.reason


def test_weighted_undrain_joins_after_hold_down():
    d = weighted(hold_down_s=2.0)
    d(0.0, *fine(10.0, 10.0, 10.0))
    d.drains = {"p2": None}
    d(0.1, *fine(10.0, 10.0, 10.0))
    d.drains = {}
    d(1.0, *fine(10.0, 10.0, 10.0))
    assert d.paths() == ("p1", "p3")
    d(3.0, *fine(10.0, 10.0, 10.0))
    assert set(d.paths()) == {"p1", "p2", "p3"}
    e = d.events[-1]
    assert e.kind is ChangeKind.UNDRAIN and e.reason.startswith("p2 undrained; p2 eligible for 2.0 s")


@pytest.mark.parametrize("policy", [PolicyKind.LOWEST_LATENCY, PolicyKind.FAILOVER, PolicyKind.WEIGHTED])
def test_all_drained_or_down_keeps_the_least_bad_as_all_down_does(policy):
    d = three(policy)
    d(0.0, *fine())
    current = d.paths()
    d.drains = {"p1": None, "p2": None, "p3": None}
    d(0.1, *fine())
    r = d.route()
    assert r.kind is ChangeKind.LEAST_BAD
    assert "every path drained or failing: keeping the least bad" in r.reason
    assert "rather than blackholing" in r.reason
    assert d.paths() == current[:1]  # the current path (weighted: its first) is kept: no churn
    assert d.paths()[0] in {"p1", "p2", "p3"}


def test_a_drained_path_that_works_is_kept_before_a_down_one():
    d = three(PolicyKind.LOWEST_LATENCY)
    d(0.0, *fine())
    d.drains = {"p2": None}
    d(0.1, path("p1", **DOWN), path("p2"), path("p3", **DOWN))
    assert d.paths() == ("p2",)
    assert d.route().kind is ChangeKind.LEAST_BAD
    assert d.route().reason.startswith("no path eligible (p1 down"), d.route().reason
    # Undrained: p2 is eligible again, so the kept path is relabelled, as an undrain.
    d.drains = {}
    d(0.2, path("p1", **DOWN), path("p2"), path("p3", **DOWN))
    assert d.paths() == ("p2",)
    assert d.route().kind is ChangeKind.UNDRAIN
    assert d.route().reason.startswith("p2 undrained; eligible again"), d.route().reason


def test_the_only_healthy_path_drained_stays_in_use():
    d = three(PolicyKind.FAILOVER)
    d(0.0, path("p1"), path("p2", **DOWN), path("p3", **DOWN))
    d.drains = {"p1": None}
    d(0.1, path("p1"), path("p2", **DOWN), path("p3", **DOWN))
    assert d.paths() == ("p1",)
    assert not d.decisions[-1].events  # nothing moved


def test_startup_skips_a_drained_path_even_an_adopted_one():
    p = params(PolicyKind.LOWEST_LATENCY, ("p1", "p2", "p3"))
    adopted = PolicyState.adopt(Desired({PREFIX: RouteIntent(PREFIX, (NextHop("p1"),))}), p, 0.0)
    d = DrainDriver(p, adopted)
    d.drains = {"p1": None}
    d(0.0, path("p1", state=PathState.UNKNOWN), path("p2", state=PathState.UNKNOWN),
      path("p3", state=PathState.UNKNOWN))
    assert d.paths() == ("p2",)
    r = d.route()
    assert r.kind is ChangeKind.STARTUP and "p1 drained (maintenance)" in r.reason
    # The choice is still not measured: the first measurement decides without hysteresis.
    d(0.5, *fine(p1=10.0, p2=30.0, p3=20.0))
    assert d.paths() == ("p3",)


def test_decide_with_drains_is_pure_and_ignores_unknown_names():
    p = params(PolicyKind.LOWEST_LATENCY, ("p1", "p2"))
    s = snap(0.0, path("p1", 10.0), path("p2", 20.0))
    drains = {"p1": None, "nope": "x"}
    a = decide(0.0, s, None, p, PolicyState(), drains=drains)
    b = decide(0.0, s, None, p, PolicyState(), drains=drains)
    assert a == b and drains == {"p1": None, "nope": "x"}
    assert a.route(PREFIX).nexthops == (NextHop("p2"),)
