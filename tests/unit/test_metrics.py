"""``/metrics`` (pathsteer.api.metrics) over a real SteeringService — real PathTrackers fed probe
answers, a real decision, a real LoadMeter — behind a fake probe engine and data plane, and a real
GuardService over the fake guard program: names, types, units, the exposition parsing and
passing ``promtool check metrics``, the per-prefix cap and a scrape's time at 10k prefixes."""

from __future__ import annotations

import asyncio
import ipaddress
import math
import shutil
import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pathsteer.api import metrics
from pathsteer.config import parse_config
from pathsteer.events import Bus
from pathsteer.guard.service import GuardService
from pathsteer.steering import preflight
from pathsteer.steering.service import SteeringService
from pathsteer.telemetry import PathTracker, snapshot_of
from pathsteer.telemetry.load import CounterSample, LoadMeter, PathCapacity, Totals

from test_guard_service import FakeProgram
from test_steering_service import FakePlane

PREFIX = "198.51.100.0/24"
RTTS = {"p1": 0.010, "p2": 0.030}  # each path's probe RTT, seconds


def steer_config(prefixes: list[str] | None = None, limit: int | None = None):
    data = {
        "control": {"socket": "/tmp/pathsteer-metrics-test.sock"},
        "decision": {"interval": "10ms", "load_counters": False, "startup_grace": "0s"},
        "dataplane": {"mode": "fib", "table": 200},
        "paths": [{"name": n, "interface": f"r-{n}", "gateway": f"10.200.{i}.2", "capacity": "100mbit",
                   "probe": {"targets": ["198.51.100.9", "203.0.113.9"], "interval": "20ms"}}
                  for i, n in ((1, "p1"), (2, "p2"))],
        "destinations": [{"prefix": p, "paths": ["p1", "p2"]} for p in (prefixes or [PREFIX])],
    }
    if limit is not None:
        data["metrics"] = {"per_prefix_limit": limit}
    return parse_config(data)


class TrackerEngine:
    """The probe engine's data side: real PathTrackers the test feeds answers and losses."""

    now = 1000.0

    def __init__(self, configs, on_state_change=None, previous=()):
        self.paths = [PathTracker(c, self.now) for c in configs]
        self.seq = 0

    def snapshot(self):
        return snapshot_of(self.paths, TrackerEngine.now)

    async def run(self, stop):
        await stop.wait()

    def feed(self, n: int = 20, lost_every: int = 0) -> None:
        for i in range(n):
            TrackerEngine.now += 0.02
            for p in self.paths:
                for t in p.targets.values():
                    self.seq += 1
                    t.on_sent(self.seq, TrackerEngine.now)
                    if lost_every and i % lost_every == 0:
                        t.expire(TrackerEngine.now + 5)
                    else:
                        t.on_reply(self.seq, TrackerEngine.now + RTTS[p.name])
            TrackerEngine.now += max(RTTS.values())


class Ctx:
    """The parts of pathsteer.daemon.reactor.Context the metrics read."""

    def __init__(self, config, **components) -> None:
        self.bus = Bus()
        self.config = config
        self.components = components
        self.ready = True
        self.started_wall = 1_700_000_000.0

    def component(self, name):
        return self.components.get(name)


@pytest.fixture(autouse=True)
def no_system(monkeypatch):
    monkeypatch.setattr(preflight, "check", lambda config: None)


