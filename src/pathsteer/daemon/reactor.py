"""The reactor: one asyncio loop owning the signals, the control server and the components.

Under systemd (``Type=notify``, contrib/systemd/pathsteer.service) it tells systemd how it is
(`pathsteer.daemon.sdnotify`): READY=1 once `Context.ready` (every component started and
steering's first decision applied), STATUS= a short line, RELOADING=1 … READY=1 around each
reload, STOPPING=1, and WATCHDOG=1 from a task on this loop — a loop that hangs stops pinging,
and systemd restarts the daemon."""

from __future__ import annotations

import asyncio
import gc
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pathsteer import __version__
from pathsteer.config import Config, load_config
from pathsteer.control.server import Command, ControlServer, NoArgs
from pathsteer.daemon.gcstats import GcPauses
from pathsteer.daemon.sdnotify import Notifier
from pathsteer.errors import NotReadyError, PathsteerError, UsageError, by_kind

log = logging.getLogger("pathsteer.daemon")
READY_POLL_S = 0.1  # how often readiness is looked at until READY=1 is sent (a first apply that failed)
STATUS_INTERVAL_S = 1.0
 # how often the STATUS= line is refreshed (sent only when it changed)


class Component(Protocol):
    """A part of the daemon (steering, guard; later the API, gateways, BGP): the contract.

    A component is built from its own section of the config (``ComponentSpec.section``),
    touching nothing. Its ``name`` is its command namespace: every command it registers is
    ``<name>.<verb>``. A reload runs in two phases over every component: ``check(section)``
    validates the new section against the running system and returns a plan, touching
    nothing (raise `PathsteerError` to refuse); only when every component's check passed,
    ``commit(plan)`` applies each (a commit that fails puts its own component back as it was
    and raises; the daemon then commits the old sections again on those already changed).
    ``start`` runs once after a successful check, ``stop`` once at the end."""

    name: str

    def check(self, section: Any) -> Any: ...
    async def start(self) -> None: ...
    async def commit(self, plan: Any) -> None: ...
    async def stop(self) -> None: ...
    def commands(self) -> list[Command]: ...


@dataclass(frozen=True)
class ComponentSpec:
    """How the daemon makes a component: ``section`` picks its section from the config (None:
    the component does not run), ``build`` constructs it from that section and the daemon's
    `Context` (touching nothing)."""

    name: str
    section: Callable[[Config], Any]
    build: Callable[[Any, "Context"], Component]


class Context:
    """What a component may use of the daemon and of the other components: the event bus, a
    command call (the same registry, validation and errors as the control socket), another
    component by name, and readiness. The operator surface (API, metrics, history) reads the
    others through it; steering and the guard need none of it."""

    def __init__(self, daemon: "Daemon") -> None:
        self._daemon = daemon
        from pathsteer.events import BUS
        self.bus = BUS

    @property
    def config(self) -> Config:
        return self._daemon.config

    @property
    def config_path(self) -> str:
        return self._daemon.config_path

    def component(self, name: str) -> Any:
        """The running component ``name`` (``steer``, ``guard``, ...), or None."""
        return self._daemon.components.get(name)

    async def call(self, command: str, args: dict | None = None) -> Any:
        """Run control command ``command``; its result, or `PathsteerError` (exit code kept:
        2 = bad input) with the one-line error the control socket would send."""
        from pathsteer.control.protocol import Request
        response = await self._daemon.server.dispatch(Request(command, args or {}))
        if not response.ok:
            raise by_kind(response.kind, response.exit_code)(response.error)
        return response.result

    def commands(self) -> dict[str, Any]:
        return dict(self._daemon.server.commands) if self._daemon.server else {}

    @property
    def ready(self) -> bool:
        """Every component started and steering's first decision applied (readyz, sd_notify)."""
        steer = self.component("steer")
        return self._daemon.ready and (steer is None or steer.applied is not None)

    @property
    def started_wall(self) -> float:
        return self._daemon.started_wall

    @property
    def gc_pauses(self):
        """The daemon's `GcPauses` (garbage-collector stalls, for the metrics)."""
        return self._daemon.gc_pauses


def _guard(section, _ctx) -> Component:
    from pathsteer.guard.service import GuardService
    return GuardService(section)


def _steer(section, _ctx) -> Component:
    from pathsteer.steering.service import SteeringService
    return SteeringService(section)


def _api(section, ctx) -> Component:
    from pathsteer.api.service import ApiService
    return ApiService(section, ctx)


def _gateways(section, ctx) -> Component:
    from pathsteer.gateways.service import GatewaysService
    return GatewaysService(section, ctx)


def _gateways_section(c: Config):
    if not c.gateways:
        return None
    from pathsteer.gateways.service import GatewaysSection
    return GatewaysSection(tuple(c.gateways), c.history.state_dir)


def _bgp(section, ctx) -> Component:
    from pathsteer.bgp.service import BgpService
    return BgpService(section, ctx)


