"""The HTTP API in a lab, with default settings: every read answers and conforms to the OpenAPI
document the daemon serves; writes need the bearer token (401 without, 403 wrong); bad input
is a 4xx naming the field, never a 500, nothing applied; the event stream (SSE) carries a path
failure and the reroute as they happen."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import jsonschema_rs
import pytest

import pathsteer_lab as lab
from pathsteer_lab.http import UnixHTTPConnection, request
from tests.lab.test_steering_dataplane import prefer_p2

pytestmark = pytest.mark.lab

PREFIX = "198.51.100.0/24"
TOKEN = "s3cret-token-for-the-lab-0123456789"


class OpenApi:
    """Validates a response against the daemon's own OpenAPI 3.1 document."""

    def __init__(self, doc: dict) -> None:
        self.doc = doc

    def schema(self, template: str, method: str, status: int) -> dict | None:
        op = self.doc["paths"][template][method.lower()]
        resp = op["responses"].get(str(status)) or op["responses"].get("default")
        assert resp is not None, f"{method} {template}: status {status} is not documented"
        content = resp.get("content", {}).get("application/json")
        if content is None:
            return None
        return {**content["schema"], "components": self.doc["components"]}

    def check(self, template: str, method: str, status: int, body) -> None:
        schema = self.schema(template, method, status)
        if schema is not None:
            jsonschema_rs.validator_for(schema).validate(body)


@pytest.fixture
def api_daemon(steer_daemon, tmp_path):
    t, start = steer_daemon
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    os.chmod(token_file, 0o600)

    def go(**kw):
        d = start(**kw)
        return d

    return t, go, str(token_file)


