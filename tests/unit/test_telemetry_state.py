"""Path state machine: quorum, hysteresis, hold time."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pathsteer.errors import UsageError
from pathsteer.telemetry import PathProbeConfig, PathState, PathTracker, Thresholds, snapshot_of
from pathsteer.telemetry.state import PathFigures, next_path_state

TH = Thresholds(degraded_loss_pct=10, recover_loss_pct=2, degraded_rtt_s=0.1, recover_rtt_s=0.05, hold_s=1.0)


def figs(failing=0, quorum=1, loss=0.0, rtt=0.01, jitter=0.0, resolved=True):
    return PathFigures(failing, quorum, resolved, loss, rtt, jitter)


def test_unknown_until_resolved_then_immediate():
    assert next_path_state(PathState.UNKNOWN, 0.0, figs(resolved=False), TH, 0.1) == (PathState.UNKNOWN, 0.0)
    assert next_path_state(PathState.UNKNOWN, 0.0, figs(), TH, 0.1) == (PathState.UP, 0.1)


def test_quorum_down():
    assert next_path_state(PathState.UP, 0.0, figs(failing=1, quorum=2), TH, 5)[0] is PathState.UP
    assert next_path_state(PathState.UP, 0.0, figs(failing=2, quorum=2), TH, 5)[0] is PathState.DOWN


def test_degraded_hysteresis_on_loss_and_rtt():
    assert next_path_state(PathState.UP, 0, figs(loss=9.9), TH, 5)[0] is PathState.UP
    assert next_path_state(PathState.UP, 0, figs(loss=10), TH, 5)[0] is PathState.DEGRADED
    # between recover and degraded: stays where it is
    assert next_path_state(PathState.DEGRADED, 0, figs(loss=5), TH, 5)[0] is PathState.DEGRADED
    assert next_path_state(PathState.DEGRADED, 0, figs(loss=2), TH, 5)[0] is PathState.UP
    assert next_path_state(PathState.UP, 0, figs(rtt=0.1), TH, 5)[0] is PathState.DEGRADED
    assert next_path_state(PathState.DEGRADED, 0, figs(rtt=0.07), TH, 5)[0] is PathState.DEGRADED
    assert next_path_state(PathState.DEGRADED, 0, figs(rtt=0.05), TH, 5)[0] is PathState.UP


def test_hold_time_delays_change():
    assert next_path_state(PathState.UP, 0.0, figs(failing=1), TH, 0.5) == (PathState.UP, 0.0)
    assert next_path_state(PathState.UP, 0.0, figs(failing=1), TH, 1.0) == (PathState.DOWN, 1.0)


figures = st.builds(
    PathFigures,
    failing=st.integers(0, 3),
    quorum=st.integers(1, 3),
    resolved=st.booleans(),
    loss_pct=st.one_of(st.none(), st.floats(0, 100)),
    rtt_ewma_s=st.one_of(st.none(), st.floats(0, 0.3)),
    jitter_s=st.one_of(st.none(), st.floats(0, 0.1)),
)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.floats(0.001, 2.0), figures), max_size=100), st.floats(0, 3))
def test_never_flaps_faster_than_hold(steps, hold):
    th = Thresholds(degraded_loss_pct=10, recover_loss_pct=2, degraded_rtt_s=0.1, recover_rtt_s=0.05, hold_s=hold)
    state, since, now = PathState.UNKNOWN, 0.0, 0.0
    changes = []
    for dt, f in steps:
        now += dt
        new, new_since = next_path_state(state, since, f, th, now)
        if new is not state:
            assert new_since == now
            changes.append((state, now))
        else:
            assert new_since == since
        state, since = new, new_since
    assert all(prev is not PathState.UNKNOWN for prev, _ in changes[1:])  # never back to UNKNOWN
    for (_, t0), (_, t1) in zip(changes, changes[1:]):  # leaving UNKNOWN is immediate
        assert t1 - t0 >= hold - 1e-9


def drive(tracker, target, answers, t0, interval=0.1, rtt=0.01):
    """Send one probe per interval to ``target``; answered ones get ``rtt``."""
    now = t0
    tt = tracker.targets[target]
    for ok in answers:
        seq = tt.sent_count + 1
        tt.on_sent(seq, now)
        if ok:
            tt.on_reply(seq, now + rtt)
        now += interval
        tt.expire(now)
        tracker.update(now)
    return now


def test_path_quorum_two_of_three():
    cfg = PathProbeConfig(
        name="wan1", interface="eth0", targets=("192.0.2.1", "192.0.2.2", "192.0.2.3"),
        interval_s=0.1, timeout_s=0.05, thresholds=Thresholds(hold_s=0.0),
    )
    assert cfg.quorum_k == 2
    p = PathTracker(cfg, 0.0)
    for a in cfg.targets:
        drive(p, a, [True] * 5, 0.0)
    assert p.state is PathState.UP
    now = drive(p, "192.0.2.1", [False] * 10, 1.0)
    assert p.state is PathState.UP  # one failing target is not a quorum
    snap = snapshot_of([p], now)
    path = snap.path("wan1")
    assert path.failing == 1 and path.loss_pct == 0.0  # the failing target's loss is left out
    assert path.target("192.0.2.1").loss_pct > 50
    drive(p, "192.0.2.2", [False] * 10, 2.0)
    assert p.state is PathState.DOWN


def test_path_snapshot_is_frozen_and_typed():
    cfg = PathProbeConfig(name="p", interface="eth0", targets=("2001:db8::1",), interval_s=0.1, timeout_s=0.05)
    p = PathTracker(cfg, 0.0)
    drive(p, "2001:db8::1", [True, True, False, True], 0.0)
    s = snapshot_of([p], 1.0)
    assert s.taken_at == 1.0
    with pytest.raises(AttributeError):
        s.paths[0].state = PathState.DOWN  # type: ignore[misc]
    path = s.path("p")
    assert path.rtt.p50_s == pytest.approx(0.01) and path.loss_pct == 25.0
    assert [t.address for t in path.targets] == ["2001:db8::1"]


@pytest.mark.parametrize(
    "kwargs, text",
    [
        (dict(interval_s=0.005), "0.005 s is below the 10 ms minimum"),
        (dict(targets=("nope",)), "'nope' is not an IPv4 or IPv6 address"),
        (dict(gateway="2001:db8::1"), "gateway 2001:db8::1 is IPv6"),
        (dict(quorum=3), "quorum: 3 must be between 1 and 1"),
        (dict(port=0), "0 is not a port"),
        (dict(timeout_s=0), "timeout: 0 must be more than 0"),
    ],
)
def test_config_asserts_its_invariants(kwargs, text):
    """User input is validated by the config and the probe CLI (field paths, UsageError); a
    params object built wrong is a bug in its caller: ValueError, not a usage error."""
    base = dict(name="p", interface="eth0", targets=("192.0.2.1",))
    with pytest.raises(ValueError, match=text) as e:
        PathProbeConfig(**{**base, **kwargs})
    assert not isinstance(e.value, UsageError)


def test_thresholds_reject_inverted_hysteresis():
    with pytest.raises(ValueError):
        Thresholds(degraded_loss_pct=1, recover_loss_pct=5)
    with pytest.raises(ValueError):
        Thresholds(degraded_rtt_s=0.05, recover_rtt_s=0.1)


def test_one_lost_probe_in_a_small_window_does_not_degrade_a_path():
    """At start or at a 1 s interval the window is small: 1 lost of 4 is "25 %" but no
    evidence; two lost probes are (the path then degrades at 5 %)."""
    from pathsteer.telemetry.state import PathFigures, next_path_state
    th = Thresholds(hold_s=0.0)
    one = PathFigures(failing=0, quorum=1, resolved=True, loss_pct=25.0, rtt_ewma_s=0.01, jitter_s=0.0, lost=1)
    assert next_path_state(PathState.UP, 0.0, one, th, 1.0)[0] is PathState.UP
    two = PathFigures(failing=0, quorum=1, resolved=True, loss_pct=20.0, rtt_ewma_s=0.01, jitter_s=0.0, lost=2)
    assert next_path_state(PathState.UP, 0.0, two, th, 1.0)[0] is PathState.DEGRADED
    # once degraded, it recovers by the loss figure alone (hysteresis as before)
    back = PathFigures(failing=0, quorum=1, resolved=True, loss_pct=3.0, rtt_ewma_s=0.01, jitter_s=0.0, lost=1)
    assert next_path_state(PathState.DEGRADED, 0.0, back, th, 1.0)[0] is PathState.DEGRADED
