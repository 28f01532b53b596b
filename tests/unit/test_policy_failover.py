"""failover: the first eligible path in order, left at once, failback after hold_down."""

from __future__ import annotations

from pathsteer.policy import ChangeKind, PolicyKind, Sla
from pathsteer.telemetry.snapshot import PathState

from test_policy_fixtures import Driver, params, path

DOWN = dict(state=PathState.DOWN, failing=3)


def three(hold_down_s: float = 5.0, **kw) -> Driver:
    return Driver(params(PolicyKind.FAILOVER, ("p1", "p2", "p3"), hold_down_s=hold_down_s, **kw))


def test_first_eligible_in_order_whatever_the_rtt():
    d = three()
    d(0.0, path("p1", 50.0), path("p2", 5.0), path("p3", 5.0))
    assert d.paths() == ("p1",)
    assert d.route().reason.startswith("first measurement: p1 is the first eligible path in the order (rtt 50.0 ms")
    d(10.0, path("p1", 50.0), path("p2", 5.0), path("p3", 5.0))
    assert d.paths() == ("p1",) and len(d.events) == 1


def test_down_moves_to_the_next_eligible_in_the_same_call():
    d = three(sla=Sla(max_loss_pct=5.0))
    d(0.0, path("p1"), path("p2"), path("p3"))
    d(1.0, path("p1", **DOWN), path("p2", loss=10.0), path("p3", 30.0))
    assert d.paths() == ("p3",)
    assert d.events[-1].reason == ("p1 down (3/3 targets failing); moved to p3, the first eligible path in the "
                                   "order (rtt 30.0 ms, loss 0.0%, jitter 0.5 ms)")


def test_failback_waits_hold_down_and_restarts_on_a_break():
    d = three(hold_down_s=5.0)
    d(0.0, path("p1"), path("p2"), path("p3"))
    d(1.0, path("p1", **DOWN), path("p2"), path("p3"))
    assert d.paths() == ("p2",)
    d(2.0, path("p1"), path("p2"), path("p3"))  # p1 back
    d(6.0, path("p1"), path("p2"), path("p3"))
    assert d.paths() == ("p2",)
    assert d.route().pending == "failback to p1: eligible for 4.0 s of hold_down 5 s"
    d(6.5, path("p1", **DOWN), path("p2"), path("p3"))  # flaps: the timer restarts
    d(7.0, path("p1"), path("p2"), path("p3"))
    d(11.9, path("p1"), path("p2"), path("p3"))
    assert d.paths() == ("p2",)
    d(12.0, path("p1"), path("p2"), path("p3"))
    assert d.paths() == ("p1",)
    r = d.route()
    assert r.kind is ChangeKind.FAILBACK
    assert r.reason == "failback to p1: eligible for 5.0 s (hold_down 5 s), before p2 in the order"


def test_failback_goes_to_the_earliest_path_that_has_held():
    d = three(hold_down_s=2.0)
    d(0.0, path("p1"), path("p2"), path("p3"))
    d(1.0, path("p1", **DOWN), path("p2", **DOWN), path("p3"))
    assert d.paths() == ("p3",)
    d(2.0, path("p1", **DOWN), path("p2"), path("p3"))
    d(3.0, path("p1"), path("p2"), path("p3"))
    d(4.0, path("p1"), path("p2"), path("p3"))
    assert d.paths() == ("p2",)  # p2 held 2 s, p1 only 1 s
    d(5.0, path("p1"), path("p2"), path("p3"))
    assert d.paths() == ("p1",)
    assert [e.kind for e in d.events] == [ChangeKind.MEASURED, ChangeKind.LEFT, ChangeKind.FAILBACK,
                                          ChangeKind.FAILBACK]


def test_sla_breach_on_the_primary_is_left_at_once_and_failback_waits():
    d = three(hold_down_s=1.0, sla=Sla(max_rtt_s=0.100))
    d(0.0, path("p1"), path("p2"), path("p3"))
    d(1.0, path("p1", 150.0), path("p2"), path("p3"))
    assert d.paths() == ("p2",)
    assert d.events[-1].reason.startswith("p1 breaks sla: rtt 150.0 ms > sla 100.0 ms; moved to p2")
    d(1.5, path("p1", 20.0), path("p2"), path("p3"))
    d(2.4, path("p1", 20.0), path("p2"), path("p3"))
    assert d.paths() == ("p2",)
    d(2.5, path("p1", 20.0), path("p2"), path("p3"))
    assert d.paths() == ("p1",)