def test_reads_conform_to_the_openapi_document(steer_daemon):
    t, start = steer_daemon
    prefer_p2(t)
    d = start()
    d.wait_via(PREFIX, "p2")
    status, doc = d.http("GET", "/api/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    api = OpenApi(doc)
    reads = [("/api/v1/status", "/api/v1/status"), ("/api/v1/healthz", "/api/v1/healthz"),
             ("/api/v1/readyz", "/api/v1/readyz"), ("/api/v1/paths", "/api/v1/paths"),
             ("/api/v1/paths/p1", "/api/v1/paths/{name}"), ("/api/v1/routes", "/api/v1/routes"),
             ("/api/v1/routes?path=p2", "/api/v1/routes"), ("/api/v1/explain?address=198.51.100.10", "/api/v1/explain"),
             ("/api/v1/events?limit=50", "/api/v1/events"), ("/api/v1/config", "/api/v1/config")]
    got = {}
    for url, template in reads:
        status, body = d.http("GET", url)
        assert status == 200, (url, body)
        api.check(template, "GET", 200, body)
        got[url] = body
    assert [p["name"] for p in got["/api/v1/paths"]["paths"]] == ["p1", "p2", "p3"]
    p2 = got["/api/v1/paths"]["paths"][1]
    assert p2["state"] == "up" and p2["rtt_p50_ms"] < 10 and p2["target_states"][0]["state"] == "up"
    routes = {r["prefix"]: r for r in got["/api/v1/routes"]["routes"]}
    assert routes[PREFIX]["via"] == "p2" and got["/api/v1/routes"]["total"] == 2
    assert got["/api/v1/explain?address=198.51.100.10"]["prefix"] == PREFIX
    assert got["/api/v1/readyz"]["ready"] is True
    assert any(e["name"] == "steer.change" for e in got["/api/v1/events?limit=50"]["events"])
    # the steering status over the control socket and the API agree
    assert d.call("steer.status")["routes"][0]["via"] == routes[d.call("steer.status")["routes"][0]["prefix"]]["via"]
    status, text = d.http("GET", "/metrics")
    assert status in (200, 503)


def test_writes_need_the_token_and_bad_input_is_a_4xx(api_daemon, tmp_path):
    t, start, token_file = api_daemon
    from pathsteer_lab.labconfig import lab_config  # noqa: F401 - the fixture's config, with a token
    d = start()
    cfg = dict(d.config)
    cfg["api"] = {"token_file": token_file}
    d.write(cfg)
    assert d.call("daemon.reload")["components"]
    _, doc = d.http("GET", "/api/v1/openapi.json")
    api = OpenApi(doc)
    # no token / wrong token
    status, body = d.http("POST", "/api/v1/reload")
    assert status == 401 and "Bearer" in body["error"], body
    api.check("/api/v1/reload", "POST", 401, body)
    status, body = d.http("POST", "/api/v1/reload", token="wrong-token-wrong-token")
    assert status == 403 and "wrong" in body["error"]
    status, body = d.http("POST", "/api/v1/reload", token=TOKEN)
    assert status == 200 and "steer" in body["components"], body
    api.check("/api/v1/reload", "POST", 200, body)
    # bad input: each a 4xx naming the field, never a 500
    bad = [
        ("GET", "/api/v1/paths/p9", None, 404, "p9"),
        ("GET", "/api/v1/paths/p9/history", None, 404, "p9"),
        ("GET", "/api/v1/explain?address=not-an-ip", None, 400, "not-an-ip"),
        ("GET", "/api/v1/explain", None, 422, "address"),
        ("GET", "/api/v1/events?limit=0", None, 422, "limit"),
        ("GET", "/api/v1/events?since=abc", None, 422, "since"),
        ("GET", "/api/v1/routes?prefix=10.0.0.0/33", None, 422, "10.0.0.0/33"),
        ("GET", "/api/v1/routes?path=p7", None, 404, "p7"),
        ("POST", "/api/v1/paths/p1/drain", b"{not json", 400, "JSON"),
        ("POST", "/api/v1/paths/p1/drain", {"ttl": "soon"}, 422, "soon"),
        ("POST", "/api/v1/paths/p1/drain", {"bogus": 1}, 422, "bogus"),
        ("POST", "/api/v1/paths/p9/drain", {}, 404, "p9"),
        ("POST", "/api/v1/paths/p1/drain", b"x" * 70000, 413, "max_body"),
        ("GET", "/api/v1/guard/blocks", None, 404, "guard"),
        ("DELETE", "/api/v1/paths", None, 405, "DELETE"),
        ("GET", "/api/v1/nothing-here", None, 404, "openapi.json"),
    ]
    for method, url, body, want, names in bad:
        status, reply = d.http(method, url, body, token=TOKEN)
        assert status == want and names in reply["error"], (method, url, status, reply)
    # nothing was applied: p1 is not drained, the routes are as before
    status, p1 = d.http("GET", "/api/v1/paths/p1")
    assert p1.get("drained") in (None, False) and p1["state"] != "drained"


def _sse_events(path: str, seconds: float, out: list, ready: threading.Event) -> None:
    conn = UnixHTTPConnection(path, timeout=seconds + 5)
    conn.request("GET", "/api/v1/events/stream")
    r = conn.getresponse()
    ready.set()
    deadline = time.monotonic() + seconds
    buf = b""
    conn.sock.settimeout(None)  # a paths snapshot comes every second: reads return
    while time.monotonic() < deadline:
        chunk = r.read1(65536)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            frame, buf = buf.split(b"\n\n", 1)
            fields = dict(line.split(": ", 1) for line in frame.decode().splitlines() if ": " in line)
            if fields.get("event") in ("event", "paths"):
                out.append((time.time(), fields["event"], json.loads(fields["data"])))
    conn.close()


def test_event_stream_shows_a_path_failure_and_the_reroute_as_they_happen(steer_daemon):
    t, start = steer_daemon
    prefer_p2(t)
    d = start()
    d.wait_via(PREFIX, "p2")
    got: list = []
    ready = threading.Event()
    reader = threading.Thread(target=_sse_events, args=(d.api_socket, 6.0, got, ready), daemon=True)
    reader.start()
    assert ready.wait(5)
    time.sleep(1.2)
    cut = time.time()
    lab.set_path(t.name, "p2", down=True)
    reader.join(10)
    events = [(at, e) for at, kind, e in got if kind == "event"]
    snapshots = [e for _, kind, e in got if kind == "paths"]
    assert len(snapshots) >= 4, "a paths snapshot every second"
    down = [at for at, e in events if e["name"] == "path.state" and e["path"] == "p2" and e["to"] == "down"]
    moved = [(at, e) for at, e in events if e["name"] == "steer.change" and e["prefix"] == PREFIX]
    assert moved, events
    print(f"SSE: reroute seen {moved[0][0] - cut:.3f} s after the cut" +
          (f", p2 down at {down[0] - cut:.3f} s" if down else ""))
    assert moved[0][0] - cut < 2.0
    # the stream delivered the event promptly after the daemon decided it
    assert moved[0][0] - moved[0][1]["at"] < 0.5
