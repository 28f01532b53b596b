"""The routes of the HTTP API, the dashboard and ``/metrics`` (FastAPI).

Reads are open. A write (guard block/unblock, reload, drain/undrain) needs
``Authorization: Bearer <token>`` (the token in ``api.token_file``; compared in constant time;
401 without one, 403 for a wrong one). Without a token file, writes are refused over TCP and
allowed over the Unix socket (root's, mode 0600: the same authority as the control socket).

Every error is JSON ``{"error": "one line naming the field and the value", "field": ...}`` with
a 4xx status; bad input never reaches a handler as a 500. Writes go through the control
command registry (`Context.call`): the same validation and the same one-line errors as
``pathsteer`` on the control socket, and nothing half-applied.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import hmac
import ipaddress
import json
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pathsteer import __version__
from pathsteer.api import models as m
from pathsteer.errors import NotFoundError, NotReadyError, PathsteerError, UsageError
from pathsteer.events import Event

log = logging.getLogger("pathsteer.api")
STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
SSE_PATHS_INTERVAL_S = 1.0
SSE_QUEUE = 16384
SSE_BATCH = 1024
SSE_CLIENTS = 32
PREFIX = "/api/v1"
_SECRET_KEY = re.compile(r"(token|secret|password|passwd|api_key|apikey)$", re.IGNORECASE)


# The API's own threads for answers built off the loop (routes, metrics): two, so a burst of
# scrapes queues here and never in the loop's default executor, nor takes more than the CPU
# two threads can.
_POOL = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="api")


GZIP_MIN = 64 * 1024  # bodies from this size go gzipped to a client that takes it
GZIP_LEVEL = 1  # 10k routes: 2.3 MB → 140 kB in 6 ms (level 6: 123 kB in 15 ms)
GZIPPED = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}


def takes_gzip(request: Request) -> bool:
    """Whether the request's Accept-Encoding takes gzip (browsers, curl --compressed,
    Python's requests and Prometheus send it); ``gzip;q=0`` refuses it."""
    for item in request.headers.get("accept-encoding", "").split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            q = params.strip().lower()
            return not (q.startswith("q=") and q[2:].strip() in ("0", "0.0", "0.00", "0.000"))
    return False


