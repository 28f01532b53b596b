"""weighted: shares from capacity, headroom and latency; spill-over; damping; flows kept."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from pathsteer.routes import NextHop
from pathsteer.policy import ChangeKind, PolicyKind, WeightedParams
from pathsteer.policy.weighted import shares_of, to_weights
from pathsteer.telemetry.snapshot import PathState

from test_policy_fixtures import Driver, Load, params, path

MBIT = 1_000_000
CAPS = {"p1": 100 * MBIT, "p2": 50 * MBIT, "p3": 50 * MBIT}
DOWN = dict(state=PathState.DOWN, failing=3)


def weighted(hold_down_s: float = 1.0, caps=CAPS, **kw) -> Driver:
    return Driver(params(PolicyKind.WEIGHTED, ("p1", "p2", "p3"), capacities=caps, hold_down_s=hold_down_s, **kw))


def up3(r1=20.0, r2=20.0, r3=20.0, **kw):
    return path("p1", r1, **kw), path("p2", r2, **kw), path("p3", r3, **kw)


def util(**fractions: float) -> dict[str, Load]:
    return {p: Load(in_bps=0.0, out_bps=f * CAPS[p]) for p, f in fractions.items()}


def weights(d: Driver) -> dict[str, int]:
    return {nh.path: nh.weight for nh in d.decisions[-1].desired.routes[next(iter(d.decisions[-1].desired.routes))]
            .nexthops}


def moved_fraction(before: tuple[NextHop, ...], after: tuple[NextHop, ...], buckets: int = 4096) -> float:
    """Flows moved by a weight change in a resilient bucket table (the kernel's resilient
    nexthop groups, Maglev-like tables): buckets stay with their next hop unless it holds more
    than its new share; freed buckets go to next hops below theirs."""
    def wanted(hops):
        total = sum(nh.weight for nh in hops)
        counts = {nh.path: nh.weight * buckets // total for nh in hops}
        for nh in hops[: buckets - sum(counts.values())]:
            counts[nh.path] += 1
        return counts
    old, new = wanted(before), wanted(after)
    table = [p for p, n in old.items() for _ in range(n)]
    held = dict.fromkeys(new, 0)
    free = []
    for i, p in enumerate(table):
        if p in new and held[p] < new[p]:
            held[p] += 1
        else:
            free.append(i)
    for p in new:
        while held[p] < new[p]:
            table[free.pop()] = p
            held[p] += 1
    return sum(1 for a, b in zip([p for p, n in old.items() for _ in range(n)], table) if a != b) / buckets


def test_idle_paths_of_100_50_50_mbit_share_50_25_25():
    d = weighted()
    d(0.0, *up3())
    assert weights(d) == {"p1": 50, "p2": 25, "p3": 25}
    assert d.route().shares() == {"p1": 0.5, "p2": 0.25, "p3": 0.25}
    assert d.route().reason == ("first measurement: shares p1 50%, p2 25%, p3 25% (p1 100 Mbit, rtt 20.0 ms; "
                                "p2 50 Mbit, rtt 20.0 ms; p3 50 Mbit, rtt 20.0 ms)")


def test_equally_loaded_or_saturated_paths_keep_capacity_shares():
    for u in (0.3, 0.85, 1.0):
        d = weighted()
        d(0.0, *up3(), load=util(p1=u, p2=u, p3=u))
        assert weights(d) == {"p1": 50, "p2": 25, "p3": 25}, u


def test_latency_lowers_a_slow_paths_share():
    d = weighted()
    d(0.0, *up3(10.0, 30.0, 10.0))  # p2: (10 + 10) / (30 + 10) = half the weight
    assert weights(d) == {"p1": 57, "p2": 14, "p3": 29}


def test_latency_can_be_ignored():
    d = weighted(weighted=WeightedParams(latency_scale_s=None))
    d(0.0, *up3(10.0, 30.0, 10.0))
    assert weights(d) == {"p1": 50, "p2": 25, "p3": 25}


def test_paths_without_capacity_count_as_the_mean_of_the_known_ones():
    d = weighted(caps={"p1": 100 * MBIT, "p2": 50 * MBIT})
    d(0.0, *up3())
    assert weights(d) == {"p1": 45, "p2": 22, "p3": 33}  # 100 : 50 : 75
    d = weighted(caps={})
    d(0.0, *up3())
    assert weights(d) == {"p1": 34, "p2": 33, "p3": 33}


def test_spill_over_when_a_path_passes_its_ceiling_after_hold_down():
    d = weighted(hold_down_s=1.0)
    d(0.0, *up3())
    load = util(p1=0.97, p2=0.3, p3=0.3)
    d(0.5, *up3(), load=load)
    assert weights(d) == {"p1": 50, "p2": 25, "p3": 25}
    assert d.route().pending.startswith("rebalance to p1 50%→5%, p2 25%→48%, p3 25%→48% (spill-over: p1 "
                                        "utilization 97% > ceiling 90%, toward equal utilization (mean 64%)")
    d(1.5, *up3(), load=load)  # at most max_step (20 points) per change
    assert weights(d) == {"p1": 30, "p2": 35, "p3": 35}
    r = d.route()
    assert r.kind is ChangeKind.REBALANCED
    assert r.reason.startswith("rebalanced: shares p1 50%→30%, p2 25%→35%, p3 25%→35% (spill-over: p1 utilization "
                               "97% > ceiling 90%, toward equal utilization (mean 64%); shift 45% > min 5% for 1.0 s, "
                               "hold_down 1 s, this step at most 20%; p1 100 Mbit, utilization 97% > ceiling 90%")
    d(2.0, *up3(), load=load)
    assert weights(d) == {"p1": 30, "p2": 35, "p3": 35}
    d(3.0, *up3(), load=load)  # the load did not follow the change: no further step
    assert weights(d) == {"p1": 30, "p2": 35, "p3": 35}
    assert "held: the load has not followed the last change yet (p1 50%→30%, p2 25%→35%, p3 25%→35% 1.5 s " \
           "ago: utilization moved 0% of the" in d.route().pending
    # The load follows (p2 and p3 carry 35/25 of what they did), p1 is still past its ceiling:
    # the next step is wanted from now on, and taken after hold_down.
    followed = util(p1=0.92, p2=0.42, p3=0.42)
    d(3.5, *up3(), load=followed)
    assert weights(d) == {"p1": 30, "p2": 35, "p3": 35}
    assert d.route().pending.endswith("for 0.0 s of hold_down 1 s")
    d(4.5, *up3(), load=followed)
    assert weights(d)["p1"] < 30


def test_max_step_one_jump_when_allowed():
    d = weighted(hold_down_s=0.0, weighted=WeightedParams(max_step=1.0))
    d(0.0, *up3())
    d(1.0, *up3(), load=util(p1=0.97, p2=0.3, p3=0.3))
    assert weights(d) == {"p1": 5, "p2": 48, "p3": 47}


def test_small_load_changes_are_damped():
    d = weighted(hold_down_s=0.0)
    d(0.0, *up3())
    for i, u in enumerate((0.1, 0.2, 0.15, 0.2, 0.12)):  # p1 busier by a little: shares move < 5 points
        d(1.0 + i, *up3(), load=util(p1=u, p2=0.1, p3=0.1))
        assert weights(d) == {"p1": 50, "p2": 25, "p3": 25}
    assert len(d.events) == 1


def test_a_rebalance_that_stops_being_wanted_is_not_made():
    d = weighted(hold_down_s=1.0)
    d(0.0, *up3())
    d(0.5, *up3(), load=util(p1=0.97, p2=0.3, p3=0.3))
    d(1.0, *up3(), load=util(p1=0.3, p2=0.3, p3=0.3))
    d(1.6, *up3(), load=util(p1=0.97, p2=0.3, p3=0.3))
    assert weights(d) == {"p1": 50, "p2": 25, "p3": 25}
    d(2.6, *up3(), load=util(p1=0.97, p2=0.3, p3=0.3))
    assert weights(d) == {"p1": 30, "p2": 35, "p3": 35}


def test_a_path_that_fails_leaves_at_once_and_the_others_keep_their_weights():
    d = weighted(hold_down_s=5.0)
    d(0.0, *up3())
    before = d.decisions[-1].desired.routes[d.route().prefix].nexthops
    d(1.0, path("p1"), path("p2", **DOWN), path("p3"))
    assert weights(d) == {"p1": 50, "p3": 25}
    e = d.events[-1]
    assert e.kind is ChangeKind.LEFT and e.at == 1.0
    assert e.reason == ("p2 down (3/3 targets failing); p2 left the set, the others keep their weights "
                        "(p1 67%, p3 33%)")
    # Only p2's flows move: flows on the surviving paths stay where they are.
    assert moved_fraction(before, e.after) == pytest.approx(0.25, abs=0.001)
    d(2.0, path("p1"), path("p2", **DOWN), path("p3"))
    assert len(d.events) == 2  # 50:25 is already the target for p1 and p3: no rebalance


def test_a_recovered_path_joins_after_hold_down():
    d = weighted(hold_down_s=2.0)
    d(0.0, *up3())
    d(1.0, path("p1"), path("p2", **DOWN), path("p3"))
    d(2.0, *up3())
    d(3.9, *up3())
    assert set(weights(d)) == {"p1", "p3"}
    assert d.route().pending == "p2 joins after being eligible for hold_down 2 s (so far 1.9 s)"
    d(4.0, *up3())
    assert weights(d) == {"p1": 50, "p2": 25, "p3": 25}
    assert d.route().kind is ChangeKind.JOINED
    assert d.route().reason.startswith("p2 eligible for 2.0 s (hold_down 2 s); shares p1 67%→50%, p2 0%→25%, "
                                       "p3 33%→25%")


def test_all_down_keeps_the_least_bad_single_path():
    d = weighted()
    d(0.0, *up3())
    d(1.0, path("p1", **DOWN), path("p2", loss=60.0, state=PathState.DOWN, failing=2), path("p3", **DOWN))
    assert len(d.paths()) == 1 and d.route().kind is ChangeKind.LEAST_BAD


def test_weight_change_moves_no_more_flows_than_the_share_change():
    """A rebalance moves (with a resilient table) exactly as many flows as the shares change:
    the total variation between old and new shares, within rounding."""
    d = weighted(hold_down_s=0.0)
    d(0.0, *up3())
    for t, load in enumerate([util(p1=0.97, p2=0.3, p3=0.3), util(p1=0.5, p2=0.9, p3=0.2),
                              util(p1=0.1, p2=0.1, p3=0.1)], start=1):
        before = d.decisions[-1].desired.routes[d.route().prefix].nexthops
        d(float(t), *up3(), load=load)
        after = d.decisions[-1].desired.routes[d.route().prefix].nexthops
        old, new = shares_of(before), shares_of(after)
        change = sum(max(0.0, new[p] - old.get(p, 0.0)) for p in new)
        assert moved_fraction(before, after) <= change + 0.002


@pytest.mark.parametrize("shares", [{"a": 1.0}, {"a": 0.5, "b": 0.25, "c": 0.25}, {"a": 0.999, "b": 0.001},
                                    {f"p{i}": 1 / 7 for i in range(7)}])
def test_to_weights_in_kernel_range_and_summing_to_100(shares):
    hops = to_weights(shares)
    assert [nh.path for nh in hops] == list(shares)
    assert all(1 <= nh.weight <= 255 for nh in hops)
    assert sum(nh.weight for nh in hops) == 100 or min(nh.weight for nh in hops) == 1


def closed_loop(demand_bps: float, external: dict[str, float], seconds: float = 30.0, tick: float = 0.1,
                external_until: float = math.inf):
    """Weighted steering against a fluid model of its own traffic: path i carries share_i ×
    demand plus ``external`` bit/s (until ``external_until``), up to its capacity (what the
    counters would then measure)."""
    d = weighted(hold_down_s=1.0)
    d(0.0, *up3())
    t = 0.0
    while t < seconds:
        t = round(t + tick, 6)
        shares = d.route().shares()
        ext = external if t < external_until else {}
        load = {p: Load(out_bps=min(CAPS[p], shares.get(p, 0.0) * demand_bps + ext.get(p, 0.0))) for p in CAPS}
        d(t, *up3(), load=load)
    return d


def test_a_full_path_reading_a_little_under_the_ceiling_is_not_room_to_spill_over_to():
    """Fails before SPILL_ROOM: the lab (32 TCP flows over 100/50/50 Mbit, every path full) read
    p1 at 85 % beside 98 % and 96 %; that spilled 9 points of flows onto p1, then more on the
    next noisy reading (50/25/25 → 69/17/14 in a minute). Within 10 points of the ceiling a
    path is full, not room; 20 points under it is room."""
    d = weighted(hold_down_s=1.0)
    d(0.0, *up3())
    for t in range(1, 30):
        d(float(t), *up3(), load=util(p1=(0.85, 0.81, 0.88)[t % 3], p2=0.98, p3=0.96))
    assert weights(d) == {"p1": 50, "p2": 25, "p3": 25} and len(d.events) == 1
    d(30.0, *up3(), load=util(p1=0.7, p2=0.98, p3=0.96))
    d(31.0, *up3(), load=util(p1=0.7, p2=0.98, p3=0.96))
    assert weights(d)["p1"] > 50 and "spill-over" in d.events[-1].reason


def test_a_full_path_whose_flows_backed_off_for_a_second_is_not_room_until_it_stays_under():
    """Fails before spill-over looked at the last 5 s: the lab (32 TCP flows over 100/50/50
    Mbit) read p1 at 74 % for two seconds beside 99 % and 99 % (its flows backed off together
    after a tail drop); that spilled a fifth of the flows onto p1, and with every path full
    again nothing moved them back (50/25/25 → 69/16/15 for the rest of the run)."""
    def loads(p1: float, p1_recent: float) -> dict[str, Load]:
        out = util(p2=0.99, p3=0.99)
        out["p1"] = Load(out_bps=p1 * CAPS["p1"], recent_peak_bps=p1_recent * CAPS["p1"])
        return out
    d = weighted(hold_down_s=1.0)
    d(0.0, *up3())
    for t in (1.0, 2.0, 3.0):  # the dip: a full path's figure, 98 % a second before
        d(t, *up3(), load=loads(0.74, 0.98))
    assert weights(d) == {"p1": 50, "p2": 25, "p3": 25} and len(d.events) == 1, d.route().pending
    for t in (4.0, 5.0):  # p1 stayed under for the last 5 s: room, spilled into after hold_down
        d(t, *up3(), load=loads(0.6, 0.62))
    assert weights(d)["p1"] > 50 and "spill-over" in d.events[-1].reason


def test_closed_loop_saturated_by_elastic_flows_keeps_capacity_shares():
    d = closed_loop(demand_bps=1e9, external={})
    assert weights(d) == {"p1": 50, "p2": 25, "p3": 25} and len(d.events) == 1


@pytest.mark.parametrize("external_mbit", [50, 70, 95])
def test_closed_loop_spills_over_from_a_busy_path_and_settles(external_mbit):
    """p1 carries someone else's traffic: ours spills over to p2 and p3 in a few steps, then stays."""
    d = closed_loop(demand_bps=120 * MBIT, external={"p1": external_mbit * MBIT}, seconds=30.0)
    assert 1 < len(d.events) <= 5
    assert [e for e in d.events if e.at > 6.0] == []  # settled within a few hold_downs
    shares = d.route().shares()
    assert shares["p1"] <= 0.30 and abs(shares["p2"] - shares["p3"]) <= 0.011  # 1 point of rounding


