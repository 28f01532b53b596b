"""The ``gateways`` component against a real HAProxy (Debian 12: 2.6) on loopback: its log
stream over a real syslog socket, weights and ACL entries over its real runtime API. Steering and
the guard are stand-ins holding what those components expose (a decision's routes, path states,
the guard's blocks): the lab tests (tests/lab/test_gateways_lab.py) run the whole daemon."""

from __future__ import annotations

import asyncio
import http.client
import http.server
import ipaddress
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pathsteer.config.gateways import GatewayConfig
from pathsteer.events import Bus
from pathsteer.gateways.runtime import HaproxyRuntime
from pathsteer.gateways.service import GatewaysSection, GatewaysService, host_of
from pathsteer.guard.blocks import Origin

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed (make deps)")]

from test_haproxy_runtime import free_port, stop  # noqa: E402 - the sibling test's helpers


class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        status = 401 if self.path.startswith("/protected") else 200
        body = f"{self.server.server_address[0]}\n".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_a) -> None:
        pass


@pytest.fixture
def backends():
    servers = []
    try:
        for host in ("127.0.0.2", "127.0.0.3"):
            s = http.server.ThreadingHTTPServer((host, 0), Answer)
            threading.Thread(target=s.serve_forever, daemon=True).start()
            servers.append(s)
        yield [f"{s.server_address[0]}:{s.server_address[1]}" for s in servers]
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


HAPROXY_JSON = ("log-format '{\"t\":%Ts%ms,\"ci\":\"%ci\",\"b\":\"%b\",\"s\":\"%s\",\"sa\":\"%si:%sp\","
                "\"st\":%ST,\"bu\":%U,\"bd\":%B,\"tr\":%Tr,\"ta\":%Ta}'")


@pytest.fixture
def haproxy(tmp_path: Path, backends):
    yield from _haproxy(tmp_path, backends, "option httplog")


@pytest.fixture
def haproxy_json(tmp_path: Path, backends):
    yield from _haproxy(tmp_path, backends, HAPROXY_JSON)


def _haproxy(tmp_path: Path, backends, log_option: str):
    sock, acl, log_sock = tmp_path / "admin.sock", tmp_path / "blocked.acl", tmp_path / "log.sock"
    acl.write_text("")
    port = free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        f"global\n    stats socket {sock} mode 600 level admin\n    log {log_sock} local0\n"
        f"defaults\n    mode http\n    log global\n    {log_option}\n    retries 0\n    timeout connect 1s\n"
        "    timeout client 5s\n    timeout server 5s\n"
        f"frontend fe\n    bind 127.0.0.1:{port}\n    acl blocked src -f {acl}\n"
        "    http-request deny if blocked\n    default_backend app\n"
        f"backend app\n    server s1 {backends[0]} weight 100\n    server s2 {backends[1]} weight 50\n")
    proc = None
    try:
        with open(tmp_path / "haproxy.log", "wb") as log:
            proc = subprocess.Popen(["haproxy", "-f", str(cfg), "-db"], stdout=subprocess.DEVNULL, stderr=log,
                                    cwd=tmp_path)
        deadline = time.monotonic() + 10
        while True:
            try:
                if asyncio.run(HaproxyRuntime(str(sock), timeout_s=1).command("show info")).startswith("Name"):
                    break
            except Exception:  # noqa: BLE001 - not up yet
                pass
            assert proc.poll() is None, (tmp_path / "haproxy.log").read_text()
            assert time.monotonic() < deadline, "haproxy did not answer within 10 s"
            time.sleep(0.05)
        yield SimpleNamespace(sock=str(sock), acl=str(acl), log_sock=str(log_sock), port=port, tmp=tmp_path)
    finally:
        stop(proc)


# --- stand-ins for steering and the guard ----------------------------------------------------


def route(prefix: str, *paths: str):
    return SimpleNamespace(prefix=ipaddress.ip_network(prefix), nexthops=tuple(SimpleNamespace(path=p) for p in paths))


class Steer:
    def __init__(self) -> None:
        self.states = {"p1": "up", "p2": "up"}
        self.decision = SimpleNamespace(routes=(route("127.0.0.2/32", "p1"), route("127.0.0.3/32", "p2")))
        self.drains: dict = {}
        self.times: list = []

    @property
    def telemetry(self):
        return SimpleNamespace(paths=[SimpleNamespace(name=n, state=SimpleNamespace(value=s))
                                      for n, s in self.states.items()])

    def note_upstream_times(self, figures) -> None:
        self.times.append(figures)


