"""The API component without root: config rules of the ``api`` section, the token file, and the
component serving over a real Unix socket and TCP port with a small fake of the daemon's
Context (auth: 401/403, TCP writes refused without a token; body limit; a token swapped on
commit without rebinding; a port in use refused naming api.listen)."""

from __future__ import annotations

import asyncio
import json
import os
import socket

import pytest

from pathsteer.api.app import _redact
from pathsteer.api.service import ApiService, read_token
from pathsteer.config.load import parse_config
from pathsteer.config.model import Config
from pathsteer.config.operator import parse_listen
from pathsteer.control.server import Command, NoArgs
from pathsteer.errors import UsageError
from pathsteer.events import Bus
from pathsteer_lab.http import request

GUARD = {"guard": {"interfaces": ["lo"]}}
TOKEN = "0123456789abcdef0123"


def load_config_text(text: str, origin: str) -> Config:
    import yaml
    return parse_config(yaml.safe_load(text), origin)


def config(tmp_path, **api) -> Config:
    return Config.model_validate({**GUARD, "control": {"socket": str(tmp_path / "ctl.sock")}, "api": api})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- config ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, error", [
    ("9180", "is not host:port"), ("127.0.0.1:0", "outside 1-65535"), ("example.org:80", "is not host:port"),
    ("300.1.1.1:80", "not an IP address"),
])
def test_listen_errors_name_the_value(tmp_path, value, error):
    with pytest.raises(UsageError, match=error) as exc:
        load_config_text(f"guard: {{interfaces: [lo]}}\napi: {{listen: '{value}'}}\n", "x.yaml")
    assert "api.listen" in str(exc.value) and value in str(exc.value)


def test_beyond_loopback_needs_a_token(tmp_path):
    with pytest.raises(UsageError, match="api.listen.*beyond loopback.*token_file"):
        load_config_text("guard: {interfaces: [lo]}\napi: {listen: '0.0.0.0:9180'}\n", "x.yaml")
    c = load_config_text("guard: {interfaces: [lo]}\napi: {listen: '0.0.0.0:9180', token_file: /etc/t}\n", "x.yaml")
    assert c.api.address == ("0.0.0.0", 9180)
    assert parse_listen("[::1]:9180") == ("::1", 9180)


def test_defaults_and_derived_paths(tmp_path):
    c = config(tmp_path)
    assert c.api.listen == "127.0.0.1:9180" and c.api.enabled and c.metrics.per_prefix_limit == 1000
    assert c.api.socket_path(c.control.socket) == str(tmp_path / "ctl-api.sock")
    assert c.history.path == "/var/lib/pathsteer/history.sqlite" and c.sections == ["guard"]
    moved = Config.model_validate({"guard": {"interfaces": ["lo"], "state_dir": str(tmp_path)}})
    assert moved.history.state_dir == str(tmp_path)  # one state dir per daemon
    assert Config.model_validate({**GUARD, "api": {"max_body": "64KiB"}}).api.max_body == 65536


def test_cert_needs_a_key(tmp_path):
    with pytest.raises(UsageError, match="cert and .key"):
        load_config_text("guard: {interfaces: [lo]}\napi: {cert: /etc/c.pem}\n", "x.yaml")


def test_token_file_errors(tmp_path):
    with pytest.raises(UsageError, match="api.token_file.*cannot be read"):
        read_token(str(tmp_path / "none"))
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(UsageError, match="at least 16"):
        read_token(str(short))
    weird = tmp_path / "weird"
    weird.write_bytes(b"0123456789abcdef\x01zz")
    with pytest.raises(UsageError, match="printable"):
        read_token(str(weird))
    good = tmp_path / "good"
    good.write_text(f"  {TOKEN}\n")
    assert read_token(str(good)) == TOKEN.encode()


def test_redaction():
    assert _redact({"a": {"api_key": "x", "token_file": "/p", "token": None}, "l": [{"password": "p"}]}) == \
        {"a": {"api_key": "<redacted>", "token_file": "/p", "token": None}, "l": [{"password": "<redacted>"}]}


# --- the component ----------------------------------------------------------------------------

class FakeDaemon:
    def __init__(self, cfg) -> None:
        self.components = {}
        self.config = cfg


