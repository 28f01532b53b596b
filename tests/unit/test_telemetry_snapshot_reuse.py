"""A path's snapshot is the same object while nothing changed (what lets `decide` skip judging
it again), and a new one as soon as a probe is sent, answered, lost or ages out; its order
statistics come from windows kept sorted, and equal a sort of the window."""

from __future__ import annotations

import random

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from pathsteer.telemetry.config import PathProbeConfig, WindowConfig
from pathsteer.telemetry.path import PathTracker, snapshot_of
from pathsteer.telemetry.window import ProbeWindow, rtt_stats


def tracker() -> PathTracker:
    return PathTracker(PathProbeConfig("p1", "eth0", ("192.0.2.1", "192.0.2.2"), interval_s=1.0), 0.0)


def probe(p: PathTracker, seq: int, now: float, rtt: float | None) -> None:
    for t in p.targets.values():
        t.on_sent(seq, now)
        if rtt is not None:
            t.on_reply(seq, now + rtt)


def test_unchanged_path_gives_the_same_snapshot_object():
    p = tracker()
    for seq in range(1, 8):
        probe(p, seq, float(seq), 0.010 + seq / 1000)
    a = p.snapshot(8.0)
    b = p.snapshot(8.1)
    assert b is a and snapshot_of([p], 8.2).paths[0] is a
    probe(p, 8, 8.3, None)  # sent, not answered yet: the counters moved
    c = p.snapshot(8.35)
    assert c is not a and c.targets[0].counters.pending == 1
    p.targets["192.0.2.1"].on_reply(8, 8.32)
    d = p.snapshot(8.4)
    assert d is not c and d.targets[0].rtt.samples == 8 and d.targets[1].rtt is c.targets[1].rtt


def test_ageing_out_makes_a_new_snapshot():
    p = PathTracker(PathProbeConfig("p1", "eth0", ("192.0.2.1",), interval_s=1.0,
                                    window=WindowConfig(count=100, seconds=10.0)), 0.0)
    for seq in range(1, 6):
        probe(p, seq, float(seq), 0.010)
    a = p.snapshot(6.0)
    assert p.snapshot(6.5) is a
    b = p.snapshot(11.5)  # the first probe (sent at 1 s) left the 10 s window
    assert b is not a and b.rtt.samples == 4


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(0.0, 1.0)), min_size=1, max_size=300), st.integers(1, 50))
def test_sorted_window_gives_what_a_sort_gives(rtts, count):
    w = ProbeWindow(count, 1e9)
    for i, r in enumerate(rtts):
        w.add(float(i), r)
        if i % 7 == 0:
            w.forget_lost()
        assert w.sorted_rtts() == sorted(w.rtts())
    ewma = random.random()
    assert rtt_stats(w.rtts(), ewma) == rtt_stats(list(reversed(w.rtts())), ewma)


def test_targets_read_later_show_the_figures_of_their_snapshot():
    """A path's targets are made into snapshots when first read, from what was captured when
    the path's snapshot was taken: probes after it do not leak in."""
    p = tracker()
    for seq in range(1, 6):
        probe(p, seq, float(seq), 0.010)
    a = p.snapshot(6.0)
    for seq in range(6, 9):
        probe(p, seq, float(seq), 0.050)
    b = p.snapshot(9.0)
    assert [t.counters.answered for t in a.targets] == [5, 5] and [t.rtt.max_s for t in a.targets] == pytest.approx([0.010] * 2)
    assert [t.counters.answered for t in b.targets] == [8, 8] and b.targets[0].rtt.max_s == pytest.approx(0.050)
    assert len(a.targets) == 2 and a.targets == tuple(a.targets) and a.targets != b.targets
    assert a.target("192.0.2.2") is a.targets[1]
    plain = snapshot_of([p], 9.5).plain()
    assert isinstance(plain.paths[0].targets, tuple) and plain.paths[0].targets == b.targets


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.one_of(st.none(), st.floats(0.001, 0.2)), st.floats(0.0, 3.0),
                          st.booleans()), min_size=1, max_size=150))
def test_path_rtts_are_the_live_targets_windows_merged(events):
    """A path's order statistics come from one list its targets' windows keep merged (not a
    merge at every snapshot): at any point they equal a sort of the live targets' RTTs, while
    targets fail (losses), come back and age out of a short window."""
    cfg = PathProbeConfig("p1", "eth0", ("192.0.2.1", "192.0.2.2", "192.0.2.3"), interval_s=1.0,
                          window=WindowConfig(count=20, seconds=5.0))
    p = PathTracker(cfg, 0.0)
    targets = list(p.targets.values())
    now, seq = 0.0, 0
    for which, rtt, dt, look in events:
        now += dt
        seq += 1
        t = targets[which]
        t.on_sent(seq, now)
        if rtt is None:
            t.expire(now + 10.0)  # lost (a few in a row: the target fails)
        else:
            t.on_reply(seq, now + rtt)
        if look:
            got = p.snapshot(now + 0.5).rtt
            live = [x for x in targets if not x.failing] or targets
            want = rtt_stats(sorted(r for x in live for r in x.window.sorted_rtts()), got.ewma_s, got.recent_s,
                             got.last_s)
            assert (got.min_s, got.p50_s, got.p95_s, got.p99_s, got.max_s, got.samples) == (
                want.min_s, want.p50_s, want.p95_s, want.p99_s, want.max_s, want.samples)
            assert got.avg_s == pytest.approx(want.avg_s)
