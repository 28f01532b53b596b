"""The reactor: one asyncio loop owning the signals, the control server and the components."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pathsteer import __version__
from pathsteer.config import Config, load_config
from pathsteer.control.server import Command, ControlServer, NoArgs
from pathsteer.errors import PathsteerError, UsageError

log = logging.getLogger("pathsteer.daemon")


class Component(Protocol):
    """A part of the daemon. It is given the whole `Config` (a component may read several
    sections: steering needs ``dataplane``, ``paths`` and ``destinations``)."""

    name: str

    async def start(self) -> None: ...
    async def reload(self, config: Config) -> None: ...  # raise PathsteerError to refuse
    async def stop(self) -> None: ...
    def commands(self) -> list[Command]: ...  # named "<name>.<verb>"


@dataclass(frozen=True)
class ComponentSpec:
    """How the daemon makes a component: it runs when any of ``sections`` is in the config;
    ``check`` runs on every load and reload before anything is touched."""

    name: str
    sections: tuple[str, ...]
    build: Callable[[Config], Component]
    check: Callable[[Config], None]

    def wanted(self, config: Config) -> bool:
        return any(getattr(config, s, None) is not None for s in self.sections)


class _GuardAdapter:
    """GuardService takes its own section; the daemon hands components the whole config."""

    name = "guard"

    def __init__(self, config: Config) -> None:
        from pathsteer.guard.service import GuardService
        self.service = GuardService(config.guard)

    async def start(self) -> None:
        await self.service.start()

    async def reload(self, config: Config) -> None:
        await self.service.reload(config.guard)

    async def stop(self) -> None:
        await self.service.stop()

    def commands(self) -> list[Command]:
        return self.service.commands()


def _guard_check(config: Config) -> None:
    from pathsteer.guard.service import GuardService
    GuardService.check(config.guard)


def _steering_build(config: Config) -> Component:
    from pathsteer.steering.service import SteeringService
    return SteeringService(config)


def _steering_check(config: Config) -> None:
    from pathsteer.steering.service import SteeringService
    SteeringService.check(config)


# Start order; stop is the reverse.
COMPONENTS: list[ComponentSpec] = [
    ComponentSpec("guard", ("guard",), _GuardAdapter, _guard_check),
    ComponentSpec("steering", ("dataplane", "paths", "destinations"), _steering_build, _steering_check),
]


class _MillisecondFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        import time
        t = time.localtime(record.created)
        return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}" + time.strftime("%z", t)


def setup_logging(level: int = logging.INFO) -> None:
    """One line per event on stderr: ``2026-01-01T10:00:00.123+0000 guard.block cidr=... origin=manual``
    (milliseconds: a reroute takes tens of them)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_MillisecondFormatter("%(asctime)s %(message)s"))
    root = logging.getLogger("pathsteer")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class Daemon:
    def __init__(self, config_path: str) -> None:
        self.config_path = config_path
        self.config: Config | None = None
        self.components: dict[str, Component] = {}
        self.server: ControlServer | None = None
        self._stop = asyncio.Event()
        self.stop_reason = ""

    # --- config -----------------------------------------------------------------------------

    def _load(self) -> Config:
        config = load_config(self.config_path)
        for spec in COMPONENTS:
            if spec.wanted(config):
                spec.check(config)
        return config

    async def reload(self) -> dict:
        """Load the file again; refused with a one-line error (and nothing changed) if bad."""
        try:
            new = self._load()
            if new.control.socket != self.config.control.socket:
                raise UsageError("control.socket cannot change on reload (restart the daemon)")
        except PathsteerError as exc:
            log.error("daemon.reload-refused error=%r", str(exc))
            raise
        for spec in reversed(COMPONENTS):
            if spec.name in self.components and not spec.wanted(new):
                await self._stop_component(spec.name)
        for spec in COMPONENTS:
            if not spec.wanted(new):
                continue
            if spec.name in self.components:
                await self.components[spec.name].reload(new)
            else:
                await self._start_component(spec, new)
        self.config = new
        log.info("daemon.reload components=%s", ",".join(self.components))
        return {"sections": new.sections, "components": list(self.components)}

    async def _start_component(self, spec: ComponentSpec, config: Config) -> None:
        component = spec.build(config)
        await component.start()
        self.components[spec.name] = component
        for command in component.commands():
            self.server.register(command)

    async def _stop_component(self, name: str) -> None:
        component = self.components.pop(name)
        self.server.unregister(f"{name}.")
        await component.stop()

    # --- run --------------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        self.stop_reason = reason
        self._stop.set()

    async def run(self) -> None:
        self.config = self._load()  # nothing touched before the whole config is valid
        loop = asyncio.get_running_loop()
        self.server = ControlServer(self.config.control.socket)
        self.server.register(Command("daemon.status", NoArgs, self._status, "version, pid, sections"))
        self.server.register(Command("daemon.reload", NoArgs, lambda _a: self.reload(), "reload the config file"))
        await self.server.start()
        try:
            for spec in COMPONENTS:
                if spec.wanted(self.config):
                    await self._start_component(spec, self.config)
            loop.add_signal_handler(signal.SIGTERM, self.request_stop, "SIGTERM")
            loop.add_signal_handler(signal.SIGINT, self.request_stop, "SIGINT")
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self._reload_quietly()))
            log.info("daemon.ready pid=%d socket=%s components=%s", os.getpid(), self.config.control.socket,
                     ",".join(self.components))
            await self._stop.wait()
            log.info("daemon.stop reason=%s", self.stop_reason)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            for name in reversed(list(self.components)):
                try:
                    await self._stop_component(name)
                except Exception:  # noqa: BLE001 - stop the others all the same
                    log.exception("daemon.stop-failed component=%s", name)
            await self.server.close()

    async def _reload_quietly(self) -> None:
        try:
            await self.reload()
        except PathsteerError:
            pass  # logged by reload; the running config stays

    def _status(self, _args: NoArgs) -> dict:
        return {"version": __version__, "pid": os.getpid(), "config": self.config_path,
                "sections": list(self.components)}
