"""Per-target accounting: answers vs late / duplicate / foreign, EWMA, jitter, failing."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pathsteer.telemetry import ReplyKind, TargetState, Thresholds, WindowConfig
from pathsteer.telemetry.target import TargetTracker, jitter_step


def tracker(timeout=1.0, count=100, down=3, up=5):
    return TargetTracker(
        "192.0.2.1",
        timeout_s=timeout,
        window=WindowConfig(count=count, seconds=1000.0),
        thresholds=Thresholds(target_down_after_lost=down, target_up_after_answered=up),
        now=0.0,
    )


def test_answer_rtt_and_ewma():
    t = tracker()
    t.on_sent(1, 10.0)
    assert t.on_reply(1, 10.02) is ReplyKind.ANSWER
    t.on_sent(2, 11.0)
    assert t.on_reply(2, 11.1) is ReplyKind.ANSWER
    s = t.snapshot(12.0)
    assert s.rtt.min_s == pytest.approx(0.02) and s.rtt.max_s == pytest.approx(0.1)
    assert s.rtt.ewma_s == pytest.approx(0.02 + (0.1 - 0.02) / 8)
    assert s.jitter_s == pytest.approx(0.08 / 16)
    assert s.loss_pct == 0.0 and s.state is TargetState.UP
    assert s.counters.answered == 2 and s.counters.sent == 2


def test_rtt_override_for_twamp():
    t = tracker()
    t.on_sent(7, 0.0)
    assert t.on_reply(7, 0.05, rtt_s=0.03) is ReplyKind.ANSWER
    assert t.snapshot(1.0).rtt.p50_s == pytest.approx(0.03)


def test_duplicate_is_not_an_answer():
    t = tracker()
    t.on_sent(1, 0.0)
    assert t.on_reply(1, 0.01) is ReplyKind.ANSWER
    assert t.on_reply(1, 0.02) is ReplyKind.DUPLICATE
    s = t.snapshot(1.0)
    assert s.counters.answered == 1 and s.counters.duplicate == 1 and s.rtt.samples == 1


def test_foreign_seq_is_counted_and_ignored():
    t = tracker()
    t.on_sent(1, 0.0)
    assert t.on_reply(99, 0.01) is ReplyKind.FOREIGN
    t.on_foreign()
    s = t.snapshot(0.5)
    assert s.counters.foreign == 2 and s.counters.answered == 0 and s.counters.pending == 1


def test_late_after_expiry_and_before_expiry():
    t = tracker(timeout=0.5)
    t.on_sent(1, 0.0)
    t.on_sent(2, 0.1)
    assert t.expire(0.55) == 1  # seq 1 lost, seq 2 still pending
    assert t.on_reply(1, 0.6) is ReplyKind.LATE
    # seq 2 answered past its deadline but before the prober expired it: late too
    assert t.on_reply(2, 0.7) is ReplyKind.LATE
    s = t.snapshot(1.0)
    assert s.counters.lost == 2 and s.counters.late == 2 and s.counters.answered == 0
    assert s.loss_pct == 100.0 and s.rtt.samples == 0


def test_failing_hysteresis():
    t = tracker(timeout=0.1, down=3, up=5)
    seq = 0

    def probe(answer: bool, at: float):
        nonlocal seq
        seq += 1
        t.on_sent(seq, at)
        if answer:
            t.on_reply(seq, at + 0.01)
        else:
            t.expire(at + 0.2)

    probe(True, 0.0)
    assert t.state is TargetState.UP
    probe(False, 1.0)
    probe(False, 2.0)
    assert t.state is TargetState.UP
    probe(False, 3.0)
    assert t.state is TargetState.DOWN and t.since == pytest.approx(3.1)
    for i in range(4):
        probe(True, 4.0 + i)
    assert t.state is TargetState.DOWN  # 4 answers < 5
    probe(True, 9.0)
    assert t.state is TargetState.UP


def test_expire_all_and_counts():
    t = tracker()
    for i in range(5):
        t.on_sent(i, float(i) / 100)
    assert t.pending == 5
    assert t.expire_all() == 5
    assert t.snapshot(1.0).counters.lost == 5


def test_jitter_rfc3550_example():
    # constant RTT: no jitter; a step of 16 ms gives J = 1 ms after one step
    assert jitter_step(0.0, 0.010, 0.010) == 0.0
    assert jitter_step(0.0, 0.010, 0.026) == pytest.approx(0.001)


@given(st.lists(st.tuples(st.booleans(), st.floats(0.0, 0.5)), max_size=200))
def test_counters_add_up(events):
    t = tracker(timeout=0.6, count=1000)
    for seq, (answer, rtt) in enumerate(events):
        t.on_sent(seq, seq * 1.0)
        if answer:
            assert t.on_reply(seq, seq + rtt) is ReplyKind.ANSWER
        t.expire(seq + 0.9)
    s = t.snapshot(len(events) + 1.0)
    c = s.counters
    assert c.sent == len(events) == c.answered + c.lost + c.pending
    assert c.answered == sum(1 for a, _ in events if a)
    if events:
        assert s.loss_pct == pytest.approx(100.0 * c.lost / len(events))
