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
        self._commands: dict[str, list[str]] = {}  # component → the command names it registered
        self.server: ControlServer | None = None
        self._stop = asyncio.Event()
        self._reloading = asyncio.Lock()  # one reload at a time (a SIGHUP storm queues, in order)
        self._tasks: set[asyncio.Task] = set()  # SIGHUP reloads under way (referenced until done)
        self.stop_reason = ""

    # --- config -----------------------------------------------------------------------------

    def _load(self) -> Config:
        config = load_config(self.config_path)
        for spec in COMPONENTS:
            if spec.wanted(config):
                spec.check(config)
        return config

    async def reload(self) -> dict:
        """Load the file again; refused with a one-line error (and nothing changed) if bad.
        Reloads run one at a time, in the order they were asked for."""
        async with self._reloading:
            if self._stop.is_set():
                raise UsageError("the daemon is stopping")
            return await self._reload()

    async def _reload(self) -> dict:
        try:
            new = self._load()
            if new.control.socket != self.config.control.socket:
                raise UsageError("control.socket cannot change on reload (restart the daemon)")
        except PathsteerError as exc:
            log.error("daemon.reload-refused error=%r", str(exc))
            raise
        old = self.config
        done: list[tuple[str, ComponentSpec]] = []  # what changed, to undo if a later step fails
        try:
            for spec in reversed(COMPONENTS):
                if spec.name in self.components and not spec.wanted(new):
                    await self._stop_component(spec.name)
                    done.append(("stopped", spec))
            for spec in COMPONENTS:
                if not spec.wanted(new):
                    continue
                if spec.name in self.components:
                    await self.components[spec.name].reload(new)
                    done.append(("reloaded", spec))
                else:
                    await self._start_component(spec, new)
                    done.append(("started", spec))
        except Exception as exc:
            await self._undo(done, old)
            log.error("daemon.reload-refused error=%r undone=%d", str(exc), len(done))
            if isinstance(exc, PathsteerError):
                raise
            raise PathsteerError(f"reload failed and was undone: {exc}") from exc
        self.config = new
        log.info("daemon.reload components=%s", ",".join(self.components))
        return {"sections": new.sections, "components": list(self.components)}

    async def _undo(self, done: list[tuple[str, ComponentSpec]], old: Config) -> None:
        """Put every component a failed reload changed back on ``old``, last change first."""
        for what, spec in reversed(done):
            try:
                if what == "reloaded":
                    await self.components[spec.name].reload(old)
                elif what == "started":
                    await self._stop_component(spec.name)
                else:
                    await self._start_component(spec, old)
            except Exception:  # noqa: BLE001 - undo the others all the same
                log.exception("daemon.undo-failed component=%s step=%s", spec.name, what)

    async def _start_component(self, spec: ComponentSpec, config: Config) -> None:
        component = spec.build(config)
        await component.start()
        self.components[spec.name] = component
        names = self._commands[spec.name] = []
        for command in component.commands():
            self.server.register(command)
            names.append(command.name)

    async def _stop_component(self, name: str) -> None:
        component = self.components.pop(name)
        for command in self._commands.pop(name, []):  # exactly what it registered (steering's are steer.*)
            self.server.unregister_command(command)
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
        # Signals first: a SIGTERM while a component starts stops the daemon cleanly (after
        # the start), and a SIGHUP then is a reload queued behind it, not the default (exit).
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.request_stop, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        await self.server.start()
        try:
            for spec in COMPONENTS:
                if self._stop.is_set():
                    break
                if spec.wanted(self.config):
                    await self._start_component(spec, self.config)
            log.info("daemon.ready pid=%d socket=%s components=%s", os.getpid(), self.config.control.socket,
                     ",".join(self.components))
            await self._stop.wait()
            log.info("daemon.stop reason=%s", self.stop_reason)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            async with self._reloading:  # a reload under way finishes first
                pass
            for name in reversed(list(self.components)):
                try:
                    await self._stop_component(name)
                except Exception:  # noqa: BLE001 - stop the others all the same
                    log.exception("daemon.stop-failed component=%s", name)
            await self.server.close()

    def _on_sighup(self) -> None:
        task = asyncio.get_running_loop().create_task(self._reload_quietly(), name="sighup-reload")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reload_quietly(self) -> None:
        try:
            await self.reload()
        except PathsteerError:
            pass  # logged by reload; the running config stays

    def _status(self, _args: NoArgs) -> dict:
        return {"version": __version__, "pid": os.getpid(), "config": self.config_path,
                "sections": list(self.components)}
