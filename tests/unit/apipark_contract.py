"""A contract server for APIPark's management API and Apinto's admin API (docs/apipark.md).

Neither product can run here, so `pathsteer.gateways.apipark` is tested against this: exactly the
endpoints, bodies, envelopes and error shapes docs/apipark.md gives.

APIPark (APIParkLab/APIPark):
- ``POST /api/v1/account/login/username`` ``{"name","password"}`` → envelope code 0 and
  ``Set-Cookie: session=...``; a wrong password → HTTP 200, envelope code 1 with a msg.
- ``GET|PUT /api/v1/service/upstream?service=ID``: ``data`` is ``{"upstream": {...}}`` (the pm3
  output name, APIPark ``plugins/core`` upstreamApis). Unknown service → code 1
  "service not found".
- ``POST /api/v1/service/publish/release/do?service=ID`` ``{"version","version_remark","remark"}``.
- Replies are ``{"code","data","msg","success"}`` (go-common ``pm3/apidoc.go``).
- No or expired session: docs/apipark.md does not give the shape. This server answers HTTP 401 with
  the envelope ``{"code":401,"data":null,"msg":"not login","success":"fail"}`` by default;
  ``auth_reply="envelope"`` answers HTTP 200 with code 401 "session expired" instead (the client
  must handle both).

Apinto (eosc ``process-admin/api-http/openapi-worker.go``): no auth; ``GET|PATCH|DELETE
/api/service/{name}`` (PATCH merges and answers the OLD config), ``GET|PUT|DELETE
/api/strategy/{name}``, ``POST /api/strategy``, ``POST /api/output``; errors are HTTP 500 with a
text body.

Every request is recorded (`Recorded`) so tests can assert on exactly what was sent.
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str           # without the query
    query: dict         # name → first value
    headers: dict       # lower-case name → value
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def target(self) -> str:
        q = "&".join(f"{k}={v}" for k, v in self.query.items())
        return self.path + (f"?{q}" if q else "")


def default_upstream() -> dict:
    """An upstream config with every field of APIPark ``module/upstream/dto``."""
    return {
        "driver": "static",
        "balance": "round-robin",
        "timeout": 2000,
        "retry": 1,
        "limit_peer_second": 0,
        "proxy_headers": [{"key": "X-From", "value": "apipark", "opt_type": "ADD"}],
        "scheme": "HTTP",
        "pass_host": "node",
        "upstream_host": "",
        "nodes": [{"address": "10.0.0.1:80", "weight": 100},
                  {"address": "10.0.0.2:80", "weight": 50}],
        "discover": {"discover": "", "service": "", "config": {}},
    }


def default_service(name: str = "svc1") -> dict:
    return {"name": name, "driver": "http", "timeout": 3000, "retry": 2, "scheme": "http",
            "nodes": ["10.0.0.1:80 weight=10", "10.0.0.2:80 weight=20"],
            "balance": "round-robin"}


class ContractState:
    """What the server knows and the switches tests flip. Guarded by ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[Recorded] = []
        self.users = {"admin": "s3cret-pw"}
        self.sessions: set[str] = set()
        self.upstreams: dict[str, dict] = {"svc1": default_upstream()}
        self.releases: list[dict] = []
        self.publish_error: str | None = None     # set → publish answers code 1 with this msg
        self.expire_once = False                  # next authed call: drop sessions, refuse
        self.always_refuse_session = False        # every authed call refused
        self.auth_reply = "http401"               # or "envelope"
        self.garbage = False                      # APIPark answers HTML
        self.delay_s = 0.0
        self.services: dict[str, dict] = {"svc1": default_service("svc1")}
        self.ignore_patch = False                 # PATCH "succeeds" and changes nothing
        self.strategies: dict[str, dict] = {}
        self.outputs: dict[str, dict] = {}


def _envelope(code: int, data: Any = None, msg: str = "") -> dict:
    return {"code": code, "data": data, "msg": msg, "success": "success" if code == 0 else "fail"}


