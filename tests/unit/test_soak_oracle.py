"""The soak's pure half (bench/soak_oracle.py): the seeded script, the oracle, the metrics and
the parsers, without root."""

from __future__ import annotations

import pytest

from bench import soak_oracle as so

PATHS = ("p1", "p2", "p3", "p4")


def truth(delay, **kw) -> so.PathTruth:
    return so.PathTruth(delay_ms=delay, settled_ms=kw.pop("settled", delay), **kw)


def script_of(initial: dict, steps: list[so.Step], seconds: float = 100.0, warmup: float = 0.0) -> so.Script:
    return so.Script(seed=0, seconds=seconds, paths=tuple(initial), prefixes=("198.51.100.0/24",),
                     initial=initial, steps=tuple(steps), warmup=warmup, start_hour=0.0)


FOUR = {"p1": truth(5), "p2": truth(10), "p3": truth(15), "p4": truth(25)}


# -- the script --------------------------------------------------------------------------------

def test_same_seed_same_script_other_seed_other_script():
    a, b, c = so.make_script(600, 7), so.make_script(600, 7), so.make_script(600, 8)
    assert a == b
    assert a.steps != c.steps


@pytest.mark.parametrize("seed", range(6))
def test_a_two_minute_script_has_a_cut_and_chaos_and_ends_with_every_path_configured(seed):
    s = so.make_script(120, seed)
    kinds = s.kinds()
    assert kinds.get("cut") == 1 and kinds.get("recover") == 1
    chaos = {st.action for st in s.steps if st.action != so.SET}
    assert len(chaos) >= 3, chaos
    assert all(st.t < 120 for st in s.steps) and all(st.t >= s.warmup for st in s.steps)
    o = so.Oracle(s)
    assert all(v.configured and not v.down and v.loss_pct == 0 for v in o.state(119.9).values())


def test_a_long_script_has_every_kind_and_kills_at_most_every_ten_minutes():
    s = so.make_script(1800, 3)
    kinds = s.kinds()
    for k in ("cut", "double-cut", "all-down", "spike", "jitter", "rtt-step", "heavy-loss", "light-loss",
              "drift", "kill", "reload", "bad_config", "del_route", "flood", "ctl_garbage"):
        assert kinds.get(k, 0) >= 1, k
    kills = [st.t for st in s.steps if st.action == so.KILL]
    assert all(b - a >= 600 for a, b in zip(kills, kills[1:]))
    assert s.sim_hours == pytest.approx((1800 - s.warmup) / 60)


def test_reloads_alternate_remove_and_add_and_never_remove_p1():
    s = so.make_script(1800, 5)
    labels = [st.label for st in s.steps if st.action == so.RELOAD]
    assert labels and all(lab.startswith("reload:remove") for lab in labels[0::2])
    assert all(lab.startswith("reload:add") for lab in labels[1::2])
    assert not any(lab.endswith(" p1") for lab in labels)
    assert so.make_script(1800, 5).steps[-1].t < 1800


def test_spikes_are_transient_the_oracle_ranks_by_settled_delay():
    s = so.make_script(1800, 1)
    spikes = [st for st in s.steps if st.label == "spike"]
    assert spikes
    for st in spikes:
        assert st.truth.delay_ms > st.truth.settled_ms and st.budget == 0


def test_budgets_from_defaults():
    b = so.Budgets.from_defaults(interval=1.0, timeout=1.0, down_after=3, hold_down=1.0, slack=1.0)
    assert b.cut == pytest.approx(5.0)
    assert b.loss_off > 60     # the 60 s loss window has to forget the episode
    assert b.repair == pytest.approx(2.0)


# -- the oracle --------------------------------------------------------------------------------

def test_tier_prefers_up_then_degraded_then_anything():
    assert so.tier(FOUR) == set(PATHS)
    lossy = {**FOUR, "p1": truth(5, loss_pct=10)}
    assert so.tier(lossy) == {"p2", "p3", "p4"}
    all_lossy = {p: truth(5, loss_pct=10) for p in PATHS}
    assert so.tier(all_lossy) == set(PATHS)
    none = {p: truth(5, down=True) for p in PATHS}
    assert so.tier(none) == set(PATHS)
    removed = {**FOUR, "p1": truth(5, configured=False)}
    assert "p1" not in so.tier(removed)


def test_acceptable_and_must_stay_follow_min_improvement_with_a_margin():
    # rtt 0.2 + 2·delay: p1 20.2, p2 21.2 (4.7 % worse: both fine), p3 23.2 (12.9 %: either), p4 30.2
    st = {"p1": truth(10), "p2": truth(10.5), "p3": truth(11.5), "p4": truth(15)}
    assert so.acceptable(st) == {"p1", "p2", "p3"}
    assert so.must_stay(st) == {"p1", "p2"}