def running(config, guard_dir=None, lost_every: int = 0):
    """A started SteeringService (and GuardService when ``guard_dir``) with probes answered, a
    decision made and a second of load; returns (ctx, steer, guard, loop)."""
    loop = asyncio.new_event_loop()
    steer = SteeringService(config, dataplane_factory=lambda c, links=None: FakePlane(), engine_factory=TrackerEngine)
    loop.run_until_complete(steer.start())
    steer.engine.feed(20, lost_every)
    loop.run_until_complete(steer._step())
    steer.load_meter = LoadMeter({"p1": PathCapacity("r-p1", 100_000_000), "p2": PathCapacity("r-p2", 100_000_000)})
    steer.load_meter.update({n: CounterSample(0.0, Totals(10, 1000), Totals(20, 2000)) for n in ("p1", "p2")})
    steer.load = steer.load_meter.update({"p1": CounterSample(1.0, Totals(1010, 1_251_000), Totals(2020, 6_252_000)),
                                          "p2": CounterSample(1.0, Totals(10, 1000), Totals(20, 2000))})
    guard = None
    if guard_dir is not None:
        gconfig = parse_config({"guard": {"interfaces": ["lo"], "deny": ["192.0.2.0/24"],
                                          "state_dir": str(guard_dir)}}).guard
        guard = GuardService(gconfig, program_factory=FakeProgram)
        loop.run_until_complete(guard.start())
    ctx = Ctx(config, steer=steer, guard=guard)
    return ctx, steer, guard, loop


def stop(ctx, steer, guard, loop):
    metrics.detach(ctx)
    loop.run_until_complete(steer.stop())
    if guard is not None:
        loop.run_until_complete(guard.stop())
    loop.close()


@pytest.fixture
def daemon(tmp_path):
    parts = running(steer_config(), tmp_path / "guard")
    yield parts
    stop(*parts)


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(fams, family: str, series: str | None = None, **labels) -> float:
    for s in fams[family].samples:
        if s.name == (series or family) and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise KeyError(f"{series or family} {labels}")


def promtool(text: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)


EXPECTED = {  # family name (as the parser gives it) → type
    "pathsteer_build_info": "gauge", "pathsteer_ready": "gauge", "pathsteer_start_time_seconds": "gauge",
    "pathsteer_events": "counter", "pathsteer_route_changes": "counter",
    "pathsteer_path_up": "gauge", "pathsteer_path_state": "gauge", "pathsteer_path_rtt_seconds": "histogram",
    "pathsteer_path_rtt_window_seconds": "gauge", "pathsteer_path_jitter_seconds": "gauge",
    "pathsteer_path_loss_ratio": "gauge", "pathsteer_path_utilization_ratio": "gauge",
    "pathsteer_path_throughput_bytes_per_second": "gauge", "pathsteer_path_bytes": "counter",
    "pathsteer_path_packets": "counter", "pathsteer_probes_sent": "counter", "pathsteer_probes_lost": "counter",
    "pathsteer_probes_late": "counter", "pathsteer_route_nexthop_weight": "gauge",
    "pathsteer_route_nexthop_share": "gauge", "pathsteer_decision_duration_seconds": "histogram",
    "pathsteer_decision_last_duration_seconds": "gauge", "pathsteer_apply_duration_seconds": "histogram",
    "pathsteer_reconcile_repairs": "counter", "pathsteer_apply_errors": "counter",
    "pathsteer_guard_packets": "counter", "pathsteer_guard_rule_packets": "counter", "pathsteer_guard_blocks": "gauge",
    "pathsteer_bpf_stats_enabled": "gauge", "pathsteer_metrics_errors": "counter",
}


def test_every_family_is_there_with_its_type_and_the_exposition_passes_promtool(daemon):
    ctx, steer, guard, loop = daemon
    body, ctype = metrics.render(ctx)
    assert ctype.startswith("text/plain; version=0.0.4")
    text = body.decode()
    fams = families(text)
    for name, kind in EXPECTED.items():
        assert name in fams, name
        assert fams[name].type == kind, (name, fams[name].type)
    assert sample(fams, "pathsteer_build_info", version=metrics.__version__) == 1
    assert not [f for f in fams if not f.startswith("pathsteer_")]
    assert "pathsteer_metrics_errors_total{" not in text, text  # no section failed
    result = promtool(text)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), \
        (result.stdout, result.stderr)


