"""`Waker`: a timed wait that `set` ends early, without a task per wait."""

from __future__ import annotations

import asyncio
import time

from pathsteer.waker import Waker


def test_times_out_unset():
    async def main():
        w = Waker()
        t0 = time.monotonic()
        assert await w.wait(0.05) is False
        return time.monotonic() - t0
    assert 0.04 <= asyncio.run(main()) < 2.0


def test_set_ends_the_wait_and_stays_set_until_cleared():
    async def main():
        w = Waker()
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, w.set)
        t0 = time.monotonic()
        assert await w.wait(30) is True
        took = time.monotonic() - t0
        assert w.is_set() and await w.wait(30) is True  # still set: returns at once
        w.clear()
        assert not w.is_set() and await w.wait(0.01) is False
        return took
    assert asyncio.run(main()) < 5.0


def test_set_before_waiting_and_no_task_left_behind():
    async def main():
        w = Waker()
        w.set()
        assert await w.wait(30) is True
        w.clear()
        for _ in range(100):
            assert await w.wait(0.0) is False
        return len(asyncio.all_tasks())
    assert asyncio.run(main()) == 1  # only main itself


def test_cancelled_wait_leaves_it_usable():
    async def main():
        w = Waker()
        task = asyncio.ensure_future(w.wait(30))
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        asyncio.get_running_loop().call_later(0.01, w.set)
        return await w.wait(30)
    assert asyncio.run(main()) is True