def test_oracle_accepts_the_old_choice_only_while_the_change_settles():
    cut = so.Step(10.0, so.SET, "p1", truth(5, down=True), budget=5.0, excuse_loss=True, label="cut")
    back = so.Step(30.0, so.SET, "p1", truth(5), budget=10.0, label="recover")
    o = so.Oracle(script_of(FOUR, [cut, back]))
    assert o.accepted(9.9) == {"p1"}
    assert o.accepted(12.0) == {"p1", "p2"}          # not yet detected: p1 still accepted
    assert o.eligible(12.0) == set(PATHS)
    assert o.accepted(15.1) == {"p2"}                 # budget over: p1 is wrong now
    assert "p1" not in o.eligible(15.1)
    assert o.accepted(35.0) == {"p1", "p2"}           # recovering: staying on p2 is fine for now
    assert o.accepted(40.1) == {"p1"}
    assert o.loss_excused(11.0) and not o.loss_excused(16.0) and not o.loss_excused(31.0)


def test_a_drift_of_another_path_does_not_excuse_an_old_state():
    cut = so.Step(10.0, so.SET, "p1", truth(5, down=True), budget=5.0, label="cut")
    drift = so.Step(14.0, so.SET, "p4", truth(26), budget=20.0, label="drift")
    o = so.Oracle(script_of(FOUR, [cut, drift]))
    assert o.accepted(20.0) == {"p2"}


def test_needless_to_leave():
    spike = so.Step(10.0, so.SET, "p1", truth(60, settled=5), budget=0.0, label="spike")
    end = so.Step(13.0, so.SET, "p1", truth(5), budget=0.0, label="spike-end")
    step = so.Step(20.0, so.SET, "p1", truth(15), budget=10.0, label="rtt-step")
    o = so.Oracle(script_of(FOUR, [spike, end, step]))
    assert o.needless_to_leave("p1", 11.0)            # a spike explains no move
    assert not o.needless_to_leave("p1", 21.0)        # p1 got slower: leaving is right
    assert not o.needless_to_leave("p2", 25.0)        # p2 was not the best before: not a must-stay


def test_all_paths_down_nothing_is_wrong_and_loss_is_excused():
    steps = [so.Step(10.0, so.SET, p, truth(FOUR[p].delay_ms, down=True), budget=5.0, excuse_loss=True)
             for p in PATHS]
    o = so.Oracle(script_of(FOUR, steps))
    assert not o.usable(20.0) and o.loss_excused(20.0)
    assert o.eligible(20.0) == set(PATHS)


# -- metrics -----------------------------------------------------------------------------------

def pings_every(t0, t1, lost=lambda t: False, step=0.02):
    out, t = [], t0
    while t < t1:
        out.append((t, None if lost(t) else 10.0))
        t += step
    return out


def test_prefix_metrics_perfect_run():
    cut = so.Step(10.0, so.SET, "p1", truth(5, down=True), budget=5.0, excuse_loss=True, label="cut")
    o = so.Oracle(script_of(FOUR, [cut], seconds=30))
    claimed = [(0.0, "p1"), (11.0, "p2")]
    actual = [(t / 2, t / 2 + 0.5, {"p1" if t / 2 < 11 else "p2": 25}) for t in range(60)]
    pings = pings_every(0, 30, lost=lambda t: 10.0 <= t < 11.0)
    moves = [(11.0, "p1", "p2")]
    m = so.prefix_metrics(o, "x", 0.0, 30.0, claimed, actual, pings, moves)
    assert m.eligible_pct == pytest.approx(100.0)
    assert m.best_pct == pytest.approx(100.0)
    assert m.agree_pct == pytest.approx(100.0)
    assert m.blackhole_s == 0 and m.blackhole_excused_s == pytest.approx(1.0, abs=0.1)
    assert m.lost == pytest.approx(50, abs=1) and m.lost_outside == 0
    assert m.moves == 1 and m.needless == []


