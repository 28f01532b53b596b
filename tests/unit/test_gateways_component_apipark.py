"""The ``gateways`` component with APIPark and Apinto adapters, against the contract server
(tests/unit/apipark_contract.py: the endpoints, envelopes, session cookie and error shapes of
docs/apipark.md — neither product runs here) and with real receivers (HTTP ``http_output`` posts,
a Loki push, syslog over UDP) fed records as Apinto's JSON formatter writes them: a flood of
``$auth_status=fail`` from one ``$remote_addr`` ends in a guard block, a dead path drains its node
(upstream saved and released in APIPark, PATCHed and re-read in Apinto), a stop restores it, and
a refused publish or an expired session never crashes anything."""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import json
import socket
import time
from types import SimpleNamespace

import pytest

from apipark_contract import ContractServer
from pathsteer.config.gateways import GatewayConfig
from pathsteer.events import Bus
from pathsteer.gateways.service import GatewaysSection, GatewaysService
from pathsteer.guard.blocks import Origin


@pytest.fixture
def contract(request):
    srv = ContractServer().start()
    request.addfinalizer(srv.stop)
    return srv


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def route(prefix: str, *paths: str):
    return SimpleNamespace(prefix=ipaddress.ip_network(prefix), nexthops=tuple(SimpleNamespace(path=p) for p in paths))


class Steer:
    def __init__(self) -> None:
        self.states = {"p1": "up", "p2": "up"}
        self.decision = SimpleNamespace(routes=(route("10.0.0.1/32", "p1"), route("10.0.0.2/32", "p2")))
        self.drains: dict = {}

    @property
    def telemetry(self):
        return SimpleNamespace(paths=[SimpleNamespace(name=n, state=SimpleNamespace(value=s))
                                      for n, s in self.states.items()])


class Guard:
    def __init__(self) -> None:
        self.blocks: dict = {}
        self.config = SimpleNamespace(allow=[], deny=[])
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


def record(remote: str, status: int = 200, auth: str = "", node: str = "10.0.0.1:80") -> dict:
    """One record as Apinto's json formatter writes the fields `access_log_output` asks for."""
    return {"msec": int(time.time() * 1000), "remote_addr": remote, "src_ip": "203.0.113.250",
            "proxy_addr": node, "status": status, "proxy_status": status, "request_time": 12,
            "proxy_time": 9, "request_length": 320, "response_length": 512, "auth_status": auth,
            "block_name": "", "service": "svc1", "api": "a1", "node": node, "cluster": "default",
            "request_id": "r1"}


