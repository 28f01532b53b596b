"""Pure pieces of the prober: the one-shot report, sequence unwrapping, JSON specs."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pathsteer.probe.engine import _unwrap
from pathsteer_lab.jsonrun import config_from
from pathsteer.probe.oneshot import ProbeRequest, config_of, format_text, report
from pathsteer.telemetry import ProbeMethod, Thresholds, WindowConfig
from pathsteer.telemetry.target import TargetTracker

REQ = ProbeRequest("192.0.2.1", "eth1", "10.0.0.1", ProbeMethod.UDP, 862, 4, 0.1, 1.0)


def tracker_with(rtts):
    t = TargetTracker("192.0.2.1", timeout_s=1.0, window=WindowConfig(count=100, seconds=1e9),
                      thresholds=Thresholds(), now=0.0)
    for seq, rtt in enumerate(rtts, 1):
        t.on_sent(seq, float(seq))
        if rtt is not None:
            t.on_reply(seq, seq + rtt)
    t.expire(1e6)
    return t.snapshot(1e6)


def test_report_fields_and_units():
    r = report(REQ, tracker_with([0.010, 0.020, None, 0.030]))
    assert json.loads(json.dumps(r)) == r
    assert (r["sent"], r["received"], r["lost"], r["loss_pct"]) == (4, 3, 1, 25.0)
    assert r["rtt_ms"] == {"min": 10.0, "avg": 20.0, "p50": 20.0, "p95": 30.0, "p99": 30.0, "max": 30.0,
                           "ewma": pytest.approx(10 + 10 / 8 + (30 - 11.25) / 8, abs=1e-3)}
    assert r["jitter_ms"] == pytest.approx((10 / 16) + (10 - 10 / 16) / 16, abs=1e-3)
    assert (r["late"], r["duplicate"], r["foreign"], r["errors"]) == (0, 0, 0, 0)
    assert r["method"] == "udp" and r["port"] == 862
    text = format_text(REQ, r)
    assert "4 sent, 3 received, 25% loss" in text
    assert "rtt min/avg/p50/p95/max = 10.000/20.000/20.000/30.000/30.000 ms" in text


def test_report_when_nothing_answered():
    r = report(REQ, tracker_with([None, None]))
    assert r["received"] == 0 and r["loss_pct"] == 100.0 and r["rtt_ms"]["p50"] is None
    assert "rtt" not in format_text(REQ, r).splitlines()[-1]


def test_oneshot_config_counts_every_probe():
    cfg = config_of(REQ)
    assert cfg.window.count == 4 and cfg.targets == ("192.0.2.1",) and cfg.gateway == "10.0.0.1"


@given(st.integers(1, 2**40), st.integers(0, 2**16 - 1))
def test_unwrap_16_bit(counter, back):
    seq = max(0, counter - back)
    assert _unwrap(counter, seq & 0xFFFF, 16) == seq


def test_jsonrun_spec():
    cfg = config_from({"name": "p1", "interface": "eth0", "targets": ["192.0.2.1"], "method": "udp",
                       "interval_s": 0.02, "window": {"count": 10}, "thresholds": {"hold_s": 0}})
    assert cfg.method is ProbeMethod.UDP and cfg.window.count == 10 and cfg.thresholds.hold_s == 0
