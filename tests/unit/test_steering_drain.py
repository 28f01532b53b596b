"""Drains in the steering component (fake engine and plane, a temporary state dir) and their
file: steer.drain / steer.undrain, the path view, events, ttl, persistence across a restart."""

from __future__ import annotations

import asyncio
import json
import logging
import os

import pytest
from pydantic import ValidationError

from pathsteer.errors import UsageError
from pathsteer.steering import drains as drainfile
from pathsteer.steering.drains import Drain
from pathsteer.steering.service import DrainArgs, SteeringService, UndrainArgs
from pathsteer.telemetry import PathState
from pathsteer.units import parse_ttl

from test_policy_fixtures import path
from test_steering_service import FakeEngine, FakePlane, config, no_system, settle  # noqa: F401 (fixture)


# --- the file ----------------------------------------------------------------------------------

def test_file_round_trip(tmp_path):
    drains = {"p1": Drain("p1", 1000.0, None, "modem swap"), "p2": Drain("p2", 1001.5, 5000.0, None)}
    drainfile.save(str(tmp_path), drains)
    assert os.listdir(tmp_path) == ["drains.json"]  # no temporary file left
    loaded, dropped = drainfile.load(str(tmp_path), wall=2000.0, known=["p1", "p2"])
    assert loaded == drains and dropped == []


def test_no_file_is_no_drains(tmp_path):
    assert drainfile.load(str(tmp_path / "nowhere"), wall=0.0) == ({}, [])


@pytest.mark.parametrize("text", ["{not json", "[]", '{"version": 9, "drains": []}',
                                  '{"version": 1, "drains": [{"path": 3}]}',
                                  '{"version": 1, "drains": [{"path": "p1", "since": "x"}]}', "\udcff"])
def test_a_corrupt_file_is_reported_and_ignored(tmp_path, text):
    (tmp_path / "drains.json").write_text(text, errors="surrogateescape")
    loaded, dropped = drainfile.load(str(tmp_path), wall=0.0)
    assert loaded == {}
    assert len(dropped) == 1 and dropped[0].startswith(str(tmp_path / "drains.json"))
    assert dropped[0].endswith("starting with no drains")


def test_expired_ttl_and_unknown_paths_are_not_restored(tmp_path):
    drainfile.save(str(tmp_path), [Drain("p1", 100.0, 200.0), Drain("p2", 100.0, 400.0), Drain("gone", 100.0)])
    loaded, dropped = drainfile.load(str(tmp_path), wall=300.0, known=["p1", "p2"])
    assert list(loaded) == ["p2"]
    assert dropped == ["gone: no such path in the config", "p1: its ttl ran out while the daemon was not running"]


def test_parse_ttl_and_reason():
    assert parse_ttl(None) is None
    assert parse_ttl(600) == 600.0
    assert parse_ttl("10m") == 600.0
    assert parse_ttl("1.5h") == 5400.0
    with pytest.raises(UsageError, match=r"^ttl: '10x' is not a duration"):
        parse_ttl("10x")
    with pytest.raises(UsageError, match=r"^ttl: 0 must be a duration above 0"):
        parse_ttl(0)
    assert drainfile.clean_reason("  modem\nswap ") == "modem swap"
    assert drainfile.clean_reason("  ") is None
    with pytest.raises(UsageError, match="reason: 201 characters, at most 200"):
        drainfile.clean_reason("x" * 201)


# --- the component -----------------------------------------------------------------------------

def drain_config(state_dir, **over):
    return config(history={"state_dir": str(state_dir)}, **over)


def service(plane, cfg) -> SteeringService:
    return SteeringService(cfg, dataplane_factory=lambda c, links=None: plane, engine_factory=FakeEngine)


def test_the_section_carries_the_state_dir(tmp_path):
    cfg = drain_config(tmp_path)
    assert cfg.steering.state_dir == str(tmp_path)
    assert SteeringService(cfg.steering).state_dir == str(tmp_path)


def test_args_are_strict():
    with pytest.raises(ValidationError):
        DrainArgs(path="p1", tll="10m")
    with pytest.raises(ValidationError):
        DrainArgs(path="p1", ttl=True)
    assert DrainArgs(path="p1", ttl=600).ttl == 600 and DrainArgs(path="p1", ttl="10m").ttl == "10m"
    with pytest.raises(ValidationError):
        UndrainArgs(path="p1", why="x")


