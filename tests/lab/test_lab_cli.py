"""``pathsteer lab`` end to end through the console command: output, exit codes, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pathsteer.errors import UsageError
import pathsteer_lab as lab
from pathsteer_lab import measure, netns

PATHSTEER = os.path.join(os.path.dirname(sys.executable), "pathsteer")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PATHSTEER, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def cli_lab(unique_name):
    """A lab made through the CLI (--json), removed through the API whatever happens."""
    name = unique_name("t")
    try:
        yield name
    finally:
        try:
            lab.down(name)
        except UsageError:
            pass


def test_done_when_pings_over_p2_take_about_20ms(cli_lab):
    proc = cli("lab", "up", "--name", cli_lab, "--paths", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    topo = json.loads(proc.stdout)
    for key in ("namespaces", "paths", "client_address", "attacker_address", "server_addresses",
                "prefixes", "ingress_interface", "name", "prefixes6", "server_addresses6"):
        assert key in topo
    assert set(topo["namespaces"]) == {"client", "router", "server", "attacker"}
    assert [p["name"] for p in topo["paths"]] == ["p1", "p2", "p3"]
    for p in topo["paths"]:
        assert {"name", "namespace", "router_interface", "gateway", "probe_address"} <= set(p)
    assert topo["ingress_interface"] == "r-c"
    assert len(topo["prefixes"]) >= 2 and len(topo["server_addresses"]) >= 2

    proc = cli("lab", "set", cli_lab, "p2", "--delay", "10ms")
    assert proc.returncode == 0, proc.stderr
    assert "delay 10ms" in proc.stdout
    t = lab.Topology.load(cli_lab)
    r = measure.ping(t, topo["paths"][1]["probe_address"], count=20, interval=0.05)
    assert r.received == 20 and abs(r.median - 20) <= 1.0, r.rtts_ms

    proc = cli("lab", "list", "--json")
    assert proc.returncode == 0
    mine = [x for x in json.loads(proc.stdout) if x["name"] == cli_lab]
    assert mine and mine[0]["state"] == "up" and mine[0]["paths"] == 3
    assert cli_lab in cli("lab", "list").stdout

    proc = cli("lab", "down", cli_lab)
    assert proc.returncode == 0, proc.stderr
    assert not [ns for ns in netns.list_namespaces() if ns.startswith(f"ps-{cli_lab}-")]


def test_set_shows_and_changes_only_given_options(lab3):
    assert cli("lab", "set", lab3.name, "p3", "--delay", "7ms", "--loss", "2%").returncode == 0
    proc = cli("lab", "set", lab3.name, "p3", "--rate", "100mbit", "--json")
    got = json.loads(proc.stdout)
    assert got["delay_ms"] == pytest.approx(7) and got["loss_pct"] == 2 and got["rate_bps"] == 100_000_000
    proc = cli("lab", "set", lab3.name, "p3", "--delay", "0")
    assert "delay 0 " in proc.stdout and "loss 2%" in proc.stdout
    proc = cli("lab", "set", lab3.name, "p3", "--down")
    assert "DOWN" in proc.stdout
    assert "DOWN" not in cli("lab", "set", lab3.name, "p3", "--up").stdout


def _assert_usage_error(proc: subprocess.CompletedProcess, *names: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pathsteer: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])


@pytest.mark.parametrize("args,names", [
    (["lab", "set", "nosuchlab", "p1", "--delay", "1ms"], ["nosuchlab"]),
    (["lab", "down", "nosuchlab"], ["nosuchlab"]),
    (["lab", "up", "--name", "Bad!Name"], ["Bad!Name"]),
    (["lab", "up", "--paths", "0"], ["--paths", "0"]),
    (["lab", "up", "--paths", "65"], ["--paths", "65"]),
    (["lab", "up", "--paths", "abc"], ["--paths", "abc"]),
])
def test_bad_input_without_a_lab(args, names):
    _assert_usage_error(cli(*args), *names)
    assert not [ns for ns in netns.list_namespaces() if ns.startswith(("ps-nosuchlab-", "ps-Bad"))]


@pytest.mark.parametrize("args,names", [
    (["p9", "--delay", "1ms"], ["p9"]),
    (["p1", "--delay", "-5ms"], ["--delay", "-5ms"]),
    (["p1", "--delay", "10xs"], ["--delay", "10xs"]),
    (["p1", "--jitter", "abc"], ["--jitter", "abc"]),
    (["p1", "--loss", "-1"], ["--loss", "-1"]),
    (["p1", "--loss", "101%"], ["--loss", "101%"]),
    (["p1", "--loss", "lots"], ["--loss", "lots"]),
    (["p1", "--rate", "-3mbit"], ["--rate", "-3mbit"]),
    (["p1", "--rate", "fast"], ["--rate", "fast"]),
    (["p1", "--down", "--up"], ["--up", "--down"]),
])
def test_bad_set_input_changes_nothing(lab3, args, names):
    _assert_usage_error(cli("lab", "set", lab3.name, *args), *names)
    assert lab.read_impairments(lab3)["p1"] == lab.Impairment()


def test_name_in_use(lab3):
    mine = sorted(ns for ns in netns.list_namespaces() if ns.startswith(f"ps-{lab3.name}-"))
    _assert_usage_error(cli("lab", "up", "--name", lab3.name), lab3.name, "in use")
    assert sorted(ns for ns in netns.list_namespaces() if ns.startswith(f"ps-{lab3.name}-")) == mine
    assert lab.list_labs() and {s.name: s for s in lab.list_labs()}[lab3.name].state == "up"


@pytest.mark.parametrize("args", [["lab", "up", "--name", "x1"], ["lab", "set", "x1", "p1", "--delay", "1ms"],
                                  ["lab", "down", "x1"]])
def test_not_root(args, as_nobody):
    _assert_usage_error(as_nobody(["-m", "pathsteer", *args]), "root")
    assert not [ns for ns in netns.list_namespaces() if ns.startswith("ps-x1-")]


def test_every_help_ends_with_examples():
    for args in (["lab"], ["lab", "up"], ["lab", "set"], ["lab", "down"], ["lab", "list"]):
        out = cli(*args, "--help").stdout.rstrip().splitlines()
        assert "examples:" in out and out[-1].startswith("  pathsteer"), args
