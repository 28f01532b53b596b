"""Probe pins have documented numbers (priority 9000, protocol 83, table = mark =
0x70730000 + path index): a daemon killed with -9 leaves them, the next start sweeps them and
pins again at the same numbers, a clean stop removes them; a one-shot run's pin (another
range) is never swept."""

from __future__ import annotations

import time

import pytest

from pathsteer.probe import pinning
from pathsteer_lab.labconfig import lab_config
from pathsteer_lab.labrun import LabDaemon

pytestmark = pytest.mark.lab

ONESHOT_MARK = pinning.ONESHOT_RANGE[0] + 7


def _pins(t) -> tuple[list[str], list[str]]:
    """(rules at the pin priority, routes in tables of the daemon's range), both families."""
    rules, routes = [], []
    for family in ("-4", "-6"):
        out = t.run("router", ["ip", family, "rule", "show", "priority", str(pinning.RULE_PRIORITY)]).stdout
        rules += [f"{family} {line.strip()}" for line in out.splitlines() if line.strip()]
        out = t.run("router", ["ip", family, "route", "show", "table", "all"]).stdout
        for line in out.splitlines():
            for word in line.split():
                if word.isdigit() and pinning.SLOT_RANGE[0] <= int(word) <= pinning.SLOT_RANGE[1]:
                    routes.append(f"{family} {line.strip()}")
    return rules, routes


def test_kill_9_restart_and_stop_leave_no_pins(lab3, tmp_path):
    t = lab3
    cfg = lab_config(t, socket=f"/run/pathsteer/{t.name}-pins.sock")
    # A one-shot run's pin (pathsteer probe beside the daemon): not the daemon's to sweep.
    t.run("router", ["ip", "rule", "add", "priority", str(pinning.RULE_PRIORITY), "fwmark", hex(ONESHOT_MARK),
                     "lookup", str(ONESHOT_MARK), "protocol", str(pinning.PIN_PROTOCOL)])
    d = LabDaemon(t, cfg, str(tmp_path)).start()
    try:
        time.sleep(0.5)
        rules, routes = _pins(t)
        ours = [r for r in rules if hex(ONESHOT_MARK) not in r]
        assert len(ours) == 3 and len(routes) == 3, (rules, routes)
        for i in range(3):
            assert any(f"fwmark {hex(pinning.SLOT_RANGE[0] + i)}" in r and "proto 83" in r for r in ours), ours
        d.kill()  # what a crash leaves
        assert _pins(t) == (rules, routes), "kill -9 leaves the pins (nothing could remove them)"
        d.start()
        time.sleep(0.5)
        assert "probe.pins-swept count=6" in d.log(), d.log_tail()
        assert _pins(t) == (rules, routes), "swept and pinned again at the same numbers"
        assert d.stop() == 0
        rules, routes = _pins(t)
        assert [r for r in rules if hex(ONESHOT_MARK) not in r] == [] and routes == [], (rules, routes)
        assert any(hex(ONESHOT_MARK) in r for r in rules), "the one-shot pin is not the daemon's"
    finally:
        d.kill()
