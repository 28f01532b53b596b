"""The history component with a fake daemon context (its own `Bus`, a fake steering with
``view_paths``): start makes the state dir and the file and stores the bus's earlier events
once a process; events and rollups through the commands (filters, bad arguments exit 2, an
unknown path named); a reload to a new state dir; stop writes what is queued, in bounded time,
and a restart on the same dir finds it; a damaged file at start is set aside; a failing write
drops and counts the batch and the next one writes again; an overflowing queue drops the
oldest; the bus callback never raises and never touches SQLite; the reactor runs it as a
component."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
import threading
import time

import pytest

from pathsteer.config.operator import HistoryConfig
from pathsteer.control.protocol import Request
from pathsteer.control.server import ControlServer
from pathsteer.errors import UsageError
from pathsteer.events import Bus, Event
from pathsteer.history import service as hs
from pathsteer.history.service import HistoryService, Writer

FAST = {"flush_s": 0.05}


class FakeSteer:
    def __init__(self, names=("p1", "p2")) -> None:
        self.names = list(names)
        self.rtt = {n: 10.0 * (i + 1) for i, n in enumerate(self.names)}
        self.state = {n: "up" for n in self.names}
        self.calls = 0

    def view_paths(self) -> list[dict]:
        self.calls += 1
        return [{"name": n, "state": self.state[n], "rtt_ms": self.rtt[n], "rtt_p50_ms": self.rtt[n],
                 "rtt_p95_ms": self.rtt[n], "jitter_ms": 1.0, "loss_pct": 0.0, "utilization": 0.5,
                 "load": {"in_bps": 1000, "out_bps": 2000}} for n in self.names]


class Ctx:
    def __init__(self, bus: Bus | None = None, steer: FakeSteer | None = None) -> None:
        self.bus = bus or Bus()
        self.steer = steer

    def component(self, name: str):
        return self.steer if name == "steer" else None


def section(state_dir, **kw) -> HistoryConfig:
    return HistoryConfig(state_dir=str(state_dir), **kw)


def make(tmp_path, *, ctx=None, clock=None, **kw) -> HistoryService:
    opts = {"writer_options": FAST}
    if clock is not None:
        opts["clock"] = clock
    return HistoryService(section(tmp_path / "state", **kw), ctx or Ctx(), **opts)


def server_for(svc: HistoryService) -> ControlServer:
    server = ControlServer("/nonexistent/never-started.sock")
    for command in svc.commands():
        server.register(command)
    return server


async def call(server: ControlServer, command: str, args: dict | None = None):
    response = await server.dispatch(Request(command, args or {}))
    if not response.ok:
        raise UsageError(response.error) if response.exit_code == 2 else RuntimeError(response.error)
    return response.result


def test_start_makes_the_dir_and_stores_the_earlier_events_once(tmp_path):
    bus = Bus()
    bus.publish("steer.start", mode="fib", paths=2)
    bus.publish("guard.start", interfaces="eth0")

    async def main():
        svc = make(tmp_path, ctx=Ctx(bus))
        assert svc.check(svc.section).section is svc.section
        assert not (tmp_path / "state").exists()  # check creates nothing
        await svc.start()
        st_ = os.stat(tmp_path / "state")
        assert stat.S_IMODE(st_.st_mode) == 0o750
        assert (tmp_path / "state" / "history.sqlite").is_file()
        bus.publish("steer.change", prefix="198.51.100.0/24", to="p2", **{"from": "p1"})
        server = server_for(svc)
        names = [e["name"] for e in (await call(server, "history.events"))["events"]]
        assert names[:2] == ["steer.start", "guard.start"] and "steer.change" in names
        await svc.stop()
        # a second history in the same process (a reload that turned it off and on): no catch-up
        again = make(tmp_path, ctx=Ctx(bus))
        await again.start()
        events = (await call(server_for(again), "history.events", {"name": "*"}))["events"]
        await again.stop()
        return [e["name"] for e in events]

    names = asyncio.run(main())
    assert names.count("steer.start") == 1 and names.count("guard.start") == 1 and names.count("steer.change") == 1


def test_events_command_filters_and_refuses_bad_arguments(tmp_path):
    async def main():
        svc = make(tmp_path)
        await svc.start()
        bus = svc.bus
        t0 = time.time()
        bus.publish("steer.change", prefix="198.51.100.0/24", to="p2", **{"from": "p1"})
        bus.publish("path.state", path="p3", state="down")
        bus.publish("steer.change", prefix="203.0.113.0/24", to="p3", **{"from": "p2:1,p3:1"})
        bus.publish("guard.block", cidr="192.0.2.0/24", origin="manual")
        server = server_for(svc)
        try:
            q = lambda **a: call(server, "history.events", a)  # noqa: E731
            seqs = lambda r: [e["seq"] for e in r["events"]]  # noqa: E731
            # seq 1 is the history's own history.open
            assert seqs(await q(prefix="198.51.100.0/24")) == [2]
            assert seqs(await q(path="p3")) == [3, 4]
            assert seqs(await q(name="steer.*")) == [2, 4]
            assert seqs(await q(name="guard.block", since=t0 - 1)) == [5]
            assert seqs(await q(limit=2)) == [4, 5]
            assert seqs(await q(until=t0 - 1)) == []
            with pytest.raises(UsageError, match="prefix.*'nope' is not a CIDR"):
                await q(prefix="nope")
            with pytest.raises(UsageError, match="limit"):
                await q(limit=0)
            with pytest.raises(UsageError, match="name"):
                await q(name="steer change")
            with pytest.raises(UsageError, match="colour"):
                await q(colour="red")
        finally:
            await svc.stop()

    asyncio.run(main())


def test_rollups_from_the_sampled_paths(tmp_path):
    clock = [1000.0]
    steer = FakeSteer()

    async def main():
        svc = make(tmp_path, ctx=Ctx(steer=steer), clock=lambda: clock[0], rollup_interval=10.0)
        svc.sample_s = 3600.0  # the test samples by hand
        await svc.start()
        server = server_for(svc)
        try:
            for i in range(25):  # 25 s: two whole windows and a half
                if i == 12:
                    steer.state["p2"] = "down"
                if i == 13:
                    steer.state["p2"] = "up"
                steer.rtt["p1"] = 10.0 + i % 10
                svc.sample()
                clock[0] += 1.0
            r = await call(server, "history.rollups", {"path": "p2"})
            assert r["path"] == "p2" and r["interval_s"] == 10.0
            assert [(x["start"], x["end"]) for x in r["rollups"]] == [(1000.0, 1010.0), (1010.0, 1020.0)]
            second = r["rollups"][1]
            assert (second["state"], second["worst_state"], second["samples"]) == ("up", "down", 10)
            assert second["utilization_max"] == 0.5 and second["in_bps"] == 1000 and second["out_bps"] == 2000
            p1 = (await call(server, "history.rollups", {"path": "p1", "limit": 1}))["rollups"]
            assert len(p1) == 1 and p1[0]["rtt_max_ms"] == 19.0 and p1[0]["rtt_p50_ms"] == 14.5
            with pytest.raises(UsageError, match="path 'p9' is not a path.*p1, p2"):
                await call(server, "history.rollups", {"path": "p9"})
            with pytest.raises(UsageError, match="path"):
                await call(server, "history.rollups", {})
        finally:
            await svc.stop()  # the half window is written at stop
        return svc

    svc = asyncio.run(main())

    async def after():  # without steering: the stored paths are known, others are not
        again = HistoryService(svc.section, Ctx(), writer_options=FAST)
        await again.start()
        try:
            server = server_for(again)
            rows = (await call(server, "history.rollups", {"path": "p2"}))["rollups"]
            assert [x["end"] for x in rows] == [1010.0, 1020.0, 1025.0]
            with pytest.raises(UsageError, match="'p9'"):
                await call(server, "history.rollups", {"path": "p9"})
        finally:
            await again.stop()

    asyncio.run(after())


def test_the_sampler_task_runs_on_its_own(tmp_path):
    steer = FakeSteer()

    async def main():
        svc = make(tmp_path, ctx=Ctx(steer=steer))
        svc.sample_s = 0.02
        await svc.start()
        await asyncio.sleep(0.3)
        await svc.stop()

    asyncio.run(main())
    assert steer.calls >= 5


def test_stats(tmp_path):
    async def main():
        svc = make(tmp_path)
        await svc.start()
        for i in range(10):
            svc.bus.publish("x.y", i=i)
        try:
            return await call(server_for(svc), "history.stats")
        finally:
            await svc.stop()

    s = asyncio.run(main())
    assert s["path"] == str(tmp_path / "state" / "history.sqlite")
    assert s["events"] >= 10 and s["size_bytes"] > 0 and s["dropped"] == 0 and s["set_aside"] == 0
    assert s["last_error"] is None and s["max_size"] == 256 << 20 and s["retention_s"] == 7 * 86400


def test_stop_writes_what_is_queued_and_a_restart_finds_it(tmp_path):
    async def first():
        svc = make(tmp_path)
        await svc.start()
        for i in range(2000):
            svc.bus.publish("steer.change", prefix="198.51.100.0/24", i=i, to="p2", **{"from": "p1"})
        t0 = time.monotonic()
        await svc.stop()
        return time.monotonic() - t0

    took = asyncio.run(first())
    assert took < hs.STOP_S + 0.5

    async def second():  # a new process: a new bus
        svc = make(tmp_path)
        await svc.start()
        try:
            return (await call(server_for(svc), "history.events", {"name": "steer.change", "limit": 100000}))
        finally:
            await svc.stop()

    events = asyncio.run(second())["events"]
    assert [e["i"] for e in events] == list(range(2000))


def test_stop_is_bounded_when_the_writer_is_stuck(tmp_path, monkeypatch):
    monkeypatch.setattr(hs, "STOP_S", 0.3)
    gate = threading.Event()

    async def main():
        svc = make(tmp_path)
        await svc.start()
        real = svc.writer.store.insert
        monkeypatch.setattr(svc.writer.store, "insert", lambda *a: (gate.wait(5), real(*a)))
        svc.bus.publish("x.y")
        await asyncio.sleep(0.15)  # the writer is in insert
        t0 = time.monotonic()
        await svc.stop()
        return time.monotonic() - t0

    try:
        assert asyncio.run(main()) < 1.0
    finally:
        gate.set()


def test_commit_a_new_state_dir_writes_there(tmp_path):
    async def main():
        svc = make(tmp_path)
        await svc.start()
        server = server_for(svc)
        try:
            svc.bus.publish("a.one")
            await call(server, "history.events")
            new = section(tmp_path / "other", retention=3600.0, max_size="2MiB")
            await svc.commit(svc.check(new))
            svc.bus.publish("a.two")
            two = [e["name"] for e in (await call(server, "history.events"))["events"]]
            stats = await call(server, "history.stats")
        finally:
            await svc.stop()
        return two, stats

    two, stats = asyncio.run(main())
    assert two == ["history.open", "a.two"] or two[-1] == "a.two" and "a.one" not in two
    assert stats["path"] == str(tmp_path / "other" / "history.sqlite")
    assert stats["max_size"] == 2 << 20 and stats["retention_s"] == 3600.0
    assert (tmp_path / "state" / "history.sqlite").exists()


def test_check_refuses_an_unusable_state_dir(tmp_path):
    svc = make(tmp_path)
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(UsageError, match=r"history.state_dir: '.*/file' is not a directory"):
        svc.check(section(a_file))
    with pytest.raises(UsageError, match=r"cannot be made: .*/file is not a directory"):
        svc.check(section(a_file / "sub"))
    (tmp_path / "d" / "history.sqlite").mkdir(parents=True)
    with pytest.raises(UsageError, match="history.sqlite is not a file"):
        svc.check(section(tmp_path / "d"))
    svc.check(section(tmp_path / "new" / "deeper"))
    assert not (tmp_path / "new").exists()


def test_a_damaged_file_at_start_is_set_aside_and_a_fresh_one_used(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pathsteer")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "history.sqlite").write_bytes(b"\0garbage" * 512)

    async def main():
        svc = make(tmp_path)
        await svc.start()
        svc.bus.publish("x.y")
        try:
            return (await call(server_for(svc), "history.events"))["events"], \
                (await call(server_for(svc), "history.stats"))
        finally:
            await svc.stop()

    events, stats = asyncio.run(main())
    assert "x.y" in [e["name"] for e in events]
    assert stats["set_aside"] == 1 and os.path.exists(stats["set_aside_files"][0])
    assert sum("history.set-aside" in r.getMessage() for r in caplog.records) == 1


def test_a_failing_write_drops_the_batch_and_the_next_writes_again(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="pathsteer")

    async def main():
        svc = make(tmp_path)
        await svc.start()
        server = server_for(svc)
        real = svc.writer.store.insert

        def full(*_a):
            raise sqlite3.OperationalError("database or disk is full")

        try:
            monkeypatch.setattr(svc.writer.store, "insert", full)
            for i in range(3):
                svc.bus.publish("lost.one", i=i)  # the callback never raises
                await asyncio.to_thread(svc.writer.flush, 1.0)
            stats = await call(server, "history.stats")
            assert stats["dropped"] >= 3 and "disk is full" in stats["last_error"]
            monkeypatch.setattr(svc.writer.store, "insert", real)
            svc.bus.publish("kept.one")
            await call(server, "history.events")  # kept.one written: history.write-resumed queued
            names = [e["name"] for e in (await call(server, "history.events"))["events"]]
        finally:
            await svc.stop()
        return names

    names = asyncio.run(main())
    assert "kept.one" in names and "lost.one" not in names
    assert "history.write-resumed" in names  # the gap is in the history itself (write-failed went with it)
    lines = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("history.write-failed") for m in lines) == 1


def test_the_queue_drops_the_oldest_when_full(tmp_path):
    w = Writer(str(tmp_path / "h.sqlite"), retention=3600.0, max_size=1 << 20, queue_max=5)
    for i in range(8):
        w.put(Event(i + 1, float(i), "x.y", {}))
    assert w.queued == 5 and w.stats.dropped == 3 and w.stats.overflow == 3
    assert [e.seq for e in w._queue] == [4, 5, 6, 7, 8]


def test_the_callback_is_quick_and_never_touches_sqlite(tmp_path, monkeypatch):
    """A publish returns at once even while the writer is busy with a slow transaction."""
    gate = threading.Event()

    async def main():
        svc = make(tmp_path)
        await svc.start()
        real = svc.writer.store.insert
        monkeypatch.setattr(svc.writer.store, "insert", lambda *a: (gate.wait(2), real(*a)))
        try:
            t0 = time.perf_counter()
            for i in range(1000):
                svc.bus.publish("x.y", i=i)
            took = time.perf_counter() - t0
        finally:
            gate.set()
            await svc.stop()
        return took

    assert asyncio.run(main()) < 0.5  # 1000 publishes; the writer was blocked all along


def test_the_reactor_runs_it_as_a_component(tmp_path, monkeypatch):
    """The spec the orchestrator adds, in a real daemon (steering faked), over the socket."""
    from pathsteer.control import ControlClient
    from pathsteer.daemon import reactor

    class Steer:
        name = "steer"
        applied = object()

        def __init__(self, _s):
            pass

        def check(self, s):
            return s

        async def start(self):
            from pathsteer import logs
            logs.event(logging.getLogger("pathsteer.steering"), "steer.start", mode="fake")

        async def commit(self, plan):
            pass

        async def stop(self):
            pass

        def commands(self):
            return []

        def view_paths(self):
            return FakeSteer(["p1"]).view_paths()

    monkeypatch.setattr(hs, "_CAUGHT_UP", type(hs._CAUGHT_UP)())  # whatever ran before in this process
    monkeypatch.setattr(reactor, "COMPONENTS", [
        reactor.ComponentSpec("steer", lambda c: c.steering, lambda s, _ctx: Steer(s)),
        reactor.ComponentSpec("history", lambda c: c.history if c.history.enabled else None,
                              lambda s, ctx: HistoryService(s, ctx)),
    ])
    sock = str(tmp_path / "d.sock")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"control: {{socket: {sock}}}\nhistory: {{state_dir: {tmp_path / 'state'}}}\n"
                   "paths: [{name: p1, interface: lo, gateway: 192.0.2.1, probe: {targets: [192.0.2.9]}}]\n"
                   "destinations: [{prefix: 198.51.100.0/24, paths: [p1]}]\n")
    d = reactor.Daemon(str(cfg))
    client = ControlClient(sock)
    out = {}

    async def main():
        async def driver():
            while not d.ready:
                await asyncio.sleep(0.02)
            try:
                out["events"] = await asyncio.to_thread(client.call, "history.events", {"name": "steer.*"})
                out["help"] = await asyncio.to_thread(client.call, "help", {})
            finally:
                d.request_stop("test")
        await asyncio.gather(d.run(), driver())

    asyncio.run(main())
    assert "steer.start" in [e["name"] for e in out["events"]["events"]]
    assert {"history.events", "history.rollups", "history.stats"} <= set(out["help"])


def test_a_run_shorter_than_a_sample_interval_still_leaves_its_rollups(tmp_path):
    """Steering starts after the history: the first sample is taken as soon as it runs, not a
    sample interval later, so a run of half a second (stopped) still writes its paths' rows."""
    ctx = Ctx()

    async def main():
        svc = make(tmp_path, ctx=ctx)
        await svc.start()
        await asyncio.sleep(0.1)
        ctx.steer = FakeSteer()  # steering comes up
        await asyncio.sleep(0.3)
        await svc.stop()
        svc2 = make(tmp_path, ctx=Ctx())
        await svc2.start()
        try:
            return await call(server_for(svc2), "history.rollups", {"path": "p2"})
        finally:
            await svc2.stop()

    r = asyncio.run(main())
    assert [x["samples"] for x in r["rollups"]] == [1], r
