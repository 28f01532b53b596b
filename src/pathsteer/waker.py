"""`Waker`: what a periodic loop sleeps on, so another part can wake it before its time.

``await asyncio.wait_for(event.wait(), timeout)`` makes a task per wait and cancels it on every
timeout: on a small VM each periodic wake-up of the daemon then costs two or three turns of
the event loop instead of one. A `Waker` waits on one future with one timer.

`beat` (and `Waker.wait(..., beat=True)`) sleeps to the next multiple of an interval on the
loop's clock instead of ``interval`` from now: the daemon's once-a-second loops (reconcile,
heartbeat, load, pins, history, API) then share one wake-up a second instead of each waking
the process on its own phase. Timers due at the very same time are run in one turn of the
loop, so the deadline is computed the same way by every caller (same float).
"""

from __future__ import annotations

import asyncio
import math


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


def next_beat(now: float, interval: float) -> float:
    """The first multiple of ``interval`` after ``now`` (never ``now`` itself)."""
    return (math.floor(now / interval) + 1) * interval


async def beat(interval: float) -> None:
    """Sleep until the next multiple of ``interval`` on the loop's clock (see the module's
    docstring): between 0 and ``interval`` seconds."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    timer = loop.call_at(next_beat(loop.time(), interval), _resolve, fut)
    try:
        await fut
    finally:
        timer.cancel()


class Waker:
    """An `asyncio.Event` for one waiting loop, with a timeout. Set it from the loop's thread."""

    __slots__ = ("_set", "_fut")

    def __init__(self) -> None:
        self._set = False
        self._fut: asyncio.Future | None = None

    def set(self) -> None:
        self._set = True
        if self._fut is not None:
            _resolve(self._fut)

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    async def wait(self, timeout: float, *, beat: bool = False) -> bool:
        """Until `set` or ``timeout`` seconds; True when set (it stays set until `clear`).
        ``beat``: until the next multiple of ``timeout`` on the loop's clock instead (`beat`)."""
        if self._set:
            return True
        loop = asyncio.get_running_loop()
        fut = self._fut = loop.create_future()
        if beat:
            timer = loop.call_at(next_beat(loop.time(), timeout), _resolve, fut)
        else:
            timer = loop.call_later(timeout, _resolve, fut)
        try:
            await fut
        finally:
            timer.cancel()
            self._fut = None
        return self._set
