"""The real reactor (`Daemon.run`) under a NOTIFY_SOCKET and a WATCHDOG_USEC, as systemd runs it,
with fake components (reactor.COMPONENTS replaced whole): READY=1 only once `Context.ready`
(a steering whose first apply failed holds it back), WATCHDOG=1 at half of WATCHDOG_USEC from the
loop — and none while the loop is blocked —, RELOADING=1 then READY=1 around a reload (refused
or not), STOPPING=1 at the end and nothing claiming readiness after it."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

import pytest

from pathsteer.control import Command, ControlClient, NoArgs
from pathsteer.daemon import reactor
from pathsteer.errors import PathsteerError

WATCHDOG_USEC = 200_000  # a ping every 0.1 s
CONFIG = ("control: {{socket: {sock}}}\n"
          "guard: {{interfaces: [lo], deny: [192.0.2.0/24], state_dir: {state}}}\n"
          "paths: [{{name: p1, interface: lo, gateway: 192.0.2.1, probe: {{targets: [192.0.2.9]}}}}]\n"
          "destinations: [{{prefix: {prefix}, paths: [p1]}}]\n")


class Fake:
    name = "?"

    def __init__(self, section) -> None:
        self.section = section
        self.applied = object()

    def check(self, section):
        return section

    async def start(self) -> None:
        await asyncio.sleep(0.05)

    async def commit(self, plan) -> None:
        self.section = plan

    async def stop(self) -> None:
        pass

    def commands(self):
        return []


class FakeGuard(Fake):
    name = "guard"


class FakeSteering(Fake):
    """Like steering: ``applied`` None until its first decision is applied; ``steer.hang``
    blocks the loop (a handler doing slow work on it) for ``hang_s``."""

    name = "steer"
    first_apply_fails = False
    hang_s = 1.5
    instance: "FakeSteering | None" = None

    def __init__(self, section) -> None:
        super().__init__(section)
        self.applied = None
        self._telemetry = None
        self.status_fails = False
        FakeSteering.instance = self

    @property
    def telemetry(self):
        if self.status_fails:
            raise RuntimeError("telemetry is broken")
        return self._telemetry

    @telemetry.setter
    def telemetry(self, value) -> None:
        self._telemetry = value

    async def start(self) -> None:
        await asyncio.sleep(0.05)
        if not type(self).first_apply_fails:
            self.applied = object()

    def check(self, section):
        if str(section.destinations[0].prefix) == "203.0.113.0/24":
            raise PathsteerError("steer: 203.0.113.0/24 is refused")
        return section

    def commands(self):
        def hang(_args):
            time.sleep(type(self).hang_s)
            return {"slept": type(self).hang_s}
        return [Command("steer.hang", NoArgs, hang)]


class Receiver:
    """systemd's side: a datagram socket; every notification with its arrival time."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, socket.timeout):
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
            self.messages.append((time.monotonic(), fields))

    def close(self) -> None:
        self._done.set()
        self._thread.join(5)
        self.sock.close()

    def kinds(self) -> list[str]:
        """Every message but the pings, by its first key: ["STATUS", "READY", ...]."""
        return [next(iter(m)) for _, m in self.messages if "WATCHDOG" not in m]

    def pings(self) -> list[float]:
        return [t for t, m in self.messages if m.get("WATCHDOG") == "1"]

    def first(self, key: str) -> float | None:
        return next((t for t, m in self.messages if key in m), None)