def post(port: int, path: str, body: bytes) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("POST", path, body, {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def build(cfg: dict, tmp_path) -> tuple[GatewaysService, Steer, Guard]:
    steer, guard = Steer(), Guard()
    g = GatewayConfig(**cfg)
    return GatewaysService(GatewaysSection((g,), str(tmp_path)), Ctx(steer, guard)), steer, guard


def nodes(contract) -> dict:
    with contract.state.lock:
        return {n["address"]: n["weight"] for n in contract.state.upstreams["svc1"]["nodes"]}


def test_apipark_records_in_over_http_loki_and_syslog_and_an_auth_flood_ends_in_a_block(contract, tmp_path):
    http_port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    pw = tmp_path / "pw"
    pw.write_text("s3cret-pw\n")
    svc, _steer, guard = build({"name": "ap", "kind": "apipark", "admin": contract.url, "username": "admin",
                                "password_file": str(pw), "services": ["svc1"],
                                "logs": [f"http:127.0.0.1:{http_port}", f"udp:127.0.0.1:{udp_port}"],
                                "abuse": {"threshold": 30, "ttl": "1h"}}, tmp_path)

    async def main():
        await svc.start()
        try:
            a = svc.adapters["ap"]
            # http_output: one JSON record per POST
            for _ in range(10):
                assert await asyncio.to_thread(post, http_port, "/apinto", json.dumps(record("198.51.100.7")).encode()) == 204
            # a Loki push carrying 20 records of the attacker
            push = {"streams": [{"stream": {"job": "apinto"},
                                 "values": [[str(time.time_ns()), json.dumps(record("192.0.2.66", 401, "fail"))]
                                            for _ in range(20)]}]}
            assert await asyncio.to_thread(post, http_port, "/loki/api/v1/push", json.dumps(push).encode()) == 204
            # syslog_output over UDP: 15 more, with the header Go's log/syslog writes before the record
            # (network: "<PRI>RFC3339 host tag[pid]: msg"), and bare
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for i in range(15):
                    head = "<134>2026-12-07T02:00:00Z gw1 apinto[812]: " if i % 2 else ""
                    s.sendto((head + json.dumps(record("192.0.2.66", 200, "fail")) + "\n").encode(),
                             ("127.0.0.1", udp_port))
            deadline = time.monotonic() + 5
            while a.records < 45:
                assert time.monotonic() < deadline, (a.records, a.parser.malformed)
                await asyncio.sleep(0.02)
            # garbage is counted, never a crash
            assert await asyncio.to_thread(post, http_port, "/apinto", b"{not json") in (204, 400)
            await svc.tick()
            assert [(str(c), o) for c, o, _t, _r in guard.calls] == [("192.0.2.66/32", Origin.GATEWAY)]
            assert guard.calls[0][3].startswith("gateway:ap 401×35/")  # $auth_status=fail counts as a 401
            view = svc.cmd_status(None)["gateways"][0]
            assert view["connected"] is True and view["records"] == 45 and view["parse_errors"] >= 1
            assert {u["upstream"] for u in view["upstreams"]} == {"10.0.0.1:80"}
        finally:
            await svc.stop()

    asyncio.run(main())


def test_apipark_node_drained_on_a_dead_path_published_and_restored_at_stop(contract, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("s3cret-pw")
    svc, steer, _guard = build({"name": "ap", "kind": "apipark", "admin": contract.url, "username": "admin",
                                "password_file": str(pw), "services": ["svc1"]}, tmp_path)

    async def main():
        await svc.start()
        try:
            await svc.tick()
            assert nodes(contract) == {"10.0.0.1:80": 100, "10.0.0.2:80": 50}
            steer.states["p1"] = "down"
            await svc.tick()
            assert nodes(contract) == {"10.0.0.1:80": 0, "10.0.0.2:80": 50}
            assert len(contract.state.releases) == 1
            # a publish that fails: counted, the weight is tried again at the next tick
            contract.state.publish_error = "release failed: cluster offline"
            steer.states["p1"] = "up"
            await svc.tick()
            a = svc.adapters["ap"]
            assert a.failures.counts["refused"] == 1
            contract.state.publish_error = None
            contract.state.expire_once = True  # and the session expires: logged in again
            await svc.tick()
            await svc.tick()
            assert nodes(contract) == {"10.0.0.1:80": 100, "10.0.0.2:80": 50}
            # saved but not published by the refused call: published again once APIPark takes it
            assert len(contract.state.releases) == 2 and not a.sink.unpublished
            steer.states["p1"] = "down"
            await svc.tick()
            assert nodes(contract)["10.0.0.1:80"] == 0
        finally:
            await svc.stop()
        assert nodes(contract) == {"10.0.0.1:80": 100, "10.0.0.2:80": 50}

    asyncio.run(main())


def test_apinto_weights_and_blocks_mirrored_into_a_visit_strategy(contract, tmp_path):
    svc, steer, guard = build({"name": "ap2", "kind": "apinto", "admin": contract.url, "services": ["svc1"]},
                              tmp_path)

    def weights() -> dict:
        with contract.state.lock:
            return list(contract.state.services["svc1"]["nodes"])

    async def main():
        await svc.start()
        try:
            await svc.tick()
            assert weights() == ["10.0.0.1:80 weight=10", "10.0.0.2:80 weight=20"]
            steer.states["p2"] = "degraded"
            await svc.tick()
            assert weights() == ["10.0.0.1:80 weight=10", "10.0.0.2:80 weight=10"]
            guard.blocks[ipaddress.ip_network("192.0.2.66/32")] = SimpleNamespace()
            await svc.tick()
            with contract.state.lock:
                strategy = contract.state.strategies["pathsteer-ap2"]
            assert strategy["filters"]["ip"] == ["192.0.2.66"] and strategy["visit"]["visit_rule"] == "refuse"
        finally:
            await svc.stop()
        assert weights() == ["10.0.0.1:80 weight=10", "10.0.0.2:80 weight=20"]
        with contract.state.lock:
            assert "pathsteer-ap2" not in contract.state.strategies  # emptied at stop

    asyncio.run(main())


def test_an_unreachable_gateway_is_counted_and_tried_again(tmp_path):
    svc, steer, _ = build({"name": "ap2", "kind": "apinto", "admin": f"http://127.0.0.1:{free_port()}",
                           "services": ["svc1"]}, tmp_path)

    async def main():
        await svc.start()
        try:
            await svc.tick()
            view = svc.cmd_status(None)["gateways"][0]
            assert view["connected"] is False and view["errors"]["unreachable"] >= 1
            steer.states["p1"] = "down"
            await svc.tick()  # nothing to act on, nothing raised
        finally:
            await svc.stop()

    asyncio.run(main())


def test_a_webhook_gets_path_and_route_events_signed(tmp_path):
    import hashlib
    import hmac
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    got: list = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((dict(self.headers), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    secret = tmp_path / "secret"
    secret.write_text("k3y\n")
    try:
        svc, _steer, _guard = build({"name": "hook", "kind": "webhook", "webhook": {
            "url": f"http://127.0.0.1:{srv.server_address[1]}/ps", "secret_file": str(secret),
            "events": ["path.state", "steer.change"]}}, tmp_path)

        async def main():
            await svc.start()
            try:
                bus = svc.ctx.bus
                bus.publish("path.state", path="p1", **{"from": "up"}, to="down")
                bus.publish("guard.block", cidr="192.0.2.1/32")  # not asked for
                bus.publish("steer.change", prefix="198.51.100.0/24", **{"from": "p1"}, to="p2", reason="p1 down")
                deadline = time.monotonic() + 5
                while len(got) < 2:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.02)
            finally:
                await svc.stop()

        asyncio.run(main())
    finally:
        srv.shutdown()
        srv.server_close()
    names = [json.loads(b)["name"] for _h, b in got]
    assert names == ["path.state", "steer.change"]
    for headers, body in got:
        want = "sha256=" + hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
        assert headers["X-Pathsteer-Signature"] == want
    assert json.loads(got[1][1])["to"] == "p2" and json.loads(got[1][1])["gateway"] == "hook"


def test_a_wrong_password_is_counted_as_refused_never_a_crash_and_never_logged(contract, tmp_path, caplog):
    pw = tmp_path / "pw"
    pw.write_text("wrong-pw")
    svc, steer, _ = build({"name": "ap", "kind": "apipark", "admin": contract.url, "username": "admin",
                           "password_file": str(pw), "services": ["svc1"]}, tmp_path)

    async def main():
        await svc.start()
        try:
            steer.states["p1"] = "down"
            await svc.tick()
            view = svc.cmd_status(None)["gateways"][0]
            assert view["connected"] is False and view["errors"]["refused"] >= 1, view
            assert "/api/v1/account/login/username" in view["last_errors"]["refused"]
        finally:
            await svc.stop()

    asyncio.run(main())
    assert nodes(contract) == {"10.0.0.1:80": 100, "10.0.0.2:80": 50}  # nothing touched
    assert "wrong-pw" not in caplog.text and "wrong-pw" not in json.dumps(svc.cmd_status(None))


def test_apipark_setup_prints_and_registers_the_output(contract, capsys):
    from pathsteer.cli.main import main

    assert main(["gateways", "apipark-setup", "--url", "http://192.0.2.1:9181/apinto"]) == 0
    out = capsys.readouterr().out
    body = json.loads(out[out.index("{"):])
    assert body["driver"] == "http_output" and body["url"] == "http://192.0.2.1:9181/apinto"
    assert "$remote_addr" in body["formatter"]["fields"] and "$auth_status" in body["formatter"]["fields"]
    assert main(["gateways", "apipark-setup", "--url", "http://192.0.2.1:9181/apinto", "--admin", contract.url]) == 0
    assert contract.state.outputs["pathsteer"]["url"] == "http://192.0.2.1:9181/apinto"
    # registered twice: Apinto refuses (HTTP 500 text): one line, exit 1, no traceback
    assert main(["gateways", "apipark-setup", "--url", "http://192.0.2.1:9181/apinto", "--admin", contract.url]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err, err
    assert main(["gateways", "apipark-setup", "--url", "ftp://x"]) == 2


def test_unreadable_secret_files_are_refused_at_check(tmp_path):
    svc, _s, _g = build({"name": "hook", "kind": "webhook", "webhook": {"url": "http://127.0.0.1:1/",
                                                                       "secret_file": str(tmp_path / "nope")}}, tmp_path)
    from pathsteer.errors import PathsteerError
    with pytest.raises(PathsteerError, match=r"gateways\.hook\.webhook\.secret_file: .*cannot be read"):
        svc.check(svc.section)
    svc2, _s, _g = build({"name": "ap", "kind": "apipark", "admin": "http://127.0.0.1:1", "username": "u",
                          "password_file": str(tmp_path / "nope"), "services": ["s"]}, tmp_path)
    with pytest.raises(PathsteerError, match=r"gateways\.ap\.password_file"):
        svc2.check(svc2.section)


def test_apipark_setup_bad_admin_is_a_usage_error(capsys):
    from pathsteer.cli.main import main

    assert main(["gateways", "apipark-setup", "--url", "http://192.0.2.1:9181/a", "--admin", "127.0.0.1:9400"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--admin: '127.0.0.1:9400' is not an http:// or https:// URL" in err, err
    assert main(["gateways", "apipark-setup"]) == 2  # --url is required
    assert "--url" in capsys.readouterr().err
