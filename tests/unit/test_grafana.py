"""contrib/grafana/pathsteer.json: it loads as a dashboard importable with a Prometheus input, and
every metric its PromQL names exists in a render of /metrics (the fakes of test_metrics)."""

from __future__ import annotations

import json
import pathlib
import re

from prometheus_client.parser import text_string_to_metric_families

from pathsteer.api import metrics

from test_metrics import no_system, running, steer_config, stop  # noqa: F401 - no_system: autouse fixture

DASHBOARD = pathlib.Path(__file__).resolve().parents[2] / "contrib" / "grafana" / "pathsteer.json"
NAME = re.compile(r"pathsteer_[a-z_]+")


def load() -> dict:
    with open(DASHBOARD) as f:
        return json.load(f)


def expressions(dash: dict) -> list[str]:
    out = []
    for p in dash["panels"]:
        out += [t["expr"] for t in p.get("targets", [])]
    for v in dash["templating"]["list"]:
        q = v.get("query")
        out.append(q["query"] if isinstance(q, dict) else q)
    return out


def referenced(dash: dict) -> set[str]:
    names = set()
    for expr in expressions(dash):
        for name in NAME.findall(expr):
            names.add(re.sub(r"_(bucket|sum|count)$", "", name))
    return names


def exposed(text: str) -> set[str]:
    """Sample names, and the histograms' family names (what _bucket/_sum/_count strip to)."""
    names = set()
    for f in text_string_to_metric_families(text):
        names.update(s.name for s in f.samples)
        if f.type == "histogram":
            names.add(f.name)
    return names


def test_the_dashboard_is_an_importable_grafana_dashboard():
    dash = load()
    assert 36 <= dash["schemaVersion"] <= 41
    assert [i["name"] for i in dash["__inputs"]] == ["DS_PROMETHEUS"]
    assert dash["uid"] == "pathsteer" and dash["id"] is None
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
        assert p["targets"] and all(t["expr"] for t in p["targets"]), p["title"]
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for wanted in ("paths up", "state", "rtt p50", "loss", "jitter", "utilisation", "throughput",
                   "route changes", "guard drops", "decision"):
        assert wanted in titles, wanted


def test_the_rtt_quantiles_come_from_the_histogram():
    exprs = expressions(load())
    for q in ("0.5", "0.95"):
        assert any(f"histogram_quantile({q}," in e and "rate(pathsteer_path_rtt_seconds_bucket" in e for e in exprs), q


def test_every_metric_the_dashboard_names_is_exposed(tmp_path):
    parts = running(steer_config(), tmp_path / "guard")
    try:
        names = exposed(metrics.render(parts[0])[0].decode())
    finally:
        stop(*parts)
    wanted = referenced(load())
    assert len(wanted) >= 15
    assert wanted - names == set()
