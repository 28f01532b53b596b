"""``/metrics`` of a real daemon in the lab: a live scrape passes ``promtool check metrics`` and has
every family docs/metrics.md promises; a real Prometheus server (in the router namespace, scraping
127.0.0.1:9180 every second) answers a PromQL query for a path's RTT that matches the daemon's own
``steer.status`` figure; every metric the Grafana dashboard names is in the live scrape."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
import urllib.parse

import pytest
import yaml

import pathsteer_lab as lab
from pathsteer.telemetry.histogram import RTT_BUCKETS_S
from pathsteer_lab.labconfig import lab_config
from pathsteer_lab.labrun import LabDaemon

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(shutil.which("prometheus") is None or shutil.which("promtool") is None,
                                 reason="Debian's prometheus package is not installed")]

API = "127.0.0.1:9180"  # the API's default listen, in the router namespace (where the daemon runs)
FAMILIES = [  # sample names every live scrape of a steering daemon has
    "pathsteer_build_info", "pathsteer_ready", "pathsteer_start_time_seconds", "pathsteer_events_total",
    "pathsteer_route_changes_total", "pathsteer_path_up", "pathsteer_path_state", "pathsteer_path_rtt_seconds_bucket",
    "pathsteer_path_rtt_seconds_sum", "pathsteer_path_rtt_seconds_count", "pathsteer_path_rtt_window_seconds",
    "pathsteer_path_jitter_seconds", "pathsteer_path_loss_ratio", "pathsteer_path_utilization_ratio",
    "pathsteer_path_throughput_bytes_per_second", "pathsteer_path_bytes_total", "pathsteer_path_packets_total",
    "pathsteer_probes_sent_total", "pathsteer_probes_lost_total", "pathsteer_probes_late_total",
    "pathsteer_route_nexthop_weight", "pathsteer_route_nexthop_share", "pathsteer_decision_duration_seconds_bucket",
    "pathsteer_decision_last_duration_seconds", "pathsteer_apply_duration_seconds_count",
    "pathsteer_reconcile_repairs_total", "pathsteer_apply_errors_total", "pathsteer_decisions_total",
    "pathsteer_bpf_stats_enabled", "pathsteer_guard_packets_total", "pathsteer_guard_rule_packets_total",
    "pathsteer_guard_blocks",
]
FETCH = ("import sys, urllib.request\n"
         "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())\n")


def fetch(t, url: str) -> str:
    """GET ``url`` from inside the router namespace (its loopback is the daemon's)."""
    return t.run("router", [sys.executable, "-c", FETCH, url], timeout=30).stdout


def scrape(t) -> str:
    return fetch(t, f"http://{API}/metrics")


def free_port(t) -> int:
    code = "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
    return int(t.run("router", [sys.executable, "-c", code]).stdout)


def sample_names(text: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


@pytest.fixture
def served(lab3, tmp_path):
    """A fib daemon in the lab (p1 20 ms one way, p2 5 ms, p3 10 ms; capacities set) with the
    guard on the ingress interface, its API answering; yields (lab, daemon)."""
    t = lab3
    lab.set_path(t.name, "p1", delay="20ms")
    lab.set_path(t.name, "p2", delay="5ms")
    lab.set_path(t.name, "p3", delay="10ms")
    config = lab_config(t, socket=f"/run/pathsteer/{t.name}-metrics.sock",
                        capacities={p.name: "100mbit" for p in t.paths})
    config["guard"] = {"interfaces": [t.ingress_interface], "deny": ["192.0.2.0/24"],
                       "state_dir": str(tmp_path / "guard")}
    d = LabDaemon(t, config, str(tmp_path / "d"))
    try:
        d.start()
        deadline = time.monotonic() + 20
        while True:
            try:
                text = scrape(t)
                if "pathsteer_path_rtt_seconds_count" in text and "pathsteer_path_utilization_ratio{" in text:
                    break  # probes answered and a second of load measured
            except Exception:  # noqa: BLE001 - the API starts last
                text = ""
            assert time.monotonic() < deadline, f"no /metrics on {API}: {d.log_tail()}"
            time.sleep(0.2)
        yield t, d
    finally:
        d.stop()  # SIGTERM (kill -9 after 10 s): routes restored, the guard detached


def test_a_live_scrape_passes_promtool_and_has_every_family(served):
    t, d = served
    text = scrape(t)
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr
    missing = [f for f in FAMILIES if f not in sample_names(text)]
    assert not missing, missing
    assert 'pathsteer_ready 1.0' in text
    assert 'pathsteer_path_state{path="p2",state="up"} 1.0' in text
    assert 'pathsteer_metrics_errors_total{' not in text, text  # every section read
    assert 'pathsteer_route_nexthop_weight{path="p2",prefix="198.51.100.0/24"}' in text  # p2 is the fastest


def prometheus_query(t, port: int, query: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    answer = json.loads(fetch(t, url))
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def bucket_width(value_s: float) -> float:
    """The width of the histogram bucket that holds ``value_s`` (histogram_quantile interpolates in it)."""
    lo = 0.0
    for hi in RTT_BUCKETS_S:
        if value_s <= hi:
            return hi - lo
        lo = hi
    return math.inf


def test_a_real_prometheus_scrapes_the_daemon_and_its_rtt_matches_steer_status(served, tmp_path):
    t, d = served
    port = free_port(t)
    work = tmp_path / "prometheus"
    os.makedirs(work / "data")
    with open(work / "prometheus.yml", "w") as f:
        yaml.safe_dump({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                        "scrape_configs": [{"job_name": "pathsteer", "static_configs": [{"targets": [API]}]}]}, f)
    log = open(work / "prometheus.log", "w")
    prom = t.popen("router", ["prometheus", f"--config.file={work / 'prometheus.yml'}",
                              f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                              "--log.level=warn"], stdout=log, stderr=log, cwd=str(work))
    log.close()
    try:
        deadline = time.monotonic() + 60
        quantile = 'histogram_quantile(0.5, sum by (le) (rate(pathsteer_path_rtt_seconds_bucket{path="p1"}[10s])))'
        while True:
            assert prom.poll() is None, (work / "prometheus.log").read_text()[-2000:]
            try:
                up = prometheus_query(t, port, 'up{job="pathsteer"}')
                hq = prometheus_query(t, port, quantile)
                if up and up[0]["value"][1] == "1" and hq and hq[0]["value"][1] not in ("NaN", "+Inf"):
                    break
            except Exception:  # noqa: BLE001 - Prometheus still starting
                pass
            assert time.monotonic() < deadline, (work / "prometheus.log").read_text()[-2000:]
            time.sleep(0.5)
        time.sleep(6)  # the rate window full of the paths' steady RTT
        gauge = prometheus_query(t, port, 'pathsteer_path_rtt_window_seconds{path="p1",stat="p50"}')
        hq = prometheus_query(t, port, quantile)
        status = {p["name"]: p for p in d.call("steer.status")["paths"]}["p1"]
        own_s = status["rtt_p50_ms"] / 1e3
        from_gauge, from_histogram = float(gauge[0]["value"][1]), float(hq[0]["value"][1])
        print(f"\np1 RTT p50: steer.status {own_s * 1e3:.2f} ms, Prometheus gauge {from_gauge * 1e3:.2f} ms, "
              f"histogram_quantile {from_histogram * 1e3:.2f} ms")
        assert 0.035 < own_s < 0.080  # 2 x 20 ms one way, plus the lab's own delay
        assert from_gauge == pytest.approx(own_s, abs=0.002, rel=0.1)  # scraped up to 1 s before status
        assert abs(from_histogram - own_s) <= bucket_width(own_s) + 0.002  # interpolated within a bucket
    finally:
        prom.terminate()
        try:
            prom.wait(15)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()
        shutil.rmtree(work, ignore_errors=True)


def test_every_metric_the_grafana_dashboard_names_is_in_the_live_scrape(served):
    t, d = served
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "unit"))
    try:
        from test_grafana import load, referenced
    finally:
        sys.path.pop(0)
    text = scrape(t)
    names = sample_names(text) | {n.removesuffix("_bucket") for n in sample_names(text) if n.endswith("_bucket")}
    wanted = referenced(load())
    assert len(wanted) >= 15
    assert wanted - names == set()