def test_closed_loop_returns_to_capacity_shares_when_the_other_traffic_ends():
    d = closed_loop(demand_bps=60 * MBIT, external={"p1": 90 * MBIT}, seconds=40.0, external_until=15.0)
    assert d.route().shares()["p1"] < 0.5 or any(e.kind is ChangeKind.REBALANCED and e.at < 15 for e in d.events)
    back = [e for e in d.events if e.at > 15.0]
    assert back and all("back toward the capacity and latency shares" in e.reason for e in back)
    assert abs(d.route().shares()["p1"] - 0.5) <= 0.05 + 0.01


def test_closed_loop_demand_above_capacity_keeps_shares_and_never_flaps():
    for demand in (150, 170, 250):
        d = closed_loop(demand_bps=demand * MBIT, external={}, seconds=20.0)
        assert len(d.events) == 1, [e.reason for e in d.events]


def test_spill_over_leaves_a_busy_path_at_least_min_free_of_its_base_share():
    d = closed_loop(demand_bps=60 * MBIT, external={"p1": 99 * MBIT}, seconds=30.0)
    assert 0.05 <= d.route().shares()["p1"] <= 0.11  # min_free 0.1 × base 50 % (then min_shift stops it)
    assert [e for e in d.events if e.at > 10.0] == []


