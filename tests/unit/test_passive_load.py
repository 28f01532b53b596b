"""Per-path throughput and utilization from successive counter reads (pure, no root)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pathsteer.telemetry.load import CounterSample, LoadMeter, PathCapacity, Totals, path_load, throughput_bps


def test_throughput_is_bits_per_second():
    assert throughput_bps(Totals(0, 0), Totals(100, 1_250_000), 2.0) == 5_000_000


def test_throughput_needs_a_positive_interval():
    with pytest.raises(ValueError):
        throughput_bps(Totals(), Totals(1, 1), 0)


def test_counter_reset_counts_from_zero():
    assert throughput_bps(Totals(10, 10_000), Totals(2, 500), 1.0) == 4_000


def test_path_load_and_utilization():
    before = CounterSample(10.0, rx=Totals(0, 0), tx=Totals(0, 0))
    after = CounterSample(12.0, rx=Totals(200, 2_500_000), tx=Totals(1000, 12_500_000))
    load = path_load(before, after, capacity_bps=100_000_000)
    assert (load.in_bps, load.out_bps) == (10_000_000, 50_000_000)
    assert (load.in_pps, load.out_pps) == (100, 500)
    assert (load.in_utilization, load.out_utilization, load.utilization) == (0.1, 0.5, 0.5)


def test_unknown_capacity_has_no_utilization():
    load = path_load(CounterSample(0, Totals(), Totals()), CounterSample(1, Totals(1, 1), Totals()))
    assert load.utilization is None and load.in_utilization is None


def test_samples_out_of_order_are_refused():
    s = CounterSample(5.0, Totals(), Totals())
    with pytest.raises(ValueError):
        path_load(s, s)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "100mbit"])
def test_capacity_must_be_whole_bits_per_second(bad):
    with pytest.raises(ValueError, match="capacity"):
        PathCapacity("r-p1", bad)


def test_meter_first_sample_only_remembers():
    meter = LoadMeter({"p1": PathCapacity("r-p1", 8_000_000)})
    assert meter.update({"p1": CounterSample(1.0, Totals(), Totals())}) == {}
    got = meter.update({"p1": CounterSample(2.0, Totals(1, 1_000_000), Totals())})
    assert got["p1"].in_bps == 8_000_000 and got["p1"].in_utilization == 1.0


def test_meter_remembers_the_peak_over_its_memory():
    """The peak is what a probe-loss window still holds: a burst 3 s ago counts with a 5 s
    memory, and is forgotten once it is older than that."""
    meter = LoadMeter({"p1": PathCapacity("r-p1", 8_000_000, memory_s=5.0)})
    meter.update({"p1": CounterSample(0.0, Totals(), Totals())})
    got = meter.update({"p1": CounterSample(1.0, Totals(), Totals(1, 1_000_000))})  # 8 Mbit/s out
    assert got["p1"].peak_utilization == 1.0
    for t in (2.0, 3.0, 4.0):
        got = meter.update({"p1": CounterSample(t, Totals(), Totals(1, 1_000_000))})  # idle since
    assert got["p1"].utilization == 0.0 and got["p1"].peak_utilization == 1.0
    got = meter.update({"p1": CounterSample(6.5, Totals(), Totals(1, 1_000_000))})
    assert got["p1"].peak_bps == 0.0 and got["p1"].peak_utilization == 0.0


def test_meter_keeps_the_peak_of_the_last_seconds_beside_its_memory():
    """``recent_peak_bps`` looks back `RECENT_PEAK_S` (5 s), whatever the memory (the probe
    window's span: 60 s at the default 1 s interval, 0 for a single interval)."""
    for memory in (0.0, 60.0):
        meter = LoadMeter({"p1": PathCapacity("r-p1", 8_000_000, memory_s=memory)})
        meter.update({"p1": CounterSample(0.0, Totals(), Totals())})
        sent = 1_000_000
        got = meter.update({"p1": CounterSample(1.0, Totals(), Totals(1, sent))})  # full for a second
        for t in range(2, 6):
            got = meter.update({"p1": CounterSample(float(t), Totals(), Totals(1, sent))})
        assert got["p1"].utilization == 0.0 and got["p1"].recent_peak_bps == 8_000_000
        got = meter.update({"p1": CounterSample(6.5, Totals(), Totals(1, sent))})
        assert got["p1"].recent_peak_bps == 0.0
        assert got["p1"].peak_bps == (8_000_000 if memory else 0.0)


def test_meter_refuses_a_negative_memory():
    with pytest.raises(ValueError, match="memory of r-p1: -1"):
        PathCapacity("r-p1", 1, memory_s=-1)


def test_meter_ignores_a_sample_not_later_than_the_last():
    meter = LoadMeter({"p1": PathCapacity("r-p1")})
    meter.update({"p1": CounterSample(2.0, Totals(), Totals())})
    assert meter.update({"p1": CounterSample(2.0, Totals(5, 5), Totals())}) == {}


@given(st.lists(st.tuples(st.integers(0, 10**6), st.floats(0.01, 10)), min_size=2, max_size=20))
def test_meter_intervals_add_up(steps):
    """Bytes over the intervals sum to the total: nothing lost or counted twice between reads."""
    meter = LoadMeter({"p": PathCapacity("x", 1)})
    t, total, seen = 0.0, 0, 0.0
    meter.update({"p": CounterSample(t, Totals(), Totals())})
    for nbytes, dt in steps:
        t += dt
        total += nbytes
        load = meter.update({"p": CounterSample(t, Totals(0, 0), Totals(0, total))})["p"]
        seen += load.out_bps * load.interval_s / 8
    assert seen == pytest.approx(total)
