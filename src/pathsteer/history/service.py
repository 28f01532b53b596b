"""The history as a daemon component: every bus event and per-path rollups into SQLite, off the
decision path; commands ``history.events``, ``history.rollups``, ``history.stats``.

- The bus callback only queues (a bounded queue: when full the oldest item is dropped and
  counted). A `Writer` thread owns the file: it drains the queue every `FLUSH_S` or every
  `BATCH` items, one transaction a batch, and prunes (retention, size) every `PRUNE_S` and
  whenever a batch took the file over ``max_size``.
- A sampler task reads steering's ``view_paths()`` every `SAMPLE_S` into a
  `rollup.Accumulator`; each finished window's rows go through the same queue.
- At start the events the bus still holds from before (steering's and the guard's start-up) are
  stored too: on the first start in a process only.
- Failures never reach the daemon: a damaged file is set aside and a fresh one starts
  (`store.HistoryStore`); a full disk (or any other write error) drops the batch, counts it
  (``dropped``), logs ``history.write-failed`` once, and the next batch tries again (then
  ``history.write-resumed``). SQLite is called from the writer thread, and from worker
  threads for the commands, never on the loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator

from pathsteer import logs
from pathsteer.config.operator import HistoryConfig
from pathsteer.control.server import Args, Command, NoArgs
from pathsteer.errors import NotFoundError, PathsteerError, UsageError
from pathsteer.events import BUS, Bus, Event
from pathsteer.history import store
from pathsteer.history.rollup import Accumulator, Rollup
from pathsteer.waker import beat, next_beat

log = logging.getLogger("pathsteer.history")

FLUSH_S = 1.0          # a batch at least this often
BATCH = 500            # items per transaction (and a batch at once when this many wait)
QUEUE_MAX = 20_000     # items waiting; beyond, the oldest is dropped
PRUNE_S = 60.0         # retention and size checked this often
SAMPLE_S = 1.0         # steering's paths sampled this often for the rollups
FIRST_SAMPLE_POLL_S = 0.05  # until steering runs, looked for this often (the first sample at once)
STOP_S = 5.0           # stop waits this long for the queue to be written (a loaded disk)
QUERY_FLUSH_S = 1.0    # a query first waits (at most this) for what is queued to be written

_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+\*?|\*")

# Buses whose earlier events a history already stored (the start-up catch-up happens once).
_CAUGHT_UP: "weakref.WeakSet[Bus]" = weakref.WeakSet()


def announcer(bus: Bus) -> Callable[..., None]:
    """``announce(name, **fields)``: the log line of `pathsteer.logs.event`, published on
    ``bus`` (the daemon's `BUS`: exactly `logs.event`), so the history's own events
    (``history.write-failed``, ...) are in the history too."""
    if bus is BUS:
        return lambda name, **fields: logs.event(log, name, **fields)

    def announce(name: str, **fields: object) -> None:
        log.info("%s %s", name, " ".join(f"{k}={logs._text(v)}" for k, v in fields.items()))
        bus.publish(name, **fields)
    return announce


# --- the state directory ------------------------------------------------------------------------

def check_state_dir(state_dir: str) -> None:
    """``state_dir`` is a writable directory, or can be made (its nearest existing ancestor is
    one); nothing is created. UsageError naming the field and the value."""
    where = f"history.state_dir: {state_dir!r}"
    if os.path.lexists(state_dir):
        if not os.path.isdir(state_dir):
            raise UsageError(f"{where} is not a directory")
        if not os.access(state_dir, os.W_OK | os.X_OK):
            raise UsageError(f"{where} is not writable")
        db = os.path.join(state_dir, "history.sqlite")
        if os.path.lexists(db) and not os.path.isfile(db):
            raise UsageError(f"{where}: {db} is not a file")
        return
    parent = os.path.dirname(state_dir.rstrip("/")) or "/"
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent) or "/"
    if not os.path.isdir(parent):
        raise UsageError(f"{where} cannot be made: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{where} cannot be made: {parent} is not writable")


def make_state_dir(state_dir: str) -> None:
    """Create ``state_dir`` (0750 when made here)."""
    if not os.path.isdir(state_dir):
        os.makedirs(state_dir, mode=0o750, exist_ok=True)
        os.chmod(state_dir, 0o750)


# --- the writer thread --------------------------------------------------------------------------

@dataclass
class WriterStats:
    written_events: int = 0
    written_rollups: int = 0
    dropped: int = 0          # items lost: batches that failed, queue overflow
    overflow: int = 0         # of which: the queue was full
    last_error: str | None = None
    last_error_at: float | None = None
    pruned_events: int = 0
    pruned_rollups: int = 0


class Writer:
    """The thread that owns the SQLite file. `put` (any thread) never blocks beyond a lock and
    never raises; everything else happens on the thread."""

    def __init__(self, path: str, *, retention: float, max_size: int, clock: Callable[[], float] = time.time,
                 flush_s: float = FLUSH_S, batch: int = BATCH, queue_max: int = QUEUE_MAX,
                 prune_s: float = PRUNE_S, announce: Callable[..., None] | None = None) -> None:
        self.path = path
        self.announce = announce or announcer(BUS)
        self.retention = retention
        self.max_size = max_size
        self.clock = clock
        self.flush_s = flush_s
        self.batch = batch
        self.prune_s = prune_s
        self.stats = WriterStats()
        self.store = store.HistoryStore(path, clock=clock, announce=self.announce)
        self.opened = threading.Event()  # the first open was tried
        self._queue: collections.deque[Event | Rollup] = collections.deque()
        self._queue_max = queue_max
        self._cond = threading.Condition()
        self._put = 0      # items ever queued
        self._done = 0     # items written, dropped or overflowed
        self._stopping = False
        self._reopen: str | None = None
        self._damaged: str | None = None  # a reader found the file damaged: set it aside
        self._failing = False             # in a write-failure episode (logged once)
        self._episode_dropped = 0
        self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)

    # --- any thread -----------------------------------------------------------------------------

    def put(self, item: Event | Rollup) -> None:
        with self._cond:
            if len(self._queue) >= self._queue_max:
                self._queue.popleft()
                self.stats.dropped += 1
                self.stats.overflow += 1
                self._done += 1
            self._queue.append(item)
            self._put += 1
            if len(self._queue) == self.batch:
                self._cond.notify_all()

    def put_many(self, items: list[Event | Rollup]) -> None:
        for item in items:
            self.put(item)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        self._thread.start()

    def configure(self, *, retention: float, max_size: int) -> None:
        self.retention, self.max_size = retention, max_size
        with self._cond:
            self._cond.notify_all()

    def reopen(self, path: str) -> None:
        """Write to ``path`` from the next batch on (a new state_dir)."""
        with self._cond:
            self._reopen = path
            self._cond.notify_all()

    def damaged(self, error: str) -> None:
        """A reader found the file damaged: the thread sets it aside before its next write."""
        with self._cond:
            self._damaged = error
            self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait (at most ``timeout``) until everything queued before this call is written or
        dropped. True when it was."""
        deadline = time.monotonic() + timeout
        with self._cond:
            want = self._put
            self._cond.notify_all()  # write now, not at the next FLUSH_S
            self._flush_wanted = want
            while self._done < want:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(left)
            return True

    def stop(self, timeout: float) -> bool:
        """Write what is queued, close the file; at most ``timeout`` (then the thread is left to
        finish on its own: it is a daemon thread). True when it finished."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # --- the thread -----------------------------------------------------------------------------

    _flush_wanted = 0

    def _run(self) -> None:
        self._try(self._open_first)
        self.opened.set()
        next_prune = time.monotonic() + min(5.0, self.prune_s)  # a file left over: pruned soon after start
        while True:
            with self._cond:
                if (not self._stopping and len(self._queue) < self.batch and self._reopen is None
                        and self._damaged is None and self._flush_wanted <= self._done):
                    # on the loop's beat: one wake-up of the machine a second, not two
                    now = time.monotonic()
                    self._cond.wait(next_beat(now, self.flush_s) - now)
                items = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
                stopping = self._stopping and not self._queue
                reopen, self._reopen = self._reopen, None
                damaged, self._damaged = self._damaged, None
            if reopen is not None:
                self._try(lambda: self._switch(reopen))
            if damaged is not None:
                self._try(lambda: self.store.set_aside(damaged))
            if items:
                self._write(items)
            with self._cond:
                self._done += len(items)
                self._cond.notify_all()
            if time.monotonic() >= next_prune and not stopping:
                self._try(self.prune)
                next_prune = time.monotonic() + self.prune_s
            if stopping:
                break
        self.store.close()

    def _open_first(self) -> None:
        make_state_dir(os.path.dirname(self.path))
        self.store.open()
        c = store.counts(self.path)
        self.announce("history.open", path=self.path, events=c["events"], rollups=c["rollups"], size=c["size_bytes"])

    def _switch(self, path: str) -> None:
        self.store.close()
        self.path = path
        old = self.store
        self.store = store.HistoryStore(path, clock=self.clock, announce=self.announce)
        self.store.set_aside_count = old.set_aside_count
        self.store.set_aside_paths = old.set_aside_paths
        self._open_first()

    def _try(self, fn: Callable[[], Any]) -> bool:
        """``fn()``; an error is recorded (and logged, once an episode), never raised."""
        try:
            fn()
            return True
        except Exception as exc:  # noqa: BLE001 - the history never stops the daemon
            self._failed(exc, 0)
            return False

    def _write(self, items: list[Event | Rollup]) -> None:
        events = [i for i in items if isinstance(i, Event)]
        rollups = [i for i in items if isinstance(i, Rollup)]
        try:
            if not self.store.is_open:
                make_state_dir(os.path.dirname(self.path))
            self.store.insert(events, rollups)
        except Exception as exc:  # noqa: BLE001 - drop the batch, try the next
            self._failed(exc, len(items))
            return
        self.stats.written_events += len(events)
        self.stats.written_rollups += len(rollups)
        if self._failing:
            self._failing = False
            self.announce("history.write-resumed", path=self.path, dropped=self._episode_dropped)
            self._episode_dropped = 0
        self._try(self._prune_if_big)

    def _prune_if_big(self) -> None:
        if self.store.size() > self.max_size:
            self.prune()

    def _failed(self, exc: BaseException, dropped: int) -> None:
        self.stats.dropped += dropped
        self._episode_dropped += dropped
        self.stats.last_error = f"{exc.__class__.__name__}: {exc}"
        self.stats.last_error_at = self.clock()
        if not store.is_full(exc):
            self.store.close()  # anything but a full disk: a fresh connection for the next batch
        if not self._failing:
            self._failing = True
            known = isinstance(exc, OSError | sqlite3.Error)
            if not known:
                log.exception("history.write-failed path=%s (a bug)", self.path)
            self.announce("history.write-failed", path=self.path, error=str(exc), dropped=dropped)

    def prune(self) -> None:
        p = self.store.prune(now=self.clock(), retention=self.retention, max_size=self.max_size)
        self.stats.pruned_events += p.events
        self.stats.pruned_rollups += p.rollups
        if p.events or p.rollups:
            log.info("history.prune events=%d rollups=%d size=%d was=%d", p.events, p.rollups, p.size_after,
                     p.size_before)


# --- commands ---------------------------------------------------------------------------------

def _cidr(value: str | None) -> str | None:
    if value is None:
        return None
    import ipaddress
    try:
        return str(ipaddress.ip_network(value.strip(), strict=True))
    except ValueError:
        raise ValueError("is not a CIDR (examples: 198.51.100.0/24, 2001:db8::/48)") from None


class EventsArgs(Args):
    since: float | None = None  # seconds since the epoch, inclusive
    until: float | None = None
    prefix: str | None = None
    path: str | None = Field(default=None, min_length=1, max_length=64)
    name: str | None = Field(default=None, max_length=128)
    limit: int = Field(default=100, ge=1, le=100_000)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        return _cidr(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME_RE.fullmatch(value):
            raise ValueError("is not an event name or a name ending in * (examples: steer.change, steer.*)")
        return None if value == "*" else value


class RollupsArgs(Args):
    path: str = Field(min_length=1, max_length=64)
    since: float | None = None
    until: float | None = None
    limit: int = Field(default=100, ge=1, le=100_000)


@dataclass(frozen=True)
class HistoryPlan:
    section: HistoryConfig


class HistoryService:
    name = "history"

    def __init__(self, section: HistoryConfig, ctx: Any, *, clock: Callable[[], float] = time.time,
                 sample_s: float = SAMPLE_S, writer_options: dict | None = None) -> None:
        self.section = section
        self.ctx = ctx
        self.bus: Bus = ctx.bus
        self.clock = clock
        self.sample_s = sample_s
        self._writer_options = writer_options or {}
        self.writer: Writer | None = None
        self.accumulator = Accumulator(section.rollup_interval)
        self._sampler: asyncio.Task | None = None
        self._lock = threading.Lock()
        self._collecting = False
        self._live: set[int] = set()
        self._backlog: frozenset[int] = frozenset()
        self._subscribed = False
        self._sample_failing = False

    # --- lifecycle ------------------------------------------------------------------------------

    def check(self, section: HistoryConfig) -> HistoryPlan:
        check_state_dir(section.state_dir)
        return HistoryPlan(section)

    async def start(self) -> None:
        s = self.section
        self.writer = Writer(s.path, retention=s.retention, max_size=s.max_size, clock=self.clock,
                             announce=announcer(self.bus), **self._writer_options)
        with self._lock:
            self._collecting = True
        self.bus.subscribe(self._on_event)
        self._subscribed = True
        self._catch_up()
        self.writer.start()
        await asyncio.to_thread(self.writer.opened.wait, STOP_S)  # the file is there (or the error logged)
        self._sampler = asyncio.get_running_loop().create_task(self._sample_loop(), name="history-sampler")

    def _catch_up(self) -> None:
        """The events the bus still holds from before the subscription: stored once a process
        (whichever history starts first), each exactly once (not also via the callback)."""
        first = self.bus not in _CAUGHT_UP
        _CAUGHT_UP.add(self.bus)
        candidates = self.bus.recent() if first else []
        with self._lock:
            backlog = [e for e in candidates if e.seq not in self._live]
            self._backlog = frozenset(e.seq for e in backlog)
            self._collecting = False
            self._live.clear()
        self.writer.put_many(backlog)

    def _on_event(self, e: Event) -> None:
        """The bus callback (the publisher's thread): queue, nothing else."""
        with self._lock:
            if e.seq in self._backlog:
                return
            if self._collecting:
                self._live.add(e.seq)
        self.writer.put(e)

    async def commit(self, plan: HistoryPlan) -> None:
        new, old = plan.section, self.section
        self.section = new
        self.writer.configure(retention=new.retention, max_size=new.max_size)
        if new.path != old.path:
            self.writer.reopen(new.path)
        if new.rollup_interval != old.rollup_interval:
            self.writer.put_many(self.accumulator.flush(self.clock()))
            self.accumulator = Accumulator(new.rollup_interval)

    async def stop(self) -> None:
        t0 = time.monotonic()
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sampler
            self._sampler = None
        if self._subscribed:
            self.bus.unsubscribe(self._on_event)
            self._subscribed = False
        if self.writer is None:
            return
        self.writer.put_many(self.accumulator.flush(self.clock()))
        left = max(0.1, STOP_S - (time.monotonic() - t0))
        if not await asyncio.to_thread(self.writer.stop, left):
            log.warning("history.stop-timeout path=%s queued=%d (left to finish)", self.writer.path,
                        self.writer.queued)

    # --- sampling -------------------------------------------------------------------------------

    async def _sample_loop(self) -> None:
        # The first sample as soon as steering runs (it starts after the history): a run shorter
        # than one sample interval still leaves its rollup at stop.
        while not self.sample():
            await asyncio.sleep(FIRST_SAMPLE_POLL_S)
        last = time.monotonic()
        while True:
            await beat(self.sample_s)  # with the daemon's other loops (one wake-up)
            if time.monotonic() - last < self.sample_s / 2:
                continue  # the first beat right after the first sample: one sample per interval
            self.sample()
            last = time.monotonic()

    def sample(self) -> bool:
        """One sample of steering's paths (none when steering does not run); never raises.
        True when one was taken."""
        steer = self.ctx.component("steer")
        if steer is None:
            return False
        try:
            views = steer.view_paths()
            rows = self.accumulator.add(self.clock(), views)
        except Exception as exc:  # noqa: BLE001 - a sample missed, not the daemon stopped
            if not self._sample_failing:
                self._sample_failing = True
                log.exception("history.sample-failed error=%r", str(exc))
            return False
        self._sample_failing = False
        self.writer.put_many(rows)
        return True

    # --- commands -------------------------------------------------------------------------------

    def commands(self) -> list[Command]:
        return [
            Command("history.events", EventsArgs, self.cmd_events,
                    "stored events (since, until, prefix, path, name, limit), oldest first"),
            Command("history.rollups", RollupsArgs, self.cmd_rollups,
                    "a path's rollups (state, RTT p50/p95/max, jitter, loss, utilisation, load) per interval"),
            Command("history.stats", NoArgs, self.cmd_stats, "the history file: size, rows, dropped, errors"),
        ]

    async def _read(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """``fn`` on a worker thread after what is queued was written (at most QUERY_FLUSH_S)."""
        await asyncio.to_thread(self.writer.flush, QUERY_FLUSH_S)
        try:
            return await asyncio.to_thread(fn, *args, **kw)
        except store.ReadError as exc:
            if exc.damaged:
                self.writer.damaged(str(exc))
            raise PathsteerError(f"history: cannot read {self.section.path}: {exc}") from None

    async def cmd_events(self, args: EventsArgs) -> dict:
        events = await self._read(store.query_events, self.section.path, since=args.since, until=args.until,
                                  prefix=args.prefix, path_name=args.path, name=args.name, limit=args.limit)
        return {"events": events}

    def _steer_paths(self) -> list[str] | None:
        steer = self.ctx.component("steer")
        if steer is None:
            return None
        try:
            return [v["name"] for v in steer.view_paths()]
        except Exception:  # noqa: BLE001 - the stored rows decide then
            return None

    async def cmd_rollups(self, args: RollupsArgs) -> dict:
        known = self._steer_paths()
        rows = await self._read(store.query_rollups, self.section.path, path_name=args.path, since=args.since,
                                until=args.until, limit=args.limit)
        if not rows and (known is None or args.path not in known):
            if not await self._read(store.has_rollups, self.section.path, args.path):
                names = f" (paths: {', '.join(known)})" if known else ""
                raise NotFoundError(f"history.rollups: path {args.path!r} is not a path steering has or had{names}")
        return {"path": args.path, "interval_s": self.section.rollup_interval, "rollups": rows}

    async def cmd_stats(self, _args: NoArgs) -> dict:
        c = await self._read(store.counts, self.writer.path)
        s = self.writer.stats
        return {"path": self.writer.path, "size_bytes": c["size_bytes"], "wal_bytes": c["wal_bytes"],
                "events": c["events"], "rollups": c["rollups"], "queued": self.writer.queued,
                "written_events": s.written_events, "written_rollups": s.written_rollups,
                "dropped": s.dropped, "overflow": s.overflow, "pruned_events": s.pruned_events,
                "pruned_rollups": s.pruned_rollups, "set_aside": self.writer.store.set_aside_count,
                "set_aside_files": list(self.writer.store.set_aside_paths), "last_error": s.last_error,
                "last_error_at": s.last_error_at, "retention_s": self.section.retention,
                "max_size": self.section.max_size, "rollup_interval_s": self.section.rollup_interval}
