"""`SteeringService.note_upstream_times`: the gateways' upstream response times attributed to
(destination, path) at the time, judged by ``sla.max_upstream_time`` (left in the same tick,
remembered for ``sla.upstream_hold``, re-tried), shown in status and explain. A fake probe
engine, a fake data plane and a fake clock: no root, no kernel."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from pathsteer.api import models
from pathsteer.control.server import NoArgs
from pathsteer.policy import UpstreamTime
from pathsteer.policy.upstream import MIN_REQUESTS
from pathsteer.steering.service import ExplainArgs, SteeringService

from test_policy_fixtures import path
from test_steering_service import PREFIX, FakeEngine, FakePlane, config, no_system  # noqa: F401 (fixture)

NARROW = ipaddress.ip_network("198.51.100.128/25")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def upstream_config(policy: str = "failover", **sla):
    sla = {"max_upstream_time": "300ms", "upstream_hold": "60s"} | sla
    return config(destinations=[
        {"prefix": str(PREFIX), "policy": policy, "paths": ["p1", "p2"], "hysteresis": {"hold_down": "1s"},
         "sla": sla},
        {"prefix": str(NARROW), "policy": "failover", "paths": ["p2", "p1"]},
    ])


def slow(p95_ms: float = 412.0, requests: int = 120, p50_ms: float = 80.0) -> UpstreamTime:
    return UpstreamTime(p50_ms / 1e3, p95_ms / 1e3, requests)


async def started(plane: FakePlane, clock: Clock, cfg=None) -> SteeringService:
    s = SteeringService(cfg or upstream_config(), dataplane_factory=lambda c, links=None: plane,
                        engine_factory=FakeEngine, clock=clock)
    await s.start()
    s.engine.set(path("p1", 10), path("p2", 30))
    await step(s)
    return s


async def step(s: SteeringService) -> None:
    await s._step()


def via(s: SteeringService, prefix=PREFIX) -> str:
    return ",".join(nh.path for nh in s.decision.desired.routes[prefix].nexthops)


def test_a_slow_upstream_takes_its_path_out_remembered_then_retried():
    async def main():
        clock, plane = Clock(), FakePlane()
        s = await started(plane, clock)
        assert via(s) == "p1"
        clock.now += 20  # the first route's window has passed
        s.note_upstream_times({"198.51.100.7:443": slow()})
        assert s._wake.is_set()  # the decide loop is woken: left in this tick
        await step(s)
        assert via(s) == "p2" and plane.via() == "p2"
        route = s.decision.route(PREFIX)
        assert route.kind.value == "left"
        assert route.reason.startswith("p1 breaks sla: upstream time 412 ms > sla 300 ms; moved to p2")
        # The gateway's window still holds requests sent over p1: not blamed on p2.
        clock.now += 5
        s.note_upstream_times({"198.51.100.7:443": slow(900.0)})
        assert s.upstream_stats["settling"] == 1 and set(s.upstream[PREFIX]) == {"p1"}
        clock.now += 10  # p2's own figures now
        s.note_upstream_times({"198.51.100.7:443": slow(90.0)})
        assert s.upstream[PREFIX]["p2"].p95_s == pytest.approx(0.09)
        await step(s)
        assert via(s) == "p2"
        # p1 brings no figures; its verdict stands for upstream_hold after its last one...
        clock.now = 1000.0 + 20 + 59.5
        await step(s)
        assert via(s) == "p2"
        p1 = next(c for c in s.decision.route(PREFIX).candidates if c.path == "p1")
        assert p1.why_not == "breaks sla: upstream time 412 ms > sla 300 ms (60 s ago, upstream_hold 60 s)"
        # ...then p1 is eligible again, and fails back after hold_down.
        clock.now += 1.0
        await step(s)
        assert via(s) == "p2" and "p1" not in s.upstream[PREFIX]  # forgotten
        assert next(c for c in s.decision.route(PREFIX).candidates if c.path == "p1").eligible
        clock.now += 1.0
        await step(s)
        assert via(s) == "p1" and s.decision.route(PREFIX).kind.value == "failback"
        await s.stop()
    asyncio.run(main())


def test_too_few_requests_unknown_and_unsteered_addresses_are_ignored():
    async def main():
        clock, plane = Clock(), FakePlane()
        s = await started(plane, clock)
        clock.now += 20
        s.note_upstream_times({"198.51.100.7": slow(requests=MIN_REQUESTS - 1), "web/s1": slow(),
                               "192.0.2.1:80": slow(), "203.0.113.5": "nonsense"})
        await step(s)
        assert via(s) == "p1" and s.upstream == {} and not plane.stopped
        assert s.upstream_stats.items() >= {"few_requests": 1, "not_an_address": 1, "not_a_figure": 1,
                                            "not_steered": 1, "attributed": 0}.items()
        s.note_upstream_times({"198.51.100.7": slow(requests=MIN_REQUESTS)})
        await step(s)
        assert via(s) == "p2"
        await s.stop()
    asyncio.run(main())


def test_the_longest_match_gets_the_figure_and_the_slowest_address_speaks():
    async def main():
        clock, plane = Clock(), FakePlane()
        s = await started(plane, clock)
        clock.now += 20
        s.note_upstream_times({"198.51.100.200": slow(5000.0),  # NARROW: no SLA, carried by p2
                               "198.51.100.7:80": slow(100.0, requests=50), "198.51.100.8:80": slow(250.0)})
        await step(s)
        assert via(s) == "p1" and via(s, NARROW) == "p2"  # NARROW has no max_upstream_time: shown only
        wide = s.upstream[PREFIX]["p1"]
        assert (wide.p95_s, wide.requests, wide.addresses) == (pytest.approx(0.25), 170, 2)
        assert s.upstream[NARROW]["p2"].p95_s == pytest.approx(5.0)
        status = s.cmd_status(NoArgs())
        p1, p2 = status["paths"]
        assert p1["upstream_time_ms"] == {str(PREFIX): {"p50": 80.0, "p95": 250.0, "requests": 170, "age_s": 0.0,
                                                        "addresses": 2}}
        assert p2["upstream_time_ms"] == {str(NARROW): {"p50": 80.0, "p95": 5000.0, "requests": 120, "age_s": 0.0,
                                                        "addresses": 1}}
        models.PathView.model_validate(p1)
        assert status["upstream"]["attributed"] == 3
        from pathsteer.steering.cli import UPSTREAM_HEADER, render_status
        text = render_status(status)
        assert UPSTREAM_HEADER in text and "250 (170)" in text and "5000 (120)" in text
        assert s.view_paths()[0]["upstream_time_ms"] == p1["upstream_time_ms"]
        await s.stop()
    asyncio.run(main())


def test_explain_names_the_upstream_time_as_the_cause():
    async def main():
        clock, plane = Clock(), FakePlane()
        s = await started(plane, clock)
        clock.now += 20
        s.note_upstream_times({"198.51.100.7": slow()})
        await step(s)
        clock.now += 2
        ex = s.cmd_explain(ExplainArgs(address="198.51.100.7"))
        models.Explain.model_validate(ex)
        p1 = ex["candidates"][0]
        assert p1["upstream_time_ms"] == {"p50": 80.0, "p95": 412.0, "requests": 120, "age_s": 2.0, "addresses": 1}
        assert p1["upstream_breach"] is True and p1["eligibility"] == "sla"
        assert ex["reason"].startswith("p1 breaks sla: upstream time 412 ms > sla 300 ms")
        assert "p1: up, rtt 10.0 ms" in ex["why"] and "upstream p95 412 ms" in ex["why"]
        await s.stop()
    asyncio.run(main())


def test_a_reload_forgets_figures_of_destinations_no_longer_configured():
    async def main():
        clock, plane = Clock(), FakePlane()
        s = await started(plane, clock)
        clock.now += 20
        s.note_upstream_times({"198.51.100.7": slow(100.0), "198.51.100.200": slow(100.0)})
        assert set(s.upstream) == {PREFIX, NARROW}
        cfg = config(destinations=[{"prefix": str(PREFIX), "policy": "failover", "paths": ["p1", "p2"]}])
        await s.reload(cfg)
        assert set(s.upstream) == {PREFIX}
        await s.stop()
    asyncio.run(main())
