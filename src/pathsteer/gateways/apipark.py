"""APIPark and Apinto: drain or re-weight upstream nodes, mirror XDP blocks, register the access log.

Facts relied on, read from the products' source (each cited below; neither product can be built
or run on the project's machines, so the tests run against ``tests/unit/apipark_contract.py``,
a server that implements exactly these endpoints, bodies and error shapes):

- APIPark's management API (APIParkLab/APIPark v1.9.6-beta): log in with
  ``POST /api/v1/account/login/username`` ``{"name","password"}``, which sets the ``session``
  cookie; read and save a service's upstream with ``GET|PUT /api/v1/service/upstream?service=ID``
  (body fields from APIPark ``module/upstream/dto``); publish with
  ``POST /api/v1/service/publish/release/do?service=ID`` ``{"version","version_remark","remark"}``
  (APIPark ``controller/publish/iml.go``). Every reply is the envelope
  ``{"code":0,"data":{...},"msg":"","success":...}`` (eolinker/go-common ``pm3/apidoc.go``).
  The upstream routes name their output ``upstream`` (APIPark ``plugins/core``, ``upstreamApis``:
  ``pm3.CreateApiWidthDoc(GET, "/api/v1/service/upstream", ..., []string{"upstream"}, ...)``),
  so ``data`` is ``{"upstream": {...}}``; `ApiparkClient.upstream` unwraps it and also accepts a
  bare config. docs/apipark.md does not say how an expired session is answered: the client treats
  HTTP 401/403 and an envelope whose code is 401/403 or whose msg speaks of login/session/expiry
  as "log in again" (once).
- Edits made in Apinto directly are overwritten by the next APIPark publish: use `ApiparkClient`
  when APIPark manages the gateway, `ApintoClient` only for a bare Apinto.
- Apinto's admin API (eolinker/eosc ``process-admin/api-http/openapi-worker.go``): port 9400, no
  authentication, ``GET|PUT|POST|PATCH|DELETE /api/{profession}/{name}``, errors as HTTP 500 with
  a text body. A service's nodes are strings ``"10.0.0.1:80 weight=10"``; ``PATCH
  /api/service/{name}`` ``{"nodes":[...]}`` merges, and its reply shows the OLD config, so the
  client re-GETs to confirm. There is no "node down" call: drain is ``weight=0``.
- Blocks: the ``visit`` strategy driver, ``{"name","priority","filters":{"ip":[...]},
  "visit":{"visit_rule":"refuse","continue":false}}`` under profession ``strategy`` (docs/apipark.md,
  "Abuse signals", from apinto code; no doc example). It matches the X-Real-IP-derived address,
  so it is a mirror of the XDP block, never a replacement.
- Access log: ``POST http://GATEWAY:9400/api/output`` with driver ``http_output``
  (apinto-docs ``docs/apinto/outputer/http.md``), formatter per apinto-docs
  ``docs/formatter/index.md``, variables from apinto ``entries/http-entry/reader.go``.

All HTTP is the standard library's ``http.client``, run in a thread (``asyncio.to_thread``) so the
event loop never blocks. Errors are one line: ``<gateway> <url>: <METHOD> <path>: <words>``; the
password never appears in a message or a log line.
"""

from __future__ import annotations

import asyncio
import copy
import http.client
import itertools
import json
import logging
import re
import socket
import time
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import quote, urlsplit

from pathsteer.errors import PathsteerError, UsageError

_log = logging.getLogger(__name__)

_TEXT_LIMIT = 200
_versions = itertools.count(1)


class GatewayApiError(PathsteerError):
    """The gateway could not be reached, timed out, or answered something unexpected."""


class GatewayRefused(GatewayApiError):
    """The gateway answered with an error; the message carries its own words."""


def _one_line(text: str, limit: int = _TEXT_LIMIT) -> str:
    """The first non-empty line of ``text``, trimmed to ``limit`` characters."""
    for line in str(text).splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return "(empty)"


def _check_weights(weights: Mapping[str, int]) -> None:
    if not weights:
        raise UsageError("set_weights: no node weights given")
    for addr, w in weights.items():
        if not isinstance(addr, str) or not addr:
            raise UsageError(f"set_weights: bad node address {addr!r}")
        if isinstance(w, bool) or not isinstance(w, int) or w < 0:
            raise UsageError(f"set_weights: weight for {addr} must be an integer ≥ 0, not {w!r}")