def test_drain_moves_within_a_tick_keeps_figures_and_undrain_brings_it_back(tmp_path, caplog):
    async def main():
        plane = FakePlane()
        s = service(plane, drain_config(tmp_path))
        with caplog.at_level(logging.INFO, logger="pathsteer.steering"):
            await s.start()
            s.engine.set(path("p1", 10), path("p2", 30))
            await settle()
            assert plane.via() == "p1"
            out = await s.cmd_drain(DrainArgs(path="p1", ttl="10m", reason="modem swap"))
            assert out["persisted"] and out["warning"] is None and not out["was_drained"]
            assert out["drained"]["reason"] == "modem swap" and out["drained"]["until"] > out["drained"]["since"]
            await settle(0.03)
            assert plane.via() == "p2"
            route = s.cmd_status(None)["routes"][0]
            assert route["kind"] == "drain" and "drained (maintenance: modem swap)" in route["reason"]
            p1 = s.cmd_status(None)["paths"][0]
            assert p1["state"] == "drained" and p1["probe_state"] == "up" and p1["rtt_ms"] == pytest.approx(10.0)
            assert p1["drained"]["reason"] == "modem swap"
            assert s.view_paths()[0]["state"] == "drained" and s.view_paths()[1]["drained"] is None
            saved = json.loads((tmp_path / "drains.json").read_text())
            assert [d["path"] for d in saved["drains"]] == ["p1"]
            assert (await s.cmd_undrain(UndrainArgs(path="p1")))["undrained"]
            await settle(0.03)
            assert plane.via() == "p2"  # hold_down 200 ms: not back yet
            await settle(0.4)
            assert plane.via() == "p1"
            assert s.cmd_status(None)["routes"][0]["kind"] == "undrain"
            assert s.cmd_status(None)["paths"][0]["state"] == "up"
            assert await s.cmd_undrain(UndrainArgs(path="p1")) == {
                "path": "p1", "undrained": False, "was": None, "persisted": True, "note": "p1 was not drained"}
            assert json.loads((tmp_path / "drains.json").read_text())["drains"] == []
            await s.stop()
    asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("steer.drain path=p1 ttl=600.0 reason='modem swap'") for line in lines), lines
    assert any(line == "steer.undrain path=p1 why=manual" for line in lines), lines
    assert any(line.startswith("steer.change") and "kind=drain" in line for line in lines)
    assert any(line.startswith("steer.change") and "kind=undrain" in line for line in lines)


def test_unknown_path_names_it_and_the_known_ones(tmp_path):
    s = service(FakePlane(), drain_config(tmp_path))
    with pytest.raises(UsageError, match=r"^steer.drain: path 'p9' is not configured \(paths: p1, p2\)$"):
        asyncio.run(s.cmd_drain(DrainArgs(path="p9")))
    with pytest.raises(UsageError, match=r"^steer.undrain: path 'p9' is not configured \(paths: p1, p2\)$"):
        asyncio.run(s.cmd_undrain(UndrainArgs(path="p9")))
    with pytest.raises(UsageError, match=r"^steer.drain: ttl: 'soon' is not a duration"):
        asyncio.run(s.cmd_drain(DrainArgs(path="p1", ttl="soon")))
    assert not (tmp_path / "drains.json").exists()


def test_draining_the_only_healthy_path_warns_and_keeps_it(tmp_path):
    async def main():
        plane = FakePlane()
        s = service(plane, drain_config(tmp_path))
        await s.start()
        s.engine.set(path("p1", 10), path("p2", None, state=PathState.DOWN, failing=3))
        await settle()
        out = await s.cmd_drain(DrainArgs(path="p1"))
        assert out["only_healthy"] == ["198.51.100.0/24"]
        assert out["warning"].startswith("p1 is the only healthy path of 198.51.100.0/24")
        await settle(0.03)
        assert plane.via() == "p1"  # never blackholed
        route = s.cmd_status(None)["routes"][0]
        assert route["kind"] == "least-bad" and "every path drained or failing" in route["reason"]
        await s.stop()
    asyncio.run(main())


