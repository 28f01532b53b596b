"""A reload that restarts the probes (another path set) keeps the measurements of the paths
whose probe config did not change: the soak saw the first path to answer win after every
such reload, because every path started again without data."""

from __future__ import annotations

from pathsteer.probe.engine import ProbeEngine
from pathsteer.telemetry import PathProbeConfig, PathState


def cfg(name: str, interval: float = 0.02) -> PathProbeConfig:
    return PathProbeConfig(name=name, interface=f"r-{name}", gateway="10.200.1.2", targets=("198.51.100.9",),
                           interval_s=interval)


def test_unchanged_paths_keep_their_trackers_and_changed_ones_start_afresh():
    old = ProbeEngine([cfg("p1"), cfg("p2"), cfg("p3")])  # constructing opens nothing
    p1 = old.paths[0]
    t = p1.targets["198.51.100.9"]
    for seq in range(1, 11):
        t.on_sent(seq, seq * 0.02)
        t.on_reply(seq, seq * 0.02 + 0.005)
    t.on_sent(11, 0.3)  # in flight when the engine is replaced
    p1.update(0.31)
    assert p1.state is PathState.UP
    new = ProbeEngine([cfg("p1"), cfg("p2", interval=0.05), cfg("p4")], previous=old.paths)
    assert new.paths[0] is p1 and p1.state is PathState.UP and t.answered == 10
    assert t.pending == 0 and t.sent_at(11) is None  # the new prober numbers its probes afresh
    assert t.on_reply(1, 0.5).value == "foreign"  # an old number is no answer of the new prober
    assert new.paths[1] is not old.paths[1] and new.paths[1].state is PathState.UNKNOWN  # changed config
    assert new.paths[2].state is PathState.UNKNOWN
