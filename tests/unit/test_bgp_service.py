"""The bgp component against a stand-in ExaBGP (``bgp.exabgp.command``: a script that speaks
ExaBGP's API the way ExaBGP 5 does, through pathsteer's relay): it crashes and is restarted
with a doubling backoff, its garbage and a flapping peer are counted and logged, and steering is
never called for any of it. Real asyncio, real subprocesses and sockets; no root."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import textwrap
import time

import pytest

from pathsteer.bgp.service import BgpService
from pathsteer.config.load import parse_config
from pathsteer.events import BUS

BASE = {"paths": [{"name": "p1", "interface": "lo", "gateway": "127.0.0.1", "probe": {"targets": ["127.0.0.9"]}}],
        "destinations": [{"prefix": "198.51.100.0/24", "paths": ["p1"]}]}

FAKE = textwrap.dedent('''\
    #!{python}
    # A stand-in for ExaBGP: runs the config's API process, says what the scenario says, exits.
    import json, os, re, subprocess, sys, time
    conf = open(sys.argv[1]).read()
    run = re.search(r"run (.*);", conf).group(1).split()
    api = subprocess.Popen(run, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    state_file = os.environ["FAKE_STATE"]
    n = int(open(state_file).read() or 0) + 1 if os.path.exists(state_file) else 1
    open(state_file, "w").write(str(n))
    def say(obj):
        api.stdin.write((obj if isinstance(obj, str) else json.dumps(obj)).encode() + b"\\n"); api.stdin.flush()
    peer = {{"address": {{"local": "127.0.0.1", "peer": "127.0.0.2"}}}}
    for i in range({flaps}):
        say({{"type": "state", "neighbor": dict(peer, state="up")}})
        say({{"type": "update", "neighbor": dict(peer, message={{"update": {{"attribute": {{"large-community": [[65000, 7, 1]]}},
             "announce": {{"ipv4 unicast": {{"127.0.0.2": [{{"nlri": "192.0.2.0/24"}}]}}}}}}}})}})
        say({{"type": "state", "neighbor": dict(peer, state="down", reason="peer reset")}})
    say("this is not json")
    say('{{"type": "update", "neighbor": {{"message": {{"update": {{"announce": {{"ipv4 unicast": {{"x": [{{"nlri": "999.0.0.0/8"}}]}}}}}}}}}}}}')
    time.sleep({lifetime})
    print("fake exabgp: crashing", file=sys.stderr, flush=True)
    sys.exit(3)
''')


class Ctx:
    """Only what the component uses; steering is absent (nothing may call it)."""

    def __init__(self) -> None:
        self.steer_calls = 0

    def component(self, name: str):
        return None


@pytest.fixture
def fake_exabgp(tmp_path, monkeypatch):
    def make(flaps: int = 3, lifetime: float = 0.3) -> str:
        path = tmp_path / "fake-exabgp"
        path.write_text(FAKE.format(python=sys.executable, flaps=flaps, lifetime=lifetime))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv("FAKE_STATE", str(tmp_path / "runs"))
        return str(path)
    return make


def service(command: str, **exabgp) -> BgpService:
    cfg = parse_config({**BASE, "bgp": {
        "local_as": 65001, "router_id": "127.0.0.1", "peers": [{"address": "127.0.0.2", "as": 65000}],
        "learn": {"enabled": True, "communities": ["65000:7:1"]},
        "exabgp": {"command": command, "restart_min": "200ms", "restart_max": "800ms", **exabgp}}}).bgp
    return BgpService(cfg, Ctx())


def test_crashes_are_restarted_with_a_doubling_backoff_and_garbage_is_counted(fake_exabgp, tmp_path):
    events = []

    def keep(e):
        if e.name.startswith("bgp."):
            events.append(e)

    BUS.subscribe(keep)

    async def run():
        svc = service(fake_exabgp(flaps=3, lifetime=0.3))
        await svc.start()
        await asyncio.sleep(4.0)
        status = svc.cmd_status(None)
        await svc.stop()
        return svc, status

    try:
        svc, status = asyncio.run(run())
    finally:
        BUS.unsubscribe(keep)
    ex = status["exabgp"]
    assert ex["restarts"] >= 3, status
    waits = [e.fields.get("restart_in_s") for e in events if e.name == "bgp.exabgp" and e.fields.get("state") == "exited"]
    assert waits[:3] == [0.2, 0.4, 0.8] and all(w <= 0.8 for w in waits), waits
    assert all(x["code"] == 3 and "crashing" in x["why"] for x in ex["exits"]), ex["exits"]
    assert ex["garbage"] >= 2 * ex["restarts"]  # two bad lines per run, counted, never raised
    s = status["sessions"][0]
    assert s["ups"] >= 3 and s["downs"] >= 3 and s["state"] == "down" and s["received"] == 0
    sessions = [e for e in events if e.name == "bgp.session"]
    assert {e.fields["state"] for e in sessions} >= {"up", "down"}
    assert status["learned"] == 0  # the flapping peer's prefix went with its session


def test_a_missing_command_is_an_exit_not_a_crash_of_the_daemon(tmp_path):
    async def run():
        svc = service("/bin/true")  # exits at once without ever connecting
        await svc.start()
        await asyncio.sleep(1.0)
        status = svc.cmd_status(None)
        await svc.stop()
        return status

    status = asyncio.run(run())
    assert status["exabgp"]["restarts"] >= 1 and status["exabgp"]["exits"][0]["code"] == 0


def test_stop_leaves_no_process_and_no_directory(fake_exabgp):
    async def run():
        svc = service(fake_exabgp(flaps=1, lifetime=30))
        await svc.start()
        for _ in range(50):
            await asyncio.sleep(0.1)
            if svc._writer is not None:
                break
        pid, d = svc._proc.pid, svc._dir
        t0 = time.monotonic()
        await svc.stop()
        return pid, d, time.monotonic() - t0

    pid, d, took = asyncio.run(run())
    assert not os.path.exists(d) and took < 6.0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


FAKE_RESTART = textwrap.dedent('''\
    #!{python}
    # Run 1: the peer comes up, announces 192.0.2.0/24 (tagged), ExaBGP crashes. Run 2: the peer
    # comes up again and sends End-of-RIB without it.
    import json, os, re, subprocess, sys, time
    conf = open(sys.argv[1]).read()
    api = subprocess.Popen(re.search(r"run (.*);", conf).group(1).split(), stdin=subprocess.PIPE)
    state_file = os.environ["FAKE_STATE"]
    n = int(open(state_file).read()) + 1 if os.path.exists(state_file) else 1
    open(state_file, "w").write(str(n))
    def say(obj):
        api.stdin.write(json.dumps(obj).encode() + b"\\n"); api.stdin.flush()
    peer = {{"address": {{"local": "127.0.0.1", "peer": "127.0.0.2"}}}}
    say({{"type": "state", "neighbor": dict(peer, state="up")}})
    if n == 1:
        say({{"type": "update", "neighbor": dict(peer, message={{"update": {{"attribute": {{"large-community": [[65000, 7, 1]]}},
             "announce": {{"ipv4 unicast": {{"127.0.0.2": [{{"nlri": "192.0.2.0/24"}}]}}}}}}}})}})
        time.sleep(0.5)
        sys.exit(9)
    time.sleep(1.0)
    say({{"type": "update", "neighbor": dict(peer, message={{"eor": {{"afi": "ipv4", "safi": "unicast"}}}})}})
    time.sleep(30)
''')


def test_an_exabgp_crash_keeps_learned_prefixes_until_the_peers_end_of_rib(tmp_path, monkeypatch):
    path = tmp_path / "fake-exabgp"
    path.write_text(FAKE_RESTART.format(python=sys.executable))
    path.chmod(0o755)
    monkeypatch.setenv("FAKE_STATE", str(tmp_path / "runs"))

    async def run():
        svc = service(str(path), restart_min="1s", restart_max="2s")
        await svc.start()
        await asyncio.sleep(0.9)
        before = svc.cmd_status(None)
        await asyncio.sleep(0.8)  # ExaBGP has crashed, not yet back
        during = svc.cmd_status(None)
        await asyncio.sleep(2.0)  # back, End-of-RIB without the prefix
        after = svc.cmd_status(None)
        await svc.stop()
        return before, during, after

    before, during, after = asyncio.run(run())
    assert before["learned"] == 1
    assert during["exabgp"]["restarts"] == 1 and during["learned"] == 1  # steering keeps it
    assert after["learned"] == 0 and after["sessions"][0]["state"] == "up", after


def test_the_runtime_directory_is_the_daemons_own_and_taken_back_after_a_kill(tmp_path):
    from types import SimpleNamespace
    svc = service("/bin/true")
    svc.ctx.config = SimpleNamespace(control=SimpleNamespace(socket=str(tmp_path / "steer.sock")))
    first = svc._runtime_dir()
    try:
        assert os.path.basename(first).startswith("bgp-") and stat.S_IMODE(os.stat(first).st_mode) == 0o700
        with open(os.path.join(first, "exabgp.conf"), "w") as f:  # what a kill -9 leaves
            f.write("old")
        again = svc._runtime_dir()
        assert again == first and os.listdir(again) == []
        other = service("/bin/true")
        other.ctx.config = SimpleNamespace(control=SimpleNamespace(socket=str(tmp_path / "other.sock")))
        second = other._runtime_dir()
        assert second != first
        os.rmdir(second)
    finally:
        import shutil
        shutil.rmtree(first, ignore_errors=True)


@pytest.mark.parametrize("text, error", [
    ("not-a-prefix", "prefix: 'not-a-prefix' is not a prefix or an address"),
    ("10.0.0.300", "prefix: '10.0.0.300' is not a prefix or an address"),
    ("", "prefix: '' is not a prefix or an address"),
    ("192.0.2.0/24", "prefix: '192.0.2.0/24' is not announced, withdrawn or learned here"),
])
def test_bgp_prefix_refuses_bad_input_in_one_line(text, error):
    from pathsteer.bgp.service import PrefixArgs
    from pathsteer.errors import UsageError
    svc = service("/bin/true")
    with pytest.raises(UsageError) as e:
        svc.cmd_prefix(PrefixArgs(prefix=text))
    assert str(e.value) == error and "\n" not in str(e.value)