def test_units_are_base_units(daemon):
    ctx, steer, guard, loop = daemon
    fams = families(metrics.render(ctx)[0].decode())
    view = {p["name"]: p for p in steer.view_paths()}
    for name, rtt in RTTS.items():
        assert sample(fams, "pathsteer_path_rtt_window_seconds", path=name, stat="p50") == pytest.approx(rtt)
        assert sample(fams, "pathsteer_path_rtt_window_seconds", path=name, stat="policy") == \
            pytest.approx(view[name]["rtt_ms"] / 1e3)
        assert sample(fams, "pathsteer_path_up", path=name) == 1
        assert sample(fams, "pathsteer_path_state", path=name, state="up") == 1
        assert sample(fams, "pathsteer_path_state", path=name, state="drained") == 0
        assert sample(fams, "pathsteer_path_loss_ratio", path=name) == 0
        assert sample(fams, "pathsteer_path_jitter_seconds", path=name) == pytest.approx(0, abs=1e-9)
    # p1: 1.25 MB in, 6.25 MB out over 1 s against 100 Mbit/s (12.5 MB/s): the busier way is 50 %
    assert sample(fams, "pathsteer_path_utilization_ratio", path="p1") == pytest.approx(0.5, abs=1e-3)
    assert sample(fams, "pathsteer_path_throughput_bytes_per_second", path="p1", direction="in") == \
        pytest.approx(1_250_000)
    assert sample(fams, "pathsteer_path_capacity_bytes_per_second", path="p1") == 12_500_000
    assert sample(fams, "pathsteer_path_bytes", "pathsteer_path_bytes_total", path="p1", direction="out") == 6_252_000
    assert sample(fams, "pathsteer_path_packets", "pathsteer_path_packets_total", path="p1", direction="in") == 1010
    assert sample(fams, "pathsteer_start_time_seconds") == 1_700_000_000.0
    assert 0 <= sample(fams, "pathsteer_decision_last_duration_seconds") < 1  # seconds, not ms
    decisions = sample(fams, "pathsteer_decisions", "pathsteer_decisions_total")
    assert decisions >= 1
    assert sample(fams, "pathsteer_decision_duration_seconds", "pathsteer_decision_duration_seconds_count") == decisions
    assert sample(fams, "pathsteer_decision_duration_seconds", "pathsteer_decision_duration_seconds_bucket",
                  le="+Inf") == decisions
    assert 0 < sample(fams, "pathsteer_decision_duration_seconds", "pathsteer_decision_duration_seconds_sum") < decisions
    assert sample(fams, "pathsteer_route_nexthop_weight", prefix=PREFIX, path="p1") == 1  # p1 is 20 ms faster
    assert sample(fams, "pathsteer_route_nexthop_share", prefix=PREFIX, path="p1") == 1


def test_the_rtt_histogram_counts_every_answer_of_every_target(daemon):
    ctx, steer, guard, loop = daemon
    steer.engine.feed(30)
    loop.run_until_complete(steer._step())
    fams = families(metrics.render(ctx)[0].decode())
    name = "pathsteer_path_rtt_seconds"
    for path, rtt in RTTS.items():
        count = sample(fams, name, f"{name}_count", path=path)
        assert count == 2 * 50  # two targets, 20 + 30 answers each (more than the window keeps)
        assert sample(fams, name, f"{name}_sum", path=path) == pytest.approx(count * rtt)
        buckets = sorted(((float(s.labels["le"]), s.value) for s in fams[name].samples
                          if s.name == f"{name}_bucket" and s.labels["path"] == path))
        assert buckets[-1] == (math.inf, count)
        below = [c for le, c in buckets if le < rtt - 1e-12]
        assert set(below) == {0}, buckets  # nothing below the path's RTT, everything at or above it
        assert all(c == count for le, c in buckets if le >= rtt)


