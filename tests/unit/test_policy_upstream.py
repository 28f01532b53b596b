"""L7 latency as a path signal (issue 9, 1b): the gateways' upstream response time, attributed
to (destination, path), judged by ``sla.max_upstream_time`` in `decide` — left at once, the
verdict remembered for ``sla.upstream_hold`` after traffic left (no more figures come), then
re-tried; every path slow: the least bad carries, never a blackhole. Pure, no root."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pathsteer.policy import ChangeKind, Eligibility, PolicyKind, PolicyState, Sla, decide
from pathsteer.policy.candidates import best_tier
from pathsteer.policy.upstream import (MIN_REQUESTS, PrefixIndex, UpstreamFigure, UpstreamTime, combine,
                                       parse_address)
from pathsteer.steering import views

from test_policy_fixtures import PREFIX, params, path, snap

SLA = Sla(max_upstream_time_s=0.300, upstream_hold_s=60.0)
CLOCK = views.Clock(0.0, 1000.0)


def fig(p95_ms: float, at: float, *, p50_ms: float | None = None, requests: int = 100) -> UpstreamFigure:
    return UpstreamFigure((p50_ms if p50_ms is not None else p95_ms / 2) / 1e3, p95_ms / 1e3, requests, at)


class Run:
    """Calls `decide` like the daemon: state fed back, upstream figures given per call."""

    def __init__(self, p) -> None:
        self.params, self.state, self.decisions = p, PolicyState(), []

    def __call__(self, now: float, upstream: Mapping[str, UpstreamFigure] | None = None, *, p1: float = 10.0,
                 p2: float = 20.0):
        d = decide(now, snap(now, path("p1", p1), path("p2", p2)), None, self.params, self.state, None,
                   {PREFIX: upstream} if upstream else None)
        self.state = d.state
        self.decisions.append(d)
        return d

    def via(self) -> tuple[str, ...]:
        return tuple(nh.path for nh in self.decisions[-1].desired.routes[PREFIX].nexthops)

    def route(self):
        return self.decisions[-1].route(PREFIX)

    def candidate(self, name: str):
        return next(c for c in self.route().candidates if c.path == name)


def test_the_path_is_left_at_once_when_its_upstream_time_is_over_the_limit():
    r = Run(params(sla=SLA))
    r(0.0)
    assert r.via() == ("p1",)
    r(1.0, {"p1": fig(250.0, 1.0)})  # under the limit: stays, the figure is shown
    assert r.via() == ("p1",) and r.candidate("p1").eligible and not r.candidate("p1").upstream_breach
    d = r(2.0, {"p1": fig(412.0, 2.0)})
    assert r.via() == ("p2",)
    route = r.route()
    assert route.kind is ChangeKind.LEFT and route.since == 2.0
    assert route.reason == "p1 breaks sla: upstream time 412 ms > sla 300 ms; moved to p2 (rtt 20.0 ms)"
    p1 = r.candidate("p1")
    assert p1.eligibility is Eligibility.SLA and p1.upstream_breach and p1.violations == 1
    (e,) = d.events
    assert e.kind is ChangeKind.LEFT and "upstream time 412 ms" in e.reason


def test_without_max_upstream_time_the_figures_are_shown_but_never_judged():
    r = Run(params())
    r(0.0)
    r(1.0, {"p1": fig(5000.0, 1.0)})
    assert r.via() == ("p1",) and r.candidate("p1").eligible and not r.candidate("p1").upstream_breach
    assert r.candidate("p1").upstream.p95_s == 5.0
    assert "upstream p95 5000 ms" in r.candidate("p1").figures()


def test_the_breach_is_remembered_after_traffic_left_and_the_path_retried_after_the_hold():
    r = Run(params(sla=SLA, hold_down_s=1.0))
    r(0.0)
    r(2.0, {"p1": fig(412.0, 2.0)})
    assert r.via() == ("p2",)
    # Traffic left p1: no new figure of it comes; p2's are fine. p1 stays out for the hold.
    for t in (3.0, 10.0, 30.0, 61.0, 61.9):
        r(t, {"p1": fig(412.0, 2.0), "p2": fig(80.0, t)})
        assert r.via() == ("p2",), t
    assert r.candidate("p1").why_not == "breaks sla: upstream time 412 ms > sla 300 ms (60 s ago, upstream_hold 60 s)"
    # 60 s after its last figure p1 is eligible again, and comes back under the policy's own
    # rules: better by min_improvement for hold_down (p1's rtt is half p2's).
    r(62.0, {"p1": fig(412.0, 2.0), "p2": fig(80.0, 62.0)})
    assert r.via() == ("p2",) and r.candidate("p1").eligible and r.candidate("p1").upstream is None
    assert r.route().pending.startswith("p1 better than p2")
    r(63.0, {"p1": fig(412.0, 2.0), "p2": fig(80.0, 63.0)})
    assert r.via() == ("p1",) and r.route().kind is ChangeKind.BETTER
    # Still slow: its new figures take it out again, at once.
    r(75.0, {"p1": fig(500.0, 75.0), "p2": fig(80.0, 63.0)})
    assert r.via() == ("p2",) and r.route().kind is ChangeKind.LEFT


def test_failover_fails_back_after_the_hold_and_hold_down():
    r = Run(params(PolicyKind.FAILOVER, sla=Sla(max_upstream_time_s=0.3, upstream_hold_s=20.0), hold_down_s=1.0))
    r(0.0)
    r(1.0, {"p1": fig(900.0, 1.0)})
    assert r.via() == ("p2",)
    r(20.9, {"p1": fig(900.0, 1.0)})
    assert r.via() == ("p2",)
    r(21.0, {"p1": fig(900.0, 1.0)})  # the figure is 20 s old: no longer in force
    assert r.via() == ("p2",) and r.candidate("p1").eligible
    r(22.0, {"p1": fig(900.0, 1.0)})
    assert r.via() == ("p1",) and r.route().kind is ChangeKind.FAILBACK


def test_every_path_slow_keeps_the_best_figure_never_a_blackhole():
    r = Run(params(sla=SLA))
    r(0.0)
    r(1.0, {"p1": fig(2000.0, 1.0)})
    assert r.via() == ("p2",)
    r(12.0, {"p1": fig(2000.0, 1.0), "p2": fig(400.0, 12.0)})  # p2 slow too, but less: it stays
    assert r.via() == ("p2",)
    route = r.route()
    assert route.kind is ChangeKind.LEAST_BAD
    assert route.reason == ("no path eligible (p1 breaks sla: upstream time 2000 ms > sla 300 ms (11 s ago, "
                            "upstream_hold 60 s); p2 breaks sla: upstream time 400 ms > sla 300 ms); keeping the "
                            "least bad, p2 (upstream time 400 ms), rather than blackholing the prefix")
    # p2 gets worse than p1's remembered figure by more than the margin: back to p1.
    r(13.0, {"p1": fig(2000.0, 1.0), "p2": fig(2300.0, 13.0)})
    assert r.via() == ("p2",)  # 2000 is not 20 % under 2300
    r(14.0, {"p1": fig(2000.0, 1.0), "p2": fig(3000.0, 14.0)})
    assert r.via() == ("p1",) and r.route().kind is ChangeKind.LEAST_BAD


def test_a_slow_path_that_is_also_the_only_one_carries():
    r = Run(params(sla=SLA, paths=("p1",)))
    d = decide(0.0, snap(0.0, path("p1", 10.0)), None, r.params, PolicyState(), None,
               {PREFIX: {"p1": fig(900.0, 0.0)}})
    assert [nh.path for nh in d.desired.routes[PREFIX].nexthops] == ["p1"]
    assert d.route(PREFIX).kind is ChangeKind.LEAST_BAD


def test_a_down_path_is_worse_than_a_slow_one():
    r = Run(params(sla=SLA))
    r(0.0)
    from pathsteer.telemetry.snapshot import PathState
    d = decide(1.0, snap(1.0, path("p1", 10.0), path("p2", None, state=PathState.DOWN, failing=3)), None,
               r.params, r.state, None, {PREFIX: {"p1": fig(900.0, 1.0)}})
    assert [nh.path for nh in d.desired.routes[PREFIX].nexthops] == ["p1"]


def test_weighted_a_shared_slow_figure_leaves_one_path_carrying():
    p = params(PolicyKind.WEIGHTED, capacities={"p1": 10**8, "p2": 10**8}, sla=SLA)
    state = decide(0.0, snap(0.0, path("p1", 10.0), path("p2", 10.0)), None, p, PolicyState()).state
    assert len(state.prefixes[PREFIX].nexthops) == 2
    both = {"p1": fig(900.0, 1.0), "p2": fig(900.0, 1.0)}  # the set's figure: every path of it
    d = decide(1.0, snap(1.0, path("p1", 10.0), path("p2", 10.0)), None, p, state, None, {PREFIX: both})
    assert len(d.desired.routes[PREFIX].nexthops) == 1 and d.route(PREFIX).kind is ChangeKind.LEAST_BAD


def test_other_prefixes_of_the_same_setup_are_not_touched():
    other = ipaddress.ip_network("203.0.113.0/24")
    from dataclasses import replace
    p = params(sla=SLA)
    p = replace(p, destinations=(p.destinations[0], replace(p.destinations[0], prefix=other)))
    state = decide(0.0, snap(0.0, path("p1", 10.0), path("p2", 20.0)), None, p, PolicyState()).state
    d = decide(1.0, snap(1.0, path("p1", 10.0), path("p2", 20.0)), None, p, state, None,
               {PREFIX: {"p1": fig(900.0, 1.0)}})
    assert [nh.path for nh in d.desired.routes[PREFIX].nexthops] == ["p2"]
    assert [nh.path for nh in d.desired.routes[other].nexthops] == ["p1"]


def test_explain_and_candidate_views_show_the_upstream_figure():
    r = Run(params(sla=SLA))
    r(0.0)
    r(2.0, {"p1": fig(412.0, 2.0, p50_ms=80.0, requests=120)})
    view = views.route_view(r.route(), views.Clock(5.0, 1005.0), candidates=True)
    p1 = view["candidates"][0]
    assert p1["upstream_time_ms"] == {"p50": 80.0, "p95": 412.0, "requests": 120, "age_s": 3.0, "addresses": 1}
    assert p1["upstream_breach"] is True and p1["eligibility"] == "sla"
    assert view["candidates"][1]["upstream_time_ms"] is None
    text = views.explain_text(r.route())
    assert ("   p1: up, rtt 10.0 ms, loss 0.0%, jitter 0.5 ms, upstream p95 412 ms (upstream p50 80 ms, 120 requests); "
            "breaks sla: upstream time 412 ms > sla 300 ms") in text, text


# --- the pure helpers ----------------------------------------------------------------------------

@pytest.mark.parametrize("key, address", [
    ("192.0.2.7", "192.0.2.7"), ("192.0.2.7:8080", "192.0.2.7"), ("2001:db8::7", "2001:db8::7"),
    ("[2001:db8::7]:8080", "2001:db8::7"), (" 192.0.2.7 ", "192.0.2.7"),
    ("web/s1", None), ("backend.example:80", None), ("[2001:db8::7", None), ("", None),
])
def test_parse_address(key, address):
    got = parse_address(key)
    assert (str(got) if got is not None else None) == address


def test_prefix_index_is_the_longest_match_per_family():
    nets = [ipaddress.ip_network(n) for n in ("0.0.0.0/0", "198.51.0.0/16", "198.51.100.0/24", "2001:db8::/32")]
    index = PrefixIndex((n, str(n)) for n in nets)
    assert index.lookup(ipaddress.ip_address("198.51.100.9")) == "198.51.100.0/24"
    assert index.lookup(ipaddress.ip_address("198.51.7.9")) == "198.51.0.0/16"
    assert index.lookup(ipaddress.ip_address("192.0.2.1")) == "0.0.0.0/0"
    assert index.lookup(ipaddress.ip_address("2001:db8::1")) == "2001:db8::/32"
    assert index.lookup(ipaddress.ip_address("2001:db9::1")) is None


def test_combine_takes_the_slowest_and_adds_the_requests():
    f = combine([UpstreamTime(0.010, 0.050, 30), UpstreamTime(0.020, 0.400, 25)], 7.0)
    assert (f.p50_s, f.p95_s, f.requests, f.at, f.addresses) == (0.020, 0.400, 55, 7.0, 2)
    assert combine([UpstreamTime(None, 0.3, 30)], 1.0).p50_s is None  # a median unknown: only shown
    assert views.upstream_view(combine([UpstreamTime(None, 0.3, 30)], 1.0), CLOCK)["p50"] is None


@pytest.mark.parametrize("kw", [{"p95_s": -1.0}, {"p50_s": float("nan")}, {"requests": 1.5}, {"requests": True},
                                {"window_s": float("inf")}])
def test_upstream_time_refuses_nonsense_by_name(kw):
    values = {"p50_s": 0.01, "p95_s": 0.02, "requests": 10} | kw
    with pytest.raises(ValueError, match=f"UpstreamTime.{next(iter(kw))}: "):
        UpstreamTime(**values)


# --- never flaps, never blackholes -------------------------------------------------------------

HOLD = 10.0
SETTLE = 3.0  # the gateway's window in this simulation
slowness = st.lists(st.tuples(st.sampled_from([0.5, 1.0, 1.0, 2.0, 5.0]),  # seconds to the next tick
                              st.sampled_from([100.0, 250.0, 350.0, 900.0]),  # p1's true p95 (ms)
                              st.sampled_from([100.0, 250.0, 350.0, 900.0]),  # p2's
                              st.integers(0, 200)),  # requests in the window
                    min_size=5, max_size=80)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(PolicyKind)), slowness)
def test_upstream_verdicts_never_blackhole_and_a_left_path_waits_out_the_hold(policy, ticks):
    """Figures attributed as steering does (to the paths carrying the prefix, fewer than
    MIN_REQUESTS ignored, none in the window after the paths changed): the prefix always has a
    next hop; a path left for its upstream time is not taken back before its figure is
    ``upstream_hold`` old; while a path is eligible, traffic is on the best eligible tier."""
    p = params(policy, capacities={"p1": 10**8, "p2": 10**8}, sla=Sla(max_upstream_time_s=0.3, upstream_hold_s=HOLD),
               hold_down_s=1.0)
    state, now, figures = PolicyState(), 0.0, {}
    changed_at, before = 0.0, ()
    left_slow: dict[str, float] = {}  # path → the time of the figure it was left for
    for dt, p1_ms, p2_ms, requests in ticks:
        now += dt
        carrying = [nh.path for nh in before]
        if carrying and requests >= MIN_REQUESTS and now - changed_at >= SETTLE:
            true = max({"p1": p1_ms, "p2": p2_ms}[c] for c in carrying)
            for c in carrying:
                figures[c] = fig(true, now, requests=requests)
        d = decide(now, snap(now, path("p1", 10.0), path("p2", 20.0)), None, p, state, None, {PREFIX: dict(figures)})
        state, hops = d.state, d.desired.routes[PREFIX].nexthops
        r = d.route(PREFIX)
        assert hops, "blackholed"
        for name in [nh.path for nh in hops]:
            if name in left_slow and name not in {nh.path for nh in before}:
                assert now - left_slow[name] >= HOLD - 1e-9 or r.kind is ChangeKind.LEAST_BAD, (name, now, r.reason)
        tier = best_tier(r.candidates)
        if tier and r.kind is not ChangeKind.STARTUP:
            assert {nh.path for nh in hops} <= {c.path for c in tier}, r.reason
        for e in d.events:
            for nh in e.before:
                c = next(c for c in r.candidates if c.path == nh.path)
                if nh.path not in {h.path for h in e.after} and c.upstream_breach:
                    left_slow[nh.path] = c.upstream.at
        if {nh.path for nh in hops} != {nh.path for nh in before}:
            changed_at = now
        before = hops
