"""`send_offset`: paths spread over their interval in groups at least SEND_SPACING_S apart."""

from __future__ import annotations

import pytest

from pathsteer.probe.engine import SEND_SPACING_S, send_offset


@pytest.mark.parametrize("paths,interval,groups", [(64, 0.1, 4), (64, 1.0, 40), (3, 1.0, 3), (1, 1.0, 1),
                                                   (3, 0.02, 1), (10, 0.025, 1), (2, 0.05, 2)])
def test_groups_fit_the_interval_and_are_spaced(paths, interval, groups):
    offsets = [send_offset(i, paths, interval) for i in range(paths)]
    distinct = sorted(set(offsets))
    assert len(distinct) == groups
    assert distinct[0] == 0.0 and all(0.0 <= o < interval for o in offsets)
    gaps = [b - a for a, b in zip(distinct, distinct[1:])]
    assert all(g >= SEND_SPACING_S - 1e-9 for g in gaps)
    assert offsets == sorted(offsets)  # config order kept: earlier paths never send later
    sizes = [offsets.count(o) for o in distinct]
    assert max(sizes) - min(sizes) <= 1  # groups as even as the count allows
