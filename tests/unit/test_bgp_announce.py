"""What is announced for a destination (MED, communities) and when (damping): pure, no root."""

from __future__ import annotations

import ipaddress

import pytest

from pathsteer.bgp.announce import AnnounceSettings, Announcer, group, med_of, wanted
from pathsteer.policy import Candidate, ChangeKind, Eligibility, PolicyKind, RouteStatus
from pathsteer.routes import NextHop
from pathsteer.telemetry.snapshot import PathState

P = ipaddress.ip_network("198.51.100.0/24")
S = AnnounceSettings(local_as=65001)
NUMBERS = {"p1": 1, "p2": 2}


def cand(path: str, rtt_ms: float | None, *, elig=Eligibility.ELIGIBLE, loss=0.0, samples=10, why=None) -> Candidate:
    state = {Eligibility.DOWN: PathState.DOWN, Eligibility.DEGRADED: PathState.DEGRADED}.get(elig, PathState.UP)
    return Candidate(path, 0, state, None if rtt_ms is None else rtt_ms / 1e3, loss, 0.0, None, None, elig, why,
                     samples=samples, min_samples=5)


def route(*cands: Candidate, via=("p1",), prefix=P) -> RouteStatus:
    return RouteStatus(prefix, PolicyKind.LOWEST_LATENCY, tuple(NextHop(p) for p in via), 0.0, ChangeKind.MEASURED,
                       "x", None, cands)


def test_med_is_rtt_per_100us_plus_loss_and_capped():
    assert med_of(0.0125, 0.0, S) == 125
    assert med_of(0.0125, 2.0, S) == 325
    assert med_of(10.0, 0.0, S) == 65535
    assert med_of(-1.0, -1.0, S) == 0


def test_the_best_eligible_chosen_path_is_announced_with_its_figures():
    ad, why = wanted(route(cand("p1", 12.5, loss=1.0), cand("p2", 3.0), via=("p1",)), NUMBERS, S)
    assert why == "" and ad.path == "p1" and ad.med == 225  # p2 is faster but not chosen: the chosen path speaks
    assert ad.large_communities == ((65001, 1, 1), (65001, 2, 12500), (65001, 3, 10000), (65001, 4, 1))
    ad, _ = wanted(route(cand("p1", 12.5), cand("p2", 3.0), via=("p1", "p2")), NUMBERS, S)
    assert ad.path == "p2" and ad.med == 30  # weighted over both: the best of them


def test_degraded_path_is_marked_and_configured_communities_follow():
    s = AnnounceSettings(local_as=65001, communities=((65001, 100),), large_communities=((65001, 9, 1),))
    ad, _ = wanted(route(cand("p1", 5.0, elig=Eligibility.DEGRADED)), NUMBERS, s)
    assert (65001, 4, 2) in ad.large_communities and ad.large_communities[-1] == (65001, 9, 1)
    assert ad.communities == ((65001, 100),) and "degraded" in ad.why()


def test_no_eligible_path_or_unmeasured_is_not_announced():
    ad, why = wanted(route(cand("p1", None, elig=Eligibility.DOWN, why="down (2/2 targets failing)"),
                           cand("p2", None, elig=Eligibility.DOWN, why="down"), via=()), NUMBERS, S)
    assert ad is None and why.startswith("no eligible path here") and "p1 down (2/2" in why
    ad, why = wanted(route(cand("p1", 2.0, samples=1)), NUMBERS, S)
    assert ad is None and why == "not measured yet (p1)"


def test_first_announcement_withdraw_at_once_and_back_after_min_interval():
    a = Announcer(S)
    good = wanted(route(cand("p1", 10.0)), NUMBERS, S)
    acts = a.step(0.0, {P: good}, {P: 1.0})
    assert [x.kind for x in acts] == ["announce"] and acts[0].reason.startswith("measured")
    acts = a.step(0.1, {P: (None, "no eligible path here (p1 down)")}, {P: 1.0})
    assert [x.kind for x in acts] == ["withdraw"] and "p1 down" in acts[0].reason
    assert a.step(0.5, {P: good}, {P: 1.0}) == []  # back, but within min_interval of the withdraw
    assert [x.kind for x in a.step(1.2, {P: good}, {P: 1.0})] == ["announce"]


def test_med_change_waits_for_hold_down_and_noise_never_reannounces():
    a = Announcer(S)
    a.step(0.0, {P: wanted(route(cand("p1", 10.0)), NUMBERS, S)}, {P: 2.0})
    for t in range(1, 50):  # ±5 % noise: never announced again
        assert a.step(t * 0.1, {P: wanted(route(cand("p1", 10.0 + (0.5 if t % 2 else -0.5))), NUMBERS, S)},
                      {P: 2.0}) == []
    slow = {P: wanted(route(cand("p1", 40.0)), NUMBERS, S)}
    assert a.step(10.0, slow, {P: 2.0}) == []
    assert a.step(11.9, slow, {P: 2.0}) == []
    acts = a.step(12.0, slow, {P: 2.0})
    assert len(acts) == 1 and acts[0].advert.med == 400 and "MED 100 -> 400" in acts[0].reason


def test_a_med_spike_shorter_than_hold_down_is_not_announced():
    a = Announcer(S)
    a.step(0.0, {P: wanted(route(cand("p1", 10.0)), NUMBERS, S)}, {P: 1.0})
    assert a.step(5.0, {P: wanted(route(cand("p1", 50.0)), NUMBERS, S)}, {P: 1.0}) == []
    assert a.step(5.5, {P: wanted(route(cand("p1", 10.0)), NUMBERS, S)}, {P: 1.0}) == []
    assert a.step(6.5, {P: wanted(route(cand("p1", 10.0)), NUMBERS, S)}, {P: 1.0}) == []
    assert P not in a.pending


