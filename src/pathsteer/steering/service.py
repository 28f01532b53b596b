"""The steering component: probes → telemetry (+ load) → policy.decide → data plane.

Lifecycle (the daemon's component contract, `pathsteer.daemon.reactor.Component`): ``check``
(config + system, nothing touched; returns a plan) → ``start`` (adopt what an earlier run left,
start probing, first decision) → ``commit(plan)`` on a reload → ``stop`` (the data plane
restores what it replaced). A crash (kill -9) runs no ``stop``: the
kernel keeps the last routes (fib) or the attached program until ``stale_after`` (bpf).

Loops, all on the daemon's asyncio loop; the work that can take long (``decide`` over many
prefixes, a data plane's ``apply`` and ``reconcile``) runs in a worker thread, one data-plane
call at a time, so a big FIB apply does not stall the probes' sends or the guard:

- decide: every ``decision.interval`` and at once when a path changes state (the
  engine's callback), so a path that goes down is left in the same tick;
- reconcile: every ``dataplane.reconcile_interval`` (≤ 1 s), repairs outside changes;
- heartbeat: every ``dataplane.heartbeat_interval`` (bpf: keeps the program from failing open);
- load: per-path counters sampled once a second (utilization for the weighted policy);
- passive: the passive RTT of paths with ``passive: true`` read every 200 ms (figures over the
  last second join the paths' telemetry as ``PathSnapshot.passive``).

Drains (``steer.drain`` / ``steer.undrain``, `pathsteer.steering.drains`): an operator takes a
path out for maintenance; every decision gets the drained paths (`decide`'s ``drains``), a
drain or undrain wakes the decide loop (traffic moves in that tick), a drain's ttl is looked at
before each decision, and the drains are kept in ``<state_dir>/drains.json`` across restarts.

Upstream times (`note_upstream_times`, called by the gateways component about once a second):
each upstream address's L7 response time is attributed to the destination holding it and the
path(s) carrying that destination then, kept per (destination, path) with when it was seen
(`upstream`), and handed to every decision (`decide`'s ``upstream``): a destination with
``sla.max_upstream_time`` leaves a path that serves too slowly, and does not take it back for
``sla.upstream_hold`` (see `pathsteer.policy.upstream`). A new figure over the limit on a
carrying path wakes the decide loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import collections
import dataclasses
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from pydantic import Field, StrictFloat, StrictInt, StrictStr

from pathsteer import logs
from pathsteer.config import Config
from pathsteer.control.server import Args, Command, NoArgs
from pathsteer.routes import DataPlane, Desired, Prefix
from pathsteer.errors import NotFoundError, PathsteerError, UsageError
from pathsteer.policy import Decision, DestinationParams, PolicyParams, PolicyState, decide
from pathsteer.policy.upstream import MIN_REQUESTS, PrefixIndex, UpstreamFigure, UpstreamTime, combine, parse_address
from pathsteer.probe.engine import ProbeEngine
from pathsteer.steering import build, drains as drainfile, preflight, views
from pathsteer.steering.drains import Drain
from pathsteer.telemetry import PathState, TelemetrySnapshot
from pathsteer.telemetry.histogram import DURATION_BUCKETS_S, RttHistogram
from pathsteer.units import parse_ttl
from pathsteer.waker import Waker, beat

log = logging.getLogger("pathsteer.steering")
LOAD_INTERVAL_S = 1.0
EVENT_BATCH = 256  # steer.change events told between two turns of the loop
EVENT_DETAIL_MAX = 2000  # steer.change events of one decision; the rest are told as one steer.changes
INLINE_ROUTES = 32  # up to this many prefixes, decide runs on the loop (pure, well under 1 ms)
PASSIVE_INTERVAL_S = 0.2  # passive RTT reads; its figures cover the last PASSIVE_WINDOW_S
PASSIVE_WINDOW_S = 1.0
DECIDE_BUDGET_FACTOR = 5  # periodic decisions wait at least 5x the last one's duration
DECIDE_INLINE_MS = 5.0  # a periodic decision whose last call took less runs on the loop
DECIDE_EARLY_S = 0.01  # a periodic decision may run this much early to share the probes' wake-up
# Multipath hashing of forwarded packets: the kernel's default (0) hashes on addresses only,
# so every flow between two hosts takes one next hop; 1 hashes on the 5-tuple (L4).
HASH_POLICY_SYSCTLS = ("/proc/sys/net/ipv4/fib_multipath_hash_policy", "/proc/sys/net/ipv6/fib_multipath_hash_policy")


def _some(items: list[str], n: int = 8) -> str:
    """At most ``n`` items of a list for an event (``a,b,c+997``), ``-`` for none."""
    if not items:
        return "-"
    return ",".join(items[:n]) + (f"+{len(items) - n}" if len(items) > n else "")


def event(name: str, **fields: object) -> None:
    """A structured log line: ``steer.change prefix=198.51.100.0/24 from=p1 to=p2 reason='...'``."""
    logs.event(log, name, **fields)


class ExplainArgs(Args):
    address: str


class EventsArgs(Args):
    limit: int = Field(default=100, ge=0, le=1_000_000)
    prefix: str | None = None


class DrainArgs(Args):
    """``path``; ``ttl``: seconds (a number) or a duration text ("10m", "2h"), None: until
    ``steer.undrain``; ``reason``: the operator's note (shown in reasons and status)."""

    path: StrictStr
    ttl: StrictStr | StrictInt | StrictFloat | None = None
    reason: StrictStr | None = None


class UndrainArgs(Args):
    path: StrictStr


@dataclasses.dataclass(frozen=True)
class SteeringPlan:
    """A checked steering config and what committing it changes."""

    config: Config
    params: PolicyParams
    links: list
    dataplane_changed: bool  # another mode, table or ingress: the plane is replaced
    links_changed: bool  # other paths: the plane is handed over (the new one adopts)
    probes_changed: bool  # the probes restart
    file_config: Config | None = None  # the section as the file gives it (config: with the auto destinations)


