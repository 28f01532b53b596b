"""The steering component against a fake probe engine and a fake data plane: what it applies,
when, what it logs and what its commands answer. No root, no kernel."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging

import pytest

from pathsteer.config import parse_config
from pathsteer.control.server import NoArgs
from pathsteer.routes import Desired, NextHop, RouteIntent
from pathsteer.errors import PathsteerError
from pathsteer.steering import preflight
from pathsteer.steering.service import EventsArgs, ExplainArgs, SteeringService
from pathsteer.telemetry import PathState, TelemetrySnapshot

from test_policy_fixtures import path

PREFIX = ipaddress.ip_network("198.51.100.0/24")


def config(**over):
    data = {
        "control": {"socket": "/tmp/x.sock"},
        "decision": {"interval": "10ms", "load_counters": False, "startup_grace": "0s"},
        "dataplane": {"mode": "fib", "table": 200},
        "paths": [{"name": n, "interface": f"r-{n}", "gateway": f"10.200.{i}.2",
                   "probe": {"targets": ["198.51.100.9"], "interval": "20ms"}} for i, n in ((1, "p1"), (2, "p2"))],
        "destinations": [{"prefix": str(PREFIX), "paths": ["p1", "p2"],
                          "hysteresis": {"hold_down": "200ms"}}],
    }
    data.update(over)
    return parse_config(data)


class FakePlane:
    def __init__(self, adopted: Desired | None = None) -> None:
        self.applied: list[Desired] = []
        self.adopted = adopted
        self.stopped = False
        self.reconciled = 0
        self.heartbeats = 0
        self.fail = False

    def adopt(self):
        return self.adopted

    def apply(self, desired):
        if self.fail:
            raise PathsteerError("fib: the kernel refused it")
        self.applied.append(desired)

    def reconcile(self, desired):
        self.reconciled += 1
        return []

    def heartbeat(self):
        self.heartbeats += 1

    def stop(self):
        self.stopped = True

    def close(self):
        pass

    def path_totals(self):
        return {}

    def via(self) -> str:
        return ",".join(nh.path for nh in self.applied[-1].routes[PREFIX].nexthops)


class FakeEngine:
    """Telemetry set by the test; ``on_state_change`` called like the real engine does."""

    current: dict = {}

    paths = ()

    def __init__(self, configs, on_state_change=None, previous=()):
        self.on_state_change = on_state_change
        self.clock = 0.0

    def snapshot(self):
        return TelemetrySnapshot(0.0, tuple(FakeEngine.current.values()))

    async def run(self, stop):
        await stop.wait()

    def set(self, *paths):
        before = {n: p.state for n, p in FakeEngine.current.items()}
        FakeEngine.current = {p.name: p for p in paths}
        for p in paths:
            if before.get(p.name) is not p.state and self.on_state_change:
                self.on_state_change(p.name, before.get(p.name, PathState.UNKNOWN), p.state, 0.0)


@pytest.fixture(autouse=True)
def no_system(monkeypatch):
    monkeypatch.setattr(preflight, "check", lambda config: None)
    FakeEngine.current = {}


def service(plane: FakePlane, cfg=None) -> SteeringService:
    return SteeringService(cfg or config(), dataplane_factory=lambda c, links=None: plane, engine_factory=FakeEngine)


async def settle(seconds: float = 0.05) -> None:
    await asyncio.sleep(seconds)


def test_start_applies_first_path_then_moves_on_down_with_a_log_line(caplog):
    async def main():
        plane = FakePlane()
        s = service(plane)
        with caplog.at_level(logging.INFO, logger="pathsteer.steering"):
            await s.start()
            assert plane.via() == "p1"  # startup: the first configured path, at once
            s.engine.set(path("p1", 10), path("p2", 30))
            await settle()
            assert plane.via() == "p1"
            s.engine.set(path("p1", None, state=PathState.DOWN, failing=3), path("p2", 30))
            await settle(0.03)
            assert plane.via() == "p2"
            await s.stop()
        assert plane.stopped
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("steer.change")]
        assert any("from=p1 to=p2" in line and "kind=left" in line and "reason='p1 down" in line for line in lines), lines
    asyncio.run(main())


def test_commands_status_explain_events():
    async def main():
        plane = FakePlane()
        s = service(plane)
        await s.start()
        s.engine.set(path("p1", 10), path("p2", 30))
        await settle()
        status = s.cmd_status(NoArgs())
        assert [p["name"] for p in status["paths"]] == ["p1", "p2"]
        assert status["paths"][0]["state"] == "up" and status["paths"][0]["rtt_ms"] == pytest.approx(10.0)
        r = status["routes"][0]
        assert r["prefix"] == str(PREFIX) and r["nexthops"] == [{"path": "p1", "weight": 1, "share": 1.0}]
        assert r["reason"] and r["policy"] == "lowest-latency"
        ex = s.cmd_explain(ExplainArgs(address="198.51.100.77"))
        assert ex["prefix"] == str(PREFIX) and ex["steered"] and "goes via p1" in ex["why"]
        assert [c["path"] for c in ex["candidates"]] == ["p1", "p2"]
        assert s.cmd_explain(ExplainArgs(address="192.0.2.1"))["steered"] is False
        with pytest.raises(PathsteerError, match="not an IPv4 or IPv6 address"):
            s.cmd_explain(ExplainArgs(address="nope"))
        evs = s.cmd_events(EventsArgs())["events"]
        assert evs[0]["to"] == "p1" and evs[0]["kind"] == "startup"
        await s.stop()
    asyncio.run(main())


def test_adopted_routes_are_kept_until_telemetry():
    adopted = Desired({PREFIX: RouteIntent(PREFIX, (NextHop("p2"),))})

    async def main():
        plane = FakePlane(adopted)
        s = service(plane)
        await s.start()
        assert not plane.applied or plane.via() == "p2"   # nothing moved at start
        s.engine.set(path("p1", 10), path("p2", 30))
        await settle()
        assert plane.via() == "p1"  # then the policy decides from telemetry
        await s.stop()
    asyncio.run(main())


def test_a_failed_apply_is_retried_and_the_loop_goes_on():
    async def main():
        plane = FakePlane()
        plane.fail = True
        s = service(plane)
        await s.start()
        assert s.stats["apply_errors"] >= 1
        plane.fail = False
        await settle()
        assert plane.via() == "p1"
        await s.stop()
    asyncio.run(main())


def test_reload_changes_policy_and_keeps_paths():
    async def main():
        plane = FakePlane()
        s = service(plane)
        await s.start()
        s.engine.set(path("p1", 10), path("p2", 30))
        await settle()
        new = config(destinations=[{"prefix": str(PREFIX), "policy": "failover", "paths": ["p2", "p1"]}])
        await s.reload(new)
        await settle()
        assert plane.via() == "p2"
        assert s.cmd_status(NoArgs())["routes"][0]["policy"] == "failover"
        await s.stop()
    asyncio.run(main())


def test_a_probe_engine_that_fails_at_start_fails_the_start_and_applies_nothing():
    class Broken(FakeEngine):
        async def run(self, stop):
            raise PathsteerError("probe: cannot pin p1")

    async def main():
        plane = FakePlane()
        s = SteeringService(config(), dataplane_factory=lambda c, links=None: plane, engine_factory=Broken)
        with pytest.raises(PathsteerError, match="cannot pin"):
            await s.start()
        assert plane.applied == [] and not plane.stopped
    asyncio.run(main())


def test_a_slow_apply_does_not_stall_the_loop():
    """decide and apply run in a worker thread: while a data plane takes 0.6 s to apply (a big
    FIB), the loop still serves the others (the guard's auto-block, the probes' sends)."""
    import time

    class SlowPlane(FakePlane):
        slow = False

        def apply(self, desired):
            if self.slow:
                time.sleep(0.6)
            super().apply(desired)

    async def main():
        plane = SlowPlane()
        s = service(plane)
        await s.start()
        s.engine.set(path("p1", 10), path("p2", 30))
        await settle()
        gaps, last = [], time.monotonic()

        async def ticker():
            nonlocal last
            for _ in range(80):
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        plane.slow = True
        tick = asyncio.ensure_future(ticker())
        s.engine.set(path("p1", None, state=PathState.DOWN, failing=3), path("p2", 30))  # an apply is due
        await tick
        plane.slow = False
        await settle(0.7)
        assert plane.via() == "p2"
        assert max(gaps) < 0.3, max(gaps)
        await s.stop()
    asyncio.run(main())


def test_both_data_planes_keep_the_whole_dataplane_protocol():
    """The daemon calls every method of `DataPlane` without probing for it (no getattr)."""
    import inspect

    from pathsteer.dataplane.bpf_steer import BpfSteerDataPlane
    from pathsteer.dataplane.fib import FibDataPlane
    from pathsteer.routes import DataPlane
    wanted = {n for n, v in vars(DataPlane).items() if inspect.isfunction(v) and not n.startswith("_")}
    assert wanted == {"adopt", "apply", "reconcile", "heartbeat", "path_totals", "stop", "close"}
    for plane in (FibDataPlane, BpfSteerDataPlane, FakePlane):
        assert wanted <= {n for n in dir(plane) if callable(getattr(plane, n))}, plane


def test_a_reconcile_queued_during_an_apply_checks_the_new_table():
    """A reconcile that waits for an apply must not take the kernel back to the table before it
    (it once did: the argument was read when the call was queued)."""
    import threading

    class SlowPlane(FakePlane):
        def __init__(self):
            super().__init__()
            self.gate = threading.Event()
            self.gate.set()
            self.checked: list[str] = []

        def apply(self, desired):
            self.gate.wait(5)
            super().apply(desired)

        def reconcile(self, desired):
            self.checked.append(",".join(nh.path for nh in desired.routes[PREFIX].nexthops))
            return []

    async def main():
        plane = SlowPlane()
        s = service(plane, config(dataplane={"mode": "fib", "table": 200, "reconcile_interval": "50ms"}))
        await s.start()
        s.engine.set(path("p1", 10), path("p2", 30))
        await settle()
        assert plane.via() == "p1"
        plane.gate.clear()  # the next apply hangs until released
        s.engine.set(path("p1", None, state=PathState.DOWN, failing=3), path("p2", 30))
        await settle(0.2)  # the apply (to p2) runs; reconciles queue behind it
        plane.checked.clear()
        plane.gate.set()
        await settle(0.2)
        assert plane.via() == "p2"
        assert plane.checked and set(plane.checked) == {"p2"}, plane.checked
        await s.stop()
    asyncio.run(main())


@pytest.mark.parametrize("phase", [0.002, 0.05, 0.098])
def test_periodic_decisions_share_the_probes_wake_ups(phase):
    """The engine calls ``on_tick`` at the end of each of its wake-ups; a periodic decision
    due within DECIDE_EARLY_S then runs in that wake-up instead of on a timer of its own, so
    a quiet daemon wakes once per probe round, not once more per decision: whatever the
    probes' phase against the decisions' (``phase`` after the service's first decision)."""
    import time

    async def run(ticks: bool) -> tuple[int, int]:
        s = service(FakePlane(), config(decision={"interval": "100ms", "load_counters": False,
                                                  "startup_grace": "0s"}))
        await s.start()
        s.engine.set(path("p1", 10), path("p2", 30))
        assert s.engine.on_tick is not None  # the service hooks itself to the engine it makes
        loop = asyncio.get_running_loop()
        select, waits = loop._selector.select, [0]

        def counted(timeout=None):
            if timeout is None or timeout > 0:
                waits[0] += 1
            return select(timeout)

        async def probes():  # the engine's send ticks, 100 ms apart, on a phase of their own
            t0 = loop.time() + phase
            for k in itertools.count():
                await asyncio.sleep(max(0.0, t0 + k * 0.1 - loop.time()))
                if ticks:
                    s.engine.on_tick(time.monotonic())

        ticker = asyncio.ensure_future(probes())
        await asyncio.sleep(0.3)
        loop._selector.select = counted
        before = s.stats["decisions"]
        await asyncio.sleep(2.0)
        loop._selector.select = select
        decisions = s.stats["decisions"] - before
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        await s.stop()
        return waits[0], decisions

    alone, alone_decisions = asyncio.run(run(ticks=False))
    shared, shared_decisions = asyncio.run(run(ticks=True))
    assert 15 <= alone_decisions <= 21 and 15 <= shared_decisions <= 21  # every ~100 ms either way
    assert alone >= 36, alone  # 20 probe wake-ups + 20 of the decisions' own (+ the 1 s loops)
    assert shared <= 28, shared  # the decisions ride on the probes' 20


def test_many_prefixes_periodic_decisions_on_the_loop_changes_in_the_worker(monkeypatch):
    """Over INLINE_ROUTES prefixes, a periodic decision whose last `decide` was quick runs on
    the loop (no thread hand-off); the first ones, and any woken by a change that may move many
    prefixes (a path's state), run in the worker thread."""
    import threading

    from pathsteer.steering import service as svc

    where: list[tuple[str, bool]] = []
    real = svc.decide

    def spy(*args):
        where.append((threading.current_thread().name, any(p.state is PathState.DOWN for p in args[1].paths)))
        return real(*args)

    monkeypatch.setattr(svc, "decide", spy)
    dests = [{"prefix": f"10.{i // 256}.{i % 256}.0/24", "paths": ["p1", "p2"]} for i in range(svc.INLINE_ROUTES + 8)]

    async def main():
        s = service(FakePlane(), config(decision={"interval": "20ms", "load_counters": False, "startup_grace": "0s"},
                                        destinations=dests))
        await s.start()
        s.engine.set(path("p1", 10), path("p2", 30))
        await settle(0.3)
        where.clear()
        await settle(0.2)
        periodic = list(where)
        where.clear()
        s.engine.set(path("p1", None, state=PathState.DOWN, failing=3), path("p2", 30))
        await settle(0.2)
        moved = s.applied.routes[ipaddress.ip_network("10.0.0.0/24")].nexthops[0].path
        await s.stop()
        return periodic, list(where), moved

    periodic, after, moved = asyncio.run(main())
    loop_thread = threading.main_thread().name
    assert periodic and all(name == loop_thread for name, _ in periodic), periodic
    assert moved == "p2"
    first_down = next(name for name, down in after if down)
    assert first_down != loop_thread  # the change's decision went to the worker