class _Http:
    """One gateway endpoint: a base URL, a label for messages, blocking requests in a thread."""

    def __init__(self, label: str, base_url: str, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"{label}: bad URL {base_url!r} (want http://host:port)")
        self.label = label
        self.base_url = base_url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self.timeout_s = timeout_s

    def where(self, method: str, path: str) -> str:
        return f"{self.label} {self.base_url}: {method} {path}"

    def _sync(self, method: str, path: str, body: bytes | None,
              headers: dict[str, str]) -> tuple[int, http.client.HTTPMessage, bytes]:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self.timeout_s)
        try:
            conn.request(method, self._prefix + path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.msg, resp.read()
        finally:
            conn.close()

    async def request(self, method: str, path: str, payload: Any = None,
                      headers: Mapping[str, str] | None = None
                      ) -> tuple[int, http.client.HTTPMessage, bytes]:
        """Send one request; connection failures and timeouts become `GatewayApiError`."""
        hdrs = {"Accept": "application/json", **(headers or {})}
        body = None
        if payload is not None:
            body = json.dumps(payload).encode()
            hdrs["Content-Type"] = "application/json"
        _log.debug("%s", self.where(method, path))
        try:
            return await asyncio.to_thread(self._sync, method, path, body, hdrs)
        except (TimeoutError, socket.timeout):
            raise GatewayApiError(
                f"{self.where(method, path)}: no answer within {self.timeout_s:g}s") from None
        except (OSError, http.client.HTTPException) as e:
            words = e.strerror if isinstance(e, OSError) and e.strerror else (str(e) or type(e).__name__)
            raise GatewayApiError(f"{self.where(method, path)}: {_one_line(words)}") from None


def _json(http_: _Http, method: str, path: str, status: int, raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise GatewayApiError(f"{http_.where(method, path)}: HTTP {status}, not JSON: "
                              f"{_one_line(raw.decode('utf-8', 'replace'), 80)}") from None


# --------------------------------------------------------------------------------------------
# APIPark


_SESSION_WORDS = re.compile(r"not ?log(?:ged)? ?in|unauthori[sz]ed|session|expired|log ?in again",
                            re.IGNORECASE)


class ApiparkClient:
    """APIPark's management API with a ``session`` cookie (APIPark, see the module docstring).

    The client logs in on first use; when a call is answered HTTP 401/403 or with an envelope
    saying the session is invalid or expired, it logs in again once and retries that call once.
    """

    def __init__(self, base_url: str, *, username: str, password: str,
                 timeout_s: float = 5.0) -> None:
        self._http = _Http("apipark", base_url, timeout_s)
        self._username = username
        self._password = password
        self._session: str | None = None

    def __repr__(self) -> str:  # never the password
        return f"ApiparkClient({self._http.base_url!r}, username={self._username!r})"

    @property
    def base_url(self) -> str:
        return self._http.base_url

    def _scrub(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text

    def _envelope(self, method: str, path: str, status: int, raw: bytes) -> dict:
        where = self._http.where(method, path)
        if status >= 500:
            raise GatewayApiError(self._scrub(
                f"{where}: HTTP {status}: {_one_line(raw.decode('utf-8', 'replace'), 80)}"))
        env = _json(self._http, method, path, status, raw)
        if not isinstance(env, dict) or "code" not in env:
            raise GatewayApiError(f"{where}: HTTP {status}, not an APIPark envelope "
                                  "({\"code\",\"data\",\"msg\"})")
        return env

    @staticmethod
    def _session_invalid(status: int, env: dict | None) -> bool:
        if status in (401, 403):
            return True
        if env is None or env.get("code") in (0, "0"):
            return False
        return env.get("code") in (401, 403, "401", "403") or bool(
            _SESSION_WORDS.search(str(env.get("msg") or "")))

    async def login(self) -> None:
        """``POST /api/v1/account/login/username`` → the ``session`` cookie (docs/apipark.md, step 1)."""
        method, path = "POST", "/api/v1/account/login/username"
        status, headers, raw = await self._http.request(
            method, path, {"name": self._username, "password": self._password})
        if status in (401, 403):
            env = None
            try:
                env = json.loads(raw)
            except ValueError:
                pass
            words = env.get("msg") if isinstance(env, dict) and env.get("msg") else f"HTTP {status}"
            raise GatewayRefused(self._scrub(
                f"{self._http.where(method, path)}: login refused: {_one_line(words)}"))
        env = self._envelope(method, path, status, raw)
        if env.get("code") not in (0, "0"):
            raise GatewayRefused(self._scrub(f"{self._http.where(method, path)}: code "
                                             f"{env.get('code')}: {_one_line(env.get('msg') or '')}"))
        session = None
        for value in headers.get_all("Set-Cookie") or []:
            try:
                jar = SimpleCookie(value)
            except CookieError:
                continue
            if "session" in jar:
                session = jar["session"].value
        if not session:
            raise GatewayApiError(f"{self._http.where(method, path)}: logged in but no "
                                  "'session' cookie in the reply")
        self._session = session
        _log.info("apipark %s: logged in as %s", self.base_url, self._username)

    async def _call(self, method: str, path: str, payload: Any = None) -> Any:
        """One API call with the session; re-login once on an invalid session. → ``data``."""
        if self._session is None:
            await self.login()
        for attempt in (1, 2):
            status, _h, raw = await self._http.request(
                method, path, payload, {"Cookie": f"session={self._session}"})
            env = None
            if status not in (401, 403):
                env = self._envelope(method, path, status, raw)
            if self._session_invalid(status, env):
                words = _one_line(env.get("msg") or "") if env else f"HTTP {status}"
                if attempt == 1:
                    _log.info("apipark %s: session refused (%s), logging in again",
                              self.base_url, words)
                    self._session = None
                    await self.login()
                    continue
                raise GatewayRefused(self._scrub(f"{self._http.where(method, path)}: session "
                                                 f"refused after a fresh login: {words}"))
            assert env is not None
            if env.get("code") not in (0, "0"):
                raise GatewayRefused(self._scrub(
                    f"{self._http.where(method, path)}: code {env.get('code')}: "
                    f"{_one_line(env.get('msg') or '')}"))
            return env.get("data")
        raise AssertionError("unreachable")

    async def upstream(self, service_id: str) -> dict:
        """``GET /api/v1/service/upstream?service=ID`` → the upstream config (driver, balance,
        timeout, retry, limit_peer_second, proxy_headers, scheme, pass_host, upstream_host,
        nodes [{address, weight}], discover; APIPark ``module/upstream/dto``). APIPark wraps it as
        ``data.upstream`` (APIPark ``plugins/core`` upstreamApis); a bare config is accepted too."""
        path = f"/api/v1/service/upstream?service={quote(service_id, safe='')}"
        data = await self._call("GET", path)
        if isinstance(data, dict) and isinstance(data.get("upstream"), dict):
            data = data["upstream"]
        if not isinstance(data, dict):
            raise GatewayApiError(f"{self._http.where('GET', path)}: no upstream config in the reply")
        return data

    async def set_weights(self, service_id: str, weights: Mapping[str, int], *,
                          reason: str | None = None) -> dict[str, int]:
        """Set the listed nodes' weights (0 drains), save the whole upstream, publish a release.

        Reads the upstream, changes only the listed nodes (an address not among them is
        `GatewayRefused` and nothing is sent), ``PUT``s the whole body back (docs/apipark.md step 2),
        then ``POST /api/v1/service/publish/release/do`` (step 3, APIPark
        ``controller/publish/iml.go``) with a unique version. Returns the listed nodes' weights
        before the change, for restoring. A failed publish is `GatewayRefused` saying the upstream
        was saved but not published (APIPark serves the old release until the next publish).
        """
        _check_weights(weights)
        q = f"service={quote(service_id, safe='')}"
        put_path = f"/api/v1/service/upstream?{q}"
        current = await self.upstream(service_id)
        nodes = current.get("nodes")
        if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
            raise GatewayApiError(f"{self._http.where('GET', put_path)}: upstream has no node list")
        known = {str(n.get("address")): n for n in nodes}
        unknown = sorted(set(weights) - set(known))
        if unknown:
            raise GatewayRefused(
                f"{self._http.where('PUT', put_path)}: no node {', '.join(unknown)} in the "
                f"upstream of service {service_id} (nodes: {', '.join(known) or 'none'}); nothing sent")
        before = {addr: int(known[addr].get("weight") or 0) for addr in weights}
        body = copy.deepcopy(current)
        for node in body["nodes"]:
            if node.get("address") in weights:
                node["weight"] = weights[node["address"]]
        await self._call("PUT", put_path, body)
        change = ", ".join(f"{a} {before[a]}→{w}" for a, w in weights.items())
        remark = f"pathsteer: node weights {change}" + (f" ({reason})" if reason else "")
        version = (f"pathsteer-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-"
                   f"{next(_versions)}")
        pub_path = f"/api/v1/service/publish/release/do?{q}"
        try:
            await self._call("POST", pub_path, {"version": version,
                                                "version_remark": remark, "remark": remark})
        except GatewayApiError as e:
            raise GatewayRefused(f"{e} (upstream of service {service_id} saved but not "
                                 f"published)") from None
        _log.info("apipark %s: service %s: %s, published %s", self.base_url, service_id,
                  change, version)
        return before


# --------------------------------------------------------------------------------------------
# Apinto


def _parse_node(node: str) -> tuple[str, int | None, list[str]]:
    """``"10.0.0.1:80 weight=10"`` → (address, weight or None, other tokens)."""
    tokens = str(node).split()
    if not tokens:
        return "", None, []
    weight = None
    rest = []
    for tok in tokens[1:]:
        if tok.startswith("weight="):
            try:
                weight = int(tok[len("weight="):])
                continue
            except ValueError:
                pass
        rest.append(tok)
    return tokens[0], weight, rest


def _node_text(addr: str, weight: int, rest: list[str]) -> str:
    return " ".join([addr, f"weight={weight}", *rest])


class ApintoClient:
    """Apinto's admin API (port 9400, no authentication; eosc
    ``process-admin/api-http/openapi-worker.go``). Errors arrive as HTTP 500 with a text body and
    become `GatewayRefused` carrying its first line."""

    def __init__(self, admin_url: str, *, timeout_s: float = 5.0) -> None:
        self._http = _Http("apinto", admin_url, timeout_s)

    @property
    def admin_url(self) -> str:
        return self._http.base_url

    async def _call(self, method: str, path: str, payload: Any = None) -> Any:
        status, _h, raw = await self._http.request(method, path, payload)
        where = self._http.where(method, path)
        text = raw.decode("utf-8", "replace")
        if status == 500 or 400 <= status < 500:
            raise GatewayRefused(f"{where}: HTTP {status}: {_one_line(text)}")
        if status >= 500:
            raise GatewayApiError(f"{where}: HTTP {status}: {_one_line(text, 80)}")
        if not raw.strip():
            return None
        return _json(self._http, method, path, status, raw)

    async def service(self, name: str) -> dict:
        """``GET /api/service/{name}`` → ``{"name","driver","timeout","retry","scheme","nodes",
        "balance",...}``."""
        path = f"/api/service/{quote(name, safe='')}"
        data = await self._call("GET", path)
        if not isinstance(data, dict):
            raise GatewayApiError(f"{self._http.where('GET', path)}: not a service object")
        return data

    def _weights(self, svc: dict, method: str, path: str) -> dict[str, tuple[int | None, list[str]]]:
        nodes = svc.get("nodes")
        if not isinstance(nodes, list):
            raise GatewayApiError(f"{self._http.where(method, path)}: service has no node list "
                                  "(a discovery-backed service cannot be re-weighted here)")
        out = {}
        for n in nodes:
            addr, w, rest = _parse_node(n)
            if addr:
                out[addr] = (w, rest)
        return out

    async def set_weights(self, name: str, weights: Mapping[str, int]) -> dict[str, int]:
        """Set the listed nodes' weights with ``PATCH /api/service/{name}`` ``{"nodes":[...]}``,
        then re-GET to confirm (the PATCH reply shows the old config, docs/apipark.md). Unknown
        address → `GatewayRefused`, nothing sent; weights not applied on re-GET →
        `GatewayRefused`. Returns the listed nodes' weights before (a node without ``weight=``
        is reported as 1, Apinto's effective default is not in docs/apipark.md)."""
        _check_weights(weights)
        path = f"/api/service/{quote(name, safe='')}"
        svc = await self.service(name)
        current = self._weights(svc, "GET", path)
        unknown = sorted(set(weights) - set(current))
        if unknown:
            raise GatewayRefused(
                f"{self._http.where('PATCH', path)}: no node {', '.join(unknown)} in service "
                f"{name} (nodes: {', '.join(current) or 'none'}); nothing sent")
        before = {a: (current[a][0] if current[a][0] is not None else 1) for a in weights}
        new_nodes = []
        for addr, (w, rest) in current.items():
            if addr in weights:
                new_nodes.append(_node_text(addr, weights[addr], rest))
            else:
                new_nodes.append(" ".join([addr, *([f"weight={w}"] if w is not None else []), *rest]))
        await self._call("PATCH", path, {"nodes": new_nodes})
        after = self._weights(await self.service(name), "GET", path)
        wrong = [f"{a} weight={after.get(a, (None,))[0]} (wanted {w})"
                 for a, w in weights.items() if after.get(a, (None,))[0] != w]
        if wrong:
            raise GatewayRefused(f"{self._http.where('PATCH', path)}: accepted, but a re-GET "
                                 f"shows {'; '.join(wrong)}")
        _log.info("apinto %s: service %s weights %s", self.admin_url, name, dict(weights))
        return before

    async def set_blocklist(self, name: str, cidrs: list[str], *, priority: int = 1) -> None:
        """Mirror blocked addresses into a ``visit`` strategy (profession ``strategy``, as
        docs/apipark.md names it): ``{"name","driver":"visit","priority","filters":{"ip":[...]},
        "visit":{"visit_rule":"refuse","continue":false}}``.

        ``GET /api/strategy/{name}``: if it answers, ``PUT /api/strategy/{name}``; if it is
        refused (Apinto's "does not exist" is an HTTP 500 text whose wording docs/apipark.md does not
        give), ``POST /api/strategy``; a refused POST reports both answers.

        An empty list DELETEs the strategy (and does nothing when it is absent): a ``visit``
        strategy with an empty ``ip`` filter is not guaranteed to match nobody — an empty filter
        can mean "no restriction", i.e. refuse every client — so pathsteer never writes one.
        """
        path = f"/api/strategy/{quote(name, safe='')}"
        try:
            await self._call("GET", path)
            exists, absent_words = True, ""
        except GatewayRefused as e:
            exists, absent_words = False, str(e)
        if not cidrs:
            if exists:
                await self._call("DELETE", path)
                _log.info("apinto %s: strategy %s deleted (no blocks)", self.admin_url, name)
            return
        body = {"name": name, "driver": "visit", "priority": priority,
                "filters": {"ip": list(cidrs)},
                "visit": {"visit_rule": "refuse", "continue": False}}
        if exists:
            await self._call("PUT", path, body)
        else:
            try:
                await self._call("POST", "/api/strategy", body)
            except GatewayRefused as e:
                raise GatewayRefused(f"{e} (after {absent_words.split(': ', 1)[-1]})") from None
        _log.info("apinto %s: strategy %s refuses %d address(es)", self.admin_url, name, len(cidrs))


# --------------------------------------------------------------------------------------------
# Access log output


ACCESS_LOG_FIELDS = (
    "$msec", "$remote_addr", "$src_ip", "$proxy_addr", "$status", "$proxy_status",
    "$request_time", "$proxy_time", "$request_length", "$response_length", "$auth_status",
    "$block_name", "$service", "$api", "$node", "$cluster", "$request_id",
)


def access_log_output(url: str, *, name: str = "pathsteer", kind: str = "http_output") -> dict:
    """The body for ``POST http://GATEWAY:9400/api/output`` that makes Apinto send ``url`` one JSON
    record per request (apinto-docs ``docs/apinto/outputer/http.md``; formatter per apinto-docs
    ``docs/formatter/index.md``; variables from apinto ``entries/http-entry/reader.go``).

    pathsteer keys clients on ``$remote_addr`` (the TCP peer), never on ``$src_ip``: that one is
    taken from the ``X-Real-IP`` header when present, which any client can forge. ``$src_ip`` is
    kept in the record only to show what the client claimed. ``$request_time`` and
    ``$proxy_time`` are integer milliseconds in Apinto's code (its docs say seconds).

    Only ``kind="http_output"`` is built here (the one driver that posts each record to a URL).
    """
    if kind != "http_output":
        raise UsageError(f"access_log_output: only kind 'http_output' is supported, not {kind!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"access_log_output: bad URL {url!r} (want http://host:port/path)")
    return {
        "name": name,
        "driver": kind,
        "scopes": ["access_log"],
        "method": "POST",
        "url": url,
        "headers": {"Content-Type": "application/json"},
        "type": "json",
        "formatter": {"fields": list(ACCESS_LOG_FIELDS)},
    }
