"""The reactor's two-phase reload with two fake components that keep the component contract
(built from their section; check → plan; start; commit(plan); stop; commands in their own
namespace): a component removed and added back by reload, a check that fails touches nothing,
a commit that fails is undone, reloads run one at a time, signals are handled from before the
components start."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from pathsteer.control import Command, ControlClient, NoArgs
from pathsteer.daemon import reactor
from pathsteer.errors import PathsteerError, UsageError

GUARD = "guard: {{interfaces: [lo], deny: [{deny}], state_dir: {state}}}\n"
STEER = ("paths: [{{name: p1, interface: lo, gateway: 192.0.2.1, probe: {{targets: [192.0.2.9]}}}}]\n"
         "destinations: [{{prefix: {prefix}, paths: [p1]}}]\n")

LOG: list[str] = []


class Fake:
    name = "?"
    fail_check_with: str | None = None
    fail_commit_with: str | None = None
    start_delay = 0.0

    def __init__(self, section) -> None:
        self.section = section

    def _what(self, section) -> str:
        raise NotImplementedError

    def check(self, section):
        what = self._what(section)
        LOG.append(f"{self.name} check {what}")
        if what == type(self).fail_check_with:
            raise PathsteerError(f"{self.name}: {what} is refused")
        return section

    async def start(self) -> None:
        LOG.append(f"{self.name} start {self._what(self.section)}")
        await asyncio.sleep(self.start_delay)

    async def commit(self, plan) -> None:
        LOG.append(f"{self.name} reload {self._what(plan)}")
        if self._what(plan) == type(self).fail_commit_with:
            raise PathsteerError(f"{self.name}: cannot use {self._what(plan)}")
        await asyncio.sleep(0.02)  # a commit takes time: others must wait for it
        LOG.append(f"{self.name} reloaded {self._what(plan)}")
        self.section = plan

    async def stop(self) -> None:
        LOG.append(f"{self.name} stop")

    def commands(self):
        return [Command(f"{self.name}.ping", NoArgs, lambda _a: {"what": self._what(self.section)})]


class FakeGuard(Fake):
    name = "guard"

    def _what(self, section) -> str:
        return str(section.deny[0])


class FakeSteering(Fake):
    name = "steer"  # like the real one: component and command namespace "steer"

    def _what(self, section) -> str:
        return str(section.destinations[0].prefix)


@pytest.fixture
def daemon(tmp_path, monkeypatch):
    LOG.clear()
    for fake in (FakeGuard, FakeSteering):
        fake.fail_check_with = fake.fail_commit_with = None
        fake.start_delay = 0.0
    monkeypatch.setattr(reactor, "COMPONENTS", [
        reactor.ComponentSpec("guard", lambda c: c.guard, lambda s, _ctx: FakeGuard(s)),
        reactor.ComponentSpec("steer", lambda c: c.steering, lambda s, _ctx: FakeSteering(s)),
    ])
    sock = str(tmp_path / "d.sock")
    path = tmp_path / "c.yaml"

    def write(deny: str | None = "192.0.2.0/24", prefix: str | None = "198.51.100.0/24") -> None:
        text = f"control: {{socket: {sock}}}\n"
        if deny:
            text += GUARD.format(deny=deny, state=tmp_path / "state")
        if prefix:
            text += STEER.format(prefix=prefix)
        path.write_text(text)

    write()
    d = reactor.Daemon(str(path))
    client = ControlClient(sock)

    def run(drive) -> None:
        async def main():
            async def driver():
                while not os.path.exists(sock):
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.05)
                try:
                    await drive(lambda *a: asyncio.to_thread(client.call, *a))
                finally:
                    d.request_stop("test")
            await asyncio.gather(d.run(), driver())
        asyncio.run(main())

    return d, write, run


def test_a_component_removed_and_added_back_by_reload_takes_its_own_commands(daemon):
    d, write, run = daemon

    async def drive(call):
        assert await call("steer.ping") == {"what": "198.51.100.0/24"}
        write(prefix=None)  # steering removed
        assert (await call("daemon.reload"))["components"] == ["guard"]
        with pytest.raises(UsageError, match="unknown command 'steer.ping'"):
            await call("steer.ping")
        write(prefix="203.0.113.0/24")  # and added back: was "steer.ping registered twice"
        assert (await call("daemon.reload"))["components"] == ["guard", "steer"]
        assert await call("steer.ping") == {"what": "203.0.113.0/24"}
        write(deny=None)  # the guard removed, then back
        await call("daemon.reload")
        write()
        await call("daemon.reload")
        assert await call("guard.ping") == {"what": "192.0.2.0/24"}

    run(drive)
    assert LOG.count("steer stop") == 2 and LOG.count("guard stop") == 2


def test_a_reload_whose_second_component_fails_its_check_touches_nothing(daemon):
    d, write, run = daemon
    FakeSteering.fail_check_with = "203.0.113.0/24"

    async def drive(call):
        write(deny="198.18.0.0/15", prefix="203.0.113.0/24")
        with pytest.raises(PathsteerError, match="steer: 203.0.113.0/24 is refused"):
            await call("daemon.reload")
        assert await call("guard.ping") == {"what": "192.0.2.0/24"}  # never committed
        assert await call("steer.ping") == {"what": "198.51.100.0/24"}
        assert d.config.guard.deny[0].compressed == "192.0.2.0/24"

    run(drive)
    assert not [line for line in LOG if " reload" in line], LOG  # phase two never began


def test_a_reload_whose_second_component_fails_its_commit_leaves_everything_on_the_old_config(daemon):
    d, write, run = daemon
    FakeSteering.fail_commit_with = "203.0.113.0/24"

    async def drive(call):
        write(deny="198.18.0.0/15", prefix="203.0.113.0/24")
        with pytest.raises(PathsteerError, match="steer: cannot use 203.0.113.0/24"):
            await call("daemon.reload")
        assert await call("guard.ping") == {"what": "192.0.2.0/24"}  # the guard was put back
        assert await call("steer.ping") == {"what": "198.51.100.0/24"}
        assert d.config.guard.deny[0].compressed == "192.0.2.0/24"

    run(drive)
    commits = [line for line in LOG if " reload" in line]
    assert commits == ["guard reload 198.18.0.0/15", "guard reloaded 198.18.0.0/15",
                       "steer reload 203.0.113.0/24",
                       "guard reload 192.0.2.0/24", "guard reloaded 192.0.2.0/24"], LOG


def test_a_sighup_storm_reloads_one_at_a_time(daemon):
    d, write, run = daemon

    async def drive(call):
        write(deny="198.18.0.0/15")
        for _ in range(5):
            os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.05)
        assert d._tasks, "the reload tasks are referenced while they run"
        for _ in range(100):
            if not d._tasks:
                break
            await asyncio.sleep(0.02)
        assert not d._tasks

    run(drive)
    reloads = [line for line in LOG if " reload" in line]
    # 5 reloads × 2 components, each step finished before the next began: never interleaved
    assert reloads == ["guard reload 198.18.0.0/15", "guard reloaded 198.18.0.0/15",
                       "steer reload 198.51.100.0/24", "steer reloaded 198.51.100.0/24"] * 5


def test_sigterm_while_a_component_starts_stops_the_daemon_cleanly(daemon):
    d, write, run = daemon
    FakeGuard.start_delay = 0.5

    async def main():
        task = asyncio.ensure_future(d.run())
        await asyncio.sleep(0.2)  # the guard is starting
        os.kill(os.getpid(), signal.SIGTERM)  # handled: the default would kill the test process
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert d.stop_reason == "SIGTERM"
    assert [line for line in LOG if " check" not in line] == ["guard start 192.0.2.0/24", "guard stop"]
