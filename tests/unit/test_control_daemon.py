"""The daemon's reactor with a fake component: control commands, reload (a bad file is refused
and the running config stays), SIGHUP, clean stop in reverse order."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from pathsteer.control import Command, ControlClient, NoArgs
from pathsteer.daemon import reactor
from pathsteer.errors import UsageError

GOOD = "control: {{socket: {sock}}}\nguard: {{interfaces: [lo], deny: [{deny}], state_dir: {state}}}\n"


class FakeComponent:
    """The component contract with a guard section: check → plan, start, commit(plan), stop."""

    name = "guard"
    log: list[str] = []
    checked: list = []

    def __init__(self, section) -> None:
        self.section = section

    def check(self, section):
        self.checked.append(section)
        return section

    async def start(self) -> None:
        self.log.append(f"start {self.section.deny[0]}")

    async def commit(self, plan) -> None:
        self.log.append(f"reload {plan.deny[0]}")
        self.section = plan

    async def stop(self) -> None:
        self.log.append("stop")

    def commands(self):
        return [Command("guard.ping", NoArgs, lambda _a: {"deny": str(self.section.deny[0])})]


@pytest.fixture
def fake_components(monkeypatch):
    FakeComponent.log = []
    FakeComponent.checked = checked = []
    spec = reactor.ComponentSpec("guard", lambda c: c.guard, lambda s, _ctx: FakeComponent(s))
    monkeypatch.setattr(reactor, "COMPONENTS", [spec])
    return checked


def test_daemon_lifecycle(tmp_path, fake_components):
    sock = str(tmp_path / "d.sock")
    path = tmp_path / "c.yaml"
    state = tmp_path / "state"
    path.write_text(GOOD.format(sock=sock, deny="192.0.2.0/24", state=state))
    daemon = reactor.Daemon(str(path))
    client = ControlClient(sock)

    async def drive():
        while not os.path.exists(sock):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        status = await asyncio.to_thread(client.call, "daemon.status")
        assert status["sections"] == ["guard"] and status["pid"] == os.getpid()
        assert await asyncio.to_thread(client.call, "guard.ping") == {"deny": "192.0.2.0/24"}
        path.write_text(GOOD.format(sock=sock, deny="10.0.0.0/33", state=state))
        with pytest.raises(UsageError, match=r"guard.deny\[0\]: '10.0.0.0/33' is not a CIDR"):
            await asyncio.to_thread(client.call, "daemon.reload")
        os.kill(os.getpid(), signal.SIGHUP)  # refused too, and the daemon keeps running
        await asyncio.sleep(0.1)
        path.write_text(GOOD.format(sock=sock, deny="198.18.0.0/15", state=state))
        assert (await asyncio.to_thread(client.call, "daemon.reload"))["components"] == ["guard"]
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.1)
        daemon.request_stop("test")

    async def main():
        await asyncio.gather(daemon.run(), drive())

    asyncio.run(main())
    assert FakeComponent.log == ["start 192.0.2.0/24", "reload 198.18.0.0/15", "reload 198.18.0.0/15", "stop"]
    assert not os.path.exists(sock)
    assert len(fake_components) == 1 + 2  # pre-flight at start and at the two good reloads, not at the refused ones


def test_bad_config_touches_nothing(tmp_path, fake_components):
    path = tmp_path / "c.yaml"
    path.write_text("guard: {interfaces: [lo], deny: [nonsense]}\n")
    with pytest.raises(UsageError, match=r"guard.deny\[0\]: 'nonsense' is not a CIDR"):
        asyncio.run(reactor.Daemon(str(path)).run())
    assert FakeComponent.log == [] and fake_components == []