def test_a_saturated_paths_rtt_is_its_queue_not_its_latency():
    """p1 rejoins idle (4 ms) beside p2 and p3, saturated by our own flows (their queues: 60 ms,
    their base RTT still 4 ms). Their base RTT counts: p1 joins with its capacity share, not 84 %;
    without a base RTT yet, their RTT is left out (factor 1) to the same end."""
    for base in (4.0, None):
        def loaded(rtt):
            p = path("p1", 4.0), path("p2", rtt, base_ms=base), path("p3", rtt, base_ms=base)
            return p if base is not None else (p[0], *(replace(x, base_rtt_s=None) for x in p[1:]))
        d = weighted(hold_down_s=1.0)
        d(0.0, *up3(4.0, 4.0, 4.0))
        d(1.0, path("p1", 4.0, **DOWN), *loaded(60.0)[1:], load=util(p1=0.0, p2=1.1, p3=1.1))
        assert set(weights(d)) == {"p2", "p3"}
        d(2.0, *loaded(60.0), load=util(p1=0.0, p2=1.1, p3=1.1))
        d(3.0, *loaded(60.0), load=util(p1=0.0, p2=1.1, p3=1.1))
        assert d.route().kind is ChangeKind.JOINED
        assert weights(d) == {"p1": 50, "p2": 25, "p3": 25}, base
    # Unloaded, the same RTTs are latency: p1 gets more.
    d2 = weighted()
    d2(0.0, *up3(4.0, 60.0, 60.0))
    assert weights(d2)["p1"] > 80


