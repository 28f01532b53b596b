"""The pure side of passive RTT: the histogram formula, percentiles, per-CPU merge, intervals;
and the C/Python contract of passive.bpf.o (enums and struct layouts from BTF), without root."""

from __future__ import annotations

import ctypes
import math
import shutil
import statistics
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pathsteer.bpf.build import BPF_SOURCE_DIR, compile_object
from pathsteer.bpf.object import OBJECTS_DIR, BpfObject
from pathsteer.bpf.passive import FLOWS_MAP, RTT_MAP, TIMESTAMPS_MAP, PassiveFlow, PassiveFlowState, PassiveTsKey, rtt_agg_type
from pathsteer.telemetry.passive import RttAggregate, RttMeter, bucket_bounds, bucket_of, interval, percentile_ns

SUB, BUCKETS = 5, 1024  # the defaults of bpf/passive_common.h; the BTF tests below check them


def hist_of(values, sub=SUB, buckets=BUCKETS) -> tuple[int, ...]:
    h = [0] * buckets
    for v in values:
        h[bucket_of(v, sub, buckets)] += 1
    return tuple(h)


def agg_of(values, sub=SUB, buckets=BUCKETS) -> RttAggregate:
    values = list(values)
    return RttAggregate(samples=len(values), sum_ns=sum(values), min_ns=min(values, default=0),
                        max_ns=max(values, default=0), hist=hist_of(values, sub, buckets))


# --- the bucket formula ---------------------------------------------------------------------

@given(st.integers(min_value=0, max_value=2**36 - 1), st.integers(min_value=1, max_value=8))
def test_bucket_holds_its_value(v, sub):
    buckets = 40 << sub  # enough octaves for 2^36
    lower, upper = bucket_bounds(bucket_of(v, sub, buckets), sub)
    assert lower <= v < upper
    if v >= 1 << sub:
        assert (upper - lower) / lower <= 1 / 2**sub  # the promised relative width


@given(st.integers(min_value=0, max_value=2**36 - 2))
def test_buckets_are_monotonic(v):
    assert bucket_of(v, SUB, BUCKETS) <= bucket_of(v + 1, SUB, BUCKETS)


def test_buckets_tile_without_gaps():
    for b in range(BUCKETS - 1):
        assert bucket_bounds(b, SUB)[1] == bucket_bounds(b + 1, SUB)[0]


def test_last_bucket_takes_everything_above():
    assert bucket_of(2**36, SUB, BUCKETS) == bucket_of(10**15, SUB, BUCKETS) == BUCKETS - 1
    assert bucket_bounds(BUCKETS - 1, SUB)[1] == 2**36  # 68.7 s, as passive_common.h says


def test_exact_range():
    assert [bucket_of(v, SUB, BUCKETS) for v in range(34)] == list(range(34))


# --- percentiles ----------------------------------------------------------------------------

def test_percentile_of_empty_is_none():
    assert percentile_ns([0] * BUCKETS, 0.5, SUB) is None


@settings(max_examples=200)
@given(st.lists(st.integers(min_value=1_000, max_value=2_000_000_000), min_size=1, max_size=300),
       st.sampled_from([0.5, 0.95]))
def test_percentile_within_a_bucket_of_the_truth(values, q):
    """The estimate lies in the bucket of the true nearest-rank quantile or a neighbour."""
    est = percentile_ns(hist_of(values), q, SUB)
    ordered = sorted(values)
    true = ordered[max(math.ceil(q * len(ordered)) - 1, 0)]
    lower, upper = bucket_bounds(bucket_of(true, SUB, BUCKETS), SUB)
    assert lower <= est <= upper


def test_percentile_of_realistic_rtts_is_accurate():
    """20 ms ± 1 ms, uniformly: p50 within 0.3 ms (bucket width there: 0.52 ms)."""
    values = [19_000_000 + i * 2_000 for i in range(1000)]
    assert abs(percentile_ns(hist_of(values), 0.5, SUB) - statistics.median(values)) < 300_000


# --- per-CPU merge --------------------------------------------------------------------------

def test_from_cpus_ignores_min_of_cpus_without_samples():
    T = rtt_agg_type(BUCKETS)
    a, b, c = T(), T(), T()
    a.samples, a.sum_ns, a.min_ns, a.max_ns = 2, 30, 10, 20
    a.hist[10] = a.hist[20] = 1
    b.samples, b.sum_ns, b.min_ns, b.max_ns, b.handshake_samples = 1, 5, 5, 5, 1
    b.hist[5] = 1
    c.recorded, c.record_failed = 7, 1  # an egress-only CPU: min_ns 0 must not win
    agg = RttAggregate.from_cpus([a, b, c])
    assert (agg.samples, agg.sum_ns, agg.min_ns, agg.max_ns) == (3, 35, 5, 20)
    assert (agg.handshake_samples, agg.recorded, agg.record_failed) == (1, 7, 1)
    assert sum(agg.hist) == 3 and agg.hist[5] == agg.hist[10] == agg.hist[20] == 1