def _api_section(c: Config):
    return c if c.api.enabled else None


def _history(section, ctx) -> Component:
    from pathsteer.history.service import HistoryService
    return HistoryService(section, ctx)


# Start order; stop is the reverse. The history first and last: it records the others' start
# and stop events. The API starts last: when it answers, steering has decided.
COMPONENTS: list[ComponentSpec] = [
    ComponentSpec("history", lambda c: c.history if c.history.enabled else None, _history),
    ComponentSpec("guard", lambda c: c.guard, _guard),
    ComponentSpec("steer", lambda c: c.steering, _steer),
    ComponentSpec("gateways", _gateways_section, _gateways),
    ComponentSpec("bgp", lambda c: c.bgp, _bgp),
    ComponentSpec("api", _api_section, _api),
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
    def __init__(self, config_path: str, notifier: Notifier | None = None) -> None:
        self.config_path = config_path
        self.config: Config | None = None
        self.components: dict[str, Component] = {}
        self._commands: dict[str, list[str]] = {}  # component → the command names it registered
        self.server: ControlServer | None = None
        self._stop = asyncio.Event()
        self._reloading = asyncio.Lock()  # one reload at a time (a SIGHUP storm queues, in order)
        self._tasks: set[asyncio.Task] = set()  # SIGHUP reloads under way (referenced until done)
        self.stop_reason = ""
        self._ready = False  # every component of the config has started
        self.started_wall = __import__("time").time()
        self.gc_pauses = GcPauses()
        self.context = Context(self)
        self.notifier = notifier if notifier is not None else Notifier.from_env()  # a no-op outside systemd
        self._ready_sent = False  # READY=1 went to systemd
        self._status_sent: str | None = None  # the last STATUS= line with it

    # --- config -----------------------------------------------------------------------------

    def _load(self) -> Config:
        return load_config(self.config_path)

    def check(self) -> Config:
        """``pathsteer run --check``: the file loaded and every component's check passed
        (the system looked at, nothing touched)."""
        config = self._load()
        self._check_all(config)
        return config

    def _check_all(self, config: Config) -> dict[str, tuple[Component, Any, bool]]:
        """Phase one: every component's new section checked (a new component built first);
        {name: (component, plan, already running)}. Raises before anything is touched."""
        plans = {}
        for spec in COMPONENTS:
            section = spec.section(config)
            if section is None:
                continue
            running = self.components.get(spec.name)
            component = running if running is not None else spec.build(section, self.context)
            plans[spec.name] = (component, component.check(section), running is not None)
        return plans

    async def reload(self) -> dict:
        """Load the file again; refused with a one-line error (and nothing changed) if bad.
        Reloads run one at a time, in the order they were asked for."""
        async with self._reloading:
            if self._stop.is_set():
                raise NotReadyError("the daemon is stopping")
            # systemd: RELOADING=1, then READY=1 before the answer goes back (`pathsteer reload`
            # as ExecReload exits after it), refused or not: the daemon runs on either way.
            # Before the first READY=1 there is nothing to announce.
            announced = self._ready_sent
            if announced:
                self.notifier.reloading()
            try:
                return await self._reload()
            finally:
                if announced and not self._stop.is_set():
                    self._status_sent = self.status_line()
                    self.notifier.ready(status=self._status_sent)

    async def _reload(self) -> dict:
        try:
            new = self._load()
            if new.control.socket != self.config.control.socket:
                raise UsageError("control.socket cannot change on reload (restart the daemon)")
            plans = self._check_all(new)  # phase one: all checked, nothing touched
        except PathsteerError as exc:
            log.error("daemon.reload-refused error=%r", str(exc))
            raise
        old = self.config
        done: list[tuple[str, ComponentSpec]] = []  # what changed, to undo if a later step fails
        try:  # phase two: commit all
            for spec in reversed(COMPONENTS):
                if spec.name in self.components and spec.name not in plans:
                    await self._stop_component(spec.name)
                    done.append(("stopped", spec))
            for spec in COMPONENTS:
                if spec.name not in plans:
                    continue
                component, plan, running = plans[spec.name]
                if running:
                    await component.commit(plan)
                    done.append(("committed", spec))
                else:
                    await self._start_component(spec, component)
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
                if what == "committed":
                    component = self.components[spec.name]
                    await component.commit(component.check(spec.section(old)))
                elif what == "started":
                    await self._stop_component(spec.name)
                else:
                    component = spec.build(spec.section(old), self.context)
                    component.check(spec.section(old))
                    await self._start_component(spec, component)
            except Exception:  # noqa: BLE001 - undo the others all the same
                log.exception("daemon.undo-failed component=%s step=%s", spec.name, what)

    async def _start_component(self, spec: ComponentSpec, component: Component) -> None:
        """Start ``component``; its commands answer "starting" until it has (a client that
        asks meanwhile is told so, not that the command does not exist)."""
        commands = component.commands()
        for command in commands:
            if not command.name.startswith(f"{spec.name}."):
                raise PathsteerError(f"component {spec.name}: command {command.name} is outside its namespace")
        names = self._commands[spec.name] = []
        for command in commands:
            self.server.register(dataclasses.replace(command, handler=self._gate(spec.name, command.handler)))
            names.append(command.name)
        try:
            await component.start()
        except BaseException:
            for name in self._commands.pop(spec.name, []):
                self.server.unregister_command(name)
            raise
        self.components[spec.name] = component

    def _gate(self, name: str, handler):
        def gated(args):
            if name not in self.components:
                raise NotReadyError(f"{name} is starting; ask again in a moment")
            return handler(args)
        return gated

    async def _stop_component(self, name: str) -> None:
        component = self.components.pop(name)
        for command in self._commands.pop(name, []):  # exactly what it registered (steering's are steer.*)
            self.server.unregister_command(command)
        await component.stop()

    # --- run --------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready

    def request_stop(self, reason: str) -> None:
        self.stop_reason = reason
        self._stop.set()

    async def run(self) -> None:
        self.config = self._load()
        plans = self._check_all(self.config)  # nothing touched before every component's check passed
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
        # The watchdog pings from here on: a component whose start hangs the loop is caught too.
        notify = loop.create_task(self._notify_loop(), name="sd-notify")
        try:
            for spec in COMPONENTS:
                if self._stop.is_set():
                    break
                if spec.name in plans:
                    self.notifier.status(f"starting {spec.name}")
                    await self._start_component(spec, plans[spec.name][0])
            self._ready = not self._stop.is_set()
            # What start built (config, BPF objects, the first decision: at 10k prefixes a
            # few million objects) lives as long as the daemon: out of the cyclic collector's
            # full passes, which would otherwise walk it all and stall the loop, the API and
            # the decide thread for a few hundred milliseconds each time.
            gc.freeze()
            self.gc_pauses.install()
            log.info("daemon.ready pid=%d socket=%s components=%s", os.getpid(), self.config.control.socket,
                     ",".join(self.components))
            self._notify_ready()
            await self._stop.wait()
            log.info("daemon.stop reason=%s", self.stop_reason)
            self.notifier.stopping(status=f"stopping ({self.stop_reason})")
        finally:
            self.gc_pauses.remove()
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
            notify.cancel()  # pinged until the components had stopped
            try:
                await notify
            except asyncio.CancelledError:
                pass
            self.notifier.close()

    # --- systemd ----------------------------------------------------------------------------

    def status_line(self) -> str:
        """systemd's STATUS= (``systemctl status``): ``running: guard, steer, api; paths up 2/3``."""
        steer = self.components.get("steer")
        names = ", ".join(self.components) or "no components"
        line = f"running: {names}" if self.context.ready else f"started: {names}"
        telemetry = getattr(steer, "telemetry", None)
        paths = getattr(telemetry, "paths", None) or ()
        if paths:
            up = sum(1 for p in paths if getattr(p.state, "value", p.state) == "up")
            line += f"; paths up {up}/{len(paths)}"
        if steer is not None and getattr(steer, "applied", True) is None:
            line += "; waiting for steering's first decision to apply"
        return line

    def _notify_ready(self) -> None:
        """READY=1 the first time the daemon is ready (never while stopping)."""
        if self.notifier.enabled and not self._ready_sent and not self._stop.is_set() and self.context.ready:
            self._ready_sent = True
            self._status_sent = self.status_line()
            self.notifier.ready(status=self._status_sent)

    async def _notify_loop(self) -> None:
        """On the daemon's loop: WATCHDOG=1 every `Notifier.watchdog_interval`; until READY=1 is
        sent, readiness looked at every READY_POLL_S (steering's first apply may have failed:
        it is retried, READY=1 waits for it); then the STATUS= line every STATUS_INTERVAL_S."""
        n = self.notifier
        if not n.enabled:
            return
        loop = asyncio.get_running_loop()
        interval = n.watchdog_interval
        next_ping = next_status = loop.time()
        failed = False
        while True:
            now = loop.time()
            if interval is not None and now >= next_ping:
                n.watchdog()
                next_ping = now + interval
            try:
                if not self._ready_sent:
                    self._notify_ready()
                    next_status = now + STATUS_INTERVAL_S
                elif now >= next_status:
                    next_status = now + STATUS_INTERVAL_S
                    line = self.status_line()
                    if line != self._status_sent and not self._stop.is_set():  # stopping: STOPPING's
                        n.status(line)
                        self._status_sent = line
            except Exception:  # noqa: BLE001 - a status line that fails must not stop the pings
                if not failed:
                    log.exception("daemon.sd-notify-status-failed")
                failed = True
            wait = READY_POLL_S if not self._ready_sent else max(0.0, next_status - now)
            if interval is not None:
                wait = min(wait, max(0.0, next_ping - loop.time()))
            await asyncio.sleep(wait)

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
                "sections": list(self.components), "ready": self._ready}