def test_queues_that_flows_build_while_they_start_do_not_move_shares():
    """Fails before base RTTs counted for loaded paths. The lab: 32 TCP flows start over
    100/50/50 Mbit paths of 4 ms; within a second every path's queue lifts its RTT (p1 87 ms,
    p2 41 ms, p3 68 ms: their buffers, not their latency) while the 1 s utilization figure still
    reads 41-55 %; weighing shares by those RTTs moved 50/25/25 to 39/37/24 for good."""
    d = weighted(hold_down_s=1.0)
    d(0.0, *up3(4.0, 4.0, 4.0))
    assert weights(d) == {"p1": 50, "p2": 25, "p3": 25}
    starting = (path("p1", 87.0, base_ms=4.0), path("p2", 41.0, base_ms=4.0), path("p3", 68.0, base_ms=4.0))
    for t in (0.5, 1.0, 1.5, 2.0, 3.0):
        d(t, *starting, load=util(p1=0.48, p2=0.41, p3=0.52))
        assert weights(d) == {"p1": 50, "p2": 25, "p3": 25}, d.route().pending
    # A path idle beside them still counts with its RTT: slower than the others' base, less share.
    d2 = weighted(hold_down_s=0.0)
    d2(0.0, path("p1", 87.0, base_ms=4.0), path("p2", 30.0, base_ms=4.0), path("p3", 4.0),
       load=util(p1=0.5, p2=0.0, p3=0.5))
    assert weights(d2) == {"p1": 60, "p2": 10, "p3": 30}  # 100 : 50 × (4 + 10) / (30 + 10) : 50
    assert "p1 100 Mbit, utilization 50%, rtt 87.0 ms (loaded: base rtt 4.0 ms counts)" in d2.route().reason


