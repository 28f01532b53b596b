"""Acceptance, in the lab: the history survives restarts. A daemon moves a prefix (p2 made the
fastest) and is stopped (SIGTERM: what was queued is written at stop); a second one moves it
back and is killed (kill -9, a crash: what the writer committed, within its 1 s batches,
stays); a third, on the same state dir, returns both runs' ``steer.change`` events from
``history.events`` and the paths' rollups from ``history.rollups``."""

from __future__ import annotations

import time

import pytest

import pathsteer_lab as lab
from pathsteer_lab.labconfig import lab_config
from pathsteer_lab.labrun import LabDaemon

pytestmark = pytest.mark.lab

PREFIX = "198.51.100.0/24"


@pytest.fixture
def history_daemon(lab3, tmp_path):
    made: list[LabDaemon] = []
    state_dir = tmp_path / "history"

    def start(run: int) -> LabDaemon:
        cfg = lab_config(lab3, socket=f"/run/pathsteer/{lab3.name}-hist.sock")
        cfg["history"] = {"state_dir": str(state_dir)}
        d = LabDaemon(lab3, cfg, str(tmp_path), name=f"run{run}").start()
        made.append(d)
        return d

    yield lab3, start, state_dir
    for d in made:
        d.kill()


def moves(events: list[dict]) -> list[tuple[str, str, str]]:
    return [(e["prefix"], e["from"], e["to"]) for e in events if e.get("prefix") == PREFIX]


def test_steering_changes_survive_a_stop_and_a_crash(history_daemon):
    t, start, state_dir = history_daemon
    t_before = time.time() - 1.0
    lab.set_path(t.name, "p1", delay="2ms")
    lab.set_path(t.name, "p2", delay="20ms")
    lab.set_path(t.name, "p3", delay="30ms")

    d1 = start(1)
    d1.wait_via(PREFIX, "p1")
    lab.set_path(t.name, "p2", delay="1ms")
    lab.set_path(t.name, "p1", delay="20ms")
    d1.wait_via(PREFIX, "p2", timeout=15)
    first = moves(d1.changes())
    assert ("p1", "p2") in [(f, to) for _, f, to in first], first
    time.sleep(1.5)  # a sample (1 s) with the paths' figures in the rollup run 1 leaves at its stop
    assert d1.stop() == 0, d1.log_tail()
    t_between = time.time()
    assert (state_dir / "history.sqlite").is_file()

    d2 = start(2)
    d2.wait_via(PREFIX, "p2")
    lab.set_path(t.name, "p1", delay="1ms")
    lab.set_path(t.name, "p2", delay="20ms")
    d2.wait_via(PREFIX, "p1", timeout=15)
    second = moves(d2.changes())
    assert ("p2", "p1") in [(f, to) for _, f, to in second], second
    time.sleep(2.0)  # the writer's batches (1 s) are committed
    d2.kill()

    d3 = start(3)
    stored = d3.call("history.events", {"since": t_before, "name": "steer.change", "limit": 100000})["events"]
    stored_first = moves(e for e in stored if e["at"] < t_between)
    stored_second = moves(e for e in stored if e["at"] >= t_between)
    print(f"run 1 changes {first}, stored {stored_first}; run 2 changes {second}, stored {stored_second}")
    assert stored_first == first
    for change in second:  # the run-3 start may add changes of its own: run 2's come first
        assert change in stored_second
    assert stored_second[:len(second)] == second
    assert [e["prefix"] for e in d3.call("history.events", {"since": t_before, "prefix": PREFIX,
                                                             "path": "p2", "limit": 100000})["events"]]
    names = [e["name"] for e in d3.call("history.events", {"since": t_before, "limit": 100000})["events"]]
    assert names.count("steer.start") >= 3 and "history.open" in names

    rollups = d3.call("history.rollups", {"path": "p2", "since": t_before, "limit": 100000})["rollups"]
    history_lines = [[ln for ln in d.log().splitlines() if "history." in ln or "daemon.stop" in ln]
                     for d in (d1, d2, d3)]
    assert rollups, (d3.call("history.stats"), history_lines)
    assert all(r["path"] == "p2" and r["samples"] >= 1 for r in rollups)
    assert any(r["rtt_p50_ms"] is not None for r in rollups)
    stats = d3.call("history.stats")
    print(f"history: {stats}")
    assert stats["set_aside"] == 0 and stats["dropped"] == 0
    assert d3.stop() == 0