class Guard:
    def __init__(self) -> None:
        self.blocks: dict = {}
        self.config = SimpleNamespace(allow=[ipaddress.ip_network("127.0.0.9/32")], deny=[])
        self.calls: list = []

    def block(self, cidr, *, origin, ttl, reason):
        self.calls.append((cidr, origin, ttl, reason))
        self.blocks[cidr] = SimpleNamespace(origin=origin, reason=reason)


class Ctx:
    def __init__(self, steer, guard) -> None:
        self.bus = Bus()
        self.config = SimpleNamespace(paths=None)
        self._c = {"steer": steer, "guard": guard}

    def component(self, name):
        return self._c.get(name)


def service(h, tmp_path, fmt: str | None = None, **abuse) -> tuple[GatewaysService, Steer, Guard]:
    g = GatewayConfig(name="edge", kind="haproxy", logs=[f"unix:{h.log_sock}"], runtime=h.sock, acl=h.acl,
                      format=fmt, abuse={"threshold": 20, "ttl": "5m", **abuse})
    steer, guard = Steer(), Guard()
    return GatewaysService(GatewaysSection((g,), str(tmp_path / "state")), Ctx(steer, guard)), steer, guard


async def weights(h) -> dict:
    states = await HaproxyRuntime(h.sock).servers_state()
    return {k[1]: s.weight for k, s in states.items()}