def test_probe_counters_per_target_and_route_changes_by_kind(tmp_path):
    parts = running(steer_config(), lost_every=4)
    ctx, steer, guard, loop = parts
    try:
        metrics.attach(ctx)
        ctx.bus.publish("steer.change", prefix=PREFIX, kind="better", to="p2")
        ctx.bus.publish("steer.change", prefix=PREFIX, kind="left", to="p1")
        ctx.bus.publish("guard.block", cidr="192.0.2.1/32")
        fams = families(metrics.render(ctx)[0].decode())
        for target in ("198.51.100.9", "203.0.113.9"):
            assert sample(fams, "pathsteer_probes_sent", "pathsteer_probes_sent_total", path="p1", target=target) == 20
            assert sample(fams, "pathsteer_probes_lost", "pathsteer_probes_lost_total", path="p1", target=target) == 5
            assert sample(fams, "pathsteer_probes_late", "pathsteer_probes_late_total", path="p1", target=target) == 0
        assert sample(fams, "pathsteer_path_loss_ratio", path="p1") == pytest.approx(0.25)
        changes = "pathsteer_route_changes_total"
        assert sample(fams, "pathsteer_route_changes", changes, kind="better") == 1
        assert sample(fams, "pathsteer_route_changes", changes, kind="left") == 1
        assert sample(fams, "pathsteer_route_changes", changes, kind="failback") == 0  # every kind, from 0
        assert sample(fams, "pathsteer_events", "pathsteer_events_total", name="guard.block") == 1
    finally:
        stop(*parts)


def test_events_published_before_the_first_scrape_are_counted_once():
    ctx = Ctx(steer_config())
    ctx.bus.publish("steer.change", prefix=PREFIX, kind="measured")
    try:
        first = families(metrics.render(ctx)[0].decode())
        ctx.bus.publish("steer.change", prefix=PREFIX, kind="measured")
        second = families(metrics.render(ctx)[0].decode())
    finally:
        metrics.detach(ctx)
    changes = "pathsteer_route_changes_total"
    assert sample(first, "pathsteer_route_changes", changes, kind="measured") == 1
    assert sample(second, "pathsteer_route_changes", changes, kind="measured") == 2
    assert "pathsteer_path_up" not in second  # no steering component: no path families
    assert promtool(metrics.render(ctx)[0].decode()).returncode == 0


def test_guard_drops_by_verdict_rule_and_blocks(daemon):
    ctx, steer, guard, loop = daemon
    from pathsteer.guard.blocks import Origin
    from pathsteer.units import parse_cidr
    guard.block(parse_cidr("203.0.113.0/24", "cidr"), origin=Origin.MANUAL, ttl=None, reason="test")
    fams = families(metrics.render(ctx)[0].decode())
    assert sample(fams, "pathsteer_guard_packets", "pathsteer_guard_packets_total", verdict="drop-deny",
                  action="drop") == 1
    assert sample(fams, "pathsteer_guard_packets", "pathsteer_guard_packets_total", verdict="pass",
                  action="pass") == 1
    assert sample(fams, "pathsteer_guard_packets", "pathsteer_guard_packets_total", verdict="tx-syncookie",
                  action="answer") == 1
    assert sample(fams, "pathsteer_guard_rule_packets", "pathsteer_guard_rule_packets_total", kind="deny",
                  rule="203.0.113.0/24") == 7
    assert sample(fams, "pathsteer_guard_blocks", origin="manual") == 1
    assert sample(fams, "pathsteer_guard_blocks", origin="config") == 1
    assert sample(fams, "pathsteer_guard_sources_capacity") == 65536


def test_a_failing_section_is_left_out_and_counted(daemon, monkeypatch):
    ctx, steer, guard, loop = daemon
    monkeypatch.setattr(guard, "cmd_stats", lambda args: 1 / 0)
    text = metrics.render(ctx)[0].decode()
    fams = families(text)
    assert "pathsteer_guard_packets" not in fams
    assert "pathsteer_path_up" in fams
    assert sample(fams, "pathsteer_metrics_errors", "pathsteer_metrics_errors_total", section="guard") == 1
    assert promtool(text).returncode == 0