def test_path_change_is_announced_at_once_and_removed_destination_withdrawn():
    a = Announcer(S)
    a.step(0.0, {P: wanted(route(cand("p1", 10.0), cand("p2", 9.0)), NUMBERS, S)}, {P: 1.0})
    acts = a.step(2.0, {P: wanted(route(cand("p1", 10.0), cand("p2", 9.0), via=("p2",)), NUMBERS, S)}, {P: 1.0})
    assert acts[0].kind == "announce" and acts[0].reason.startswith("path p1 -> p2")
    acts = a.step(3.0, {}, {})
    assert [(x.kind, x.reason) for x in acts] == [("withdraw", "no longer announced here")]


def test_group_puts_equal_attributes_in_one_command():
    a = Announcer(S)
    q = ipaddress.ip_network("203.0.113.0/24")
    acts = a.step(0.0, {P: wanted(route(cand("p1", 10.0)), NUMBERS, S),
                        q: wanted(route(cand("p1", 10.0), prefix=q), NUMBERS, S)}, {})
    groups = group(acts)
    assert len(groups) == 1 and groups[0][0] == "announce" and sorted(map(str, groups[0][2])) == [str(P), str(q)]
    assert [g[0] for g in group(a.withdraw_all("stop", 1.0))] == ["withdraw"] and not a.out


@pytest.mark.parametrize("per,expected", [(100e-6, 100), (1e-3, 10)])
def test_med_scale_is_configurable(per, expected):
    assert med_of(0.010, 0.0, AnnounceSettings(65001, med_per_s=per)) == expected


def test_a_med_still_climbing_follows_every_min_interval_without_a_new_hold():
    a = Announcer(S)
    a.step(0.0, {P: wanted(route(cand("p1", 4.0)), NUMBERS, S)}, {P: 1.0})
    seen = []
    for i, rtt in enumerate([11.0, 17.0, 22.5, 27.0, 31.0], start=1):  # an EWMA after a step to 60 ms
        for t in (i, i + 0.5):
            seen += [(t, x.advert.med) for x in a.step(float(t), {P: wanted(route(cand("p1", rtt)), NUMBERS, S)},
                                                       {P: 1.0})]
    assert seen[0] == (2, 170)  # held 1 s from the first change (at 1 s)
    assert [t for t, _ in seen[1:3]] == [3, 4]  # then every min_interval while it climbs
    assert all("going on" in x.reason for x in a.step(6.0, {P: wanted(route(cand("p1", 40.0)), NUMBERS, S)},
                                                        {P: 1.0}))
    # The other way (recovery) is held again.
    assert a.step(7.0, {P: wanted(route(cand("p1", 4.0)), NUMBERS, S)}, {P: 1.0}) == []


def test_med_carries_the_paths_recent_rtt_and_the_passive_one_when_compared():
    r = route(cand("p1", 10.0), cand("p2", 30.0))
    ad, _ = wanted(r, NUMBERS, S, {"p1": (0.0402, 0.05), "p2": (0.003, 0.003)})
    assert ad.path == "p1" and ad.med == 402 and (65001, 2, 40200) in ad.large_communities
    ad, _ = wanted(r, NUMBERS, S, {"p1": (None, None)})
    assert ad.med == 100  # no recent figure: the policy's
    import dataclasses
    passive = route(dataclasses.replace(cand("p1", 10.0), rtt_source="passive"))
    assert wanted(passive, NUMBERS, S, {"p1": (0.050, 0.05)})[0].med == 100


def test_recent_rtt_is_the_median_of_the_last_three_answers():
    from pathsteer.telemetry.window import ProbeWindow, median
    w = ProbeWindow(100, 60.0)
    for i, r in enumerate([0.004, 0.004, None, 0.004, 0.1]):  # one spike
        w.add(float(i), r)
    assert median(w.recent()) == 0.004
    w.add(5.0, 0.06)
    assert median(w.recent()) == 0.06  # a step: two probes in
    assert median([]) is None and median([1.0, 3.0]) == 2.0


def test_the_hold_counts_from_the_first_probe_of_a_step():
    a = Announcer(S)
    a.step(0.0, {P: wanted(route(cand("p1", 4.0)), NUMBERS, S, {"p1": (0.004, 0.004)})}, {P: 1.0})
    # 1st probe of the step (a late answer: the EWMA does not move): the last answer does.
    assert a.step(10.0, {P: wanted(route(cand("p1", 4.0)), NUMBERS, S, {"p1": (0.004, 0.060)})}, {P: 1.0}) == []
    # 2nd probe, a second later: the recent median is there, and the change has held 1 s.
    acts = a.step(11.0, {P: wanted(route(cand("p1", 11.0)), NUMBERS, S, {"p1": (0.060, 0.060)})}, {P: 1.0})
    assert [x.advert.med for x in acts] == [600]
    # A single spike moves the last answer but never the recent median: nothing is announced.
    b = Announcer(S)
    b.step(0.0, {P: wanted(route(cand("p1", 4.0)), NUMBERS, S, {"p1": (0.004, 0.004)})}, {P: 1.0})
    assert b.step(10.0, {P: wanted(route(cand("p1", 16.5)), NUMBERS, S, {"p1": (0.004, 0.100)})}, {P: 1.0}) == []
    for t in (11.0, 12.0, 13.0):
        assert b.step(t, {P: wanted(route(cand("p1", 12.0)), NUMBERS, S, {"p1": (0.004, 0.004)})}, {P: 1.0}) == []
    assert P not in b.pending
