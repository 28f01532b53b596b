"""`Waker`: a timed wait that `set` ends early, without a task per wait."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


def test_next_beat_is_the_next_multiple():
    from pathsteer.waker import next_beat
    assert next_beat(0.0, 1.0) == 1.0  # never now itself
    assert next_beat(12345.2, 1.0) == 12346.0
    assert next_beat(7.05, 0.1) == pytest.approx(7.1)
    for now in (3.0, 3.1, 3.999999):  # every caller in one slot gets the same float
        assert next_beat(now, 0.5) in (3.5, 4.0)
    assert next_beat(3.6, 0.5) == next_beat(3.9, 0.5) == 4.0


@given(now=st.floats(0, 1e7), interval=st.sampled_from([0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 30.0]))
def test_next_beat_property(now, interval):
    from pathsteer.waker import next_beat
    at = next_beat(now, interval)
    assert now < at <= now + interval * (1 + 1e-9)


class _Turns:
    """Counts the loop's turns that waited (a wake-up of the process) by wrapping its selector."""

    def __init__(self, loop):
        self.waits = 0
        select = loop._selector.select

        def counted(timeout=None):
            if timeout is None or timeout > 0:
                self.waits += 1
            return select(timeout)
        loop._selector.select = counted


def test_loops_on_one_beat_share_their_wake_ups():
    from pathsteer.waker import beat

    async def ticker(interval, n, out):
        for _ in range(n):
            await beat(interval)
            out.append(asyncio.get_running_loop().time())

    async def staggered(sleep):
        turns = _Turns(asyncio.get_running_loop())
        outs = [[], [], []]
        tasks = []
        for out in outs:  # three loops started at different phases
            tasks.append(asyncio.ensure_future(sleep(0.1, 10, out)))
            await asyncio.sleep(0.013)
        await asyncio.gather(*tasks)
        return turns.waits, outs

    async def plain(interval, n, out):
        for _ in range(n):
            await asyncio.sleep(interval)
            out.append(asyncio.get_running_loop().time())

    beats, outs = asyncio.run(staggered(ticker))
    spaced, _ = asyncio.run(staggered(plain))
    assert spaced >= 28  # each plain loop wakes on its own phase
    assert beats <= 14, (beats, outs)  # 10-11 shared wake-ups (and the staggered starts)
    times = sorted(t for out in outs for t in out)
    moments = 1 + sum(1 for a, b in zip(times, times[1:]) if b - a > 0.01)
    assert moments <= 12, times  # 30 wake-ups of the three loops at 10 or 11 moments


def test_wait_on_a_beat():
    async def main():
        w = Waker()
        loop = asyncio.get_running_loop()
        assert await w.wait(0.05, beat=True) is False
        t = loop.time()
        assert abs(t / 0.05 - round(t / 0.05)) < 0.4  # woke at (just after) a multiple of 0.05
        loop.call_later(0.01, w.set)
        assert await w.wait(30, beat=True) is True
    asyncio.run(main())