def test_from_cpus_without_samples():
    agg = RttAggregate.from_cpus([rtt_agg_type(BUCKETS)()] * 2)
    assert agg.samples == 0 and agg.min_ns == 0 and agg.mean_ns is None


# --- intervals ------------------------------------------------------------------------------

def test_interval_without_new_samples():
    a = agg_of([10_000_000])
    got = interval(a, a, SUB)
    assert got.samples == 0 and got.p50_ns is None and got.mean_ns is None and got.min_ns is None


def test_first_interval_is_everything_and_exact_at_the_edges():
    values = [20_000_000, 21_000_000, 22_000_000, 40_000_000]
    got = interval(None, agg_of(values), SUB)
    assert got.samples == 4
    assert got.min_ns == 20_000_000 and got.max_ns == 40_000_000
    assert got.mean_ns == statistics.fmean(values)
    assert 20_000_000 <= got.p50_ns <= 22_000_000


def test_interval_sees_only_the_new_samples():
    old = [50_000_000] * 100
    new = [20_000_000 + i * 10_000 for i in range(100)]
    got = interval(agg_of(old), _combine(agg_of(old), agg_of(new)), SUB)
    assert got.samples == 100
    assert got.mean_ns == pytest.approx(statistics.fmean(new))
    assert abs(got.p50_ns - statistics.median(new)) < 600_000
    assert got.min_ns == 20_000_000  # a new all-time minimum: exact
    assert 20_990_000 <= got.max_ns < 21_600_000  # not a new maximum: the bucket's edge


def _combine(a: RttAggregate, b: RttAggregate) -> RttAggregate:
    return RttAggregate(samples=a.samples + b.samples, sum_ns=a.sum_ns + b.sum_ns,
                        min_ns=min(a.min_ns, b.min_ns), max_ns=max(a.max_ns, b.max_ns),
                        hist=tuple(x + y for x, y in zip(a.hist, b.hist)))


@given(st.lists(st.integers(min_value=1, max_value=10**10), min_size=1, max_size=50),
       st.lists(st.integers(min_value=1, max_value=10**10), min_size=1, max_size=50))
def test_interval_figures_are_ordered_and_bounded(old, new):
    got = interval(agg_of(old), _combine(agg_of(old), agg_of(new)), SUB)
    assert got.samples == len(new)
    assert got.min_ns <= got.p50_ns <= got.p95_ns <= got.max_ns
    assert min(new) * (1 - 1 / 32) <= got.min_ns <= min(new)  # at most one bucket low
    assert max(new) <= got.max_ns * (1 + 1 / 16) + 1
    assert got.min_ns <= got.mean_ns <= got.max_ns + 1


def test_reset_counts_as_a_fresh_start():
    """Fewer samples than before: the kernel's entry was deleted/evicted; `after` is all new."""
    got = interval(agg_of([5] * 10), agg_of([30_000_000] * 3), SUB)
    assert got.samples == 3 and got.min_ns == got.max_ns == 30_000_000


def test_meter_keeps_the_last_read_per_path():
    meter = RttMeter(SUB)
    first = meter.update({"p1": agg_of([10_000_000]), "p2": agg_of([])})
    assert first["p1"].samples == 1 and first["p2"].samples == 0
    second = meter.update({"p1": agg_of([10_000_000, 30_000_000])})
    assert second["p1"].samples == 1 and second["p1"].max_ns == 30_000_000
    assert meter.update({"p1": agg_of([10_000_000, 30_000_000])})["p1"].samples == 0


# --- the C/Python contract (BTF), no root ---------------------------------------------------

needs_clang = pytest.mark.skipif(shutil.which("clang") is None, reason="needs clang to compile passive.bpf.c")


@pytest.fixture(scope="module")
def passive_path(tmp_path_factory) -> Path:
    packaged = OBJECTS_DIR / "passive.bpf.o"
    if packaged.is_file():
        return packaged
    if shutil.which("clang") is None:
        pytest.skip("passive.bpf.o is not built and there is no clang to build it")
    return compile_object(BPF_SOURCE_DIR / "passive.bpf.c", tmp_path_factory.mktemp("bpf") / "passive.bpf.o")


