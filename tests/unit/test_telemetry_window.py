"""Sliding window and order statistics."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pathsteer.telemetry.window import ProbeWindow, percentile, rtt_stats

floats = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)


def test_percentile_nearest_rank_examples():
    s = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    assert percentile(s, 50) == 5.0
    assert percentile(s, 95) == 10.0
    assert percentile(s, 90) == 9.0
    assert percentile(s, 0) == 1.0
    assert percentile(s, 100) == 10.0
    with pytest.raises(ValueError):
        percentile([], 50)


@given(st.lists(floats, min_size=1, max_size=200), st.floats(min_value=0, max_value=100))
def test_percentile_matches_sorted_list(values, p):
    s = sorted(values)
    v = percentile(s, p)
    assert v in s
    below = sum(1 for x in s if x <= v)
    assert below >= p / 100 * len(s) - 1e-9  # at least p% at or below
    strictly_below = sum(1 for x in s if x < v)
    assert strictly_below < max(1, math.ceil(p / 100 * len(s)))  # and it is the smallest such


@given(st.lists(floats, min_size=1, max_size=200))
def test_rtt_stats_order(values):
    r = rtt_stats(values, None)
    assert r.min_s == min(values) and r.max_s == max(values)
    assert r.min_s <= r.p50_s <= r.p95_s <= r.p99_s <= r.max_s
    assert r.min_s - 1e-12 <= r.avg_s <= r.max_s + 1e-12
    assert r.samples == len(values)


def test_rtt_stats_empty_keeps_ewma():
    r = rtt_stats([], 0.01)
    assert r.ewma_s == 0.01 and r.p50_s is None and r.samples == 0


def test_window_by_count_and_time():
    w = ProbeWindow(max_count=3, max_age_s=10.0)
    assert w.loss_pct() is None
    w.add(0.0, None)
    w.add(1.0, 0.01)
    w.add(2.0, 0.02)
    assert w.loss_pct() == pytest.approx(100 / 3)
    w.add(3.0, 0.03)  # pushes the lost probe out by count
    assert w.lost == 0 and len(w) == 3 and w.rtts() == [0.01, 0.02, 0.03]
    w.trim(12.5)  # entries sent before 2.5 leave by age
    assert w.rtts() == [0.03]


@given(st.lists(st.one_of(st.none(), floats), max_size=300), st.integers(1, 50))
def test_window_loss_counter_matches_contents(entries, size):
    w = ProbeWindow(max_count=size, max_age_s=1e9)
    for i, e in enumerate(entries):
        w.add(float(i), e)
    tail = entries[-size:] if entries else []
    assert len(w) == len(tail)
    assert w.lost == sum(1 for e in tail if e is None)
