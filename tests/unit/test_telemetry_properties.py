"""Property tests over whole event sequences: the trackers' invariants hold whatever the
network does (reorder, duplicate, forge, delay)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from pathsteer.telemetry import PathProbeConfig, PathState, PathTracker, ReplyKind, Thresholds, WindowConfig
from pathsteer.telemetry.target import TargetTracker

TIMEOUT = 0.5

# events: ("send",) | ("reply", seq offset back from the last sent, delay) | ("forge", seq) | ("tick", dt)
events = st.lists(
    st.one_of(
        st.tuples(st.just("send")),
        st.tuples(st.just("reply"), st.integers(0, 5), st.floats(0, 1.0)),
        st.tuples(st.just("forge"), st.integers(-(2**40), 2**40)),
        st.tuples(st.just("tick"), st.floats(0.001, 0.3)),
    ),
    max_size=150,
)


@settings(max_examples=300)
@given(events)
def test_target_never_counts_a_probe_twice(evs):
    t = TargetTracker("192.0.2.1", timeout_s=TIMEOUT, window=WindowConfig(count=1000, seconds=1e9),
                      thresholds=Thresholds(), now=0.0)
    now, seq = 0.0, 0
    sent_at: dict[int, float] = {}
    answered: set[int] = set()
    for ev in evs:
        if ev[0] == "send":
            seq += 1
            sent_at[seq] = now
            t.on_sent(seq, now)
        elif ev[0] == "reply" and seq:
            s = max(1, seq - ev[1])
            kind = t.on_reply(s, max(now, sent_at[s] + ev[2]))
            if kind is ReplyKind.ANSWER:
                assert s not in answered and ev[2] <= TIMEOUT
                answered.add(s)
        elif ev[0] == "forge":
            if ev[1] > seq or ev[1] < 1:
                assert t.on_reply(ev[1], now) is ReplyKind.FOREIGN
        elif ev[0] == "tick":
            now += ev[1]
            t.expire(now)
    s = t.snapshot(now)
    c = s.counters
    assert c.answered == len(answered) and c.sent == seq
    assert c.answered + c.lost + c.pending == c.sent
    assert s.rtt.samples == c.answered
    if s.rtt.samples:
        assert 0 <= s.rtt.min_s <= s.rtt.max_s <= TIMEOUT


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 2), st.booleans(), st.floats(0.01, 0.2)), max_size=300),
       st.floats(0, 1.0))
def test_path_state_respects_quorum_and_hold(steps, hold):
    cfg = PathProbeConfig(name="p", interface="eth0", targets=("192.0.2.1", "192.0.2.2", "192.0.2.3"),
                          interval_s=0.01, timeout_s=0.05, quorum=2,
                          thresholds=Thresholds(hold_s=hold, target_down_after_lost=2, target_up_after_answered=2))
    p = PathTracker(cfg, 0.0)
    now = 0.0
    changes = []
    seqs = {a: 0 for a in cfg.targets}
    for idx, ok, dt in steps:
        addr = cfg.targets[idx]
        tt = p.targets[addr]
        seqs[addr] += 1
        tt.on_sent(seqs[addr], now)
        if ok:
            tt.on_reply(seqs[addr], now + 0.001)
        now += dt
        tt.expire(now)
        before = p.state
        after = p.update(now)
        failing = sum(t.failing for t in p.targets.values())
        if after is not before:
            changes.append(now)
            if after is PathState.DOWN:
                assert failing >= 2
            else:
                assert failing < 2
    for a, b in zip(changes, changes[1:]):  # leaving UNKNOWN is immediate, every later change waits
        assert b - a >= hold - 1e-9
