"""`send_offset`: paths spread over their interval in groups at least SEND_SPACING_S apart."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pathsteer.probe.engine import SEND_SPACING_S, on_grid, send_offset
from pathsteer.waker import next_beat


@pytest.mark.parametrize("paths,interval,groups", [(64, 0.1, 4), (64, 1.0, 40), (3, 1.0, 3), (1, 1.0, 1),
                                                   (3, 0.02, 1), (10, 0.025, 1), (2, 0.05, 2)])
def test_groups_fit_the_interval_and_are_spaced(paths, interval, groups):
    offsets = [send_offset(i, paths, interval) for i in range(paths)]
    distinct = sorted(set(offsets))
    assert len(distinct) == groups
    assert distinct[0] == 0.0 and all(0.0 <= o < interval for o in offsets)
    gaps = [b - a for a, b in zip(distinct, distinct[1:])]
    assert all(g >= SEND_SPACING_S - 1e-9 for g in gaps)
    assert offsets == sorted(offsets)  # config order kept: earlier paths never send later
    sizes = [offsets.count(o) for o in distinct]
    assert max(sizes) - min(sizes) <= 1  # groups as even as the count allows


@given(start=st.floats(1.0, 1e6), paths=st.integers(1, 64),
       interval=st.sampled_from([0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 3.0]))
def test_second_send_is_on_the_grid(start, paths, interval):
    """After its first probe (at once, as ever), a daemon engine's path sends on a grid of its
    interval on the loop's clock, its group's offset after a multiple of the interval, at least
    half an interval and at most one and a half after the first."""
    for i in range(paths):
        offset = send_offset(i, paths, interval)
        first = start + offset
        at = on_grid(first + interval / 2, offset, interval)
        assert first + interval / 2 < at <= first + 1.5 * interval * (1 + 1e-9)
        k = (at - offset) / interval
        assert abs(k - round(k)) < 1e-6


def test_group_zero_sends_with_the_once_a_second_beats():
    # 100 ms probes: every tenth send of the first group is when a 1 s beat fires (same turn)
    at = on_grid(12345.678, 0.0, 0.1)
    sends = [at + k * 0.1 for k in range(30)]
    beats = {next_beat(s - 1e-3, 1.0) for s in sends}
    assert sum(1 for s in sends if any(abs(s - b) < 1e-6 for b in beats)) == 3
