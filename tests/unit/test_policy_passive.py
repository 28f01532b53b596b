"""destinations[].rtt: active | passive | best — the policy on real traffic's RTT (passive),
shown separately from the probes'; config checks; the status table's passive column."""

from __future__ import annotations

import dataclasses

import pytest
from test_policy_fixtures import Driver, params, path

from pathsteer.config import ConfigError, parse_config
from pathsteer.policy import ChangeKind, RttSource
from pathsteer.policy.candidates import evaluate
from pathsteer.steering import build
from pathsteer.steering.cli import render_status
from pathsteer.telemetry.snapshot import PassiveSnapshot


def passive(p, p50_ms: float | None, samples: int = 200):
    figures = PassiveSnapshot(window_s=1.0, samples=samples if p50_ms is not None else 0,
                              p50_s=None if p50_ms is None else p50_ms / 1e3,
                              mean_s=None if p50_ms is None else p50_ms / 1e3, total_samples=samples)
    return dataclasses.replace(p, passive=figures)


def rtts(source: RttSource, *paths):
    p = params(rtt_source=source)
    c = evaluate(p.destinations[0], p, {x.name: x for x in paths}, {})
    return {x.path: (None if x.rtt_s is None else round(x.rtt_s * 1e3, 3), x.rtt_source, x.samples) for x in c}


def test_sources():
    p1 = passive(path("p1", 10.0), 60.0)  # probes (sparse) still say 10 ms; real traffic 60 ms
    p2 = path("p2", 20.0)  # not measured passively
    assert rtts(RttSource.ACTIVE, p1, p2) == {"p1": (10.0, "active", 100), "p2": (20.0, "active", 100)}
    assert rtts(RttSource.BEST, p1, p2) == {"p1": (60.0, "passive", 200), "p2": (20.0, "active", 100)}
    assert rtts(RttSource.PASSIVE, p1, p2) == {"p1": (60.0, "passive", 200), "p2": (None, "passive", 0)}
    idle = passive(path("p1", 10.0), None)  # no traffic in the last second
    assert rtts(RttSource.BEST, idle, p2)["p1"] == (10.0, "active", 100)
    assert rtts(RttSource.PASSIVE, idle, p2)["p1"] == (None, "passive", 0)


def test_a_path_slowed_for_real_traffic_is_left_before_the_probes_see_it():
    drive = Driver(params(rtt_source=RttSource.BEST, hold_down_s=1.0))
    d = None
    for i in range(30):
        now = i * 0.1
        p1 = passive(path("p1", 10.0), 10.0 if now < 1.0 else 60.0)
        p2 = passive(path("p2", 20.0), 20.0)
        d = drive(now, p1, p2)
    route = d.routes[0]
    assert route.nexthops[0].path == "p2" and route.kind is ChangeKind.BETTER, route
    assert "passive rtt 20.0 ms vs 60.0 ms" in route.reason, route.reason  # both passive: named once
    same = Driver(params(hold_down_s=1.0))  # active: the probes say 10 ms, nothing moves
    for i in range(30):
        d = same(i * 0.1, passive(path("p1", 10.0), 60.0), passive(path("p2", 20.0), 20.0))
    assert d.routes[0].nexthops[0].path == "p1"


def _config(rtt: str, passive_paths: tuple[str, ...]) -> dict:
    paths = [{"name": n, "interface": f"eth{i}", "gateway": f"192.0.2.{i}", "passive": n in passive_paths,
              "probe": {"targets": ["198.51.100.1"]}} for i, n in enumerate(("p1", "p2"), 1)]
    return {"paths": paths, "destinations": [{"prefix": "198.51.100.0/24", "paths": ["p1", "p2"], "rtt": rtt}]}


def test_config():
    c = parse_config(_config("best", ("p1",)), "c.yaml")
    assert [p.passive for p in c.paths] == [True, False]
    d = build.policy_params(c).destinations[0]
    assert d.rtt_source is RttSource.BEST and d.rtt_statistic.value == "robust"
    d = build.policy_params(parse_config(_config("p50", ()), "c.yaml")).destinations[0]
    assert d.rtt_source is RttSource.ACTIVE and d.rtt_statistic.value == "p50"
    assert build.policy_params(parse_config(_config("active", ()), "c.yaml")).destinations[0].rtt_source \
        is RttSource.ACTIVE


@pytest.mark.parametrize("data, message", [
    (_config("passive", ()), "destinations[0].rtt: 'passive' needs passive measurement on one of its paths"),
    (_config("best", ()), "destinations[0].rtt: 'best' needs passive measurement"),
    (_config("fastest", ("p1",)), "destinations[0].rtt: 'fastest': input should be"),
    ({**_config("best", ("p1",)), "paths": [{**_config("best", ("p1",))["paths"][0], "passive": "sometimes"}]},
     "paths[0].passive: 'sometimes': input should be a valid boolean"),
])
def test_config_errors(data, message):
    with pytest.raises(ConfigError) as e:
        parse_config(data, "c.yaml")
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_status_table_has_a_passive_column_only_when_a_path_is_measured_passively():
    base = {"name": "p1", "state": "up", "rtt_ms": 10.0, "loss_pct": 0.0, "jitter_ms": 0.5, "utilization": None}
    status = {"dataplane": {"mode": "fib", "table": 200}, "routes": [],
              "paths": [{**base, "passive": None}]}
    assert "PASSIVE" not in render_status(status)
    status["paths"] = [{**base, "passive": {"rtt_p50_ms": 61.25, "samples": 340}}, {**base, "name": "p2", "passive": None}]
    out = render_status(status)
    assert "PASSIVE ms (n)" in out and "61.25 (340)" in out, out
