"""Sliding window and order statistics."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pathsteer.telemetry.window import MinFilter, ProbeWindow, percentile, rtt_stats

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
    # the inlined ranks are `percentile`'s (nearest rank)
    s = sorted(values)
    assert (r.p50_s, r.p95_s, r.p99_s) == (percentile(s, 50), percentile(s, 95), percentile(s, 99))


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


def test_min_filter_falls_at_once_and_forgets_an_old_minimum_after_its_horizon():
    f = MinFilter(60.0, buckets=6)
    assert f.value() is None
    f.add(0.0, 0.004)
    f.add(5.0, 0.030)
    assert f.value() == 0.004
    f.add(30.0, 0.050)       # a queue: the minimum stays the path's own latency
    assert f.value() == 0.004
    f.add(31.0, 0.003)       # a lower RTT shows at once
    assert f.value() == 0.003
    f.add(95.0, 0.040)       # 64 s after 0.003, but its bucket (30-40 s) still holds values < 60 s old
    assert f.value() == 0.003
    f.add(101.0, 0.040)      # a lasting rise: after one horizon plus one bucket it is the minimum
    assert f.value() == 0.040
    with pytest.raises(ValueError, match="horizon"):
        MinFilter(0.0)


@given(st.lists(st.tuples(st.floats(0.0, 1.0), floats), min_size=1, max_size=200))
def test_min_filter_is_the_minimum_of_what_is_at_most_one_horizon_plus_a_bucket_old(steps):
    f = MinFilter(10.0, buckets=5)
    seen, now = [], 0.0
    for dt, value in steps:
        now += dt
        f.add(now, value)
        seen.append((now, value))
        recent = [v for at, v in seen if at > now - 10.0]
        # a bucket (2 s) may outlive the horizon; 1e-9: sums of float steps round at the edges
        bucketed = [v for at, v in seen if at > now - 12.0 - 1e-9]
        assert min(bucketed) <= f.value() <= min(recent)


def test_a_paths_base_rtt_is_its_lowest_over_minutes_while_its_queue_lifts_the_window():
    from pathsteer.telemetry import PathProbeConfig, PathTracker, WindowConfig
    from pathsteer.telemetry.path import BASE_RTT_HORIZON_S
    tracker = PathTracker(PathProbeConfig("p1", "eth0", ("192.0.2.1",), interval_s=0.05, timeout_s=1.0,
                                          window=WindowConfig(count=100, seconds=60)), now=0.0)
    target = tracker.targets["192.0.2.1"]
    seq, now = 0, 0.0

    def probe(rtt: float) -> None:
        nonlocal seq, now
        seq += 1
        target.on_sent(seq, now)
        target.on_reply(seq, now + rtt)
        now += 0.05
        tracker.snapshot(now)
    for _ in range(100):
        probe(0.004)
    for _ in range(400):  # 20 s of a full queue: the window holds only 40-60 ms
        probe(0.040 + (seq % 5) * 0.005)
    snap = tracker.snapshot(now)
    assert snap.rtt.min_s == pytest.approx(0.040) and snap.base_rtt_s == pytest.approx(0.004)
    now += BASE_RTT_HORIZON_S * 0.9  # everything within the horizon is remembered
    probe(0.040)
    assert tracker.snapshot(now).base_rtt_s == pytest.approx(0.004)
    now += BASE_RTT_HORIZON_S * 0.2
    for _ in range(100):
        probe(0.040)
    # a lasting rise shows after the horizon plus one bucket (a tenth of it)
    assert tracker.snapshot(now).base_rtt_s == pytest.approx(0.040)