def test_prefix_metrics_late_detection_blackhole_and_needless_move():
    cut = so.Step(10.0, so.SET, "p1", truth(5, down=True), budget=5.0, excuse_loss=True, label="cut")
    o = so.Oracle(script_of(FOUR, [cut], seconds=30))
    claimed = [(0.0, "p1"), (17.0, "p2"), (25.0, "p3")]              # 2 s late; then a needless move
    actual = [(t / 2, t / 2 + 0.5, {} if 10 <= t / 2 < 17 else {"p1" if t / 2 < 17 else
                                                                   ("p2" if t / 2 < 25 else "p3"): 25})
              for t in range(60)]
    pings = pings_every(0, 30, lost=lambda t: 10.0 <= t < 17.0)
    moves = [(17.0, "p1", "p2"), (25.0, "p2", "p3")]
    m = so.prefix_metrics(o, "x", 0.0, 30.0, claimed, actual, pings, moves)
    assert m.blackhole_s == pytest.approx(2.0, abs=0.1)                # 15..17 beyond the 5 s budget
    assert m.blackhole_excused_s == pytest.approx(5.0, abs=0.1)
    assert m.eligible_pct == pytest.approx(100 * (30 - 7 + 5) / 30, abs=0.5)   # 10..15 within budget
    assert m.best_pct == pytest.approx(100 * (30 - 7 + 5 - 5) / 30, abs=0.5)   # and p3 is not the best
    assert m.lost_outside == pytest.approx(100, abs=2)
    assert [n["from"] for n in m.needless] == ["p2"]


def test_lost_pings_on_a_lossy_path_are_not_counted_outside():
    lossy = so.Step(5.0, so.SET, "p1", truth(5, loss_pct=1.0), budget=0.0, label="light-loss")
    o = so.Oracle(script_of(FOUR, [lossy], seconds=20))
    actual = [(t / 2, t / 2 + 0.5, {"p1": 25}) for t in range(40)]
    pings = pings_every(0, 20, lost=lambda t: abs(t - 2.0) < 0.01 or abs(t - 8.0) < 0.01)
    m = so.prefix_metrics(o, "x", 0.0, 20.0, [(0.0, "p1")], actual, pings, [])
    assert m.lost == 2 and m.lost_outside == 1


def test_counter_intervals_and_a_reset_counter():
    iv = so.counter_intervals([(0.0, {"p1": 10}), (0.5, {"p1": 35, "p2": 0}), (1.0, {"p1": 35, "p2": 20}),
                               (1.5, {"p1": 5, "p2": 20})])
    assert iv == [(0.0, 0.5, {"p1": 25}), (0.5, 1.0, {"p2": 20}), (1.0, 1.5, {"p1": 5})]


def test_slope_and_resource_summary():
    assert so.slope_per_hour([(0, 1.0), (1800, 2.0), (3600, 3.0)]) == pytest.approx(2.0)
    assert so.slope_per_hour([(0, 1.0)]) is None
    samples = [{"t": t, "pid": 1, "rss_kb": 50 * 1024 + (t if t < 60 else 60), "fds": 30, "cpu_s": t / 100}
               for t in range(0, 600, 2)]
    samples += [{"t": 600 + t, "pid": 2, "rss_kb": 40 * 1024, "fds": 20, "cpu_s": t / 50} for t in range(0, 60, 2)]
    r = so.resource_summary(samples, warmup_s=60)
    assert r["longest"]["pid"] == 1
    assert r["longest"]["rss_mib_per_h"] == pytest.approx(0.0, abs=1e-6)   # growth only in the warm-up
    assert r["longest"]["fds_per_h"] == pytest.approx(0.0)
    assert r["cpu_pct"] == pytest.approx(100 * (598 / 100 + 58 / 50) / (598 + 58), abs=0.01)


# -- parsers -----------------------------------------------------------------------------------

def test_parse_ping_lines_losses_late_answers_and_wrap():
    lines = [
        "PING 198.51.100.10 (198.51.100.10) 56(84) bytes of data.",
        "[100.010000] 64 bytes from 198.51.100.10: icmp_seq=65534 ttl=62 time=10.0 ms",
        "[100.040000] no answer yet for icmp_seq=65535",
        "[100.050000] 64 bytes from 198.51.100.10: icmp_seq=0 ttl=62 time=10.0 ms",
        "[100.080000] no answer yet for icmp_seq=1",
        "[100.135000] 64 bytes from 198.51.100.10: icmp_seq=1 ttl=62 time=75.0 ms",   # late, still an answer
        "[100.090000] 64 bytes from 198.51.100.10: icmp_seq=2 ttl=62 time=10.0 ms",
    ]
    out = so.parse_ping_lines(lines)
    assert [r for _, r in out] == [10.0, None, 10.0, 75.0, 10.0]
    assert out[1][0] == pytest.approx(100.02, abs=1e-6)          # interpolated between its neighbours
    assert [round(t, 3) for t, _ in out] == sorted(round(t, 3) for t, _ in out)
