"""The delay line's per-packet decisions and control requests (no TUN, no root)."""

from __future__ import annotations

import random

import pytest

from pathsteer_lab.delayline import DelayLine, Direction
from pathsteer_lab.topology import Topology


def test_constant_delay():
    d = Direction("p1", "out", fd=-1, delay_ns=5_000_000)
    assert d.schedule(1_000, random.Random(1)) == 5_001_000


def test_jitter_is_bounded_and_never_reorders():
    rng = random.Random(7)
    d = Direction("p1", "out", fd=-1, delay_ns=10_000_000, jitter_ns=4_000_000)
    releases = [d.schedule(t * 100_000, rng) for t in range(5000)]   # a packet every 0.1 ms
    assert releases == sorted(releases)
    for t, r in enumerate(releases):
        assert r - t * 100_000 >= 6_000_000
    spaced = Direction("p1", "out", fd=-1, delay_ns=10_000_000, jitter_ns=4_000_000)
    delays = [spaced.schedule(t * 50_000_000, rng) - t * 50_000_000 for t in range(2000)]
    assert min(delays) >= 6_000_000 and max(delays) <= 14_000_000
    assert 9_700_000 < sum(delays) / len(delays) < 10_300_000


def test_loss_fraction():
    rng = random.Random(3)
    d = Direction("p1", "out", fd=-1, loss=0.05)
    lost = sum(d.schedule(0, rng) is None for _ in range(20000))
    assert 0.04 < lost / 20000 < 0.06 and d.lost == lost and d.received == 20000


@pytest.mark.parametrize("loss, points", [(0.01, 0.5), (0.05, 1.0), (0.2, 2.0)])
@pytest.mark.parametrize("seed", range(20))
def test_loss_over_1000_packets_stays_close(loss, points, seed):
    """Evenly spread loss: every window of 1000 packets is within ``points`` of the setting
    (Bernoulli draws: one standard deviation is 0.3 / 0.7 / 1.3 points, so ±2 fails often)."""
    rng = random.Random(seed)
    d = Direction("p1", "out", fd=-1, loss=loss)
    drops = [d.schedule(0, rng) is None for _ in range(5000)]
    for start in range(0, 5000, 1000):
        assert abs(100 * sum(drops[start:start + 1000]) / 1000 - 100 * loss) <= points


def test_loss_is_random_not_periodic():
    rng = random.Random(1)
    d = Direction("p1", "out", fd=-1, loss=0.05)
    drops = [i for i in range(20000) if d.schedule(0, rng) is None]
    gaps = {b - a for a, b in zip(drops, drops[1:])}
    assert min(gaps) >= 10 and max(gaps) <= 30 and len(gaps) > 10


def test_full_loss_drops_everything():
    d = Direction("p1", "out", fd=-1, loss=1.0)
    assert all(d.schedule(0, random.Random(0)) is None for _ in range(100))


def test_set_resets_the_order_clamp_so_a_new_delay_applies_at_once():
    line = DelayLine(Topology.plan("demo", 2))
    out, inn = Direction("p1", "out", fd=-1), Direction("p1", "in", fd=-2)
    line.by_path["p1"] = (out, inn)
    assert line.handle({"op": "set", "path": "p1", "delay": 0.06, "jitter": 0, "loss": 0})["ok"]
    rng = random.Random(1)
    assert out.schedule(0, rng) == 60_000_000
    line.handle({"op": "set", "path": "p1", "delay": 0.005, "jitter": 0, "loss": 0})
    assert out.schedule(1_000_000, rng) == 6_000_000          # not held behind the 60 ms packet
    assert not line.handle({"op": "set", "path": "p9"})["ok"]
    assert not line.handle({"op": "bogus"})["ok"]
    stats = line.handle({"op": "stats"})
    assert stats["paths"]["p1"]["out"]["received"] == 2