def _timed_decide(*args) -> tuple[Decision, float]:
    """`decide`, and how long it took (ms): on the loop or in the worker thread."""
    t0 = time.perf_counter()
    decision = decide(*args)
    return decision, (time.perf_counter() - t0) * 1e3


class SteeringService:
    name = "steer"  # its commands are steer.*

    def __init__(self, config: Config, *, dataplane_factory=build.make_dataplane,
                 engine_factory=ProbeEngine, clock=time.monotonic) -> None:
        self.file_config = config  # the section as the file gives it
        # Destinations added at run time by another component (a gateway's auto-destinations),
        # per owner; merged after the file's own (a prefix the file has is the file's).
        self.auto: dict[str, tuple] = {}
        self._auto_lock = asyncio.Lock()
        self.config = config
        self.params: PolicyParams = build.policy_params(config)
        self._dp_factory = dataplane_factory
        self._engine_factory = engine_factory
        self.clock = clock
        self.dataplane: DataPlane | None = None
        self.links = build.path_links(config)
        self.engine: ProbeEngine | None = None
        self.state = PolicyState()
        self.decision: Decision | None = None
        self.telemetry: TelemetrySnapshot | None = None
        self.applied: Desired | None = None
        self.load: dict[str, Any] = {}
        self.load_meter = None
        self._counters = None
        self._counted: list[str] = []  # interfaces the counters were attached to
        self._passive = None  # pathsteer.bpf.passive.PassiveRtt, when a path has passive: true
        self._passive_windows: dict[str, Any] = {}  # path name → telemetry.passive.PassiveWindow
        self._passive_interfaces: dict[str, str] = {}
        keep = config.decision.events_kept if config.decision else 1000
        self.events: collections.deque[dict] = collections.deque(maxlen=keep)
        self.started_wall = time.time()
        self.stats = {"decisions": 0, "applies": 0, "apply_errors": 0, "reconciles": 0, "repairs": 0,
                      "decide_ms_last": 0.0, "apply_ms_last": 0.0}
        self.decide_hist = RttHistogram(DURATION_BUCKETS_S)  # every decision's duration (metrics)
        self.apply_hist = RttHistogram(DURATION_BUCKETS_S)  # every successful apply's
        self._wake = Waker()  # the decide loop's: a path changing state, a drain, an SLA breach
        self._decide_due = math.inf  # when the next periodic decision is due (time.monotonic())
        self._decide_early = 0.0  # how early a probe wake-up may run it (see _decide_loop)
        self._on_tick = False  # the last decision ran in a probe wake-up
        self._changed = False  # the decide loop was woken by a change, not by time (see _wake_for_change)
        self._pure_ms = math.inf  # how long the last `decide` call took (ms): see _step_locked
        self._step_lock = asyncio.Lock()  # one decision at a time; a reload holds it throughout
        self._plane_lock = asyncio.Lock()  # one data-plane call at a time (apply, reconcile, heartbeat)
        self._plane_call: asyncio.Future | None = None  # the data-plane call running in a worker thread
        self._engine_stop: asyncio.Event | None = None
        self._engine_task: asyncio.Task | None = None
        self._tasks: list[asyncio.Task] = []
        self._force_apply = True
        self._last_error: str | None = None
        self._sysctls_before: dict[str, str] = {}
        # Steering's own threads: a decision or a data-plane call never queues behind another
        # component's work in the loop's default executor (the API's, the history's).
        self._decide_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="steer-decide")
        self._plane_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="steer-plane")
        self.state_dir = build.state_dir(config)
        self.drains: dict[str, Drain] = {}  # path name → its drain (loaded at start)
        self._drains_lock = asyncio.Lock()  # one write of the drains file at a time, the latest state
        # Upstream times: prefix → path → the latest figure. Replaced, never changed in place
        # (a decision in a worker thread may be reading the previous one).
        self.upstream: dict[Prefix, dict[str, UpstreamFigure]] = {}
        self.upstream_stats = {"calls": 0, "attributed": 0, "few_requests": 0, "not_steered": 0, "settling": 0,
                               "not_an_address": 0, "not_a_figure": 0, "no_decision": 0}
        self._paths_since: dict[Prefix, float] = {}  # since when each prefix's set of paths is what it is
        self._index: tuple[PolicyParams, PrefixIndex[DestinationParams], dict[Prefix, DestinationParams]] | None = None

    # --- lifecycle --------------------------------------------------------------------------

    @staticmethod
    def validate(config: Config) -> PolicyParams:
        """Everything that can be checked before anything is touched; the policy's params."""
        params = build.policy_params(config)  # policy-level rules (raises UsageError naming the field)
        build.probe_configs(config)  # PathProbeConfig validates on construction
        preflight.check(config)
        return params

    def check(self, config: Config, auto: dict[str, tuple] | None = None) -> SteeringPlan:
        """Phase one of a reload: ``config`` checked and what it changes worked out; nothing
        touched (raises UsageError naming the field when it cannot be used). The auto
        destinations (`set_auto_destinations`; ``auto``: these instead) are merged in."""
        file_config = config
        config = self._merged(config, self.auto if auto is None else auto)
        params = self.validate(config)
        links = build.path_links(config, self.links)
        return SteeringPlan(config, params, links,
                            build.dataplane_config(config) != build.dataplane_config(self.config),
                            links != self.links, build.probe_configs(config) != build.probe_configs(self.config),
                            file_config)

    @staticmethod
    def _merged(config: Config, auto: dict[str, tuple]) -> Config:
        """``config`` with the auto destinations after its own (a prefix it has stays its own)."""
        have = {d.prefix for d in config.destinations}
        extra = []
        for _owner, dests in sorted(auto.items()):
            for d in dests:
                if d.prefix not in have:
                    have.add(d.prefix)
                    extra.append(d)
        if not extra:
            return config
        from pathsteer.config.steering import check_steering
        dests = [*config.destinations, *extra]
        merged = (dataclasses.replace(config, destinations=dests) if dataclasses.is_dataclass(config)
                  else config.model_copy(update={"destinations": dests}))  # (a whole Config, in tests)
        try:
            check_steering(merged.dataplane, merged.paths, merged.destinations, merged.decision)
        except ValueError as exc:
            raise UsageError(f"auto destinations: {exc}") from None
        return merged

    def auto_destinations(self) -> dict[str, list[str]]:
        return {owner: [str(d.prefix) for d in dests] for owner, dests in sorted(self.auto.items())}

    async def set_auto_destinations(self, owner: str, destinations) -> None:
        """Steer ``destinations`` (DestinationConfig, prefixes the file does not have) for
        ``owner`` (``gateway:edge``), replacing what it had: a reload of steering with the
        file's own section (the routes of the others are not touched). Refused (UsageError,
        nothing changed) when the merged set is not a valid steering config."""
        async with self._auto_lock:  # one owner's change at a time (each reads the others')
            new = tuple(destinations)
            old = self.auto.get(owner, ())
            if new == old:
                return
            auto = dict(self.auto)
            if new:
                auto[owner] = new
            else:
                auto.pop(owner, None)
            file_config = self.file_config
            # The check is pure (it touches nothing) and, for 100k learned prefixes, seconds of
            # CPU: in a worker thread, so the probes and the API keep the loop meanwhile.
            plan = await asyncio.to_thread(self.check, file_config, auto)
            self.auto = auto
            try:
                await self.commit(plan)
            except BaseException:
                if old:
                    self.auto[owner] = old
                else:
                    self.auto.pop(owner, None)
                raise
        before, after = {str(d.prefix) for d in old}, {str(d.prefix) for d in new}
        added, removed = sorted(after - before), sorted(before - after)
        event("steer.auto", owner=owner, destinations=len(new), added=_some(added), removed=_some(removed))


    @property
    def dp_config(self):
        return build.dataplane_config(self.config)

    async def start(self) -> None:
        self.validate(self.config)
        self.links = build.path_links(self.config)
        self.dataplane = self._dp_factory(self.config, self.links)
        self._load_drains()
        now = self.clock()
        adopted = self.dataplane.adopt()
        if adopted is not None:
            self.state = PolicyState.adopt(adopted, self.params, now)
            self.applied = adopted
            event("steer.adopt", routes=len(adopted.routes), kept=len(self.state.prefixes),
                  mode=self.dp_config.mode)
        try:
            self._hash_flows()
            self._start_load()
            self._start_passive()
            await self._start_engine()
        except BaseException:
            # Nothing was applied yet: undo our own attachments, leave what was adopted as it is.
            await self._stop_engine()
            self._stop_passive()
            self._stop_load()
            self._restore_sysctls()
            self.dataplane.close()
            self.dataplane = None
            raise
        await self._step()  # first decision at once (startup: adopted or first configured paths)
        self._tasks = [asyncio.create_task(self._decide_loop(), name="steer-decide"),
                       asyncio.create_task(self._reconcile_loop(), name="steer-reconcile"),
                       asyncio.create_task(self._heartbeat_loop(), name="steer-heartbeat")]
        if self.load_meter is not None:
            self._tasks.append(asyncio.create_task(self._load_loop(), name="steer-load"))
        self._tasks.append(asyncio.create_task(self._passive_loop(), name="steer-passive"))
        event("steer.start", mode=self.dp_config.mode, paths=len(self.config.paths),
              prefixes=len(self.config.destinations), adopted=len(adopted.routes) if adopted else 0)

    async def _start_engine(self) -> None:
        # A restart after a reload keeps the measurements of the paths whose probes did not change.
        previous = self.engine.paths if self.engine is not None else ()
        self.engine = self._engine_factory(build.probe_configs(self.config), on_state_change=self._on_path_state,
                                           previous=previous)
        self.engine.on_tick = self._engine_ticked
        self._engine_stop = asyncio.Event()
        self._engine_task = asyncio.create_task(self.engine.run(stop=self._engine_stop), name="steer-probe")
        await asyncio.sleep(0.05)  # pins go in first: a failure there is a start failure
        if self._engine_task.done() and self._engine_task.exception() is not None:
            raise self._engine_task.exception()

    async def _stop_engine(self) -> None:
        if self._engine_stop is not None:
            self._engine_stop.set()
        if self._engine_task is not None:
            try:
                await asyncio.wait_for(self._engine_task, 5)
            except Exception as exc:  # noqa: BLE001 - stopping anyway
                log.warning("steer.probe-stop-failed error=%r", str(exc))
        self._engine_task = None

    def _hash_flows(self) -> None:
        """fib mode with a weighted destination: spread flows by their 5-tuple (restored on stop)."""
        if self.dp_config.mode != "fib" or not any(d.policy == "weighted" for d in self.config.destinations):
            return
        for path in HASH_POLICY_SYSCTLS:
            try:
                with open(path) as f:
                    old = f.read().strip()
                if old == "0":
                    with open(path, "w") as f:
                        f.write("1")
                    self._sysctls_before.setdefault(path, old)
                    event("steer.sysctl", key=path.removeprefix("/proc/sys/").replace("/", "."), value=1, was=old)
            except OSError as exc:
                log.warning("steer.sysctl-failed name=%s error=%r", path, str(exc))

    def _restore_sysctls(self) -> None:
        for path, old in self._sysctls_before.items():
            try:
                with open(path, "w") as f:
                    f.write(old)
            except OSError:
                pass
        self._sysctls_before = {}

    def _start_load(self) -> None:
        if self.config.decision is not None and not self.config.decision.load_counters:
            return
        counters = None
        try:
            from pathsteer.bpf.counters import Counters, Hook
            from pathsteer.telemetry.load import LoadMeter, PathCapacity
            counters = Counters.load()
            self._counters, self._counted = counters, []
            for p in self.config.paths:
                counters.attach(p.interface, [Hook.TC_INGRESS, Hook.TC_EGRESS])
                self._counted.append(p.interface)
            self.load_meter = LoadMeter({p.name: PathCapacity(p.interface, p.capacity or 0, p.probe.window_span_s)
                                         for p in self.config.paths})
            self.load_meter.update(counters.samples(self._load_interfaces()))
        except Exception as exc:  # noqa: BLE001 - steering works without load figures
            log.warning("steer.load-unavailable error=%r", str(exc))
            self._stop_load()

    def _load_interfaces(self) -> dict[str, str]:
        return {name: p.interface for name, p in self.load_meter.paths.items()}

    def _stop_load(self) -> None:
        """Detach the counters from every interface they were attached to (those of the paths
        they were started with, not of a new config) and close them (no fd left behind)."""
        if self._counters is not None:
            for interface in self._counted:
                try:
                    self._counters.detach(interface)
                except Exception:  # noqa: BLE001 - an interface gone meanwhile
                    pass
            self._counters.close()
        self._counters, self._counted = None, []
        self.load_meter = None

    def _start_passive(self) -> None:
        """Attach the passive RTT programs to the interfaces of the paths with ``passive: true``.
        Refused at start (the user asked for it); on reload the same."""
        wanted = {p.name: p.interface for p in self.config.paths if p.passive}
        if not wanted:
            return
        from pathsteer.bpf.passive import PassiveRtt
        from pathsteer.telemetry.passive import PassiveWindow
        for interface in sorted(set(wanted.values())):
            self._take_over_passive(interface)
        rtt = PassiveRtt.load()
        try:
            for interface in sorted(set(wanted.values())):
                rtt.attach(interface)
        except BaseException:
            for interface in sorted(set(wanted.values())):
                try:
                    rtt.detach(interface)
                except Exception:  # noqa: BLE001
                    pass
            rtt.close()
            raise
        self._passive = rtt
        self._passive_interfaces = wanted
        self._passive_windows = {name: PassiveWindow(rtt.sub_bits, PASSIVE_WINDOW_S) for name in wanted}
        self._read_passive()
        event("steer.passive", paths=",".join(wanted), interfaces=",".join(sorted(set(wanted.values()))))

    @staticmethod
    def _take_over_passive(interface: str) -> None:
        """Passive programs an earlier run left on ``interface`` (kill -9: TC filters outlive
        their process) are detached before ours go in. One daemon owns the passive slot (the
        control socket says there is one); anyone else's program there is left and refused."""
        from pathsteer.bpf.passive import PassiveRtt
        try:
            found = PassiveRtt.find(interface)
        except PathsteerError:
            return  # nothing of ours there
        with found:
            gone = found.detach(interface)
        if gone:
            event("steer.passive-takeover", interface=interface, detached=",".join(d.name.lower() for d in gone))

    def _stop_passive(self) -> None:
        rtt, self._passive = self._passive, None
        if rtt is None:
            return
        for interface in sorted(set(self._passive_interfaces.values())):
            try:
                rtt.detach(interface)
            except Exception:  # noqa: BLE001 - an interface gone meanwhile
                pass
        rtt.close()
        self._passive_interfaces, self._passive_windows = {}, {}

    def _read_passive(self) -> None:
        if self._passive is None:
            return
        now = self.clock()
        for name, aggregate in self._passive.aggregates(self._passive_interfaces).items():
            self._passive_windows[name].update(now, aggregate)

    def _with_passive(self, snap: TelemetrySnapshot) -> TelemetrySnapshot:
        """The probes' snapshot with each passive path's figures of the last second."""
        if not self._passive_windows:
            return snap
        paths = tuple(dataclasses.replace(p, passive=self._passive_windows[p.name].snapshot())
                      if p.name in self._passive_windows else p for p in snap.paths)
        return dataclasses.replace(snap, paths=paths)

    async def _passive_loop(self) -> None:
        while True:
            # without passive paths there is nothing to read: a look a second for a reload
            await beat(PASSIVE_INTERVAL_S if self._passive is not None else 1.0)
            try:
                self._read_passive()
            except Exception as exc:  # noqa: BLE001 - the probes' figures still count
                log.warning("steer.passive-read-failed error=%r", str(exc))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self._tasks = []
        if self._plane_call is not None:  # a cancelled task's thread still runs: let it finish
            await asyncio.wait([self._plane_call])
        await self._stop_engine()
        self._stop_passive()
        self._stop_load()
        self._restore_sysctls()
        if self.dataplane is not None:
            try:
                self.dataplane.stop()
            finally:
                try:
                    self.dataplane.close()
                except Exception:  # noqa: BLE001
                    pass
                self.dataplane = None
        event("steer.stop", mode=self.dp_config.mode)

    async def reload(self, config: Config) -> None:
        """Check and commit a new config (refused, nothing changed, when it cannot be used)."""
        await self.commit(self.check(config))

    async def commit(self, plan: SteeringPlan) -> None:
        """Phase two: make the running service what ``plan`` says."""
        async with self._step_lock:  # no decision in flight on the old params
            async with self._plane_lock:  # nor a data-plane call on the plane about to change
                if self._plane_call is not None:
                    await asyncio.wait([self._plane_call])
            await self._commit(plan)

    async def _commit(self, plan: SteeringPlan) -> None:
        config, params, links = plan.config, plan.params, plan.links
        if plan.file_config is not None:
            self.file_config = plan.file_config
        dp_changed, links_changed, probes_changed = plan.dataplane_changed, plan.links_changed, plan.probes_changed
        if dp_changed or links_changed:
            new_dp = self._dp_factory(config, links)
            if dp_changed:
                # Another mode, table or ingress: restore what the old plane replaced, then
                # program the new one (traffic takes the kernel's routes for that moment).
                self.dataplane.stop()
            else:
                # Same plane, other paths: hand over without restoring; the new plane adopts
                # what the old one installed (path ids are kept, so nothing moves).
                self.dataplane.close()
            self.dataplane = new_dp
            self.applied = new_dp.adopt()
            self.links = links
            self._force_apply = True
        self.config = config
        self.params = params
        self._prune_upstream(self.clock())
        await self._reload_drains(config)
        self._hash_flows()
        keep = config.decision.events_kept if config.decision else 1000
        if keep != self.events.maxlen:
            self.events = collections.deque(self.events, maxlen=keep)
        if {p.name: p.interface for p in config.paths if p.passive} != self._passive_interfaces:
            self._stop_passive()
            self._start_passive()
        if probes_changed:
            # Paths whose probes are unchanged keep their measurements (the new engine takes
            # their trackers over), so the policy keeps its state; only when a path that now
            # carries traffic starts without data are the current routes kept until it has some.
            kept = {c.name for c in build.probe_configs(config)} & {
                p.name for p in self.engine.paths if p.config in set(build.probe_configs(config))} \
                if self.engine is not None else set()
            await self._stop_engine()
            in_use = {h.path for r in self.decision.desired.routes.values() for h in r.nexthops} \
                if self.decision is not None else set()
            if self.decision is not None and not in_use <= kept:
                self.state = PolicyState.adopt(self.decision.desired, params, self.clock())
            self._stop_load()
            self._start_load()
            await self._start_engine()
        self._force_apply = True
        await self._step_locked()
        event("steer.reload", paths=len(config.paths), prefixes=len(config.destinations),
              probes_restarted="yes" if probes_changed else "no",
              dataplane="replaced" if dp_changed else "handed-over" if links_changed else "kept")

    # --- the loops ----------------------------------------------------------------------------

    def _on_path_state(self, name: str, before: PathState, after: PathState, now: float) -> None:
        self._wake_for_change()  # decide now: a path that went down is left in this tick
        # (the engine logs and publishes the path.state event itself)

    def _wake_for_change(self) -> None:
        """Decide now: something changed that may move many prefixes (a path's state, a drain,
        an upstream's figures); that decision runs off the loop (see `_step_locked`)."""
        self._changed = True
        self._wake.set()

    def _engine_ticked(self, now: float) -> None:
        # The periodic decision runs in the probes' wake-up when one comes within
        # `_decide_early` of its time (the replies were just read): an idle daemon otherwise
        # woke ten times a second more, for the decisions alone. Its own timer still runs.
        if now >= self._decide_due - self._decide_early and not self._wake.is_set():
            self._on_tick = True
            self._wake.set()

    async def _decide_loop(self) -> None:
        while True:
            # At most a fifth of a core on periodic decisions (10k prefixes take tens of ms
            # each); a path changing state still wakes the loop at once.
            interval = self.config.decision.interval if self.config.decision else 0.1
            interval = max(interval, DECIDE_BUDGET_FACTOR * self.stats["decide_ms_last"] / 1e3)
            # In step with the probes, a decision may come DECIDE_EARLY_S early to share their
            # wake-up. Out of step (it ran on its own timer or for a path's state), the next
            # probe wake-up runs it, however early, to fall in step again: a fixed margin would
            # never catch probes whose phase is just after the decisions' own.
            self._decide_early = min(DECIDE_EARLY_S, interval / 4) if self._on_tick else interval
            self._on_tick = False
            self._decide_due = time.monotonic() + interval
            await self._wake.wait(interval)
            self._wake.clear()
            self._decide_due = math.inf  # no wake-up from the probes while a decision runs
            periodic, self._changed = not self._changed, False
            try:
                await self._step(periodic=periodic)
            except Exception:  # noqa: BLE001 - the loop must go on
                log.exception("steer.decide-failed")
            if self._engine_task is not None and self._engine_task.done():
                exc = self._engine_task.exception() if not self._engine_task.cancelled() else None
                log.error("steer.probe-stopped error=%r; restarting probes", str(exc))
                await self._start_engine_safely()

    async def _start_engine_safely(self) -> None:
        try:
            await self._start_engine()
        except Exception as exc:  # noqa: BLE001
            log.error("steer.probe-restart-failed error=%r", str(exc))
            await asyncio.sleep(1.0)

    async def _step(self, periodic: bool = False) -> Decision:
        """One decision, applied; returns it. ``periodic``: nothing but time and the probes'
        figures changed since the last one."""
        async with self._step_lock:
            return await self._step_locked(periodic)

    async def _step_locked(self, periodic: bool = False) -> Decision:
        t0 = time.perf_counter()
        await self._expire_drains()
        now = self.clock()
        snap = self.engine.snapshot() if self.engine is not None else TelemetrySnapshot(now, ())
        snap = self._with_passive(snap)
        drained = {name: d.reason for name, d in self.drains.items()}
        if self.upstream:
            self._prune_upstream(now)
        upstream = self.upstream
        if len(self.params.destinations) <= INLINE_ROUTES or (periodic and self._pure_ms < DECIDE_INLINE_MS):
            # A few prefixes decide in well under a millisecond, and a periodic decision over
            # many in a few when little moves (`decide` steps only the groups whose inputs
            # crossed a margin): on the loop, without the two thread wake-ups (and the GIL
            # passed back and forth) that cost more than the decision here. Anything that may
            # move many prefixes (a path's state, a drain, a reload, the first decisions) and
            # a periodic one after a slow one run in the worker thread.
            decision, self._pure_ms = _timed_decide(now, snap, self.load, self.params, self.state, drained, upstream)
        else:
            decision, self._pure_ms = await asyncio.get_running_loop().run_in_executor(
                self._decide_pool, _timed_decide, now, snap, self.load, self.params, self.state, drained, upstream)
        t1 = time.perf_counter()
        self.telemetry, self.decision, self.state = snap, decision, decision.state
        for e in decision.events:
            if not e.after:
                self._paths_since.pop(e.prefix, None)
            elif {h.path for h in e.before} != {h.path for h in e.after}:
                self._paths_since[e.prefix] = e.at
        self.stats["decisions"] += 1
        self.stats["decide_ms_last"] = round((t1 - t0) * 1e3, 3)
        self.decide_hist.observe(t1 - t0)
        applying = None
        if decision.events or self._force_apply:
            # The apply starts first (a worker thread: netlink or map writes) and the events are
            # told while it runs: a path cut that moves 500 of 10k prefixes writes 500 events
            # (logs, history, SSE), which once delayed the reroute by their time.
            applying = asyncio.ensure_future(self._apply(decision.desired))
            await asyncio.sleep(0)  # let it take the plane lock and hand the work to its thread
        clock = views.Clock(now, time.time())
        detailed = decision.events[:EVENT_DETAIL_MAX]
        for i, e in enumerate(detailed, 1):
            v = views.event_view(e, clock)
            self.events.append(v)
            event("steer.change", prefix=v["prefix"], policy=v["policy"], kind=v["kind"], **{"from": v["from"]},
                  to=v["to"], reason=v["reason"])
            if i % EVENT_BATCH == 0:
                await asyncio.sleep(0)  # the API and the probes get the loop between batches
        if len(decision.events) > EVENT_DETAIL_MAX:
            # 100k learned destinations arriving at once: one event for the rest, not 100k (each
            # one a log line, a history row and an SSE message); `explain` still has each reason.
            rest = decision.events[EVENT_DETAIL_MAX:]
            kinds = collections.Counter(e.kind.value for e in rest)
            event("steer.changes", count=len(rest), kinds=",".join(f"{k}:{n}" for k, n in sorted(kinds.items())),
                  first=str(rest[0].prefix), last=str(rest[-1].prefix), reason=rest[0].reason)
        if applying is not None:
            await applying
        return decision

    async def _in_plane(self, fn, *args):
        """Run a data-plane call in a worker thread, one at a time (a kernel call can hang on
        the RTNL lock: never on the loop). A cancelled caller leaves it running to its end
        (`stop` waits for it)."""
        async with self._plane_lock:
            call = asyncio.get_running_loop().run_in_executor(self._plane_pool, fn, *args)
            self._plane_call = call
            try:
                return await asyncio.shield(call)
            finally:
                if call.done():
                    self._plane_call = None

    async def _apply(self, desired: Desired) -> None:
        t0 = time.perf_counter()
        try:
            await self._in_plane(self.dataplane.apply, desired)
        except PathsteerError as exc:
            self.stats["apply_errors"] += 1
            self._force_apply = True  # retried on the next tick
            if str(exc) != self._last_error:
                log.error("steer.apply-failed error=%r", str(exc))
            self._last_error = str(exc)
            return
        self.applied = desired
        self._force_apply = False
        self._last_error = None
        self.stats["applies"] += 1
        took = time.perf_counter() - t0
        self.stats["apply_ms_last"] = round(took * 1e3, 3)
        self.apply_hist.observe(took)

    async def _reconcile_loop(self) -> None:
        while True:
            await beat(self.dp_config.reconcile_interval)
            if self.applied is None or self.dataplane is None:
                continue
            try:
                repaired = await self._in_plane(self._reconcile_applied)
                self.stats["reconciles"] += 1
                if repaired:
                    self.stats["repairs"] += len(repaired)
                    event("steer.repair", count=len(repaired), what="; ".join(repaired[:3]))
            except Exception as exc:  # noqa: BLE001
                log.error("steer.reconcile-failed error=%r", str(exc))

    def _reconcile_applied(self) -> list[str]:
        """Reconcile against the last applied table, read when the call runs (under the plane
        lock), not when it was queued: a reconcile queued while an apply ran would otherwise
        put the kernel back to the table before that apply (a path just left, taken again
        until the next reconcile)."""
        applied = self.applied
        return self.dataplane.reconcile(applied) if applied is not None else []

    async def _heartbeat_loop(self) -> None:
        while True:
            await beat(self.dp_config.heartbeat_interval)
            try:
                if self.dataplane is not None:
                    async with self._plane_lock:  # quick (a map write): on the loop, between calls
                        self.dataplane.heartbeat()
            except Exception as exc:  # noqa: BLE001
                log.error("steer.heartbeat-failed error=%r", str(exc))

    async def _load_loop(self) -> None:
        while True:
            await beat(LOAD_INTERVAL_S)
            try:
                if self.load_meter is not None and self._counters is not None:
                    self.load = self.load_meter.update(self._counters.samples(self._load_interfaces()))
            except Exception as exc:  # noqa: BLE001
                log.warning("steer.load-failed error=%r", str(exc))

    # --- upstream times (from the gateways) ----------------------------------------------------

    def note_upstream_times(self, figures: Mapping[str, UpstreamTime], now: float | None = None) -> None:
        """The gateways' latest response time per upstream address (``figures``: keys
        ``192.0.2.7``, ``192.0.2.7:8080``, ``[2001:db8::7]:8080``; others are ignored), at
        ``now`` (this service's clock, `time.monotonic`; None: now).

        Each address goes to the configured destination holding it (longest match) and to the
        path(s) carrying that destination in the current decision; per (destination, path) the
        latest figure is kept (several addresses: the slowest). Not counted: a figure of fewer
        than `MIN_REQUESTS` requests, an address no destination holds, and every figure of a
        destination whose paths changed less than the figure's ``window_s`` ago (its window
        still holds requests sent over the old paths). Quick (no I/O); call it from the
        daemon's loop. A figure over a destination's ``sla.max_upstream_time`` on a path
        carrying it wakes the decide loop (the path is left in this tick)."""
        now = self.clock() if now is None else now
        stats = self.upstream_stats
        stats["calls"] += 1
        decision = self.decision
        if decision is None:
            stats["no_decision"] += 1
            return
        index = self._destinations()[0]
        groups: dict[Prefix, tuple[DestinationParams, list[UpstreamTime]]] = {}
        for key, time_ in figures.items():
            if not isinstance(time_, UpstreamTime):
                stats["not_a_figure"] += 1
                continue
            address = parse_address(key)
            if address is None:
                stats["not_an_address"] += 1
                continue
            if time_.requests < MIN_REQUESTS:
                stats["few_requests"] += 1
                continue
            dest = index.lookup(address)
            if dest is None:
                stats["not_steered"] += 1
                continue
            if now - self._paths_since.get(dest.prefix, -math.inf) < time_.window_s:
                stats["settling"] += 1
                continue
            groups.setdefault(dest.prefix, (dest, []))[1].append(time_)
        if not groups:
            self._prune_upstream(now)
            return
        upstream = dict(self.upstream)
        wake = False
        for prefix, (dest, times) in groups.items():
            route = decision.desired.routes.get(prefix)
            if route is None or not route.nexthops:
                continue
            figure = combine(times, now)
            per_path = dict(upstream.get(prefix, {}))
            for hop in route.nexthops:
                per_path[hop.path] = figure
            upstream[prefix] = per_path
            stats["attributed"] += len(times)
            limit = dest.sla.max_upstream_time_s
            wake = wake or (limit is not None and figure.p95_s > limit)
        self.upstream = upstream
        self._prune_upstream(now)
        if wake:
            self._wake_for_change()

    def _destinations(self) -> tuple[PrefixIndex[DestinationParams], dict[Prefix, DestinationParams]]:
        """The configured destinations: a longest-match index and by prefix (built once per params)."""
        if self._index is None or self._index[0] is not self.params:
            dests = self.params.destinations
            self._index = (self.params, PrefixIndex((d.prefix, d) for d in dests), {d.prefix: d for d in dests})
        return self._index[1], self._index[2]

    def _prune_upstream(self, now: float) -> None:
        """Forget the figures past their destination's ``sla.upstream_hold``, and those of
        destinations or paths no longer configured."""
        dests = self._destinations()[1] if self.upstream else {}
        kept: dict[Prefix, dict[str, UpstreamFigure]] = {}
        changed = False
        for prefix, per_path in self.upstream.items():
            dest = dests.get(prefix)
            alive = {} if dest is None else {
                p: f for p, f in per_path.items() if p in dest.paths and f.in_force(now, dest.sla.upstream_hold_s)}
            changed = changed or len(alive) != len(per_path)
            if alive:
                kept[prefix] = alive if len(alive) != len(per_path) else per_path
        if changed:
            self.upstream = kept

    def upstream_in_force(self, now: float | None = None) -> dict[Prefix, dict[str, UpstreamFigure]]:
        """The upstream figures that count at ``now`` (within their destination's hold)."""
        now = self.clock() if now is None else now
        dests = self._destinations()[1] if self.upstream else {}
        out = {}
        for prefix, per_path in self.upstream.items():
            dest = dests.get(prefix)
            if dest is not None:
                alive = {p: f for p, f in per_path.items() if f.in_force(now, dest.sla.upstream_hold_s)}
                if alive:
                    out[prefix] = alive
        return out

    # --- drains -------------------------------------------------------------------------------

    def _load_drains(self) -> None:
        """The drains an earlier run left (a maintenance window outlives a restart)."""
        names = [p.name for p in self.config.paths]
        self.drains, dropped = drainfile.load(self.state_dir, wall=time.time(), known=names)
        for line in dropped:
            log.warning("steer.drains-load %s", line)
        if self.drains:
            log.info("steer.drains-restored paths=%s file=%s", ",".join(sorted(self.drains)),
                     drainfile.file_path(self.state_dir))
        if any(not line.startswith(drainfile.file_path(self.state_dir)) for line in dropped):
            self._write_drains(dict(self.drains))  # expired or unknown ones left out: the file says what holds

    async def _reload_drains(self, config) -> None:
        """A reload: drains of paths no longer configured end; another state dir gets the file."""
        names = {p.name for p in config.paths}
        gone = [n for n in self.drains if n not in names]
        for name in gone:
            del self.drains[name]
            event("steer.undrain", path=name, why="removed")
        new_dir = build.state_dir(config)
        moved = new_dir != self.state_dir
        self.state_dir = new_dir
        if gone or (moved and self.drains):
            await self._save_drains()

    async def _save_drains(self) -> str | None:
        """Write the drains file as they are now, in a worker thread (an fsync must not stall
        the probes on this loop); None, or the error in words (logged: the drains still hold)."""
        async with self._drains_lock:
            return await asyncio.to_thread(self._write_drains, dict(self.drains))

    def _write_drains(self, drains: dict[str, Drain]) -> str | None:
        try:
            drainfile.save(self.state_dir, drains)
            return None
        except OSError as exc:
            error = f"cannot write {drainfile.file_path(self.state_dir)} ({exc.strerror or exc})"
            log.error("steer.drains-save-failed error=%r", error)
            return error

    async def _expire_drains(self) -> None:
        wall = time.time()
        expired = [d for d in self.drains.values() if d.expired(wall)]
        for d in expired:
            del self.drains[d.path]
            event("steer.undrain", path=d.path, why="ttl")
        if expired:
            await self._save_drains()

    def _known_path(self, name: str, command: str) -> None:
        names = [p.name for p in self.config.paths]
        if name not in names:
            raise NotFoundError(f"{command}: path {name!r} is not configured (paths: {', '.join(names)})")

    def _only_healthy(self, name: str) -> list[str]:
        """The prefixes for which ``name`` is the only path that works (not drained, eligible)."""
        if self.decision is None:
            return []
        out = []
        for r in self.decision.routes:
            mine = next((c for c in r.candidates if c.path == name), None)
            if mine is None:
                continue
            works = mine.eligible or (mine.drained and mine.health is not None and mine.health.eligible)
            if works and not any(c.eligible for c in r.candidates if c.path != name):
                out.append(str(r.prefix))
        return out

    async def cmd_drain(self, args: DrainArgs) -> dict:
        self._known_path(args.path, "steer.drain")
        ttl = parse_ttl(args.ttl, "steer.drain: ttl")
        reason = drainfile.clean_reason(args.reason, "steer.drain: reason")
        wall = time.time()
        old = self.drains.get(args.path)
        d = Drain(args.path, old.since if old is not None else wall, None if ttl is None else wall + ttl, reason)
        self.drains[args.path] = d
        event("steer.drain", path=d.path, ttl=ttl, reason=reason, until=d.until)
        self._wake_for_change()  # decide now: the traffic leaves the path in this tick
        error = await self._save_drains()
        warnings = []
        alone = self._only_healthy(args.path)
        if alone:
            more = f" (and {len(alone) - 3} more)" if len(alone) > 3 else ""
            warnings.append(f"{args.path} is the only healthy path of {', '.join(alone[:3])}{more}: their traffic "
                            f"stays on it until another path is up (a drain never blackholes a prefix)")
        if error is not None:
            warnings.append(f"the drain holds but will not survive a restart: {error}")
        return {"path": d.path, "drained": d.view(), "was_drained": old is not None, "only_healthy": alone,
                "warning": "; ".join(warnings) or None, "persisted": error is None}

    async def cmd_undrain(self, args: UndrainArgs) -> dict:
        self._known_path(args.path, "steer.undrain")
        old = self.drains.pop(args.path, None)
        if old is None:
            return {"path": args.path, "undrained": False, "was": None, "persisted": True,
                    "note": f"{args.path} was not drained"}
        event("steer.undrain", path=args.path, why="manual")
        self._wake_for_change()
        error = await self._save_drains()
        return {"path": args.path, "undrained": True, "was": old.view(), "persisted": error is None,
                "note": None if error is None else f"undrained, but the file still has it: {error}"}

    def drain_views(self) -> dict[str, dict]:
        return {name: d.view() for name, d in self.drains.items()}

    # --- control commands ---------------------------------------------------------------------

    def commands(self) -> list[Command]:
        return [
            Command("steer.status", NoArgs, self.cmd_status, "paths (state, rtt, loss, jitter, utilization) and routes"),
            Command("steer.explain", ExplainArgs, self.cmd_explain, "which prefix and path(s) carry an address, and why"),
            Command("steer.events", EventsArgs, self.cmd_events, "the decision history with reasons"),
            Command("steer.drain", DrainArgs, self.cmd_drain,
                    "take a path out for maintenance (traffic leaves it, its probes go on): path, ttl, reason"),
            Command("steer.undrain", UndrainArgs, self.cmd_undrain, "put a drained path back (policy's rules)"),
        ]

    def _clock(self) -> views.Clock:
        return views.Clock(self.clock(), time.time())

    def _path_info(self) -> dict[str, dict]:
        return {p.name: {"interface": p.interface, "gateway": str(p.gateway) if p.gateway else None,
                         "capacity_bps": p.capacity} for p in self.config.paths}

    def cmd_status(self, _args: NoArgs) -> dict:
        dp = self.dp_config
        info = {"mode": dp.mode, "table": dp.table if dp.table is not None else "main",
                "ingress": list(dp.ingress), "stale_after_s": dp.stale_after, **self.stats}
        if self.dataplane is not None:
            try:
                info["path_totals"] = {n: {"packets": t.packets, "bytes": t.bytes}
                                       for n, t in self.dataplane.path_totals().items()}
            except Exception:  # noqa: BLE001 - status answers without them
                pass
        clock = self._clock()
        out = views.status(self.decision, self.telemetry, clock, self._path_info(), info, self.load,
                           self.drain_views(), self.upstream_in_force(clock.mono))
        out["upstream"] = dict(self.upstream_stats)  # what note_upstream_times counted, and why not
        return out

    def view_paths(self) -> list[dict]:
        """The paths of `cmd_status` alone (the API's ``/paths``: no route views built)."""
        clock = self._clock()
        return views.status(None, self.telemetry, clock, self._path_info(), {}, self.load,
                            self.drain_views(), self.upstream_in_force(clock.mono))["paths"]

    def view_routes(self) -> list[dict]:
        """The routes of `cmd_status` alone (the API's ``/routes``)."""
        clock = self._clock()
        return [views.route_view(r, clock) for r in self.decision.routes] if self.decision is not None else []

    def cmd_explain(self, args: ExplainArgs) -> dict:
        import ipaddress
        try:
            ipaddress.ip_address(args.address)
        except ValueError:
            raise UsageError(f"steer.explain: {args.address!r} is not an IPv4 or IPv6 address") from None
        return views.explain(self.decision, args.address, self._clock())

    def cmd_events(self, args: EventsArgs) -> dict:
        evs = list(self.events)
        if args.prefix:
            evs = [e for e in evs if e["prefix"] == args.prefix]
        return {"events": evs[-args.limit:] if args.limit else []}