def test_10k_prefixes_stop_at_the_limit_and_the_rest_sum_into_other(tmp_path):
    net = ipaddress.ip_network("10.0.0.0/10")
    prefixes = [str(s) for s, _ in zip(net.subnets(new_prefix=24), range(10_000))]
    parts = running(steer_config(prefixes), tmp_path / "guard")
    ctx, steer, guard, loop = parts
    try:
        limit = ctx.config.metrics.per_prefix_limit
        assert limit == 1000  # the default
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            body, _ = metrics.render(ctx)
            times.append(time.perf_counter() - t0)
        steer.decision = None  # the next decision is another object: the cache is not used
        loop.run_until_complete(steer._step())
        t0 = time.perf_counter()
        body, _ = metrics.render(ctx)
        uncached = time.perf_counter() - t0
        text = body.decode()
        print(f"\nscrape at 10k prefixes: {min(times) * 1e3:.1f} ms (decision unchanged), "
              f"{uncached * 1e3:.1f} ms (a new decision), {len(body)} bytes, {text.count(chr(10))} lines")
        fams = families(text)
        weights = fams["pathsteer_route_nexthop_weight"].samples
        series_prefixes = {s.labels["prefix"] for s in weights}
        assert len(series_prefixes) <= limit + 1
        assert metrics.OTHER in series_prefixes and prefixes[0] in series_prefixes and prefixes[limit] not in \
            series_prefixes
        assert series_prefixes - {metrics.OTHER} == set(prefixes[:limit])  # the first N in config order
        other_share = sum(s.value for s in fams["pathsteer_route_nexthop_share"].samples
                          if s.labels["prefix"] == metrics.OTHER)
        assert other_share == pytest.approx(10_000 - limit)  # every other prefix's flows, once
        assert sample(fams, "pathsteer_route_other_prefixes") == 10_000 - limit
        assert sample(fams, "pathsteer_path_prefixes", path="p1") == pytest.approx(10_000)
        assert sample(fams, "pathsteer_routes", policy="lowest-latency") == 10_000
        assert uncached < 2.0 and min(times) < 1.0  # generous: a shared 2-core machine
        assert promtool(text).returncode == 0
    finally:
        stop(*parts)


def test_a_zero_limit_puts_every_prefix_in_other():
    parts = running(steer_config([PREFIX, "203.0.113.0/24"], limit=0))
    ctx = parts[0]
    try:
        fams = families(metrics.render(ctx)[0].decode())
        assert {s.labels["prefix"] for s in fams["pathsteer_route_nexthop_weight"].samples} == {metrics.OTHER}
        assert sample(fams, "pathsteer_route_nexthop_weight", prefix=metrics.OTHER, path="p1") == 2
    finally:
        stop(*parts)


def test_concurrent_scrapes_while_the_loop_decides(daemon):
    """Scrapes on worker threads (as the API runs them) while probes land and decisions run."""
    import concurrent.futures
    ctx, steer, guard, loop = daemon
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(metrics.render, ctx) for _ in range(20)]
        for _ in range(10):
            steer.engine.feed(5)
            loop.run_until_complete(steer._step())
        bodies = [f.result()[0].decode() for f in futures]
    for text in bodies:
        fams = families(text)
        assert "pathsteer_metrics_errors_total{" not in text
        assert "pathsteer_path_rtt_seconds" in fams


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_is_strict_enough_to_catch_a_bad_name():
    """The check above means something: promtool lints a counter without _total."""
    result = promtool("# HELP x_bytes y\n# TYPE x_bytes counter\nx_bytes 1\n")
    assert result.returncode != 0 or result.stdout.strip() or result.stderr.strip()


