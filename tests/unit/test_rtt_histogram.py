"""The cumulative RTT histogram (telemetry.histogram) and TargetTracker's hook into it: every RTT
the window takes is counted once, lost probes never, and the counts outlive the window."""

from __future__ import annotations

import pytest

from pathsteer.telemetry import Thresholds, WindowConfig
from pathsteer.telemetry.histogram import RTT_BUCKETS_S, RttHistogram
from pathsteer.telemetry.target import ReplyKind, TargetTracker


def test_a_sample_goes_to_the_first_bound_at_or_above_it():
    h = RttHistogram((0.01, 0.02))
    for v in (0.005, 0.01, 0.015, 0.02, 0.5):
        h.observe(v)
    assert h.cumulative() == ([2, 4, 5], pytest.approx(0.55))
    assert h.count == 5


def test_bounds_must_ascend():
    with pytest.raises(ValueError, match="ascending"):
        RttHistogram((0.02, 0.01))
    assert list(RTT_BUCKETS_S) == sorted(set(RTT_BUCKETS_S))


def tracker(timeout_s=None, count=5) -> TargetTracker:
    return TargetTracker("198.51.100.9", timeout_s=timeout_s, window=WindowConfig(count=count, seconds=60.0),
                         thresholds=Thresholds(), now=0.0)


def test_every_answer_is_counted_beyond_the_window_and_losses_are_not():
    t = tracker(timeout_s=0.5, count=5)
    for seq in range(1, 21):
        t.on_sent(seq, seq * 1.0)
        if seq % 4:
            assert t.on_reply(seq, seq * 1.0 + 0.012) is ReplyKind.ANSWER
        else:
            t.expire(seq * 1.0 + 1.0)
    counts, total = t.histogram.cumulative()
    assert counts[-1] == 15 and total == pytest.approx(15 * 0.012)  # 15 answers, the window holds 5
    assert len(t.window) == 5


def test_a_late_answer_counts_with_the_adaptive_timeout_only():
    adaptive = tracker(timeout_s=None)
    adaptive.on_sent(1, 0.0)
    adaptive.expire(1.5)  # past the 1 s initial timeout: presumed lost
    assert adaptive.on_reply(1, 1.6) is ReplyKind.LATE  # ... and redeemed: the window holds it as answered
    assert adaptive.histogram.cumulative()[0][-1] == 1
    fixed = tracker(timeout_s=0.05)
    fixed.on_sent(1, 0.0)
    fixed.expire(0.1)
    assert fixed.on_reply(1, 0.2) is ReplyKind.LATE  # a fixed timeout's late answer stays lost
    assert fixed.histogram.cumulative()[0][-1] == 0