class FakeCtx:
    """Enough of reactor.Context: commands answered by plain functions."""

    def __init__(self, cfg) -> None:
        self._daemon = FakeDaemon(cfg)
        self.bus = Bus()
        self.config_path = "/etc/pathsteer.yaml"
        self.ready = True
        self.started_wall = 0.0
        self.calls: list[str] = []
        self._commands = {"daemon.reload": lambda a: {"sections": ["guard"], "components": ["guard", "api"]}}

    @property
    def config(self):
        return self._daemon.config

    def component(self, name):
        return None

    def commands(self):
        return {n: Command(n, NoArgs, f) for n, f in self._commands.items()}

    async def call(self, command, args=None):
        self.calls.append(command)
        return self._commands[command](args)


def serve(cfg, ctx, fn):
    async def main():
        svc = ApiService(cfg, ctx)
        await svc.commit(svc.check(cfg))
        try:
            return await fn(svc)
        finally:
            await svc.stop()
    return asyncio.run(main())


def test_writes_need_the_token(tmp_path):
    token = tmp_path / "token"
    token.write_text(TOKEN)
    port = free_port()
    cfg = config(tmp_path, listen=f"127.0.0.1:{port}", token_file=str(token))
    ctx = FakeCtx(cfg)
    sock = str(tmp_path / "ctl-api.sock")

    async def check(svc):
        def go():
            out = [request(sock, "POST", "/api/v1/reload"),
                   request(sock, "POST", "/api/v1/reload", token="x" * 20),
                   request(sock, "POST", "/api/v1/reload", token=TOKEN),
                   request(sock, "GET", "/api/v1/status"),
                   request(sock, "POST", "/api/v1/reload", b"x" * 70000, token=TOKEN)]
            return out
        return await asyncio.to_thread(go)

    (s1, b1), (s2, b2), (s3, b3), (s4, b4), (s5, b5) = serve(cfg, ctx, check)
    assert s1 == 401 and "Bearer" in b1["error"] and b1["field"] == "Authorization"
    assert s2 == 403 and "wrong" in b2["error"]
    assert s3 == 200 and b3["components"] == ["guard", "api"] and ctx.calls == ["daemon.reload"]
    assert s4 == 200 and b4["ready"] is True
    assert s5 == 413 and "max_body" in b5["error"]
    assert not os.path.exists(sock), "the Unix socket is removed on stop"


def test_without_a_token_tcp_writes_are_refused_and_unix_ones_allowed(tmp_path):
    port = free_port()
    cfg = config(tmp_path, listen=f"127.0.0.1:{port}")
    ctx = FakeCtx(cfg)

    async def check(svc):
        def go():
            import http.client
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("POST", "/api/v1/reload")
            r = c.getresponse()
            tcp = (r.status, json.loads(r.read()))
            unix = request(str(tmp_path / "ctl-api.sock"), "POST", "/api/v1/reload")
            return tcp, unix
        return await asyncio.to_thread(go)

    (ts, tb), (us, ub) = serve(cfg, ctx, check)
    assert ts == 403 and "api.token_file" in tb["error"]
    assert us == 200


def test_commit_swaps_the_token_without_rebinding_and_a_busy_port_is_refused(tmp_path):
    port = free_port()
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("a" * 20)
    b.write_text("b" * 20)
    cfg_a = config(tmp_path, listen=f"127.0.0.1:{port}", token_file=str(a))
    cfg_b = config(tmp_path, listen=f"127.0.0.1:{port}", token_file=str(b))
    ctx = FakeCtx(cfg_a)
    sock = str(tmp_path / "ctl-api.sock")

    async def check(svc):
        before = svc._servers[0][0]
        await svc.commit(svc.check(cfg_b))
        assert svc._servers[0][0] is before, "same listeners: not rebound"
        old = await asyncio.to_thread(request, sock, "POST", "/api/v1/reload", token="a" * 20)
        new = await asyncio.to_thread(request, sock, "POST", "/api/v1/reload", token="b" * 20)
        other = ApiService(cfg_a, FakeCtx(cfg_a))
        plan = other.check(config(tmp_path / "x", listen=f"127.0.0.1:{port}", socket=None, token_file=str(a)))
        with pytest.raises(UsageError, match=f"api.listen: 127.0.0.1:{port} is in use"):
            await other.commit(plan)
        return old[0], new[0]

    (tmp_path / "x").mkdir()
    assert serve(cfg_a, ctx, check) == (403, 200)


