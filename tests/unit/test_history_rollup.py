"""The rollup accumulator (pure): windows aligned on the wall clock, one row per path, the
figures of the samples (percentiles of the sampled RTTs, means, maxima, last and worst state),
missing figures, a path that comes or goes, flush; properties over random samples."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pathsteer.history.rollup import Accumulator, percentile, state_rank


def view(name="p1", state="up", rtt=10.0, jitter=1.0, loss=0.0, util=None, load=None) -> dict:
    return {"name": name, "state": state, "rtt_ms": rtt, "rtt_p50_ms": rtt, "rtt_p95_ms": rtt, "jitter_ms": jitter,
            "loss_pct": loss, "utilization": util, "load": load}


def test_percentile():
    assert percentile([], 0.5) is None
    assert percentile([5.0], 0.95) == 5.0
    assert percentile([1, 2, 3, 4], 0.5) == 2.5
    assert percentile([4, 1, 3, 2], 0.0) == 1 and percentile([4, 1, 3, 2], 1.0) == 4
    assert percentile(list(range(101)), 0.95) == pytest.approx(95.0)


def test_a_window_is_emitted_when_the_next_begins():
    acc = Accumulator(10.0)
    assert acc.add(1000.5, [view(rtt=10.0), view("p2", rtt=30.0)]) == []
    for i, rtt in enumerate([20.0, 30.0, 40.0]):
        assert acc.add(1001.5 + i, [view(rtt=rtt, jitter=2.0, loss=10.0 * i), view("p2", rtt=30.0)]) == []
    rows = acc.add(1010.2, [view(rtt=99.0)])
    assert [r.path for r in rows] == ["p1", "p2"]
    p1 = rows[0]
    assert (p1.start, p1.end, p1.samples) == (1000.0, 1010.0, 4)
    assert p1.rtt_p50_ms == 25.0 and p1.rtt_max_ms == 40.0
    assert p1.rtt_p95_ms == pytest.approx(38.5)
    assert p1.jitter_ms == pytest.approx(1.75) and p1.loss_pct == pytest.approx(7.5)
    assert p1.utilization_mean is None and p1.in_bps is None
    assert rows[1].rtt_p50_ms == 30.0 and rows[1].samples == 4


def test_state_at_the_end_and_the_worst():
    acc = Accumulator(5.0)
    for i, state in enumerate(["up", "degraded", "down", "up"]):
        acc.add(100.0 + i, [view(state=state)])
    (row,) = acc.add(105.0, [view()])
    assert (row.state, row.worst_state) == ("up", "down")
    acc.add(106.0, [view(state="drained")])
    (row,) = acc.flush(107.0)
    assert (row.state, row.worst_state) == ("drained", "drained")
    assert state_rank("something-new") == state_rank("unknown")


def test_utilization_and_load():
    acc = Accumulator(10.0)
    acc.add(0.0, [view(util=0.2, load={"in_bps": 1000, "out_bps": 10})])
    acc.add(1.0, [view(util=0.6, load={"in_bps": 3000, "out_bps": 30})])
    acc.add(2.0, [view(util=None, load=None)])
    (row,) = acc.flush(5.0)
    assert row.utilization_mean == pytest.approx(0.4) and row.utilization_max == pytest.approx(0.6)
    assert (row.in_bps, row.out_bps) == (2000.0, 20.0)
    assert row.end == 5.0 and row.samples == 3


def test_missing_and_bad_figures_are_none():
    acc = Accumulator(10.0)
    acc.add(0.0, [{"name": "p1", "state": "unknown", "rtt_ms": None, "loss_pct": None, "jitter_ms": None,
                   "utilization": None, "load": None}])
    acc.add(1.0, [{"name": "p1", "rtt_ms": float("nan"), "loss_pct": True}, {"state": "up"}])
    (row,) = acc.flush(2.0)
    assert row.samples == 2 and row.state == "unknown"
    assert row.rtt_p50_ms is row.rtt_max_ms is row.loss_pct is row.jitter_ms is None


def test_a_path_that_appears_or_goes_mid_window():
    acc = Accumulator(10.0)
    acc.add(0.0, [view("p1"), view("p2")])
    acc.add(1.0, [view("p1")])
    acc.add(2.0, [view("p1"), view("p3")])
    rows = {r.path: r.samples for r in acc.add(10.0, [])}
    assert rows == {"p1": 3, "p2": 1, "p3": 1}
    assert acc.flush(11.0) == []  # the new window has no samples


def test_flush_empties_and_a_clock_step_back_closes_the_window():
    acc = Accumulator(10.0)
    assert acc.flush(1.0) == []
    acc.add(25.0, [view()])
    rows = acc.add(12.0, [view()])  # the clock went back
    assert [(r.start, r.end) for r in rows] == [(20.0, 30.0)]
    (row,) = acc.flush(99.0)
    assert (row.start, row.end) == (10.0, 20.0)  # ends at its own end, not at the flush
    assert acc.flush(100.0) == []


def test_bad_interval():
    with pytest.raises(ValueError, match="interval_s"):
        Accumulator(0)


samples = st.lists(st.tuples(st.sampled_from(["up", "degraded", "down", "unknown"]),
                             st.none() | st.floats(0.1, 1000.0)), min_size=1, max_size=30)


@given(samples)
def test_properties_of_a_window(data):
    acc = Accumulator(60.0)
    for i, (state, rtt) in enumerate(data):
        acc.add(i * 1.0, [view(state=state, rtt=rtt)])
    (row,) = acc.flush(60.0)
    rtts = [r for _, r in data if r is not None]
    assert row.samples == len(data)
    assert row.state == data[-1][0]
    assert state_rank(row.worst_state) == max(state_rank(s) for s, _ in data)
    if rtts:
        assert min(rtts) - 1e-3 <= row.rtt_p50_ms <= row.rtt_p95_ms <= row.rtt_max_ms <= max(rtts) + 1e-3
    else:
        assert row.rtt_p50_ms is None


@given(st.floats(1.0, 3600.0), st.lists(st.floats(0, 1e6), min_size=1, max_size=50))
def test_every_sample_lands_in_exactly_one_row(interval, times):
    acc = Accumulator(interval)
    rows = []
    for t in sorted(times):
        rows += acc.add(t, [view()])
    rows += acc.flush(max(times) + interval)
    assert sum(r.samples for r in rows) == len(times)
    for r in rows:
        assert r.start <= r.end <= r.start + interval + 1e-6