class _Handler(BaseHTTPRequestHandler):
    server: "ContractServer._Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _reply(self, status: int, body: Any, headers: dict | None = None, *, text: bool = False):
        raw = (body if isinstance(body, bytes) else str(body).encode()) if text else \
            json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8" if text else "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def _handle(self) -> None:
        st: ContractState = self.server.state
        parts = urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        rec = Recorded(self.command, parts.path, query,
                       {k.lower(): v for k, v in self.headers.items()}, body)
        with st.lock:
            st.requests.append(rec)
            delay = st.delay_s
        if delay:
            time.sleep(delay)
        if parts.path.startswith("/api/v1/"):
            self._apipark(st, rec)
        elif parts.path.startswith("/api/"):
            self._apinto(st, rec)
        else:
            self._reply(404, "404 page not found", text=True)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    # ---- APIPark
    def _apipark(self, st: ContractState, rec: Recorded) -> None:
        with st.lock:
            if st.garbage:
                return self._reply(200, "<html><body>502 Bad Gateway</body></html>", text=True)
            if rec.method == "POST" and rec.path == "/api/v1/account/login/username":
                try:
                    cred = json.loads(rec.body)
                except ValueError:
                    return self._reply(200, _envelope(1, msg="invalid body"))
                if st.users.get(cred.get("name")) != cred.get("password") or not cred.get("password"):
                    return self._reply(200, _envelope(1, msg="用户名或密码错误 (wrong user name or password)"))
                token = secrets.token_hex(8)
                st.sessions.add(token)
                return self._reply(200, _envelope(0, {}),
                                   {"Set-Cookie": f"session={token}; Path=/; HttpOnly"})
            cookie = rec.headers.get("cookie", "")
            token = next((c.split("=", 1)[1] for c in cookie.split("; ") if c.startswith("session=")), None)
            if st.expire_once:
                st.expire_once = False
                st.sessions.clear()
            if token not in st.sessions or st.always_refuse_session:
                if st.auth_reply == "envelope":
                    return self._reply(200, _envelope(401, msg="session expired"))
                return self._reply(401, _envelope(401, msg="not login"))
            sid = rec.query.get("service", "")
            if rec.path == "/api/v1/service/upstream":
                if sid not in st.upstreams:
                    return self._reply(200, _envelope(1, msg="service not found"))
                if rec.method == "GET":
                    return self._reply(200, _envelope(0, {"upstream": copy.deepcopy(st.upstreams[sid])}))
                if rec.method == "PUT":
                    st.upstreams[sid] = json.loads(rec.body)
                    return self._reply(200, _envelope(0, {"upstream": copy.deepcopy(st.upstreams[sid])}))
            if rec.method == "POST" and rec.path == "/api/v1/service/publish/release/do":
                if sid not in st.upstreams:
                    return self._reply(200, _envelope(1, msg="service not found"))
                if st.publish_error:
                    return self._reply(200, _envelope(1, msg=st.publish_error))
                req = json.loads(rec.body)
                if not req.get("version") or any(r["version"] == req["version"] for r in st.releases):
                    return self._reply(200, _envelope(1, msg="version already exists"))
                st.releases.append({"service": sid, **req, "upstream": copy.deepcopy(st.upstreams[sid])})
                return self._reply(200, _envelope(0, None))
            return self._reply(404, "404 page not found", text=True)

    # ---- Apinto
    def _apinto(self, st: ContractState, rec: Recorded) -> None:
        segs = [unquote(s) for s in rec.path.split("/")[2:]]   # ["service", "name"]
        with st.lock:
            if len(segs) == 2 and segs[0] == "service":
                name = segs[1]
                if name not in st.services:
                    return self._reply(500, f"{name}@service not found\n", text=True)
                old = copy.deepcopy(st.services[name])
                if rec.method == "GET":
                    return self._reply(200, old)
                if rec.method == "PATCH":
                    patch = json.loads(rec.body)
                    if not st.ignore_patch:
                        st.services[name].update(patch)
                    return self._reply(200, old)      # Apinto answers with the OLD config
            elif segs == ["output"] and rec.method == "POST":
                # docs/apipark.md: POST /api/output {"name","driver":"http_output","scopes":["access_log"],...}
                body = json.loads(rec.body)
                if body.get("driver") not in ("http_output", "file", "syslog_output", "loki") or not body.get("name"):
                    return self._reply(500, "invalid output config\n", text=True)
                if body["name"] in st.outputs:
                    return self._reply(500, f"{body['name']}@output already exists\n", text=True)
                st.outputs[body["name"]] = body
                return self._reply(200, body)
            elif segs == ["strategy"] and rec.method == "POST":
                body = json.loads(rec.body)
                if body.get("driver") != "visit" or not body.get("name"):
                    return self._reply(500, "invalid strategy config\n", text=True)
                if body["name"] in st.strategies:
                    return self._reply(500, f"{body['name']}@strategy already exists\n", text=True)
                st.strategies[body["name"]] = body
                return self._reply(200, body)
            elif len(segs) == 2 and segs[0] == "strategy":
                name = segs[1]
                if name not in st.strategies:
                    return self._reply(500, f"{name}@strategy not found\n", text=True)
                if rec.method == "GET":
                    return self._reply(200, st.strategies[name])
                if rec.method == "PUT":
                    st.strategies[name] = json.loads(rec.body)
                    return self._reply(200, st.strategies[name])
                if rec.method == "DELETE":
                    return self._reply(200, st.strategies.pop(name))
            return self._reply(500, f"invalid request {rec.method} {rec.path}\n", text=True)


class ContractServer:
    """The server on 127.0.0.1, an OS-chosen port, served by a thread. `start` / `stop`."""

    class _Server(ThreadingHTTPServer):
        daemon_threads = True
        state: ContractState

    def __init__(self) -> None:
        self.state = ContractState()
        self._srv = self._Server(("127.0.0.1", 0), _Handler)
        self._srv.state = self.state
        self._thread = threading.Thread(target=self._srv.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="apipark-contract",
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._srv.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "ContractServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._srv.shutdown()
        self._srv.server_close()
        self._thread.join(timeout=5)

    def requests(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        with self.state.lock:
            return [r for r in self.state.requests
                    if (method is None or r.method == method) and (path is None or r.path == path)]

    def clear(self) -> None:
        with self.state.lock:
            self.state.requests.clear()