def test_limits_and_layouts_from_btf(passive_path):
    with BpfObject.open(passive_path) as obj:
        limits = obj.constants("passive_limits")
        assert (limits["PASSIVE_LIMIT_HIST_SUB_BITS"], limits["PASSIVE_LIMIT_HIST_BUCKETS"]) == (SUB, BUCKETS)
        assert obj.max_entries(TIMESTAMPS_MAP) == limits["PASSIVE_LIMIT_TIMESTAMPS"]
        assert obj.max_entries(RTT_MAP) == limits["PASSIVE_LIMIT_IFACES"]
        assert obj.max_entries(FLOWS_MAP) == limits["PASSIVE_LIMIT_FLOWS"]
        obj.check_map_types(TIMESTAMPS_MAP, PassiveTsKey, ctypes.c_uint64)
        obj.check_map_types(FLOWS_MAP, PassiveFlow, PassiveFlowState)
        obj.check_map_types(RTT_MAP, ctypes.c_uint32, rtt_agg_type(limits["PASSIVE_LIMIT_HIST_BUCKETS"]))
        assert set(obj.constants("passive_id_kind")) == {"PASSIVE_ID_TSVAL", "PASSIVE_ID_SYN"}


@needs_clang
def test_histogram_override_reaches_python(tmp_path):
    """-DPASSIVE_HIST_SUB_BITS=4: the enum Python reads and the struct size both follow."""
    out = compile_object(BPF_SOURCE_DIR / "passive.bpf.c", tmp_path / "p.bpf.o", defines={"PASSIVE_HIST_SUB_BITS": 4})
    with BpfObject.open(out) as obj:
        limits = obj.constants("passive_limits")
        assert (limits["PASSIVE_LIMIT_HIST_SUB_BITS"], limits["PASSIVE_LIMIT_HIST_BUCKETS"]) == (4, 512)
        obj.check_map_types(RTT_MAP, ctypes.c_uint32, rtt_agg_type(512))
        with pytest.raises(Exception, match="bytes"):
            obj.check_map_types(RTT_MAP, ctypes.c_uint32, rtt_agg_type(1024))


def _agg(values_ns: list[int]) -> RttAggregate:
    return RttAggregate(samples=len(values_ns), sum_ns=sum(values_ns), min_ns=min(values_ns, default=0),
                        max_ns=max(values_ns, default=0), hist=hist_of(values_ns))


def test_passive_window_follows_a_slowdown_within_half_a_window():
    """Reads every 100 ms, 20 samples each: 10 ms, then 80 ms from t = 2 s. The window's
    median is the new RTT once more than half the window's samples are new."""
    from pathsteer.telemetry.passive import PassiveWindow
    w = PassiveWindow(SUB, window_s=1.0)
    assert w.snapshot() is None
    values: list[int] = []
    seen_at = None
    for i in range(40):
        t = i * 0.1
        values += [(10_000_000 if t < 2.0 else 80_000_000)] * 20
        w.update(t, _agg(values))
        snap = w.snapshot()
        if i >= 1:
            assert snap is not None and snap.samples > 0 and snap.window_s <= 1.0 + 1e-9
        if snap is not None and t >= 2.0 and seen_at is None and snap.p50_s > 0.070:
            seen_at = t
    assert seen_at is not None and seen_at - 2.0 <= 0.6, seen_at
    snap = w.snapshot()
    assert snap.p50_s == pytest.approx(0.080, rel=0.04) and snap.total_samples == 800


def test_passive_window_without_traffic_and_after_a_reset():
    from pathsteer.telemetry.passive import PassiveWindow
    w = PassiveWindow(SUB, window_s=1.0)
    w.update(0.0, _agg([5_000_000] * 10))
    w.update(0.5, _agg([5_000_000] * 10))  # no new samples
    snap = w.snapshot()
    assert snap.samples == 0 and snap.p50_s is None
    w.update(1.0, _agg([7_000_000] * 3))  # fewer than before: the kernel's entry was reset
    assert w.snapshot() is None
    w.update(1.2, _agg([7_000_000] * 8))
    assert w.snapshot().samples == 5


def test_passive_window_remembers_the_last_busy_second_for_its_memory():
    from pathsteer.telemetry.passive import PassiveWindow
    w = PassiveWindow(SUB, window_s=1.0, memory_s=30.0)
    values = [80_000_000] * 50
    w.update(0.0, _agg([]))
    w.update(1.0, _agg(values))  # a busy second at 80 ms
    assert w.snapshot().p50_s == pytest.approx(0.080, rel=0.04) and w.snapshot().age_s == 0.0
    for t in range(2, 40):  # then the traffic left the path
        w.update(float(t), _agg(values))
        snap = w.snapshot()
        if t - 1 <= 30:
            assert snap.age_s == pytest.approx(t - 1.0) and snap.p50_s == pytest.approx(0.080, rel=0.04), (t, snap)
        else:
            assert snap.samples == 0 and snap.p50_s is None and snap.age_s == 0.0
