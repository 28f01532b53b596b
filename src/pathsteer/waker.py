"""`Waker`: what a periodic loop sleeps on, so another part can wake it before its time.

``await asyncio.wait_for(event.wait(), timeout)`` makes a task per wait and cancels it on every
timeout: on a small VM each periodic wake-up of the daemon then costs two or three turns of
the event loop instead of one. A `Waker` waits on one future with one timer.
"""

from __future__ import annotations

import asyncio


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


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

    async def wait(self, timeout: float) -> bool:
        """Until `set` or ``timeout`` seconds; True when set (it stays set until `clear`)."""
        if self._set:
            return True
        loop = asyncio.get_running_loop()
        fut = self._fut = loop.create_future()
        timer = loop.call_later(timeout, _resolve, fut)
        try:
            await fut
        finally:
            timer.cancel()
            self._fut = None
        return self._set