@pytest.fixture
def harness(tmp_path, monkeypatch):
    FakeSteering.first_apply_fails = False
    FakeSteering.instance = None
    monkeypatch.setattr(reactor, "COMPONENTS", [
        reactor.ComponentSpec("guard", lambda c: c.guard, lambda s, _ctx: FakeGuard(s)),
        reactor.ComponentSpec("steer", lambda c: c.steering, lambda s, _ctx: FakeSteering(s)),
    ])
    sock = str(tmp_path / "d.sock")
    config = tmp_path / "c.yaml"

    def write(prefix: str = "198.51.100.0/24") -> None:
        config.write_text(CONFIG.format(sock=sock, state=tmp_path / "state", prefix=prefix))

    write()
    receiver = Receiver(str(tmp_path / "notify"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    d = reactor.Daemon(str(config))
    client = ControlClient(sock)

    def run(drive) -> None:
        async def main():
            async def driver():
                while not os.path.exists(sock):
                    await asyncio.sleep(0.01)
                try:
                    await drive(lambda *a: asyncio.to_thread(client.call, *a))
                finally:
                    d.request_stop("test")
            await asyncio.gather(d.run(), driver())
        asyncio.run(main())
        time.sleep(0.1)  # the last datagrams reach the receiver thread

    yield d, write, run, receiver
    receiver.close()


async def until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_ready_after_start_pings_at_the_interval_and_stopping_at_the_end(harness):
    d, _write, run, rx = harness
    started: list[float] = []

    async def drive(call):
        await until(lambda: rx.first("READY") is not None)
        started.append(time.monotonic())
        assert d.context.ready
        await asyncio.sleep(1.0)

    run(drive)
    kinds = rx.kinds()
    assert kinds.count("READY") == 1 and kinds[-1] == "STOPPING", kinds
    assert kinds.index("READY") > kinds.index("STATUS")  # "starting guard", "starting steer" first
    ready = next(m for _, m in rx.messages if "READY" in m)
    assert ready["STATUS"] == "running: guard, steer"
    stopping = next(m for _, m in rx.messages if "STOPPING" in m)
    assert stopping["STATUS"] == "stopping (test)"
    pings = rx.pings()
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert len(pings) >= 8, pings  # ~1.2 s of running at 0.1 s
    gaps.sort()
    assert 0.07 <= gaps[len(gaps) // 2] <= 0.2, gaps  # the median gap: half of WATCHDOG_USEC
    assert pings[0] < rx.first("READY")  # pinged during start-up too


def test_reload_is_reloading_then_ready_refused_or_not(harness):
    d, write, run, rx = harness
    marks: dict[str, int] = {}

    async def drive(call):
        await until(lambda: rx.first("READY") is not None)
        marks["before"] = len(rx.kinds())
        write("203.0.113.0/24")  # refused by the steering check
        with pytest.raises(PathsteerError, match="203.0.113.0/24 is refused"):
            await call("daemon.reload")
        write("198.18.0.0/15")
        await call("daemon.reload")
        await asyncio.sleep(0.2)
        marks["after"] = len(rx.kinds())

    run(drive)
    kinds = rx.kinds()
    assert kinds[marks["before"]:marks["after"]] == ["RELOADING", "READY", "RELOADING", "READY"], kinds
    reloading = [m for _, m in rx.messages if "RELOADING" in m]
    assert all(int(m["MONOTONIC_USEC"]) > 0 for m in reloading)


def test_pings_stop_while_the_loop_is_blocked(harness):
    d, _write, run, rx = harness
    window: list[float] = []

    async def drive(call):
        await until(lambda: rx.first("READY") is not None)
        await asyncio.sleep(0.3)
        window.append(time.monotonic())
        await call("steer.hang")  # its handler time.sleep()s on the loop
        window.append(time.monotonic())
        await asyncio.sleep(0.5)

    run(drive)
    pings = rx.pings()
    during = [t for t in pings if window[0] + 0.2 < t < window[1] - 0.1]
    assert during == [], (during, window)
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert max(gaps) >= FakeSteering.hang_s - 0.3, gaps  # way past WATCHDOG_USEC: systemd would restart
    assert len([t for t in pings if t > window[1]]) >= 3  # and they came back with the loop


def test_ready_waits_for_steerings_first_apply(harness):
    d, _write, run, rx = harness
    FakeSteering.first_apply_fails = True
    applied_at: list[float] = []

    async def drive(call):
        await until(lambda: d.ready)  # every component started
        await asyncio.sleep(0.5)
        assert rx.first("READY") is None and not d.context.ready
        assert "waiting for steering's first decision to apply" in d.status_line()
        applied_at.append(time.monotonic())
        FakeSteering.instance.applied = object()  # the retried apply went through
        await until(lambda: rx.first("READY") is not None)

    run(drive)
    assert applied_at[0] <= rx.first("READY") <= applied_at[0] + 1.0
    assert rx.kinds().count("READY") == 1


def test_no_ready_after_stopping(harness):
    """A stop asked for before the first decision: STOPPING=1 and never READY=1."""
    d, _write, run, rx = harness
    FakeSteering.first_apply_fails = True

    async def drive(call):
        await until(lambda: d.ready)

    run(drive)
    assert "READY" not in rx.kinds() and rx.kinds()[-1] == "STOPPING"


def test_without_notify_socket_the_daemon_sends_nothing(harness, monkeypatch):
    d, _write, run, rx = harness
    monkeypatch.delenv("NOTIFY_SOCKET")
    d.notifier = reactor.Notifier.from_env()

    async def drive(call):
        await until(lambda: d.ready)
        await call("daemon.reload")
        await asyncio.sleep(0.3)

    run(drive)
    assert rx.messages == []


def test_the_status_line_follows_the_paths(harness):
    from types import SimpleNamespace
    from pathsteer.telemetry import PathState
    d, _write, run, rx = harness

    async def drive(call):
        await until(lambda: rx.first("READY") is not None)
        FakeSteering.instance.telemetry = SimpleNamespace(paths=(SimpleNamespace(state=PathState.UP),
                                                                 SimpleNamespace(state=PathState.DOWN)))
        await until(lambda: any(m.get("STATUS") == "running: guard, steer; paths up 1/2"
                                for _, m in rx.messages), timeout=3 * reactor.STATUS_INTERVAL_S)
        FakeSteering.instance.telemetry = None
        FakeSteering.instance.status_fails = True  # a status line that raises: the pings go on
        pings = len(rx.pings())
        await asyncio.sleep(1.5)
        assert len(rx.pings()) >= pings + 8

    run(drive)
    statuses = [m["STATUS"] for _, m in rx.messages if "STATUS" in m and "READY" not in m and "STOPPING" not in m]
    assert statuses.count("running: guard, steer; paths up 1/2") == 1  # sent when it changed, once
