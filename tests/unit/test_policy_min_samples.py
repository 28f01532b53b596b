"""Right after startup (or a path's recovery) a path must not win on latency from a handful of
probes: fewer than ``min_samples`` answered probes in its window and it can neither become nor
displace the best — but it is still used when it is the only eligible path (never a blackhole)."""

from __future__ import annotations

import pytest

from pathsteer.errors import UsageError
from pathsteer.policy import ChangeKind, PolicyKind, PolicyParams
from pathsteer.steering import views
from pathsteer.telemetry.snapshot import PathState

from test_policy_fixtures import Driver, params, path

DOWN = dict(state=PathState.DOWN, failing=3)


def test_the_default_is_5_answered_probes():
    assert PolicyParams((), ()).min_samples == 5


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "5"])
def test_min_samples_is_validated(value):
    with pytest.raises(UsageError, match=f"^min_samples: {value!r} must be a whole number"):
        params(min_samples=value)


def test_startup_does_not_choose_a_path_on_two_probes():
    """p2 answered 2 probes, fast ones; p1 has a full window. p2 does not win the first
    choice: the start waits for it (within startup_grace), then chooses without it."""
    d = Driver(params(hold_down_s=1.0))
    d(0.0, path("p1", 20.0), path("p2", 5.0, samples=2))
    assert d.paths() == ("p1",) and d.route().kind is ChangeKind.STARTUP
    assert d.route().pending == "waiting for min 5 answered probes of p2 (so far 2)"
    d(5.0, path("p1", 20.0), path("p2", 5.0, samples=4))  # the grace is over: choose without p2
    assert d.paths() == ("p1",)
    r = d.route()
    assert r.kind is ChangeKind.MEASURED
    assert r.reason == ("first measurement: p1 has the lowest rtt (20.0 ms); p2 (rtt 5.0 ms) not chosen: "
                        "4 of min 5 answered probes")
    # Once it has them, p2 wins like any better path: for hold_down, counted from then.
    d(5.5, path("p1", 20.0), path("p2", 5.0, samples=5))
    assert d.paths() == ("p1",)
    d(6.5, path("p1", 20.0), path("p2", 5.0, samples=10))
    assert d.paths() == ("p2",) and d.route().kind is ChangeKind.BETTER


def test_startup_chooses_at_once_when_every_path_has_enough():
    d = Driver(params())
    d(0.0, path("p1", 20.0, samples=5), path("p2", 5.0, samples=5))
    assert d.paths() == ("p2",) and d.route().reason == "first measurement: p2 has the lowest rtt (5.0 ms)"


def test_a_path_on_too_few_probes_cannot_displace_the_current_one():
    d = Driver(params(hold_down_s=1.0))
    d(0.0, path("p1", 20.0), path("p2", 30.0))
    assert d.paths() == ("p1",)
    for i in range(30):  # p2 comes back from an outage with a window of 1..4 answers, for 3 s
        d(1.0 + i * 0.1, path("p1", 20.0), path("p2", 5.0, samples=1 + i * 3 // 30))
        assert d.paths() == ("p1",)
    pending = d.route().pending
    assert pending == "p2 better than p1 by 75% (min 10%), not chosen: 3 of min 5 answered probes", pending
    explained = views.explain_text(d.route())
    assert "p2: up, rtt 5.0 ms, loss 0.0%, jitter 0.5 ms; eligible, 3 of min 5 answered probes: cannot win on " \
           "latency yet" in explained, explained


def test_a_path_on_too_few_probes_is_used_when_it_is_the_only_eligible_one():
    d = Driver(params(hold_down_s=1.0))
    d(0.0, path("p1", 20.0), path("p2", 30.0))
    d(1.0, path("p1", 20.0, **DOWN), path("p2", 30.0, samples=1))
    assert d.paths() == ("p2",)
    r = d.route()
    assert r.kind is ChangeKind.LEFT and r.reason.startswith("p1 down (3/3 targets failing); moved to p2, the only "
                                                             "eligible path (rtt 30.0 ms, 1 of min 5 answered probes)")


def test_when_no_path_has_enough_the_order_decides_not_the_rtt():
    d = Driver(params(hold_down_s=1.0))
    d(0.0, path("p1", 20.0, samples=1), path("p2", 5.0, samples=1))
    d(6.0, path("p1", 20.0, samples=2), path("p2", 5.0, samples=3))  # after the startup grace
    assert d.paths() == ("p1",)
    assert d.route().reason == ("first measurement: p1, first in the order: no path has min 5 answered probes to "
                                "win on latency yet (p1 2, p2 3); p2 (rtt 5.0 ms) not chosen: 3 of min 5 answered "
                                "probes")


def test_leaving_goes_to_the_best_path_with_enough_probes():
    d = Driver(params(paths=("p1", "p2", "p3"), hold_down_s=1.0))
    d(0.0, path("p1", 20.0), path("p2", 30.0), path("p3", 40.0))
    d(1.0, path("p1", 20.0, **DOWN), path("p2", 30.0), path("p3", 5.0, samples=2))
    assert d.paths() == ("p2",)
    assert d.route().reason.endswith("moved to p2 (rtt 30.0 ms); p3 (rtt 5.0 ms) not chosen: 2 of min 5 answered "
                                     "probes")


def test_min_samples_1_is_the_old_behaviour():
    d = Driver(params(min_samples=1))
    d(0.0, path("p1", 20.0), path("p2", 5.0, samples=1))
    assert d.paths() == ("p2",)


def test_weighted_a_fast_path_on_few_probes_is_not_the_rtt_reference():
    """p3's one 1 ms probe would make every other path look slow (latency_scale 10 ms)."""
    caps = {"p1": 100_000_000, "p2": 50_000_000, "p3": 50_000_000}
    d = Driver(params(PolicyKind.WEIGHTED, ("p1", "p2", "p3"), capacities=caps))
    d(0.0, path("p1", 20.0), path("p2", 20.0), path("p3", 1.0, samples=1))
    assert d.route().pending == "waiting for min 5 answered probes of p3 (so far 1)"
    d(6.0, path("p1", 20.0), path("p2", 20.0), path("p3", 1.0, samples=1))  # after the startup grace
    assert {nh.path: nh.weight for nh in d.route().nexthops} == {"p1": 50, "p2": 25, "p3": 25}
    d2 = Driver(params(PolicyKind.WEIGHTED, ("p1", "p2", "p3"), capacities=caps))
    d2(0.0, path("p1", 20.0), path("p2", 20.0), path("p3", 40.0, samples=1))
    d2(6.0, path("p1", 20.0), path("p2", 20.0), path("p3", 40.0, samples=1))  # slower: held back by it
    assert {nh.path: nh.weight for nh in d2.route().nexthops}["p3"] < 25


def test_failover_goes_by_the_order_whatever_the_samples():
    d = Driver(params(PolicyKind.FAILOVER))
    d(0.0, path("p1", 20.0, samples=1), path("p2", 5.0))
    assert d.paths() == ("p1",) and d.route().kind is ChangeKind.MEASURED