async def until(cond, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while not await cond():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


def get(port: int, path: str = "/") -> int:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def test_host_of():
    assert host_of("10.0.0.1:80") == "10.0.0.1"
    assert host_of("[2001:db8::1]:443") == "2001:db8::1"
    assert host_of("2001:db8::1") == "2001:db8::1"
    assert host_of("backend/server") is None and host_of(None) is None and host_of("name:80") is None


def test_a_dead_path_drains_its_server_and_recovery_and_stop_restore_it(haproxy, tmp_path):
    async def main():
        svc, steer, _guard = service(haproxy, tmp_path)
        await svc.start()
        try:
            await svc.tick()
            assert await weights(haproxy) == {"s1": 100, "s2": 50}
            state_file = tmp_path / "state" / "gateway-edge.json"
            assert json.loads(state_file.read_text())["found"] == {"app/s1": 100, "app/s2": 50}

            steer.states["p1"] = "down"
            t0 = time.monotonic()
            svc._on_event(SimpleNamespace(name="path.state"))  # what the bus does on a path change
            await until(lambda: _eq(weights(haproxy), {"s1": 0, "s2": 50}))
            took = time.monotonic() - t0
            print(f"health out: {took * 1000:.1f} ms from the path event to HAProxy's new weight")
            assert took < 1.0
            view = svc.cmd_status(None)["gateways"][0]
            s1 = next(s for s in view["servers"] if s["server"] == "s1")
            assert s1["weight"] == 0 and s1["health"] == "down" and s1["path"] == "p1"
            assert s1["gateway_status"]["status"] in ("UP", "no check", "DRAIN") and "total" in s1["gateway_status"]
            assert any(a["action"] == "weight" for a in view["actions"])

            steer.states["p1"] = "degraded"
            await svc.tick()
            assert await weights(haproxy) == {"s1": 50, "s2": 50}  # degraded_factor 0.5

            steer.states["p2"] = "down"
            steer.states["p1"] = "down"
            await svc.tick()
            assert await weights(haproxy) == {"s1": 100, "s2": 50}  # never the last servers: fail open

            steer.states["p1"] = "up"
            await svc.tick()
            assert await weights(haproxy) == {"s1": 100, "s2": 0}
        finally:
            await svc.stop()
        assert await weights(haproxy) == {"s1": 100, "s2": 50}  # what it found
        assert not (tmp_path / "state" / "gateway-edge.json").exists()

    asyncio.run(main())


async def _eq(coro, want) -> bool:
    return await coro == want


def test_a_restart_after_a_crash_restores_the_weights_found_before(haproxy, tmp_path):
    async def main():
        svc, steer, _ = service(haproxy, tmp_path)
        await svc.start()
        steer.states["p1"] = "down"
        await svc.tick()
        assert await weights(haproxy) == {"s1": 0, "s2": 50}
        await svc.adapters["edge"].receivers[0].stop()  # a crash: no restore, the state file stays
        svc._task.cancel()

        svc2, steer2, _ = service(haproxy, tmp_path)
        await svc2.start()
        try:
            await svc2.tick()
            assert await weights(haproxy) == {"s1": 100, "s2": 50}  # steer2's paths are up
            assert svc2.adapters["edge"].servers[("app", "s1")].found_weight == 100
        finally:
            await svc2.stop()

    asyncio.run(main())


def test_log_lines_feed_the_window_and_bad_credentials_end_in_a_block_mirrored_in_the_acl(haproxy, tmp_path):
    async def main():
        svc, steer, guard = service(haproxy, tmp_path)
        await svc.start()
        try:
            await svc.tick()
            for _ in range(10):
                assert await asyncio.to_thread(get, haproxy.port, "/") == 200
            for _ in range(25):
                assert await asyncio.to_thread(get, haproxy.port, "/protected") == 401
            a = svc.adapters["edge"]
            await until(lambda: _true(a.records >= 35))
            assert a.parser.malformed.total() == 0
            ups = {u["upstream"]: u for u in svc.cmd_status(None)["gateways"][0]["upstreams"]}
            assert set(ups) == set(haproxy_servers(a))
            await svc.tick()
            # 127.0.0.1 is loopback: never blocked, said once
            assert guard.calls == []
            assert any(x["action"] == "spared" for x in a.actions)
            # the same lines from another client address: blocked
            for line in synth_lines(a, "192.0.2.77", 401, 25):
                a.on_line(line)
            await svc.tick()
            assert [(str(c), o, t) for c, o, t, _ in guard.calls] == [("192.0.2.77/32", Origin.GATEWAY, 300.0)]
            assert guard.calls[0][3].startswith("gateway:edge 401×25/")
            assert "192.0.2.77" in await HaproxyRuntime(haproxy.sock).acl_entries(haproxy.acl)
            a._times_at = -1e18  # (handed to steering once a second)
            await svc.tick()
            assert not a.failures.counts, a.failures.last
            assert steer.times and all(p95 is not None for f in steer.times for p95 in [next(iter(f.values())).p95_s])
        finally:
            await svc.stop()
        assert await HaproxyRuntime(haproxy.sock).acl_entries(haproxy.acl) == []  # emptied at stop

    asyncio.run(main())


async def _true(v: bool) -> bool:
    return v


def haproxy_servers(a) -> list[str]:
    return list(a.haproxy_parser.servers.values())


def synth_lines(a, client: str, status: int, n: int) -> list[str]:
    date = time.strftime("%d/%b/%Y:%H:%M:%S", time.localtime())
    return [f"<134>Jan  1 00:00:00 haproxy[1]: {client}:4000 [{date}.000] fe app/s1 0/0/0/1/1 {status} 120 - - "
            f"---- 1/1/0/0/0 0/0 \"GET /protected HTTP/1.1\"" for _ in range(n)]


def test_a_json_log_format_is_read_too(haproxy_json, tmp_path):
    async def main():
        svc, _steer, _guard = service(haproxy_json, tmp_path, fmt="haproxy-json")
        await svc.start()
        try:
            for path in ("/", "/", "/protected"):
                assert await asyncio.to_thread(get, haproxy_json.port, path) in (200, 401)
            a = svc.adapters["edge"]
            await until(lambda: _true(a.records >= 3))
            assert a.parser.malformed.total() == 0
            view = svc.cmd_status(None)["gateways"][0]
            ups = {u["upstream"]: u for u in view["upstreams"]}
            servers = {f"{s['address']}:{s['server']}" for s in view["servers"]}  # (names, not ports, here)
            assert ups and all(u.split(":")[0] in {x.split(":")[0] for x in servers} for u in ups), view
            assert all(u["upstream_p50_ms"] is not None for u in ups.values())
        finally:
            await svc.stop()

    asyncio.run(main())


def test_a_server_removed_from_haproxy_is_counted_not_fatal(haproxy, tmp_path):
    async def main():
        svc, steer, _ = service(haproxy, tmp_path)
        await svc.start()
        try:
            await svc.tick()
            a = svc.adapters["edge"]
            # A server HAProxy no longer has (a reload of HAProxy removed it), on the same path as
            # s1: its set is refused after s1's went through; s1's found weight stays its own.
            a.servers[("app", "s9")] = type(a.servers[("app", "s1")])("app", "s9", "127.0.0.2", 100)
            a.current[("app", "s9")] = 100
            steer.states["p1"] = "down"
            await svc.tick()
            assert a.failures.counts["refused"] == 1 and "s9" in a.failures.last["refused"]
            assert await weights(haproxy) == {"s1": 0, "s2": 50}
            await svc.tick()  # read again: s9 gone
            assert ("app", "s9") not in a.servers and a.servers[("app", "s1")].found_weight == 100
            assert a.failures.counts["refused"] == 1
        finally:
            await svc.stop()
        assert await weights(haproxy) == {"s1": 100, "s2": 50}

    asyncio.run(main())
