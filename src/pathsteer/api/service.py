"""The ``api`` component: uvicorn serving `pathsteer.api.app` on the daemon's own loop, on TCP
(``api.listen``, optionally TLS) and on a Unix socket (``api.socket``).

Its section is the whole config (the API shows all of it); its plan is the ``api`` section.
``check`` reads the token file and the TLS files (a missing or empty one refuses the config,
naming the key); ``start`` binds every listener before serving any (a port in use fails the
start with a one-line error); ``commit`` swaps the token at once, and rebinds only when a
listener or TLS changed. uvicorn never installs signal handlers here: the daemon owns them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import ssl
import time
from dataclasses import dataclass

import uvicorn

from pathsteer import logs
from pathsteer.api.app import ApiState, RoutesCache, blocking, make_app
from pathsteer.config import Config
from pathsteer.config.operator import ApiConfig
from pathsteer.control.server import Command
from pathsteer.errors import PathsteerError, UsageError
from pathsteer.waker import Waker, beat

log = logging.getLogger("pathsteer.api")
MAX_TOKEN = 4096
PREBUILD_POLL_S = 0.05  # how often a new decision is looked for (an identity check) while watched
PREBUILD_IDLE_S = 0.5  # how often it looks whether anyone watches (the first request builds its own)
SERVER_TICK_S = 1.0  # how often a listener's loop looks at its exit flag and remakes its Date header


@dataclass(frozen=True)
class ApiPlan:
    config: Config
    api: ApiConfig
    token: bytes | None
    socket_path: str | None


class _Server(uvicorn.Server):
    _wake: Waker | None = None

    @contextlib.contextmanager
    def capture_signals(self):  # the daemon's loop owns SIGTERM/SIGHUP/SIGINT
        yield

    async def main_loop(self) -> None:
        """uvicorn's loop ticks every 100 ms (a look at should_exit; the Date header every
        tenth tick): an idle daemon woke ten times a second per listener for nothing. Here it
        ticks once a second (each tick makes the Date header) and at once on `exit_soon`."""
        self._wake = Waker()
        while not await self.on_tick(0):
            await self._wake.wait(SERVER_TICK_S, beat=True)

    def exit_soon(self) -> None:
        self.should_exit = True
        if self._wake is not None:
            self._wake.set()


def read_token(path: str | None) -> bytes | None:
    """The bearer token from ``api.token_file`` (one line; surrounding whitespace dropped)."""
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TOKEN + 1)
    except OSError as exc:
        raise UsageError(f"api.token_file: {path!r} cannot be read ({exc.strerror})") from None
    token = data.strip()
    if len(data) > MAX_TOKEN:
        raise UsageError(f"api.token_file: {path!r} is over {MAX_TOKEN} bytes: not a token")
    if len(token) < 16:
        raise UsageError(f"api.token_file: {path!r} holds {len(token)} characters: a token needs at least 16")
    if any(c < 0x21 or c > 0x7e for c in token):
        raise UsageError(f"api.token_file: {path!r} must hold one line of printable characters")
    return token


def _tls(api: ApiConfig) -> ssl.SSLContext | None:
    if api.cert is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(api.cert, api.key)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"api.cert/api.key: {api.cert!r} / {api.key!r} cannot be used ({exc})") from None
    return ctx


class ApiService:
    name = "api"

    def __init__(self, config: Config, ctx) -> None:
        self.ctx = ctx
        self.plan: ApiPlan | None = None
        self._servers: list[tuple[_Server, asyncio.Task, socket.socket, str | None]] = []
        self._states: list[ApiState] = []
        self.where: list[str] = []
        self._checked: ApiPlan | None = None
        self.routes = RoutesCache()  # one for every listener
        self._prebuild: asyncio.Task | None = None

    # --- the contract ---------------------------------------------------------------------------

    def check(self, config: Config) -> ApiPlan:
        api = config.api
        token = read_token(api.token_file)
        _tls(api)
        self._checked = ApiPlan(config, api, token, api.socket_path(config.control.socket))
        return self._checked

    async def start(self) -> None:
        """Serve the plan of the check that came just before (the contract: start follows check)."""
        if self._checked is None:
            raise PathsteerError("api: start before check")
        from pathsteer.api import metrics
        metrics.attach(self.ctx)  # event and route-change counts cover the whole run
        await self.commit(self._checked)

    async def commit(self, plan: ApiPlan) -> None:
        old = self.plan
        if old is not None and self._listeners(old) == self._listeners(plan):
            self.plan = plan
            for st in self._states:
                st.token = plan.token
            logs.event(log, "api.reload", token="set" if plan.token else "none")
            return
        await self._close()
        try:
            await self._open(plan)
        except BaseException:
            await self._close()
            if old is not None:  # put the old listeners back
                with contextlib.suppress(Exception):
                    await self._open(old)
            raise
        self.plan = plan

    async def stop(self) -> None:
        await self._close()
        from pathsteer.api import metrics
        metrics.detach(self.ctx)
        logs.event(log, "api.stop")

    def commands(self) -> list[Command]:
        return []

    # --- listeners ------------------------------------------------------------------------------

    @staticmethod
    def _listeners(plan: ApiPlan):
        a = plan.api
        return (a.listen, plan.socket_path, a.cert, a.key, a.max_body)

    def _bind_tcp(self, api: ApiConfig) -> socket.socket:
        host, port = api.address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            why = "is in use (another daemon? set api.listen)" if exc.errno == errno.EADDRINUSE else f"({exc.strerror})"
            raise UsageError(f"api.listen: {api.listen} {why}") from None
        return sock

    def _bind_unix(self, path: str) -> socket.socket:
        os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
        if os.path.exists(path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            else:
                raise UsageError(f"api.socket: another daemon is listening on {path}")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o077)
        try:
            sock.bind(path)
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise UsageError(f"api.socket: {path} cannot be bound ({exc.strerror})") from None
        finally:
            os.umask(old)
        return sock

    async def _open(self, plan: ApiPlan) -> None:
        api = plan.api
        bound: list[tuple[socket.socket, bool, str]] = []
        try:
            if api.listen is not None:
                bound.append((self._bind_tcp(api), False, f"{'https' if api.cert else 'http'}://{api.listen}"))
            if plan.socket_path is not None:
                bound.append((self._bind_unix(plan.socket_path), True, f"unix:{plan.socket_path}"))
        except BaseException:
            for sock, _unix, _w in bound:
                sock.close()
            raise
        tls = _tls(api)
        for sock, unix, where in bound:
            st = ApiState(token=plan.token, unix=unix, routes=self.routes)
            app = make_app(self.ctx, st, max_body=api.max_body)
            config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", loop="none",
                                    http="h11", ws="none", timeout_keep_alive=30, timeout_graceful_shutdown=1,
                                    limit_concurrency=256, server_header=False, date_header=True)
            config.load()
            if tls is not None and not unix:
                config.ssl = tls
            server = _Server(config)
            task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]), name=f"api {where}")
            self._servers.append((server, task, sock, plan.socket_path if unix else None))
            self._states.append(st)
            self.where.append(where)
        for server, task, _sock, _path in self._servers:
            while not server.started and not task.done():
                await asyncio.sleep(0.01)
            if task.done():
                exc = task.exception() if not task.cancelled() else None
                raise PathsteerError(f"api: the HTTP server did not start ({exc})")
        if self._prebuild is None or self._prebuild.done():
            self._prebuild = asyncio.get_running_loop().create_task(self._prebuild_loop(), name="api routes")
        logs.event(log, "api.listen", where=",".join(self.where), token="set" if plan.token else "none")

    async def _prebuild_loop(self) -> None:
        """While someone asks for the whole routes table, make each new decision's in the API's
        thread as soon as it is there: the request then answers with bytes made already, and
        does not share the GIL with a 10k-prefix decision while it works."""
        while True:
            # 20 times a second only while someone watches the table (a request for it sets
            # watched_until): an idle daemon is not woken 20 times a second for nothing
            watched = time.monotonic() < self.routes.watched_until
            await beat(PREBUILD_POLL_S if watched else PREBUILD_IDLE_S)
            steer = self.ctx.component("steer")
            if steer is None or not self.routes.wanted(steer.decision):
                continue
            try:
                await blocking(self.routes.prebuild, steer)
            except Exception as exc:  # noqa: BLE001 - a request builds it then
                log.warning("api.routes-prebuild-failed error=%r", str(exc))

    async def _close(self) -> None:
        if self._prebuild is not None:
            self._prebuild.cancel()
            with contextlib.suppress(BaseException):
                await self._prebuild
            self._prebuild = None
        for st in self._states:
            st.stopping.set()
        for server, _task, _sock, _path in self._servers:
            server.exit_soon()
        for server, task, sock, unix_path in self._servers:
            try:
                await asyncio.wait_for(asyncio.shield(task), 3)
            except Exception:  # noqa: BLE001 - closing anyway
                server.force_exit = True
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            sock.close()
            if unix_path:
                with contextlib.suppress(OSError):
                    os.unlink(unix_path)
        self._servers, self._states, self.where = [], [], []
