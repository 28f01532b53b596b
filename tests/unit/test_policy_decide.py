"""decide as a whole: startup without telemetry, adoption, least bad, reload, IPv6, params."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from pathsteer.routes import Desired, NextHop, RouteIntent
from pathsteer.errors import UsageError
from pathsteer.policy import (ChangeKind, DestinationParams, Hysteresis, PathParams, PolicyKind, PolicyParams,
                              PolicyState, Sla, decide)
from pathsteer.telemetry.snapshot import PathState

from test_policy_fixtures import PREFIX, PREFIX6, Driver, params, path, snap

UNKNOWN = dict(state=PathState.UNKNOWN)
DOWN = dict(state=PathState.DOWN, failing=3)


# -- startup ------------------------------------------------------------------------------

@pytest.mark.parametrize("policy", list(PolicyKind))
def test_no_telemetry_keeps_the_first_configured_path(policy):
    d = Driver(params(policy))
    d(0.0, path("p1", **UNKNOWN), path("p2", **UNKNOWN))
    assert d.paths() == ("p1",)
    r = d.route()
    assert r.kind is ChangeKind.STARTUP and r.reason == "no telemetry yet: first configured path p1"
    assert r.pending == "waiting for telemetry"
    assert [e.before for e in d.events] == [()]
    d(0.5)  # the snapshot has no paths at all yet
    assert d.paths() == ("p1",) and len(d.events) == 1


def test_startup_waits_for_the_other_paths_while_the_first_is_eligible():
    d = Driver(params())
    d(0.0, path("p1", **UNKNOWN), path("p2", **UNKNOWN))
    d(0.1, path("p1", 20.0), path("p2", **UNKNOWN))
    assert d.paths() == ("p1",) and d.route().pending == "waiting for telemetry of p2"
    d(0.2, path("p1", 20.0), path("p2", 10.0))  # now everything is known: best at once, no hold_down
    assert d.paths() == ("p2",) and d.route().kind is ChangeKind.MEASURED


def test_first_call_with_partial_data_waits_on_the_first_path_if_it_is_eligible():
    d = Driver(params())
    d(0.0, path("p1", 20.0), path("p2", **UNKNOWN))
    assert d.paths() == ("p1",) and d.route().kind is ChangeKind.STARTUP
    assert d.route().reason == "waiting for telemetry of p2: first configured path p1"
    d(0.1, path("p1", 20.0), path("p2", 10.0))
    assert d.paths() == ("p2",) and d.route().kind is ChangeKind.MEASURED


def test_startup_grace_ends_the_wait():
    d = Driver(params())
    d(0.0, path("p1", **UNKNOWN), path("p2", **UNKNOWN))
    d(4.9, path("p1", 20.0), path("p2", **UNKNOWN))
    assert d.route().kind is ChangeKind.STARTUP
    d(5.0, path("p1", 20.0), path("p2", **UNKNOWN))
    assert d.paths() == ("p1",) and d.route().kind is ChangeKind.MEASURED
    assert len(d.events) == 1  # relabelled, not moved


def test_startup_leaves_a_down_first_path_for_one_without_data():
    d = Driver(params())
    d(0.0, path("p1", **UNKNOWN), path("p2", **UNKNOWN))
    d(0.1, path("p1", **DOWN), path("p2", **UNKNOWN))
    assert d.paths() == ("p2",) and d.route().kind is ChangeKind.LEAST_BAD


def test_adopted_routes_are_kept_until_telemetry_then_decided_without_hold_down():
    p = params(hold_down_s=10.0)
    installed = Desired({PREFIX: RouteIntent(PREFIX, (NextHop("p2"),))})
    d = Driver(p, PolicyState.adopt(installed, p, 0.0))
    d(0.0, path("p1", **UNKNOWN), path("p2", **UNKNOWN))
    assert d.paths() == ("p2",) and d.route().kind is ChangeKind.ADOPTED and d.events == []
    d(0.1, path("p1", 10.0), path("p2", 30.0))
    assert d.paths() == ("p1",) and d.events[-1].kind is ChangeKind.MEASURED


def test_adopt_skips_unknown_prefixes_and_unlisted_paths():
    p = params()
    other = ipaddress.ip_network("192.0.2.0/24")
    installed = Desired({other: RouteIntent(other, (NextHop("p1"),)),
                         PREFIX: RouteIntent(PREFIX, (NextHop("p9"),))})
    assert PolicyState.adopt(installed, p, 0.0).prefixes == {}


# -- no path eligible ---------------------------------------------------------------------

def test_no_eligible_path_keeps_the_least_bad_and_never_blackholes():
    d = Driver(params(paths=("p1", "p2", "p3"), sla=Sla(max_rtt_s=0.050)))
    d(0.0, path("p1", 10.0), path("p2", 20.0), path("p3", 30.0))
    d(1.0, path("p1", **DOWN), path("p2", 90.0), path("p3", 70.0))
    assert d.paths() == ("p3",)
    assert d.route().reason == ("no path eligible (p1 down (3/3 targets failing); p2 breaks sla: rtt 90.0 ms > "
                                "sla 50.0 ms; p3 breaks sla: rtt 70.0 ms > sla 50.0 ms); keeping the least bad, p3")
    d(2.0, path("p1", **DOWN), path("p2", 60.0), path("p3", 70.0))
    assert d.paths() == ("p3",)  # as bad in kind and count as p2: no churn
    d(3.0, path("p1", **DOWN), path("p2", **DOWN), path("p3", **DOWN))
    assert d.paths() == ("p3",)
    d(4.0, path("p1", **DOWN), path("p2", 40.0), path("p3", 70.0))
    assert d.paths() == ("p2",) and d.events[-1].kind is ChangeKind.LEFT


def test_least_bad_path_eligible_again_is_relabelled():
    d = Driver(params(sla=Sla(max_loss_pct=5.0)))
    d(0.0, path("p1", 10.0), path("p2", 20.0))
    d(1.0, path("p1", 10.0, loss=10.0), path("p2", **DOWN))
    assert d.route().kind is ChangeKind.LEAST_BAD
    d(2.0, path("p1", 10.0), path("p2", **DOWN))
    assert d.paths() == ("p1",) and d.route().kind is ChangeKind.MEASURED
    assert d.route().reason.startswith("eligible again (p1 rtt 10.0 ms")


# -- reload -------------------------------------------------------------------------------

def test_state_survives_a_reload_when_the_destination_is_unchanged():
    p = params(hold_down_s=1.0)
    d = Driver(p)
    d(0.0, path("p1", 10.0), path("p2", 20.0))
    d(1.0, path("p1", 10.0), path("p2", 5.0))  # p2 starts winning
    reloaded = PolicyParams(p.paths + (PathParams("p3"),), p.destinations)
    d(2.0, path("p1", 10.0), path("p2", 5.0), params=reloaded)
    assert d.paths() == ("p2",) and d.route().kind is ChangeKind.BETTER  # the timer survived


def test_changed_destination_keeps_its_path_but_restarts_timers():
    p = params(hold_down_s=1.0)
    d = Driver(p)
    d(0.0, path("p1", 10.0), path("p2", 20.0))
    d(1.0, path("p1", 10.0), path("p2", 5.0))
    dest = replace(p.destinations[0], hysteresis=Hysteresis(0.2, 1.0))
    d(2.0, path("p1", 10.0), path("p2", 5.0), params=replace(p, destinations=(dest,)))
    assert d.paths() == ("p1",) and d.events[-1].at == 0.0
    d(3.0, path("p1", 10.0), path("p2", 5.0))
    assert d.paths() == ("p2",)


def test_a_destination_whose_paths_change_moves_with_a_reason():
    p = params()
    d = Driver(p)
    d(0.0, path("p1", 10.0), path("p2", 20.0))
    dest = replace(p.destinations[0], paths=("p2",))
    d(1.0, path("p1", 10.0), path("p2", 20.0), params=replace(p, destinations=(dest,)))
    assert d.paths() == ("p2",)
    assert d.events[-1].reason == "config changed; first measurement: p2 has the lowest rtt (20.0 ms)"


def test_removed_destination_gives_an_event_and_leaves_desired():
    p = params()
    d = Driver(p)
    d(0.0, path("p1", 10.0), path("p2", 20.0))
    d(1.0, path("p1", 10.0), path("p2", 20.0), params=replace(p, destinations=()))
    assert d.decisions[-1].desired.routes == {} and d.state.prefixes == {}
    e = d.events[-1]
    assert (e.kind, e.after, e.reason) == (ChangeKind.REMOVED, (), "removed from the config")


# -- families, determinism ----------------------------------------------------------------

def test_ipv6_prefix_never_uses_a_path_without_an_ipv6_gateway():
    p = PolicyParams((PathParams("p1", ipv6=False), PathParams("p2")),
                     (DestinationParams(PREFIX6, PolicyKind.LOWEST_LATENCY, ("p1", "p2")),))
    d = Driver(p)
    d(0.0, path("p1", **UNKNOWN), path("p2", **UNKNOWN))
    assert d.paths(PREFIX6) == ("p2",)
    d(1.0, path("p1", 1.0), path("p2", **DOWN))
    assert d.paths(PREFIX6) == ("p2",)
    assert d.route(PREFIX6).candidates[0].why_not == "no IPv6 gateway"


def test_same_inputs_same_decision():
    p = params(PolicyKind.WEIGHTED, ("p1", "p2"), capacities={"p1": 10**8, "p2": 10**8})
    t = snap(1.0, path("p1", 10.0), path("p2", 12.0))
    a, b = decide(1.0, t, None, p, PolicyState()), decide(1.0, t, None, p, PolicyState())
    assert a == b
    assert decide(2.0, t, None, p, a.state) == decide(2.0, t, None, p, a.state)


def test_decide_does_not_mutate_the_previous_state():
    p = params()
    first = decide(0.0, snap(0.0, path("p1", 10.0), path("p2", 20.0)), None, p, PolicyState())
    kept = dict(first.state.prefixes)
    decide(1.0, snap(1.0, path("p1", **DOWN), path("p2", 20.0)), None, p, first.state)
    assert dict(first.state.prefixes) == kept


# -- params -------------------------------------------------------------------------------

@pytest.mark.parametrize("build, message", [
    (lambda: PolicyParams((PathParams("p1"), PathParams("p1")), ()), "paths[1].name: 'p1' is used twice"),
    (lambda: params(paths=("p1", "p9")).__class__((PathParams("p1"),), (
        DestinationParams(PREFIX, PolicyKind.FAILOVER, ("p1", "p9")),)), "destinations[0].paths[1]: unknown path 'p9'"),
    (lambda: PolicyParams((PathParams("p1"),), (DestinationParams(PREFIX, PolicyKind.FAILOVER, ()),)),
     "destinations[0].paths: needs at least one path"),
    (lambda: PolicyParams((PathParams("p1"),), (DestinationParams(PREFIX, PolicyKind.FAILOVER, ("p1", "p1")),)),
     "destinations[0].paths[1]: 'p1' is listed twice"),
    (lambda: PolicyParams((PathParams("p1"),), (DestinationParams(PREFIX, PolicyKind.FAILOVER, ("p1",)),) * 2),
     "destinations[1].prefix: '198.51.100.0/24' is listed twice"),
    (lambda: PolicyParams((PathParams("p1", ipv6=False),), (DestinationParams(PREFIX6, PolicyKind.FAILOVER, ("p1",)),)),
     "destinations[0].paths: none of ['p1'] has an IPv6 gateway"),
    (lambda: Hysteresis(min_improvement=1.5), "hysteresis.min_improvement: 1.5 must be a fraction"),
    (lambda: Hysteresis(hold_down_s=-1), "hysteresis.hold_down: -1 must be a finite number of 0 or more"),
    (lambda: Sla(max_loss_pct=101), "sla.max_loss: 101"),
    (lambda: PathParams("p1", capacity_bps=0), "paths[p1].capacity: 0 must be a bit rate above 0"),
])
def test_bad_params_name_the_field_and_value(build, message):
    with pytest.raises(UsageError) as e:
        build()
    assert str(e.value).startswith(message)
