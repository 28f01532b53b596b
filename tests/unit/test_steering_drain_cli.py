"""``pathsteer drain | undrain`` and ``pathsteer events --since/--path``: parsing, one-line
errors (exit 2 for usage), the events source (history.events when the daemon has it, else
steer.events filtered here), and drain/undrain against a control server with the steering
commands (fake engine and plane)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import pytest

from pathsteer.cli.main import main
from pathsteer.control.server import ControlServer
from pathsteer.steering import cli
from pathsteer.steering.service import SteeringService

from test_policy_fixtures import path
from test_steering_service import FakeEngine, FakePlane, config, no_system, settle  # noqa: F401 (fixture)


@pytest.mark.parametrize("command", ["drain", "undrain"])
def test_help_ends_with_examples(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out.strip().splitlines()
    idx = max(i for i, line in enumerate(out) if line.startswith("examples:"))
    assert out[idx + 1:] and all(line.startswith("  pathsteer") for line in out[idx + 1:])


@pytest.mark.parametrize("argv, message", [
    (["drain", "p1", "--ttl", "10x"], "pathsteer: error: --ttl: '10x' is not a duration"),
    (["drain", "p1", "--ttl", "0"], "pathsteer: error: --ttl: '0' must be a duration above 0"),
    (["drain"], "pathsteer: error: the following arguments are required: PATH"),
    (["undrain"], "pathsteer: error: the following arguments are required: PATH"),
    (["events", "--since", "yesterday"], "pathsteer: error: --since: 'yesterday' is not a duration"),
    (["events", "--limit", "-1"], "pathsteer: error: --limit: -1 must be between 0 and 1000000"),
])
def test_usage_errors_are_one_line_exit_2(argv, message, capsys, tmp_path):
    assert main([*argv, "--socket", str(tmp_path / "none.sock")] if argv[1:] else argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err, err


def test_no_daemon_is_one_line(capsys, tmp_path):
    assert main(["drain", "p1", "--socket", str(tmp_path / "none.sock")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("pathsteer: error: no pathsteer daemon at") and "\n" not in err


class Calls:
    def __init__(self, commands, answers):
        self.commands, self.answers, self.made = commands, answers, []

    def __call__(self, args, command, params=None):
        self.made.append((command, params))
        if command == "help":
            return self.commands
        return self.answers[command]


def events_args(**kw):
    parser = cli_parser()
    return parser.parse_args(["events", *kw.pop("argv", [])])


def cli_parser():
    from pathsteer.cli.main import build_parser
    return build_parser()


def test_events_asks_history_when_the_daemon_has_it(monkeypatch):
    evs = [{"seq": 7, "at": time.time(), "name": "steer.drain", "path": "p1", "ttl": 600.0, "reason": "swap"}]
    calls = Calls({"help": "", "history.events": "", "steer.events": ""}, {"history.events": {"events": evs}})
    monkeypatch.setattr(cli, "_call", calls)
    t0 = time.time()
    got, source = cli.fetch_events(events_args(argv=["--since", "1h", "--path", "p1", "--limit", "5"]))
    assert source == "history.events" and got == evs
    command, params = calls.made[-1]
    assert command == "history.events" and params["path"] == "p1" and params["limit"] == 5
    assert "prefix" not in params and t0 - 3600 - 1 <= params["since"] <= time.time() - 3600


def test_events_falls_back_to_steer_events_and_filters_here(monkeypatch):
    now = time.time()
    evs = [{"at": now - 7200, "prefix": "198.51.100.0/24", "policy": "lowest-latency", "from": "p1", "to": "p2",
            "kind": "left", "reason": "old"},
           {"at": now - 60, "prefix": "198.51.100.0/24", "policy": "weighted", "from": "p2:50,p3:50", "to": "p3:100",
            "kind": "drain", "reason": "p2 drained"},
           {"at": now - 30, "prefix": "198.51.100.0/24", "policy": "weighted", "from": "p3:100", "to": "p1:100",
            "kind": "better", "reason": "p1"}]
    calls = Calls({"help": "", "steer.events": ""}, {"steer.events": {"events": evs}})
    monkeypatch.setattr(cli, "_call", calls)
    got, source = cli.fetch_events(events_args(argv=["--since", "1h", "--path", "p2"]))
    assert source == "steer.events" and got == [evs[1]]
    assert calls.made[-1] == ("steer.events", {"limit": 1_000_000})
    got, _ = cli.fetch_events(events_args(argv=["--limit", "1", "--prefix", "198.51.100.0/24"]))
    assert got == [evs[2]] and calls.made[-1] == ("steer.events", {"limit": 1, "prefix": "198.51.100.0/24"})


def test_render_events_both_shapes():
    at = time.time()
    changes = [{"at": at, "prefix": "198.51.100.0/24", "policy": "failover", "from": "p1", "to": "p2", "kind": "drain",
                "reason": "p1 drained (maintenance); moved to p2"}]
    text = cli.render_events(changes)
    assert text.splitlines()[0].split() == ["TIME", "PREFIX", "FROM", "TO", "KIND", "REASON"]
    assert "p1 drained (maintenance); moved to p2" in text
    history = [{"seq": 1, "at": at, "name": "steer.drain", "path": "p1", "ttl": None, "reason": "modem swap"},
               {"seq": 2, "at": at, "name": "steer.change", **changes[0]},
               {"seq": 3, "at": at, "name": "path.state", "path": "p1", "from": "up", "to": "down"}]
    lines = cli.render_events(history).splitlines()
    assert lines[0].split() == ["TIME", "EVENT", "PREFIX", "FROM", "TO", "KIND", "REASON"]
    assert "steer.drain" in lines[1] and "path=p1 reason='modem swap'" in lines[1]
    assert "steer.change" in lines[2] and "moved to p2" in lines[2]
    assert "path.state" in lines[3] and " up " in lines[3] and " down " in lines[3] and "path=p1" in lines[3]
    assert cli.render_events([]) == "no changes yet"


def test_drain_and_undrain_against_the_control_socket(tmp_path, capsys):
    sock = f"/tmp/ps-drain-{os.getpid()}-{uuid.uuid4().hex[:8]}.sock"

    async def run():
        plane = FakePlane()
        s = SteeringService(config(history={"state_dir": str(tmp_path)}),
                            dataplane_factory=lambda c, links=None: plane, engine_factory=FakeEngine)
        server = ControlServer(sock)
        for c in s.commands():
            server.register(c)
        await server.start()
        await s.start()
        try:
            s.engine.set(path("p1", 10), path("p2", 30))
            await settle()
            rc = await asyncio.to_thread(main, ["drain", "p1", "--ttl", "10m", "--reason", "modem swap",
                                                "--socket", sock])
            assert rc == 0
            await settle(0.05)
            assert plane.via() == "p2"
            assert await asyncio.to_thread(main, ["drain", "p9", "--socket", sock]) == 2
            assert await asyncio.to_thread(main, ["events", "--path", "p1", "--socket", sock]) == 0
            assert await asyncio.to_thread(main, ["undrain", "p1", "--socket", sock]) == 0
            assert await asyncio.to_thread(main, ["undrain", "p1", "--socket", sock]) == 0
        finally:
            await s.stop()
            await server.close()

    try:
        asyncio.run(run())
    finally:
        if os.path.exists(sock):
            os.unlink(sock)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("p1 drained (modem swap) until 20") and lines[0].endswith(
        ": traffic leaves it, its probes go on")
    assert "kind" not in err and err.strip() == (
        "pathsteer: error: steer.drain: path 'p9' is not configured (paths: p1, p2)")
    assert any("drain" in line and "p1 drained (maintenance: modem swap); moved to p2" in line for line in lines)
    assert "p1 undrained: traffic comes back under the policy's rules (hold_down)" in lines
    assert lines[-1] == "p1 was not drained"