def test_bpf_run_counts_appear_only_while_bpf_stats_are_on(daemon, monkeypatch):
    ctx, steer, guard, loop = daemon
    guard.program.program = type("Prog", (), {"fd": 99})()  # what GuardProgram holds: a Program with an fd
    fams = families(metrics.render(ctx)[0].decode())
    if not metrics.bpf_stats_enabled():
        assert sample(fams, "pathsteer_bpf_stats_enabled") == 0
        assert "pathsteer_bpf_program_runs" not in fams
    monkeypatch.setattr(metrics, "bpf_stats_enabled", lambda: True)
    monkeypatch.setattr(metrics, "prog_run_stats", lambda fd: (1234, 5_000_000_000) if fd == 99 else (0, 0))
    text = metrics.render(ctx)[0].decode()
    fams = families(text)
    assert sample(fams, "pathsteer_bpf_program_runs", "pathsteer_bpf_program_runs_total", program="guard") == 1234
    assert sample(fams, "pathsteer_bpf_program_run_seconds", "pathsteer_bpf_program_run_seconds_total",
                  program="guard") == 5.0
    assert promtool(text).returncode == 0


def test_the_routes_section_is_written_again_only_when_a_route_changed(daemon):
    """Its text is kept while what it shows is the same (new decisions every tick), and is
    new as soon as a next hop changes."""
    import dataclasses
    from pathsteer.routes import NextHop
    ctx, steer, guard, loop = daemon
    metrics.render(ctx)
    kept = metrics.attach(ctx).routes_text
    steer.engine.feed(5)
    loop.run_until_complete(steer._step())  # a new decision, the same routes
    metrics.render(ctx)
    assert metrics.attach(ctx).routes_text[1] is kept[1]
    route = steer.decision.routes[0]
    steer.decision = dataclasses.replace(steer.decision, routes=(dataclasses.replace(route, nexthops=(NextHop("p2"),)),))
    fams = families(metrics.render(ctx)[0].decode())
    assert sample(fams, "pathsteer_route_nexthop_weight", prefix=PREFIX, path="p2") == 1
    assert ("pathsteer_route_nexthop_weight", PREFIX, "p1") not in {
        (s.name, s.labels.get("prefix"), s.labels.get("path")) for s in fams["pathsteer_route_nexthop_weight"].samples}


class _Bgp:
    def cmd_status(self, _args):
        return {"sessions": [{"name": "core", "address": "10.100.1.1", "state": "up", "received": 3, "learned": 2,
                              "downs": 1},
                             {"name": "core2", "address": "10.100.2.1", "state": "down", "received": 0, "learned": 0,
                              "downs": 4}],
                "announced": 2, "withdrawn_here": 1, "learned": 2,
                "exabgp": {"running": True, "connected": True, "restarts": 1, "errors": 0, "garbage": 2}}


def test_bgp_families_when_bgp_runs_and_promtool_passes(daemon):
    ctx, steer, guard, loop = daemon
    ctx.components["bgp"] = _Bgp()
    text = metrics.render(ctx)[0].decode()
    fams = families(text)
    assert sample(fams, "pathsteer_bgp_session_up", peer="core", address="10.100.1.1") == 1
    assert sample(fams, "pathsteer_bgp_session_up", peer="core2") == 0
    assert sample(fams, "pathsteer_bgp_session_downs", "pathsteer_bgp_session_downs_total", peer="core2") == 4
    assert sample(fams, "pathsteer_bgp_received_prefixes", peer="core") == 3
    assert sample(fams, "pathsteer_bgp_announced_prefixes") == 2
    assert sample(fams, "pathsteer_bgp_learned_prefixes") == 2
    assert sample(fams, "pathsteer_bgp_exabgp_up") == 1
    assert sample(fams, "pathsteer_bgp_exabgp_restarts", "pathsteer_bgp_exabgp_restarts_total") == 1
    assert sample(fams, "pathsteer_bgp_exabgp_errors", "pathsteer_bgp_exabgp_errors_total") == 2
    if shutil.which("promtool"):
        out = promtool(text)
        assert out.returncode == 0, out.stdout + out.stderr