@pytest.mark.parametrize("section, value, field, words", [
    ("api", {"socket": "relative.sock"}, "api.socket", "absolute path"),
    ("api", {"max_body": "lots"}, "api.max_body", "is not a size"),
    ("api", {"max_body": 0}, "api.max_body", "above 0"),
    ("api", {"token_file": "token"}, "api.token_file", "absolute path"),
    ("api", {"enabled": "maybe"}, "api.enabled", "bool"),
    ("api", {"port": 9180}, "api.port", "unknown"),
    ("metrics", {"per_prefix_limit": -1}, "metrics.per_prefix_limit", "greater than or equal"),
    ("history", {"retention": "forever"}, "history.retention", "is not a duration"),
    ("history", {"rollup_interval": "0.5s"}, "history.rollup_interval", "between 1s and 1h"),
    ("history", {"max_size": "10KiB"}, "history.max_size", "at least 1MiB"),
    ("history", {"state_dir": "var/lib"}, "history.state_dir", "absolute path"),
])
def test_operator_sections_refuse_bad_values_in_one_line_naming_the_key(section, value, field, words):
    with pytest.raises(UsageError) as exc:
        parse_config({**GUARD, section: value}, "x.yaml")
    text = str(exc.value)
    assert field in text and words.lower() in text.lower() and "\n" not in text, text


class SteerWithRoutes:
    """What /routes reads of the steering component: its decision, paths and clock."""

    def __init__(self, n: int) -> None:
        import ipaddress
        from types import SimpleNamespace
        from pathsteer.policy import ChangeKind, PolicyKind
        from pathsteer.policy.state import RouteStatus
        from pathsteer.routes import NextHop
        self.config = SimpleNamespace(paths=[SimpleNamespace(name="p1"), SimpleNamespace(name="p2")])
        self.decision = SimpleNamespace(routes=tuple(
            RouteStatus(ipaddress.ip_network((0x0A000000 + (i << 8), 24)), PolicyKind.LOWEST_LATENCY,
                        (NextHop("p1" if i % 3 else "p2"),), 1.0, ChangeKind.MEASURED,
                        f"first measurement: p1 has the lowest rtt ({i % 7}.0 ms)", None, ()) for i in range(n)))

    def _clock(self):
        from pathsteer.steering import views
        return views.Clock(100.0, 1_700_000_100.0)


def test_routes_go_gzipped_to_a_client_that_takes_it_and_are_made_ahead_while_asked_for(tmp_path):
    import gzip
    from pathsteer_lab.http import UnixHTTPConnection
    cfg = config(tmp_path)
    ctx = FakeCtx(cfg)
    steer = SteerWithRoutes(2000)
    ctx.component = lambda name: steer if name == "steer" else None
    sock = str(tmp_path / "ctl-api.sock")

    def get(url, enc=None):
        conn = UnixHTTPConnection(sock, 10)
        conn.request("GET", url, headers={"Accept-Encoding": enc} if enc else {})
        r = conn.getresponse()
        body = r.read()
        conn.close()
        return r.status, r.getheader("Content-Encoding"), body

    async def check(svc):
        plain = await asyncio.to_thread(get, "/api/v1/routes")
        zipped = await asyncio.to_thread(get, "/api/v1/routes", "gzip, deflate")
        refused = await asyncio.to_thread(get, "/api/v1/routes", "gzip;q=0")
        small = await asyncio.to_thread(get, "/api/v1/routes?path=p2&limit=3", "gzip")
        # a new decision while the table is asked for: made ahead, in the API's thread
        steer.decision = SteerWithRoutes(2001).decision
        for _ in range(40):
            if svc.routes.ready_gzip(steer.decision) is not None:
                break
            await asyncio.sleep(0.05)
        ahead = svc.routes.ready_gzip(steer.decision) is not None
        again = await asyncio.to_thread(get, "/api/v1/routes", "gzip")
        return plain, zipped, refused, small, ahead, again

    plain, zipped, refused, small, ahead, again = serve(cfg, ctx, check)
    assert plain[0] == 200 and plain[1] is None and json.loads(plain[2])["total"] == 2000
    assert zipped[0] == 200 and zipped[1] == "gzip" and gzip.decompress(zipped[2]) == plain[2]
    assert len(zipped[2]) * 5 < len(plain[2])
    assert refused[1] is None and refused[2] == plain[2]
    assert small[1] is None and len(json.loads(small[2])["routes"]) == 3  # under 64 kB: as it is
    assert ahead, "the new decision's table was not made ahead"
    assert again[1] == "gzip" and json.loads(gzip.decompress(again[2]))["total"] == 2001
