"""The policy on telemetry from the real trackers: simulated probes at a 20 ms interval over
paths with jitter, slowdowns and failures, a decision per tick as the daemon makes them."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable

import pytest

from pathsteer.policy import ChangeKind, PolicyKind, PolicyState, RttStatistic, decide
from pathsteer.telemetry import PathProbeConfig, PathState, PathTracker, Thresholds, WindowConfig
from pathsteer.telemetry.path import snapshot_of

from test_policy_fixtures import PREFIX, params

TICK = 0.020
RttOf = Callable[[float, random.Random], float | None]  # (send time, rng) -> rtt, None: lost


def simulate(rtts: dict[str, RttOf], seconds: float, p, *, seed: int = 1, timeout_s: float = 1.0):
    """Run ``seconds`` of probing every path's two targets each TICK; decide after every tick.
    Returns [(now, Decision)]."""
    rng = random.Random(seed)
    trackers = [PathTracker(PathProbeConfig(name, "eth0", ("192.0.2.1", "192.0.2.2"), interval_s=TICK,
                                            timeout_s=timeout_s, window=WindowConfig(count=100, seconds=60),
                                            thresholds=Thresholds(hold_s=0.1)), now=0.0)
                for name in rtts]
    replies: list[tuple[float, int, str, str, int]] = []  # (at, tie, path, target, seq)
    state, out, seq, tie = PolicyState(), [], 0, 0
    for k in range(1, int(round(seconds / TICK)) + 1):
        now = k * TICK
        sent = now - TICK
        for tr in trackers:
            for addr, target in tr.targets.items():
                seq += 1
                target.on_sent(seq, sent)
                rtt = rtts[tr.name](sent, rng)
                if rtt is not None:
                    tie += 1
                    heapq.heappush(replies, (sent + rtt, tie, tr.name, addr, seq))
        while replies and replies[0][0] <= now:
            at, _, name, addr, s = heapq.heappop(replies)
            next(t for t in trackers if t.name == name).targets[addr].on_reply(s, at)
        for tr in trackers:
            for target in tr.targets.values():
                target.expire(now)
        d = decide(now, snapshot_of(trackers, now), None, p, state)
        state = d.state
        out.append((now, d))
    return out


def moves(run, *, after_first_measure: bool = True):
    """Events that moved traffic after the first choice made from telemetry."""
    evs = [e for _, d in run for e in d.events]
    if after_first_measure:
        evs = [e for e in evs if e.kind not in (ChangeKind.STARTUP, ChangeKind.MEASURED)]
    return evs


def jittery(base_s: float, spread_s: float) -> RttOf:
    return lambda t, rng: base_s + rng.uniform(-spread_s, spread_s)


def steady(rtt_s: float) -> RttOf:
    return lambda t, rng: rtt_s + rng.uniform(-0.0002, 0.0002)


@pytest.mark.parametrize("spread_ms", [4, 8])  # ±4 ms on the RTT; ±4 ms each way (±8 on the RTT)
@pytest.mark.parametrize("seed", range(5))
def test_two_equal_paths_with_jitter_switch_at_most_once_in_20s(seed, spread_ms):
    run = simulate({"p1": jittery(0.020, spread_ms / 1e3), "p2": jittery(0.020, spread_ms / 1e3)}, 20.0,
                   params(), seed=seed)
    assert len(moves(run)) <= 1, [e.reason for e in moves(run)]


@pytest.mark.parametrize("statistic", list(RttStatistic))
def test_jitter_with_every_rtt_statistic(statistic):
    run = simulate({"p1": jittery(0.020, 0.004), "p2": jittery(0.020, 0.004)}, 20.0,
                   params(rtt_statistic=statistic), seed=7)
    assert len(moves(run)) <= 1


def test_jitter_with_occasional_big_spikes_does_not_move_traffic():
    """1 probe in 50 takes 300 ms more: the robust RTT (EWMA capped at p95) ignores them."""
    def spiky(t, rng):
        return 0.020 + rng.uniform(-0.004, 0.004) + (0.300 if rng.random() < 0.02 else 0.0)
    run = simulate({"p1": spiky, "p2": spiky}, 20.0, params(), seed=3)
    assert len(moves(run)) <= 1


def _slow_then_recover(t, rng):
    return 0.080 if 5.0 <= t < 10.0 else 0.010  # 5 ms one-way, then 40 ms, then 5 ms again


@pytest.mark.parametrize("hold_down", [0.5, 1.0, 2.0])
def test_a_path_that_gets_slower_is_left_within_hold_down_and_traffic_fails_back(hold_down):
    run = simulate({"p1": _slow_then_recover, "p2": steady(0.030)}, 15.0, params(hold_down_s=hold_down))
    evs = moves(run)
    assert [(e.before[0].path, e.after[0].path, e.kind) for e in evs] == [
        ("p1", "p2", ChangeKind.BETTER), ("p2", "p1", ChangeKind.BETTER)]
    left, back = evs
    # The RTT shows the change a few probes after it (the first slow reply is 80 ms late).
    assert 5.0 + hold_down <= left.at <= 5.0 + hold_down + 0.25, left.at
    assert 10.0 + hold_down <= back.at <= 10.0 + hold_down + 0.25, back.at
    assert "p2 better than p1 by" in left.reason and f"hold_down {hold_down:g} s" in left.reason


def test_p50_statistic_is_slower_to_see_the_slowdown():
    """Why the default is not p50: it moves only when half the window has changed."""
    robust = moves(simulate({"p1": _slow_then_recover, "p2": steady(0.030)}, 9.0, params()))
    p50 = moves(simulate({"p1": _slow_then_recover, "p2": steady(0.030)}, 9.0,
                         params(rtt_statistic=RttStatistic.P50)))
    assert robust[0].at < p50[0].at - 0.5


def _dies_at_5(t, rng):
    return None if t >= 5.0 else 0.010


@pytest.mark.parametrize("policy", [PolicyKind.LOWEST_LATENCY, PolicyKind.FAILOVER])
def test_hard_failure_moves_traffic_in_the_call_that_first_sees_down(policy):
    run = simulate({"p1": _dies_at_5, "p2": steady(0.030)}, 8.0, params(policy), timeout_s=0.05)
    first_down = next(now for now, d in run
                      if next(c for c in d.route(PREFIX).candidates if c.path == "p1").state is PathState.DOWN)
    evs = moves(run)
    assert len(evs) == 1 and evs[0].at == first_down and evs[0].kind is ChangeKind.LEFT
    assert evs[0].reason.startswith("p1 down (2/2 targets failing); moved to p2")
    # 3 lost probes, the last one's 50 ms timeout, and the tick that reads it
    assert first_down - 5.0 <= 3 * TICK + 0.05 + TICK + 1e-9