def test_drains_survive_a_restart_and_a_ttl_ends_them(tmp_path, caplog):
    async def main():
        plane = FakePlane()
        s = service(plane, drain_config(tmp_path))
        await s.start()
        s.engine.set(path("p1", 10), path("p2", 30))
        await s.cmd_drain(DrainArgs(path="p1", ttl=0.3, reason="window"))
        await settle(0.05)
        assert plane.via() == "p2"
        await s.stop()
        # A new daemon: the drain is restored before the first decision.
        plane2 = FakePlane()
        s2 = service(plane2, drain_config(tmp_path))
        with caplog.at_level(logging.INFO, logger="pathsteer.steering"):
            await s2.start()
            assert s2.drains["p1"].reason == "window"
            await settle(0.05)
            assert plane2.via() == "p2"
            await settle(0.6)  # the ttl runs out; hold_down 200 ms
            assert "p1" not in s2.drains and plane2.via() == "p1"
            await s2.stop()
        assert json.loads((tmp_path / "drains.json").read_text())["drains"] == []
    asyncio.run(main())
    assert any(r.getMessage() == "steer.undrain path=p1 why=ttl" for r in caplog.records)
    assert any(r.getMessage().startswith("steer.drains-restored paths=p1") for r in caplog.records)


def test_a_corrupt_file_starts_with_no_drains_and_a_line(tmp_path, caplog):
    (tmp_path / "drains.json").write_text("{garbage")

    async def main():
        plane = FakePlane()
        s = service(plane, drain_config(tmp_path))
        with caplog.at_level(logging.INFO, logger="pathsteer.steering"):
            await s.start()
        assert s.drains == {}
        await s.stop()
    asyncio.run(main())
    assert any(r.getMessage().startswith("steer.drains-load ") and "starting with no drains" in r.getMessage()
               for r in caplog.records)


def test_an_unwritable_state_dir_still_drains_and_says_so(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")

    async def main():
        plane = FakePlane()
        s = service(plane, drain_config(blocker / "sub"))
        await s.start()
        s.engine.set(path("p1", 10), path("p2", 30))
        await settle()
        out = await s.cmd_drain(DrainArgs(path="p1"))
        assert not out["persisted"] and "will not survive a restart" in out["warning"]
        await settle(0.03)
        assert plane.via() == "p2"
        await s.stop()
    asyncio.run(main())


def test_a_reload_without_the_path_ends_its_drain(tmp_path, caplog):
    async def main():
        plane = FakePlane()
        s = service(plane, drain_config(tmp_path))
        await s.start()
        s.engine.set(path("p1", 10), path("p2", 30))
        await s.cmd_drain(DrainArgs(path="p2"))
        cfg = drain_config(tmp_path)
        data = cfg.model_dump(mode="json", exclude_none=True)
        data["paths"] = data["paths"][:1]
        data["destinations"][0]["paths"] = ["p1"]
        from pathsteer.config import parse_config
        with caplog.at_level(logging.INFO, logger="pathsteer.steering"):
            await s.reload(parse_config(data))
        assert s.drains == {}
        await s.stop()
    asyncio.run(main())
    assert any(r.getMessage() == "steer.undrain path=p2 why=removed" for r in caplog.records)


def test_a_path_state_change_is_an_event(caplog):
    """The probe engine logs each path state change and publishes it on the bus (once: steering
    only wakes its decide loop on it)."""
    import types
    from pathsteer.events import BUS
    from pathsteer.probe.engine import ProbeEngine
    woken = []
    engine = types.SimpleNamespace(on_state_change=lambda *a: woken.append(a[:3]))
    tracker = types.SimpleNamespace(name="p1", state=PathState.UP)
    tracker.update = lambda now: PathState.DOWN
    seq = BUS.last_seq
    with caplog.at_level(logging.INFO):
        ProbeEngine.changed(engine, tracker, 1.0)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("path.state")]
    assert lines == ["path.state path=p1 from=up to=down"]
    assert [e.to_json() | {"seq": 0, "at": 0} for e in BUS.recent(seq)] == \
        [{"seq": 0, "at": 0, "name": "path.state", "path": "p1", "from": "up", "to": "down"}]
    assert woken == [("p1", PathState.UP, PathState.DOWN)]

