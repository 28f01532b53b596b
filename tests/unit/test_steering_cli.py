"""``pathsteer status | explain | events``: help with examples, rendering of the daemon's answers."""

from __future__ import annotations

import time

import pytest

from pathsteer.cli.main import main
from pathsteer.steering.cli import render_explain, render_status


@pytest.mark.parametrize("command", ["status", "explain", "events"])
def test_help_ends_with_examples(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out.strip().splitlines()
    idx = max(i for i, line in enumerate(out) if line.startswith("examples:"))
    assert out[idx + 1:] and all(line.startswith("  pathsteer") for line in out[idx + 1:])
    assert any("--socket" in line for line in out)


def test_no_daemon_is_one_line(capsys, tmp_path):
    assert main(["status", "--socket", str(tmp_path / "none.sock")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("pathsteer: error: no pathsteer daemon at") and "\n" not in err


STATUS = {
    "dataplane": {"mode": "fib", "table": 200},
    "paths": [{"name": "p1", "state": "up", "rtt_ms": 10.04, "loss_pct": 0.0, "jitter_ms": 0.2, "utilization": 0.5},
              {"name": "p2", "state": "down", "rtt_ms": None, "loss_pct": 100.0, "jitter_ms": None,
               "utilization": None}],
    "routes": [{"prefix": "198.51.100.0/24", "policy": "weighted", "since": 0.0,
                "nexthops": [{"path": "p1", "weight": 2, "share": 0.6667}, {"path": "p3", "weight": 1, "share": 0.3333}],
                "reason": "p2 down (2/2 targets failing); moved to p1, p3"}],
}


def test_render_status():
    STATUS["routes"][0]["since"] = time.time() - 3
    text = render_status(STATUS)
    assert "data plane: fib (table 200)" in text
    assert "p1    up     10.04   0.0     0.20       50%" in text
    assert "p2    down   -" in text
    assert "p1(67%) p3(33%)" in text and "s ago" in text and "p2 down" in text


def test_render_explain():
    assert render_explain({"address": "192.0.2.1", "steered": False, "why": "no configured destination"}) == \
        "192.0.2.1: no configured destination"
    text = render_explain({"address": "198.51.100.7", "steered": True, "prefix": "198.51.100.0/24",
                           "since": time.time(), "kind": "left", "why": "198.51.100.0/24 goes via p2: p1 down"})
    assert text.startswith("198.51.100.7 matches 198.51.100.0/24") and "goes via p2" in text