def test_a_path_degraded_by_its_own_load_stays_in_the_set_and_leaves_when_idle():
    """Fails before the congestion rule: TCP fills a link until its queue drops, and the probes
    in that queue see the same loss. The lab (p3 at 98 % of 100 Mbit, probe loss 5 %) took p3
    out, and p1, p2 went to 116 % and 172 %: a flap made of our own traffic."""
    lossy = dict(state=PathState.DEGRADED, loss=5.0)
    d = weighted()
    d(0.0, *up3(), load=util(p1=0.98, p2=0.98, p3=0.98))
    d(1.0, path("p1"), path("p2"), path("p3", **lossy), load=util(p1=0.98, p2=0.98, p3=0.98))
    assert set(weights(d)) == {"p1", "p2", "p3"}
    c = d.route().candidates[2]
    assert c.eligible and c.tier == 0 and "its own load" in c.why_not
    # spill-over lowered its load to 75 %: still congested (from 70 %), still in
    d(2.0, path("p1"), path("p2"), path("p3", **lossy), load=util(p1=0.9, p2=0.9, p3=0.75))
    assert "p3" in weights(d)
    # the same loss on an idle path is the path's own fault: second tier, out of the set
    d(3.0, path("p1"), path("p2"), path("p3", **lossy), load=util(p1=0.5, p2=0.5, p3=0.1))
    assert set(weights(d)) == {"p1", "p2"}
    assert d.route().candidates[2].tier == 1