async def blocking(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(_POOL, fn, *args)


class ApiError(Exception):
    def __init__(self, status: int, error: str, field: str | None = None, headers: dict | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.field, self.headers = status, error, field, headers


@dataclass
class ApiState:
    """What the routes need besides the daemon: the token (None: no token file), whether this
    app serves the Unix socket, the SSE clients, and a stop signal for the streams."""

    token: bytes | None
    unix: bool
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    sse_clients: int = 0
    routes: "RoutesCache" = field(default_factory=lambda: RoutesCache())  # shared by the listeners


def _error(status: int, error: str, fld: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "field": fld}, status_code=status, headers=headers)


def _validation_text(exc: RequestValidationError) -> tuple[str, str | None]:
    err = exc.errors()[0] if exc.errors() else {}
    loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path", "header")]
    where = ".".join(loc) or "body"
    kind = err.get("type", "")
    if kind == "json_invalid":
        return f"request body is not JSON ({err.get('ctx', {}).get('error', 'invalid')})", None
    if kind == "missing":
        return f"{where}: is required", where
    if kind == "extra_forbidden":
        return f"{where}: unknown field", where
    value = err.get("input")
    shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{where}: {shown} {err.get('msg', 'is not valid').lower()}", where


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("<redacted>" if _SECRET_KEY.search(str(k)) and v is not None else _redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def _duration(value: float | str | None, fld: str) -> float | None:
    if value is None:
        return None
    from pathsteer.units import parse_duration
    try:
        seconds = parse_duration(value, fld)
    except UsageError as exc:
        raise ApiError(422, str(exc), fld) from None
    if not 0 < seconds < 10 * 365 * 86400:
        raise ApiError(422, f"{fld}: {value!r} must be a duration above 0 (examples: 30s, 10m, 1h)", fld)
    return seconds


def make_app(ctx, state: ApiState, *, max_body: int) -> FastAPI:
    """The app for one listener (``state.unix``: the Unix socket's)."""
    app = FastAPI(title="pathsteer", version=__version__, openapi_url=f"{PREFIX}/openapi.json",
                  docs_url=None, redoc_url=None,
                  description="Measure every path, keep each destination on the best one, drop hostile traffic. "
                              "Reads are open; writes need `Authorization: Bearer <token>` (api.token_file).",
                  responses={400: {"model": m.Error}, 422: {"model": m.Error}})

    # --- errors: one line, naming the field; never a 500 for bad input ------------------------

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.error, exc.field, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        text, fld = _validation_text(exc)
        return _error(400 if fld is None else 422, text, fld)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        text = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and text == "Not Found":
            text = f"no such endpoint: {_request.url.path} (see {PREFIX}/openapi.json)"
        if exc.status_code == 405:
            text = f"{_request.method} is not allowed on {_request.url.path}"
        return _error(exc.status_code, text, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("api.error path=%s", request.url.path)
        return _error(500, f"internal error: {exc.__class__.__name__}: {exc}")

    @app.middleware("http")
    async def _limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return _error(400, f"Content-Length {length!r} is not a number", "Content-Length")
            if n > max_body:
                return _error(413, f"request body of {n} bytes is over api.max_body ({max_body} bytes)", "body")
        elif request.method in ("POST", "PUT", "PATCH", "DELETE") and "chunked" in request.headers.get("transfer-encoding", ""):
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_body:
                    return _error(413, f"request body is over api.max_body ({max_body} bytes)", "body")
            request._body = body  # noqa: SLF001 - starlette reads it from here
        return await call_next(request)

    # --- helpers --------------------------------------------------------------------------------

    def steer():
        s = ctx.component("steer")
        if s is None:
            raise ApiError(404, "steering does not run in this daemon (no 'paths' in the config)")
        return s

    def guard():
        g = ctx.component("guard")
        if g is None:
            raise ApiError(404, "the guard does not run in this daemon (no 'guard' section in the config)")
        return g

    def known_path(name: str) -> str:
        names = [p.name for p in steer().config.paths]
        if name not in names:
            raise ApiError(404, f"path: unknown path {name!r} (paths: {', '.join(names)})", "path")
        return name

    async def call(command: str, args: dict) -> Any:
        if command not in ctx.commands():
            raise ApiError(503, f"{command} is not available in this daemon")
        try:
            return await ctx.call(command, args)
        except NotFoundError as exc:
            raise ApiError(404, str(exc)) from None
        except NotReadyError as exc:
            raise ApiError(503, str(exc)) from None
        except UsageError as exc:
            raise ApiError(400, str(exc)) from None
        except PathsteerError as exc:
            raise ApiError(409, str(exc)) from None

    def write(request: Request) -> None:
        """Dependency of every write: the bearer token (see the module docstring)."""
        if state.token is None:
            if state.unix:
                return
            raise ApiError(403, "writes over TCP need a token: set api.token_file (or use the Unix socket)")
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(401, "this write needs 'Authorization: Bearer <token>' (api.token_file)", "Authorization",
                           {"WWW-Authenticate": 'Bearer realm="pathsteer"'})
        if not hmac.compare_digest(given.strip().encode(), state.token):
            raise ApiError(403, "the bearer token is wrong", "Authorization")

    # --- daemon ---------------------------------------------------------------------------------

    @app.get(f"{PREFIX}/status", response_model=m.Status, tags=["daemon"], summary="version, readiness, components")
    async def status() -> dict:
        return {"version": __version__, "pid": os.getpid(), "ready": ctx.ready, "started": ctx.started_wall,
                "components": list(ctx._daemon.components), "config": ctx.config_path}

    @app.get(f"{PREFIX}/healthz", response_model=m.Health, tags=["daemon"], summary="the daemon answers")
    async def healthz() -> dict:
        return {"ok": True}

    @app.get(f"{PREFIX}/readyz", response_model=m.Ready, tags=["daemon"],
             responses={503: {"model": m.Ready}}, summary="ready: every component started, first decision applied")
    async def readyz():
        if ctx.ready:
            return {"ready": True, "why": None}
        s = ctx.component("steer")
        why = "steering's first decision is not applied yet" if s is not None and s.applied is None \
            else "the daemon is starting"
        return JSONResponse({"ready": False, "why": why}, status_code=503)

    @app.get(f"{PREFIX}/config", response_model=m.ConfigView, tags=["daemon"], summary="the running config, secrets redacted")
    async def config() -> dict:
        return _redact(ctx.config.model_dump(mode="json"))

    @app.post(f"{PREFIX}/reload", response_model=m.Reloaded, tags=["daemon"], dependencies=[Depends(write)],
              responses={401: {"model": m.Error}, 403: {"model": m.Error}, 409: {"model": m.Error}},
              summary="read the config file again (refused, nothing changed, if it is bad)")
    async def reload() -> dict:
        return await call("daemon.reload", {})

    # --- paths ----------------------------------------------------------------------------------

    @app.get(f"{PREFIX}/paths", response_model=m.Paths, tags=["paths"], responses={404: {"model": m.Error}},
             summary="every path: state, RTT p50/p95/EWMA, jitter, loss, utilisation, each target's state")
    async def paths() -> dict:
        return {"paths": steer().view_paths()}

    @app.get(f"{PREFIX}/paths/{{name}}", response_model=m.PathView, tags=["paths"], responses={404: {"model": m.Error}},
             summary="one path")
    async def one_path(name: str = Path(max_length=64)) -> dict:
        known_path(name)
        return next(p for p in steer().view_paths() if p["name"] == name)

    @app.get(f"{PREFIX}/paths/{{name}}/history", response_model=m.PathHistory, tags=["paths"],
             responses={404: {"model": m.Error}, 503: {"model": m.Error}},
             summary="per-interval rollups of a path (RTT p50/p95, loss, utilisation) from the history")
    async def path_history(name: str = Path(max_length=64), since: float | None = Query(None, ge=0, le=1e11),
                           limit: int = Query(10000, ge=1, le=100000)) -> dict:
        known_path(name)
        args: dict[str, Any] = {"path": name, "limit": limit}
        if since is not None:
            args["since"] = since
        return await call("history.rollups", args)

    @app.post(f"{PREFIX}/paths/{{name}}/drain", response_model=m.Drained, tags=["paths"], dependencies=[Depends(write)],
              responses={401: {"model": m.Error}, 403: {"model": m.Error}, 404: {"model": m.Error}},
              summary="maintenance: move traffic off the path (recorded as drained, probes go on) until undrained")
    async def drain(body: m.DrainRequest | None = None, name: str = Path(max_length=64)) -> dict:
        known_path(name)
        body = body or m.DrainRequest()
        args: dict[str, Any] = {"path": name}
        ttl = _duration(body.ttl, "ttl")
        if ttl is not None:
            args["ttl"] = ttl
        if body.reason:
            args["reason"] = body.reason
        return await call("steer.drain", args)

    @app.post(f"{PREFIX}/paths/{{name}}/undrain", response_model=m.Drained, tags=["paths"],
              dependencies=[Depends(write)],
              responses={401: {"model": m.Error}, 403: {"model": m.Error}, 404: {"model": m.Error}},
              summary="end a drain: the path is a candidate again (under the policy's failback rules)")
    async def undrain(name: str = Path(max_length=64)) -> dict:
        known_path(name)
        return await call("steer.undrain", {"path": name})

    # --- routes ---------------------------------------------------------------------------------

    @app.get(f"{PREFIX}/routes", response_model=m.Routes, tags=["routes"], responses={404: {"model": m.Error}},
             summary="each prefix: policy, path(s) and weights, reason, since")
    async def routes(request: Request,
                     prefix: str | None = Query(None, max_length=64, description="only routes within this prefix"),
                     path: str | None = Query(None, max_length=64, description="only routes over this path"),
                     limit: int = Query(100000, ge=1, le=10_000_000), offset: int = Query(0, ge=0)) -> Response:
        s = steer()
        net = None
        if prefix is not None:
            try:
                net = ipaddress.ip_network(prefix.strip(), strict=False)
            except ValueError:
                raise ApiError(422, f"prefix: {prefix!r} is not a prefix (examples: 198.51.100.0/24, 2001:db8::/48)",
                               "prefix") from None
        if path is not None:
            known_path(path)
        decision = s.decision
        gz = takes_gzip(request)
        if net is None and path is None and offset == 0 and decision is not None and limit >= len(decision.routes):
            # The whole table, as dashboards and scripts ask for it: made ahead after each
            # decision while it is asked for (`RoutesCache.prebuild`), served as it is.
            cache = state.routes
            cache.watch(gz)
            if gz and (made := cache.ready_gzip(decision)) is not None:
                return Response(made, media_type="application/json", headers=GZIPPED)
            if not gz and (made := cache.ready(decision)) is not None:
                return Response(made, media_type="application/json")
            rows = await blocking(cache.body, s, net, path, limit, offset)
            if gz and (made := await blocking(cache.compress, decision)) is not None:
                return Response(made, media_type="application/json", headers=GZIPPED)
        else:
            rows = await blocking(state.routes.body, s, net, path, limit, offset)
        if gz and len(rows) >= GZIP_MIN:
            return Response(await blocking(gzip.compress, rows, GZIP_LEVEL), media_type="application/json",
                            headers=GZIPPED)
        return Response(rows, media_type="application/json")

    @app.get(f"{PREFIX}/explain", response_model=m.Explain, tags=["routes"],
             responses={404: {"model": m.Error}, 422: {"model": m.Error}},
             summary="which prefix and path(s) carry an address, and why")
    async def explain(address: str = Query(max_length=64)) -> dict:
        steer()
        return await call("steer.explain", {"address": address})

    # --- events ---------------------------------------------------------------------------------

    @app.get(f"{PREFIX}/events", response_model=m.Events, tags=["events"],
             summary="the event history (from SQLite when the history runs, else this process's recent events)")
    async def events(since: float | None = Query(None, ge=0, le=1e11, description="epoch seconds"),
                     prefix: str | None = Query(None, max_length=64), path: str | None = Query(None, max_length=64),
                     name: str | None = Query(None, max_length=64, description="an event name, or steer.* for a family"),
                     limit: int = Query(100, ge=1, le=100000)) -> dict:
        if "history.events" in ctx.commands():
            args = {k: v for k, v in {"since": since, "prefix": prefix, "path": path, "name": name, "limit": limit}.items()
                    if v is not None}
            return await call("history.events", args)
        return {"events": [e.to_json() for e in _matching(ctx.bus.recent(), since, prefix, path, name)][-limit:]}

    @app.get(f"{PREFIX}/events/stream", tags=["events"], response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "Server-Sent Events: `event: event` (one event, id = seq) as it "
                                             "happens; `event: paths` (every path) every second"},
                        503: {"model": m.Error}},
             summary="every change as it happens (Server-Sent Events)")
    async def stream(request: Request, since_seq: int | None = Query(None, ge=0, description="replay events after this seq")):
        if state.sse_clients >= SSE_CLIENTS:
            raise ApiError(503, f"too many event streams open ({SSE_CLIENTS})")
        last = request.headers.get("last-event-id")
        if since_seq is None and last is not None and last.isdigit():
            since_seq = int(last)
        return StreamingResponse(_sse(ctx, state, since_seq), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # --- gateways -------------------------------------------------------------------------------

    @app.get(f"{PREFIX}/gateways", response_model=m.Gateways, tags=["gateways"],
             summary="each gateway: connection, records read, parse errors, upstreams and their paths, "
                     "servers' weights, last actions")
    async def gateways() -> dict:
        if ctx.component("gateways") is None:
            return {"gateways": []}
        return await call("gateways.status", {})

    # --- bgp ------------------------------------------------------------------------------------

    @app.get(f"{PREFIX}/bgp", response_model=m.Bgp, response_model_by_alias=True, tags=["bgp"],
             summary="BGP: each session's state and prefix counts, ExaBGP's process, announced and learned")
    async def bgp() -> dict:
        if ctx.component("bgp") is None:
            return {"configured": False}
        return {"configured": True, **(await call("bgp.status", {}))}

    @app.get(f"{PREFIX}/bgp/prefix", response_model=m.BgpPrefix, tags=["bgp"],
             responses={400: {"model": m.Error}, 404: {"model": m.Error}},
             summary="one prefix: what was announced with which MED and communities, and why (or why not)")
    async def bgp_prefix(prefix: str = Query(..., description="a prefix or an address", max_length=64)) -> dict:
        if ctx.component("bgp") is None:
            raise ApiError(404, "bgp does not run in this daemon (no 'bgp' section in the config)")
        return await call("bgp.prefix", {"prefix": prefix})

    # --- guard ----------------------------------------------------------------------------------

    @app.get(f"{PREFIX}/guard/blocks", response_model=m.Blocks, tags=["guard"], responses={404: {"model": m.Error}},
             summary="blocks (manual, automatic) and the config's deny entries, with hits")
    async def blocks() -> dict:
        guard()
        return {"blocks": (await call("guard.list", {}))["entries"]}

    @app.post(f"{PREFIX}/guard/blocks", response_model=m.BlockView, tags=["guard"], dependencies=[Depends(write)],
              responses={401: {"model": m.Error}, 403: {"model": m.Error}, 404: {"model": m.Error}},
              summary="block a CIDR (ttl, comment)")
    async def block(body: m.BlockRequest) -> dict:
        guard()
        args: dict[str, Any] = {"cidr": body.cidr, "reason": body.comment}
        ttl = _duration(body.ttl, "ttl")
        if ttl is not None:
            args["ttl"] = ttl
        return await call("guard.block", args)

    @app.delete(f"{PREFIX}/guard/blocks", response_model=m.Unblocked, tags=["guard"], dependencies=[Depends(write)],
                responses={401: {"model": m.Error}, 403: {"model": m.Error}, 404: {"model": m.Error}},
                summary="remove a manual or automatic block")
    async def unblock(cidr: str = Query(max_length=64)) -> dict:
        guard()
        return await call("guard.unblock", {"cidr": cidr})

    @app.get(f"{PREFIX}/guard/stats", response_model=m.GuardStats, tags=["guard"], responses={404: {"model": m.Error}},
             summary="per-verdict and per-rule counters, top sources")
    async def guard_stats(top: int = Query(10, ge=0, le=1000)) -> dict:
        guard()
        return await call("guard.stats", {"top": top})

    # --- metrics and the dashboard ----------------------------------------------------------------

    @app.get("/metrics", tags=["metrics"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition"}},
             summary="Prometheus metrics")
    async def metrics(request: Request) -> Response:
        try:
            from pathsteer.api import metrics as metrics_mod
        except ImportError:
            raise ApiError(503, "metrics are not available in this build") from None
        if not ctx.config.metrics.enabled:
            raise ApiError(404, "metrics are off (metrics.enabled: false)")
        body, ctype = await blocking(metrics_mod.render, ctx)
        if takes_gzip(request) and len(body) >= GZIP_MIN:  # Prometheus asks for gzip
            return Response(await blocking(gzip.compress, body, GZIP_LEVEL), media_type=ctype, headers=GZIPPED)
        return Response(body, media_type=ctype)

    @app.get("/", include_in_schema=False)
    async def index():
        page = os.path.join(STATIC_DIR, "index.html")
        if not os.path.exists(page):
            raise ApiError(404, "the dashboard is not installed")
        return FileResponse(page, headers={"Cache-Control": "no-cache"})

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) or name.startswith("."):
            raise ApiError(404, f"no such file: {name!r}")
        path = os.path.join(STATIC_DIR, name)
        if not os.path.isfile(path):
            raise ApiError(404, f"no such file: {name!r}")
        return FileResponse(path, headers={"Cache-Control": "no-cache"})

    return app


class RoutesCache:
    """``/routes`` at 10k prefixes, from JSON fragments kept per route: a route whose prefix,
    since, reason and pending are those of its fragment (each decision makes new RouteStatus
    objects; their content rarely changes, and a change of next hops or weights comes with a
    new since) is not viewed and dumped again. When no fragment of the whole table changed, the
    last body is served as it is. Ages are not written (``since`` is: they would make every
    body new). Used from the API's threads, one at a time (the lock)."""

    WATCH_S = 60.0  # the whole table is made ahead for this long after it was last asked for

    def __init__(self) -> None:
        self.frags: list[tuple] = []  # by the route's index in the decision (the config's order)
        self.whole: bytes | None = None  # the last unfiltered body, valid while no fragment changes
        self.made: tuple = (None, None, None)  # (decision, its whole table, gzipped): set at once, read without the lock; holding the decision keeps its id from reuse
        self.gzip = False  # a client that takes gzip asked: `prebuild` compresses too
        self.watched_until = 0.0  # monotonic: until then, `prebuild` makes each decision's table
        self.lock = threading.Lock()

    def ready(self, decision) -> bytes | None:
        """The whole table of ``decision`` if it is made already (no thread, no work)."""
        of, whole, _ = self.made
        return whole if of is decision else None

    def ready_gzip(self, decision) -> bytes | None:
        of, _, zipped = self.made
        return zipped if of is decision else None

    def compress(self, decision) -> bytes | None:
        """``decision``'s whole table gzipped (made once; None if the table is not made)."""
        of, whole, zipped = self.made
        if of is not decision or whole is None:
            return None
        if zipped is None:
            zipped = gzip.compress(whole, GZIP_LEVEL)  # zlib lets go of the GIL meanwhile
            if self.made[0] is decision:
                self.made = (decision, whole, zipped)
        return zipped

    def watch(self, gzip_too: bool = False) -> None:
        self.watched_until = time.monotonic() + self.WATCH_S
        self.gzip = self.gzip or gzip_too

    def wanted(self, decision) -> bool:
        """Whether `prebuild` should make ``decision``'s table: it is new and someone asks."""
        return decision is not None and decision is not self.made[0] and time.monotonic() < self.watched_until

    def prebuild(self, s) -> None:
        """Make the whole table of the current decision (the API's thread, after a decision):
        a dashboard's or a script's next ``GET /routes`` is then served as it is."""
        decision = s.decision
        if decision is not None:
            self.body(s, None, None, len(decision.routes), 0)
            if self.gzip:
                self.compress(decision)

    def body(self, s, net, path: str | None, limit: int, offset: int) -> bytes:
        decision = s.decision
        if decision is None:
            return b'{"routes":[],"total":0}'
        clock = s._clock()  # noqa: SLF001 - the steering's own (mono, wall) pair
        with self.lock:
            return self._body(decision, clock, net, path, limit, offset)

    def _frag(self, i: int, r, clock) -> tuple[str, bool]:
        """Route ``i``'s fragment, and whether it had to be made."""
        frags = self.frags
        if i < len(frags):
            hit = frags[i]
            # The prefix object is the config's, the same every tick: checked by identity.
            if hit[0] is r.prefix and hit[1] == r.since and hit[2] == r.reason and hit[3] == r.pending:
                return hit[4], False
        frag = route_json(r, clock)
        hit = (r.prefix, r.since, r.reason, r.pending, frag)
        if i < len(frags):
            frags[i] = hit
        elif i == len(frags):
            frags.append(hit)
        return frag, True

    def _body(self, decision, clock, net, path: str | None, limit: int, offset: int) -> bytes:
        routes = decision.routes
        whole = net is None and path is None and offset == 0 and limit >= len(routes)
        if len(self.frags) > len(routes):
            del self.frags[len(routes):]
            self.whole = None
        parts, total, changed = [], 0, False
        for i, r in enumerate(routes):
            if net is not None and not (r.prefix.version == net.version and r.prefix.subnet_of(net)):
                continue
            if path is not None and not any(h.path == path for h in r.nexthops):
                continue
            total += 1
            if not offset <= total - 1 < offset + limit:
                continue
            frag, made = self._frag(i, r, clock)
            changed |= made
            parts.append(frag)
        if whole:
            if changed or self.whole is None:
                self.whole = ('{"routes":[' + ",".join(parts) + f'],"total":{total}}}').encode()
            if self.made[0] is not decision or self.made[1] is not self.whole:
                self.made = (decision, self.whole, self.made[2] if self.made[1] is self.whole else None)
            return self.whole
        if changed:
            self.whole, self.made = None, (None, None, None)
        return ('{"routes":[' + ",".join(parts) + f'],"total":{total}}}').encode()


def route_json(r, clock) -> str:
    """`views.route_view` without ``age_s``, as compact JSON, written directly: a third of the
    time of building the dict and dumping it (10k routes cold: 110 ms before)."""
    hops = r.nexthops
    total = sum(h.weight for h in hops) or 1
    nh = ",".join(f'{{"path":{_js(h.path)},"weight":{h.weight},"share":{round(h.weight / total, 4)!r}}}'
                  for h in hops)
    via = "-" if not hops else hops[0].path if len(hops) == 1 else ",".join(f"{h.path}:{h.weight}" for h in hops)
    pending = "null" if r.pending is None else _js(r.pending)
    return (f'{{"prefix":"{r.prefix}","policy":"{r.policy.value}","nexthops":[{nh}],"via":{_js(via)},'
            f'"since":{clock.wall_of(r.since)!r},"kind":"{r.kind.value}","reason":{_js(r.reason)},'
            f'"pending":{pending}}}')


_js = json.encoder.encode_basestring_ascii if hasattr(json.encoder, "encode_basestring_ascii") else json.dumps


def _names_path(e: Event, path: str) -> bool:
    f = e.fields
    if f.get("path") == path:
        return True
    hops = {h.split(":")[0] for k in ("from", "to") for h in str(f.get(k) or "").split(",")}
    return path in hops


def _matching(evs: list[Event], since, prefix, path, name) -> list[Event]:
    out = []
    for e in evs:
        if since is not None and e.at < since:
            continue
        if prefix is not None and e.fields.get("prefix") != prefix:
            continue
        if path is not None and not _names_path(e, path):
            continue
        if name is not None and not (e.name == name or (name.endswith(".*") and e.name.startswith(name[:-1]))):
            continue
        out.append(e)
    return out


def _sse_frame(event: str, data: dict, seq: int | None = None) -> bytes:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


async def _sse(ctx, state: ApiState, since_seq: int | None) -> AsyncIterator[bytes]:
    """One SSE client: catch-up (``since_seq``), then each bus event as it is published and
    every path each second. A client too slow for SSE_QUEUE events is told (``event: overflow``)
    and should refetch; the stream ends when the API stops."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event | None] = asyncio.Queue(SSE_QUEUE)
    overflow = False

    def put(e: Event | None) -> None:
        nonlocal overflow
        try:
            queue.put_nowait(e)
        except asyncio.QueueFull:
            overflow = True

    def on_event(e: Event) -> None:  # publisher's thread
        loop.call_soon_threadsafe(put, e)

    state.sse_clients += 1
    ctx.bus.subscribe(on_event)
    try:
        yield b"retry: 1000\n\n"
        if since_seq is not None:
            for e in ctx.bus.recent(since_seq):
                yield _sse_frame("event", e.to_json(), e.seq)
        next_paths = 0.0
        stop_wait = asyncio.ensure_future(state.stopping.wait())
        try:
            while not state.stopping.is_set():
                now = time.monotonic()
                if now >= next_paths:
                    s = ctx.component("steer")
                    if s is not None:
                        yield _sse_frame("paths", {"at": time.time(), "paths": s.view_paths()})
                    else:
                        yield b": alive\n\n"
                    next_paths = now + SSE_PATHS_INTERVAL_S
                get = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({get, stop_wait}, timeout=max(0.0, next_paths - time.monotonic()),
                                             return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    continue
                batch = [get.result()]
                while not queue.empty() and len(batch) < SSE_BATCH:  # a burst (a path cut moves
                    batch.append(queue.get_nowait())                 # 10k prefixes) goes in one write
                frames = [_sse_frame("event", e.to_json(), e.seq) for e in batch if e is not None]
                if overflow:
                    overflow = False
                    frames.append(_sse_frame("overflow", {"at": time.time(), "why": f"over {SSE_QUEUE} events queued"}))
                yield b"".join(frames)
        finally:
            stop_wait.cancel()
    finally:
        ctx.bus.unsubscribe(on_event)
        state.sse_clients -= 1
