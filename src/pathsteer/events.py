"""The daemon's event bus: every structured event (``steer.change``, ``path.state``,
``guard.block``, ...) as it happens, for the operator surface (SSE, history, metrics).

`pathsteer.logs.event` publishes to `BUS` as it writes the log line, so a component has one way
to say something happened. Subscribers are called on the publisher's thread (the daemon's
loop, or a worker thread for data-plane calls) and must be quick and never raise: they queue
(``loop.call_soon_threadsafe``, a bounded queue) and do their work elsewhere. A subscriber that
raises is logged and dropped, the publisher never sees it.

    seq = BUS.subscribe(callback)         # callback(Event)
    BUS.recent(since_seq=0)               # the last RECENT events still held (SSE catch-up)
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("pathsteer.events")
RECENT = 4096


@dataclass(frozen=True)
class Event:
    """``seq`` counts from 1 in this process; ``at`` is wall-clock seconds since the epoch;
    ``fields`` are JSON values (strings, numbers, booleans, None)."""

    seq: int
    at: float
    name: str
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def component(self) -> str:
        return self.name.split(".", 1)[0]

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": round(self.at, 6), "name": self.name, **self.fields}


def plain(value: object) -> Any:
    """A field value as JSON: numbers, booleans and None as they are, everything else as text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


class Bus:
    def __init__(self, recent: int = RECENT, clock: Callable[[], float] = time.time) -> None:
        self._subscribers: list[Callable[[Event], None]] = []
        self._recent: collections.deque[Event] = collections.deque(maxlen=recent)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._clock = clock

    def publish(self, name: str, **fields: object) -> Event:
        with self._lock:
            e = Event(next(self._seq), self._clock(), name, {k: plain(v) for k, v in fields.items()})
            self._recent.append(e)
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(e)
            except Exception:  # noqa: BLE001 - a subscriber's bug never reaches the publisher
                log.exception("events.subscriber-failed callback=%r; unsubscribed", callback)
                self.unsubscribe(callback)
        return e

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        with self._lock:
            self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[Event], None]) -> None:
        with self._lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

    def recent(self, since_seq: int = 0) -> list[Event]:
        with self._lock:
            return [e for e in self._recent if e.seq > since_seq]

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._recent[-1].seq if self._recent else 0


BUS = Bus()