def test_a_path_congested_within_its_loss_window_stays_though_its_load_has_just_fallen():
    """Fails before the peak: CI (64 flows on 100/50/50 Mbit) had p1 at 74 % of its capacity,
    then DEGRADED (loss 3.6 %) a second later at a lower 1 s figure: it left the set, its flows
    went to p2/p3 (already at 121 %/109 %), and it came back and left again. The loss is from
    the queue of the last seconds, so the peak over the loss window decides."""
    lossy = dict(state=PathState.DEGRADED, loss=5.0)
    d = weighted()
    d(0.0, *up3(), load=util(p1=0.98, p2=0.98, p3=0.98))
    now = {"p1": Load(out_bps=0.3 * CAPS["p1"], peak_bps=0.74 * CAPS["p1"]),
           "p2": Load(out_bps=1.2 * CAPS["p2"]), "p3": Load(out_bps=1.1 * CAPS["p3"])}
    d(1.0, path("p1", **lossy), path("p2"), path("p3"), load=now)
    assert set(weights(d)) == {"p1", "p2", "p3"}
    why = d.route().candidates[0].why_not
    assert "utilization 30%, 74% within its loss window" in why and "its own load" in why
    # once the peak has aged out of the memory too, the loss is the path's own fault
    now["p1"] = Load(out_bps=0.3 * CAPS["p1"], peak_bps=0.3 * CAPS["p1"])
    d(2.0, path("p1", **lossy), path("p2"), path("p3"), load=now)
    assert set(weights(d)) == {"p2", "p3"}


def test_a_congested_path_still_leaves_on_its_sla_and_when_down():
    from pathsteer.policy import Sla
    d = weighted(sla=Sla(max_loss_pct=2.0))
    full = util(p1=0.98, p2=0.98, p3=0.98)
    d(0.0, *up3(), load=full)
    d(1.0, path("p1"), path("p2"), path("p3", state=PathState.DEGRADED, loss=5.0), load=full)
    assert "p3" not in weights(d)
    d = weighted()
    d(0.0, *up3(), load=full)
    d(1.0, path("p1"), path("p2"), path("p3", **DOWN), load=full)
    assert "p3" not in weights(d)
