"""A real HAProxy in a lab, with HTTP backends behind it and HTTP load in front (issue 9 lab tests).

    with Backends(t, tmp) as be, SyslogListener(t, "router") as logs, \\
         Haproxy(t, tmp).start(bind=[f"{t.router_client_address}:8000"],
                               backends={"b": [("s1", "198.51.100.10:8080"), ("s2", "203.0.113.10:8080")]},
                               log_target=logs.target) as hap:
        with LoadClient(t, f"http://{t.router_client_address}:8000/", tmp) as load:
            time.sleep(2)
        load.success_rate(), load.backend_counts()      # {"198.51.100.10:8080": 200, ...}
        hap.set_weight("b", "s1", 0); hap.add_acl(t.client_address)

Pieces:

- `Backends`: one pure-Python HTTP server process in the server namespace, bound to
  0.0.0.0:PORT (the server answers whole prefixes, so every address of 198.51.100.0/24 and
  203.0.113.0/24 reaches it). ``GET /`` answers 200 with the local address it was reached at
  (``X-Backend: ip:port`` and the body); ``GET /protected`` 401 unless ``Authorization: Bearer
  good``; a response delay per local address is set at runtime (`Backends.set_delay`, or
  ``POST /_delay?addr=A&ms=N`` over TCP); ``?delay_ms=N`` delays one request.
- `haproxy_config`: an haproxy.cfg (stats socket at level admin, ``log`` to UDP or a Unix
  datagram socket, ``option httplog``, one frontend whose ``http-request deny if { src -f
  FILE }`` is fed at runtime by ``add acl FILE IP``, backends by name with ``balance roundrobin``).
- `Haproxy`: ``haproxy -db -f cfg`` in a namespace (the router by default), ready when the stats
  socket answers ``show info``; runtime commands through `pathsteer.gateways.runtime`.
- `SyslogListener`: a UDP socket opened in-process inside a namespace (or a Unix datagram
  socket) collecting HAProxy's log lines.
- `LoadClient`: an asyncio HTTP client process in the client (or attacker) namespace, rate
  capped, one record per request (send time, duration, status or error, backend).

Unix sockets are files: a process in any of the lab's namespaces reaches them (``ip netns exec``
only remounts /sys), so the stats and control sockets sit in the test's directory, or in a short
directory under /tmp when that path is longer than a socket address allows (107 bytes).

The child processes are this module run as ``python -m pathsteer_lab.gateway backends|load``;
they import nothing outside the standard library.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import parse_qs, urlsplit

from pathsteer_lab.procs import stop_process as _stop_process, tail as _tail, unlink as _unlink

if TYPE_CHECKING:
    from pathsteer.gateways.haproxy import HaproxyParser, ServerState
    from pathsteer.gateways.runtime import HaproxyRuntime
    from pathsteer_lab.topology import Topology

BACKEND_PORT = 8080
FRONTEND_PORT = 8000
TOKEN = "good"                      # Backends' /protected wants "Authorization: Bearer good"
_SUN_PATH_MAX = 107
_LONGEST_SOCKET_NAME = 24           # "<name>.sock" names this module makes fit in this many bytes


# -- shared helpers --------------------------------------------------------------------------------

_prctl = None


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the test process dies (``ip netns exec`` execs, so the
    setting reaches the real program). Stops leaked servers when pytest itself is killed."""
    if _prctl is not None:
        _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _popen(t: Topology, ns: str, argv: list[str], log_path: str, **kw) -> subprocess.Popen:
    """``t.popen`` with stdout and stderr appended to ``log_path`` and `_die_with_parent`."""
    global _prctl
    if _prctl is None:  # looked up before the fork: the child only calls it
        import ctypes
        _prctl = ctypes.CDLL(None).prctl
    with open(log_path, "ab") as log:
        return t.popen(ns, argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                       preexec_fn=_die_with_parent, **kw)


def _socket_dir(workdir: str) -> tuple[str, str | None]:
    """A directory for Unix sockets: ``workdir`` when its socket paths fit, otherwise a fresh
    short one under /tmp, returned second so that the caller removes it."""
    if len(os.path.join(os.path.abspath(workdir), "x" * _LONGEST_SOCKET_NAME)) <= _SUN_PATH_MAX:
        return os.path.abspath(workdir), None
    short = tempfile.mkdtemp(prefix="psgw-", dir="/tmp")
    return short, short


def _ident(sockname) -> tuple[str | None, str]:
    """(address, "ip:port" / "[v6]:port") of a socket's local name; (None, "unix") for a Unix one."""
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        addr, port = sockname[0], sockname[1]
        if addr.startswith("::ffff:"):
            addr = addr[7:]
        return addr, (f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}")
    return None, "unix"


# -- Backends: the HTTP server process (server namespace) -------------------------------------------

class _BackendState:
    def __init__(self, token: str) -> None:
        self.token = token
        self.delays: dict[str, float] = {}        # local address (or "*") -> ms
        self.requests: Counter[str] = Counter()   # "ip:port" -> requests answered (not /_ ones)


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}


def _backend_answer(state: _BackendState, method: str, target: str, headers: dict[str, str],
                    addr: str | None, ident: str) -> tuple[int, bytes, str, dict[str, str], float]:
    """(status, body, content type, extra headers, delay in ms) of one request."""
    url = urlsplit(target)
    query = parse_qs(url.query)
    path = url.path
    if path == "/_delay":
        if method != "POST":
            return 405, b"POST only\n", "text/plain", {}, 0.0
        try:
            ms = float(query.get("ms", ["0"])[0])
        except ValueError:
            return 400, b"ms: not a number\n", "text/plain", {}, 0.0
        key = query.get("addr", ["*"])[0] or "*"
        if ms > 0:
            state.delays[key] = ms
        else:
            state.delays.pop(key, None)
        return 200, json.dumps({"delays": state.delays}).encode(), "application/json", {}, 0.0
    if path == "/_stats":
        body = json.dumps({"requests": dict(state.requests), "delays": state.delays, "pid": os.getpid()})
        return 200, body.encode(), "application/json", {}, 0.0
    if path == "/_reset":
        state.requests.clear()
        state.delays.clear()
        return 200, b"{}", "application/json", {}, 0.0
    delay = state.delays.get(addr or "", state.delays.get("*", 0.0))
    if "delay_ms" in query:
        try:
            delay += float(query["delay_ms"][0])
        except ValueError:
            return 400, b"delay_ms: not a number\n", "text/plain", {}, 0.0
    state.requests[ident] += 1
    extra = {"X-Backend": ident}
    if path == "/protected":
        if headers.get("authorization", "") != f"Bearer {state.token}":
            return 401, b"unauthorized\n", "text/plain", {**extra, "WWW-Authenticate": "Bearer"}, delay
        return 200, f"protected {ident}\n".encode(), "text/plain", extra, delay
    if path == "/":
        return 200, f"{ident}\n".encode(), "text/plain", extra, delay
    return 404, b"not found\n", "text/plain", extra, delay


async def _backend_connection(state: _BackendState, reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
    addr, ident = _ident(writer.get_extra_info("sockname"))
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            method, target, version = parts
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            length = int(headers.get("content-length", "0") or 0)
            if length:
                await reader.readexactly(length)
            status, body, ctype, extra, delay = _backend_answer(state, method, target, headers, addr, ident)
            if delay > 0:
                await asyncio.sleep(delay / 1000.0)
            conn = headers.get("connection", "").lower()
            keep = (version == "HTTP/1.1" and conn != "close") or (version == "HTTP/1.0" and conn == "keep-alive")
            out = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", f"Content-Type: {ctype}",
                   f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in extra.items()),
                   "Connection: keep-alive" if keep else "Connection: close"]
            writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + (body if method != "HEAD" else b""))
            await writer.drain()
            if not keep:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def _backends_main(args: argparse.Namespace) -> None:
    state = _BackendState(args.token)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def handle(reader, writer):
        await _backend_connection(state, reader, writer)

    servers = [await asyncio.start_server(handle, args.bind, port, reuse_address=True, backlog=1024)
               for port in args.port]
    # The control socket last: when it answers, every TCP listener is bound.
    servers.append(await asyncio.start_unix_server(handle, args.control))
    print("ready", flush=True)
    await stop.wait()
    for s in servers:
        s.close()


# -- Backends: the handle in the test -----------------------------------------------------------

class Backends:
    """The HTTP backends: one process in ``ns`` (the server's) listening on 0.0.0.0:``ports``.

    ``GET /`` → 200, body and ``X-Backend`` header "ip:port" of the address reached;
    ``GET /protected`` → 401 unless ``Authorization: Bearer <token>``; anything else 404.
    `set_delay` slows the answers of one local address (the "slow upstream"). ``with`` or
    `start`/`stop`; `stop` always kills the process."""

    def __init__(self, t: Topology, workdir: str, *, ports: Sequence[int] = (BACKEND_PORT,),
                 ns: str = "server", name: str = "backends", token: str = TOKEN, bind: str = "0.0.0.0") -> None:
        self.t, self.ns, self.name, self.token, self.bind = t, ns, name, token, bind
        self.ports = list(ports)
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.log_path = os.path.join(self.workdir, f"{name}.log")
        self._sockdir, self._own_sockdir = _socket_dir(self.workdir)
        self.control_socket = os.path.join(self._sockdir, f"{name[:15]}-ctl.sock")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> Backends:
        _unlink(self.control_socket)
        argv = [sys.executable, "-m", "pathsteer_lab.gateway", "backends", "--control", self.control_socket,
                "--bind", self.bind, "--token", self.token, *(x for p in self.ports for x in ("--port", str(p)))]
        self.proc = _popen(self.t, self.ns, argv, self.log_path)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"backends exited with {self.proc.returncode}: {_tail(self.log_path)}")
                if os.path.exists(self.control_socket):
                    try:
                        self.stats()
                        return self
                    except OSError:
                        pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"backends did not answer within {timeout:g} s: {_tail(self.log_path)}")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    def _control(self, method: str, url: str):
        from pathsteer_lab.http import request
        status, body = request(self.control_socket, method, url, timeout=5.0)
        if status != 200:
            raise RuntimeError(f"backends {method} {url}: {status} {body}")
        return body

    def set_delay(self, addr: str | None, ms: float) -> None:
        """Delay every answer given on local address ``addr`` (None: every address) by ``ms``
        milliseconds, from the next request on; 0 removes it."""
        self._control("POST", f"/_delay?addr={addr or '*'}&ms={ms:g}")

    def stats(self) -> dict:
        """``{"requests": {"ip:port": n, ...}, "delays": {addr: ms}, "pid": n}``."""
        return self._control("GET", "/_stats")

    def reset(self) -> None:
        """Zero the request counts and remove every delay."""
        self._control("POST", "/_reset")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        _stop_process(self.proc)
        _unlink(self.control_socket)
        if self._own_sockdir:
            shutil.rmtree(self._own_sockdir, ignore_errors=True)

    def __enter__(self) -> Backends:
        return self if self.alive() else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- haproxy.cfg ------------------------------------------------------------------------------------

ServerSpec = tuple[str, str] | tuple[str, str, str]   # (name, "ip:port"[, extra server options])

DEFAULT_TIMEOUTS = {"connect": "1s", "client": "10s", "server": "5s", "http-request": "5s",
                    "http-keep-alive": "2s", "queue": "2s"}


def haproxy_config(*, bind: str | Sequence[str], backends: Mapping[str, Sequence[ServerSpec]],
                   stats_socket: str, acl_file: str | None = None, log_target: str | None = None,
                   default_backend: str | None = None, routes: Sequence[tuple[str, str]] = (),
                   check: bool | str = False, weight: int = 100, retries: int | None = None,
                   timeouts: Mapping[str, str] | None = None, nbthread: int = 1, frontend: str = "fe",
                   httpchk: str | None = None, extra_global: Iterable[str] = (),
                   extra_defaults: Iterable[str] = (), extra_frontend: Iterable[str] = (),
                   extra_backend: Mapping[str, Iterable[str]] | None = None) -> str:
    """An haproxy.cfg.

    ``bind``: "ip:port" (or several) of the one frontend; ``backends``: name -> [(server name,
    "ip:port"[, extra options]), ...], each ``balance roundrobin`` with every server at
    ``weight``; ``default_backend`` (default: the first) and ``routes`` [(path prefix, backend)]
    as ``use_backend B if { path_beg P }``. ``acl_file``: requests from a source listed there are
    denied (403); ``add acl <acl_file> <ip>`` on the stats socket adds one at runtime.
    ``log_target``: "host:port" (UDP) or an absolute Unix datagram socket path; logs go there in
    ``option httplog`` format, facility local0. ``check``: False (default: no health checks, so
    a test sees pathsteer's doing, not HAProxy's), True (``check inter 1s``) or the server
    options to use (``"check inter 200ms fall 2"``); ``httpchk``: ``option httpchk`` arguments.
    ``retries``: None leaves HAProxy's default (3). ``timeouts`` override `DEFAULT_TIMEOUTS`.
    """
    if not backends:
        raise ValueError("haproxy_config: at least one backend")
    binds = [bind] if isinstance(bind, str) else list(bind)
    if not binds:
        raise ValueError("haproxy_config: at least one bind address")
    default = default_backend or next(iter(backends))
    for name in (default, *(b for _, b in routes)):
        if name not in backends:
            raise ValueError(f"haproxy_config: no backend {name!r} (have {', '.join(backends)})")
    check_opts = "check inter 1s" if check is True else (check or "")
    g = ["global", f"    stats socket {stats_socket} mode 600 level admin", "    stats timeout 30s",
         f"    nbthread {nbthread}"]
    if log_target:
        g.append(f"    log {log_target} local0")
    g += [f"    {x}" for x in extra_global]
    d = ["defaults", "    mode http", "    log global", "    option httplog"]
    if retries is not None:
        d.append(f"    retries {retries}")
    d += [f"    timeout {k} {v}" for k, v in {**DEFAULT_TIMEOUTS, **(timeouts or {})}.items()]
    d += [f"    {x}" for x in extra_defaults]
    f = [f"frontend {frontend}", *(f"    bind {b}" for b in binds)]
    if acl_file:
        f.append(f"    http-request deny if {{ src -f {acl_file} }}")
    f += [f"    {x}" for x in extra_frontend]
    f += [f"    use_backend {b} if {{ path_beg {p} }}" for p, b in routes]
    f.append(f"    default_backend {default}")
    out = [*g, "", *d, "", *f, ""]
    for name, servers in backends.items():
        out += [f"backend {name}", "    balance roundrobin"]
        if httpchk:
            out.append(f"    option httpchk {httpchk}")
        out += [f"    {x}" for x in (extra_backend or {}).get(name, ())]
        for spec in servers:
            sname, addr, *more = spec
            opts = " ".join(x for x in (f"weight {weight}", check_opts, *more) if x)
            out.append(f"    server {sname} {addr} {opts}")
        out.append("")
    return "\n".join(out)


# -- HAProxy ----------------------------------------------------------------------------------------

class Haproxy:
    """``haproxy -db -f cfg`` in ``ns`` (the router by default); files in ``workdir``:
    ``<name>.cfg``, ``<name>.acl`` (the deny list, created empty), ``<name>.stderr``; the stats
    socket ``<name>.sock`` there too, or in a short /tmp directory when the path would be too long.

        hap = Haproxy(t, tmp).start(bind=..., backends=..., log_target=...)   # haproxy_config kwargs
        hap.set_weight("b", "s1", 0); hap.add_acl("10.200.0.2"); hap.stop()
    """

    def __init__(self, t: Topology, workdir: str, *, ns: str = "router", name: str = "haproxy") -> None:
        self.t, self.ns, self.name = t, ns, name[:15]
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.cfg_path = os.path.join(self.workdir, f"{self.name}.cfg")
        self.acl_file = os.path.join(self.workdir, f"{self.name}.acl")
        self.stderr_path = os.path.join(self.workdir, f"{self.name}.stderr")
        self._sockdir, self._own_sockdir = _socket_dir(self.workdir)
        self.stats_socket = os.path.join(self._sockdir, f"{self.name}.sock")
        self.config = ""
        self.proc: subprocess.Popen | None = None

    def start(self, config: str | None = None, *, timeout: float = 10.0, **config_kwargs) -> Haproxy:
        """Write the config (``config`` as given, or `haproxy_config` of ``config_kwargs`` with this
        instance's stats socket and ACL file), start HAProxy, wait until ``show info`` answers."""
        if config is None:
            config_kwargs.setdefault("stats_socket", self.stats_socket)
            config_kwargs.setdefault("acl_file", self.acl_file)
            config = haproxy_config(**config_kwargs)
        self.config = config
        with open(self.acl_file, "a"):
            pass
        with open(self.cfg_path, "w") as f:
            f.write(config)
        _unlink(self.stats_socket)
        self.proc = _popen(self.t, self.ns, ["haproxy", "-db", "-f", self.cfg_path], self.stderr_path,
                           cwd=self.workdir)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"haproxy exited with {self.proc.returncode}: {_tail(self.stderr_path)}")
                if os.path.exists(self.stats_socket):
                    try:
                        if self.command("show info", timeout=1.0).startswith("Name: HAProxy"):
                            return self
                    except OSError:
                        pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"haproxy's stats socket did not answer within {timeout:g} s: "
                                       f"{_tail(self.stderr_path)}")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    def runtime(self, timeout: float = 2.0) -> HaproxyRuntime:
        """An asyncio client of the stats socket (pathsteer's own)."""
        from pathsteer.gateways.runtime import HaproxyRuntime
        return HaproxyRuntime(f"unix:{self.stats_socket}", timeout_s=timeout)

    def command(self, line: str, timeout: float = 2.0) -> str:
        """One runtime API command, HAProxy's raw answer; ConnectionError when the socket cannot
        be reached or does not answer within ``timeout``."""
        from pathsteer.gateways.runtime import RuntimeApiError
        try:
            return asyncio.run(self.runtime(timeout).command(line))
        except RuntimeApiError as exc:
            raise ConnectionError(str(exc)) from None

    def set_weight(self, backend: str, server: str, weight: int) -> None:
        asyncio.run(self.runtime().set_weight(backend, server, weight))

    def set_state(self, backend: str, server: str, state: str) -> None:
        """``ready``, ``drain`` or ``maint``."""
        asyncio.run(self.runtime().set_state(backend, server, state))

    def add_acl(self, value: str, acl: str | None = None) -> None:
        """Deny requests from ``value`` (an address or prefix) from now on: ``add acl <file> <value>``."""
        asyncio.run(self.runtime().add_acl(acl or self.acl_file, value))

    def del_acl(self, value: str, acl: str | None = None) -> None:
        asyncio.run(self.runtime().del_acl(acl or self.acl_file, value))

    def acl_entries(self, acl: str | None = None) -> list[str]:
        return asyncio.run(self.runtime().acl_entries(acl or self.acl_file))

    def servers_state(self, backend: str | None = None) -> dict[tuple[str, str], ServerState]:
        return asyncio.run(self.runtime().servers_state(backend))

    def parser(self) -> HaproxyParser:
        """A `HaproxyParser` that resolves (backend, server) to "ip:port" from ``show servers state``."""
        from pathsteer.gateways.haproxy import HaproxyParser, servers_map
        return HaproxyParser(servers=servers_map(self.servers_state()))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr(self) -> str:
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM (HAProxy's hard stop), SIGKILL after 5 s; the socket file removed."""
        _stop_process(self.proc)
        _unlink(self.stats_socket)
        if self._own_sockdir:
            shutil.rmtree(self._own_sockdir, ignore_errors=True)

    def __enter__(self) -> Haproxy:
        if not self.alive():
            raise RuntimeError("Haproxy: call start(...) before 'with'")
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# -- syslog -----------------------------------------------------------------------------------------

class SyslogListener:
    """Collects datagrams (HAProxy's log lines): a UDP socket on ``host``:``port`` opened inside
    ``ns`` of ``t`` (in this process: a socket stays in the namespace it was made in), or with
    ``unix_path`` a Unix datagram socket (reachable from every namespace). ``target`` is what
    `haproxy_config`'s ``log_target`` takes. ``with`` closes it."""

    def __init__(self, t: Topology | None = None, ns: str = "router", *, host: str = "127.0.0.1",
                 port: int = 0, unix_path: str | None = None) -> None:
        self.unix_path = unix_path
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        if unix_path is not None:
            if len(unix_path) > _SUN_PATH_MAX:
                raise ValueError(f"unix socket path too long ({len(unix_path)} > {_SUN_PATH_MAX}): {unix_path}")
            _unlink(unix_path)
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.bind(unix_path)
            os.chmod(unix_path, 0o666)
            self.target = unix_path
        else:
            if t is None:
                raise ValueError("SyslogListener: a UDP listener needs the lab (t) and a namespace")
            from pathsteer_lab import netns
            with netns.entered(t.resolve(ns)):
                self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((host, port))
            bound = self.sock.getsockname()[1]
            self.target = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, daemon=True, name="syslog-listener")
        self._thread.start()

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            line = data.decode("utf-8", "replace").rstrip("\n\x00")
            with self._lock:
                self._lines.append(line)

    def lines(self) -> list[str]:
        """Every line received so far, in order."""
        with self._lock:
            return list(self._lines)

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = 5.0) -> list[str]:
        """Wait until ``predicate(lines())`` holds; returns the lines (also when it timed out)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines()
            if predicate(lines) or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2)
        self.sock.close()
        if self.unix_path:
            _unlink(self.unix_path)

    def __enter__(self) -> SyslogListener:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- LoadClient: the load process (client or attacker namespace) ----------------------------------

class LoadRecord(NamedTuple):
    """One request: ``t`` when it was sent (epoch seconds, comparable with HAProxy's log times),
    ``duration`` seconds until the answer or the error, ``status`` (None on error), ``error``
    ("timeout", "ConnectionRefusedError", ... or None), ``backend`` the answering backend's
    ``X-Backend`` ("ip:port"), None when no backend said (HAProxy's own 403/503, errors)."""

    t: float
    duration: float
    status: int | None
    error: str | None
    backend: str | None


async def _read_response(reader: asyncio.StreamReader, method: str) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError("bad status line")
    status = int(parts[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return status, headers, b""
    if "content-length" in headers:
        return status, headers, await reader.readexactly(int(headers["content-length"]))
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return status, headers, bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    headers["connection"] = "close"
    return status, headers, await reader.read()


async def _load_main(args: argparse.Namespace) -> None:
    url = urlsplit(args.url)
    host, port = url.hostname, url.port or 80
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    hostport = url.netloc
    extra = "".join(f"{h}\r\n" for h in args.header)
    request = (f"{args.method} {target} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: pathsteer-lab-load\r\n"
               f"Connection: {'keep-alive' if args.keepalive else 'close'}\r\n{extra}\r\n").encode()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    out = open(args.out, "w", buffering=1 << 16)
    interval = 1.0 / args.rate if args.rate > 0 else 0.0
    sched = {"next": loop.time()}
    end = loop.time() + args.duration if args.duration else None

    async def one(box: list):
        if box[0] is None:
            box[0] = await asyncio.open_connection(host, port)
        reader, writer = box[0]
        writer.write(request)
        await writer.drain()
        status, headers, _ = await _read_response(reader, args.method)
        if not args.keepalive or headers.get("connection", "").lower() == "close":
            # Let the server close first: the TIME_WAIT stays on its side, not on our ports.
            try:
                await asyncio.wait_for(reader.read(), 0.2)
            except (TimeoutError, OSError):
                pass
            writer.close()
            box[0] = None
        return status, headers.get("x-backend")

    async def worker():
        box = [None]   # the open connection (reader, writer), kept across requests with keepalive
        while not stop.is_set():
            now = loop.time()
            at = max(sched["next"], now)
            sched["next"] = at + interval
            if end is not None and at >= end:   # a duration run: in-flight requests finish
                return
            if at > now:
                await asyncio.sleep(at - now)
            t_send = time.time()
            m0 = time.perf_counter()
            status = backend = error = None
            try:
                status, backend = await asyncio.wait_for(one(box), args.timeout)
            except TimeoutError:
                error = "timeout"
            except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                error = type(exc).__name__
            if error is not None and box[0] is not None:
                box[0][1].close()
                box[0] = None
            out.write(json.dumps([round(t_send, 6), round(time.perf_counter() - m0, 6), status, error, backend]))
            out.write("\n")

    async def flusher():
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 0.25)
            except TimeoutError:
                pass
            out.flush()

    tasks = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
    flush_task = asyncio.create_task(flusher())
    stop_task = asyncio.create_task(stop.wait())
    pending = set(tasks)
    while pending and not stop.is_set():     # workers end by themselves only past --duration
        done, _ = await asyncio.wait([*pending, stop_task], return_when=asyncio.FIRST_COMPLETED)
        pending -= done
    stop.set()
    for task in tasks:                       # SIGTERM: requests in flight are dropped
        task.cancel()
    await asyncio.gather(*tasks, flush_task, stop_task, return_exceptions=True)
    out.flush()
    out.close()


class LoadClient:
    """HTTP load from ``ns`` (the client's by default) to ``url``: ``concurrency`` requests at
    a time, at most ``rate`` per second, each bounded by ``timeout`` seconds; a new TCP connection
    per request unless ``keepalive``; ``headers`` {"Authorization": "Bearer good"}. Records go
    to ``<workdir>/<name>.jsonl`` as they finish (one line each, flushed every 0.25 s): `records`
    reads them while it runs too. ``duration``: stop by itself after that many seconds (`wait`).
    ``with`` starts and stops it."""

    def __init__(self, t: Topology, url: str, workdir: str, *, ns: str = "client", rate: float = 200.0,
                 concurrency: int = 8, timeout: float = 1.0, keepalive: bool = False,
                 headers: Mapping[str, str] | None = None, method: str = "GET",
                 duration: float | None = None, name: str = "load") -> None:
        if concurrency < 1:
            raise ValueError("LoadClient: concurrency must be at least 1")
        self.t, self.url, self.ns, self.name = t, url, ns, name
        self.rate, self.concurrency, self.timeout = rate, concurrency, timeout
        self.keepalive, self.headers, self.method, self.duration = keepalive, dict(headers or {}), method, duration
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.out_path = os.path.join(self.workdir, f"{name}.jsonl")
        self.log_path = os.path.join(self.workdir, f"{name}.log")
        self.proc: subprocess.Popen | None = None
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self._records: list[LoadRecord] | None = None

    def start(self, timeout: float = 10.0) -> LoadClient:
        _unlink(self.out_path)
        self._records = None
        argv = [sys.executable, "-m", "pathsteer_lab.gateway", "load", "--url", self.url, "--out", self.out_path,
                "--rate", f"{self.rate:g}", "--concurrency", str(self.concurrency),
                "--timeout", f"{self.timeout:g}", "--method", self.method,
                *(x for k, v in self.headers.items() for x in ("--header", f"{k}: {v}"))]
        if self.keepalive:
            argv.append("--keepalive")
        if self.duration:
            argv += ["--duration", f"{self.duration:g}"]
        self.proc = _popen(self.t, self.ns, argv, self.log_path)
        deadline = time.monotonic() + timeout
        try:
            while not os.path.exists(self.out_path):   # opened before the first request
                if self.proc.poll() is not None:
                    raise RuntimeError(f"load client exited with {self.proc.returncode}: {_tail(self.log_path)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"load client did not start within {timeout:g} s: {_tail(self.log_path)}")
                time.sleep(0.02)
        except BaseException:
            self.stop()
            raise
        self.started_at = time.time()
        return self

    def wait(self, timeout: float | None = None) -> list[LoadRecord]:
        """Wait for a ``duration`` run to end by itself; its records."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout)
        finally:
            self.stop()
        return self.records

    def stop(self) -> list[LoadRecord]:
        """SIGTERM (requests in flight are dropped, not recorded); the records."""
        if self.proc is not None and self.stopped_at is None:
            _stop_process(self.proc)
            self.stopped_at = time.time()
            self._records = self._read()
            if self.proc.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL) and not self._records:
                raise RuntimeError(f"load client exited with {self.proc.returncode}: {_tail(self.log_path)}")
        return self.records

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _read(self) -> list[LoadRecord]:
        out = []
        try:
            with open(self.out_path) as f:
                for line in f:
                    try:
                        out.append(LoadRecord(*json.loads(line)))
                    except (ValueError, TypeError):   # a line cut while the process writes
                        continue
        except FileNotFoundError:
            pass
        out.sort(key=lambda r: r.t)
        return out

    @property
    def records(self) -> list[LoadRecord]:
        """Every finished request, by send time (read again from the file while it runs)."""
        return self._records if self._records is not None else self._read()

    def select(self, since: float | None = None, until: float | None = None) -> list[LoadRecord]:
        """Records sent in [since, until) (epoch seconds, `time.time()`)."""
        return [r for r in self.records if (since is None or r.t >= since) and (until is None or r.t < until)]

    def success_rate(self, since: float | None = None, until: float | None = None, *,
                     ok: Iterable[int] = (200,)) -> float:
        """Share of the requests in the range whose status is in ``ok`` (0.0 when there were none)."""
        rs = self.select(since, until)
        good = set(ok)
        return sum(r.status in good for r in rs) / len(rs) if rs else 0.0

    def request_rate(self, since: float | None = None, until: float | None = None) -> float:
        """Requests sent per second in the range (default: the run's first to last send)."""
        rs = self.select(since, until)
        if not rs:
            return 0.0
        lo = since if since is not None else rs[0].t
        hi = until if until is not None else rs[-1].t
        return len(rs) / (hi - lo) if hi > lo else float(len(rs))

    rate_of_requests = request_rate

    def backend_counts(self, since: float | None = None, until: float | None = None) -> Counter:
        """{"ip:port": answers} of the backends that answered in the range (None: no backend said)."""
        return Counter(r.backend for r in self.select(since, until))

    def outcomes(self, since: float | None = None, until: float | None = None) -> Counter:
        """{200: n, 403: n, "timeout": n, ...}: status, or the error where there was no status."""
        return Counter(r.status if r.status is not None else r.error for r in self.select(since, until))

    def summary(self, since: float | None = None, until: float | None = None) -> str:
        """One line for assertion messages: count, rate, outcomes, backends."""
        rs = self.select(since, until)
        return (f"{len(rs)} requests, {self.request_rate(since, until):.0f}/s, outcomes {dict(self.outcomes(since, until))}, "
                f"backends {dict(self.backend_counts(since, until))}")

    def __enter__(self) -> LoadClient:
        return self if self.alive() else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- child entry points ---------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pathsteer_lab.gateway")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("backends", help="the HTTP backends (GET /, /protected, POST /_delay)")
    b.add_argument("--port", type=int, action="append", required=True)
    b.add_argument("--bind", default="0.0.0.0")
    b.add_argument("--control", required=True, help="Unix socket answering the same HTTP")
    b.add_argument("--token", default=TOKEN)
    ld = sub.add_parser("load", help="HTTP load; JSON lines [t, duration, status, error, backend]")
    ld.add_argument("--url", required=True)
    ld.add_argument("--out", required=True)
    ld.add_argument("--rate", type=float, default=200.0)
    ld.add_argument("--concurrency", type=int, default=8)
    ld.add_argument("--timeout", type=float, default=1.0)
    ld.add_argument("--method", default="GET")
    ld.add_argument("--header", action="append", default=[])
    ld.add_argument("--keepalive", action="store_true")
    ld.add_argument("--duration", type=float, default=None)
    args = p.parse_args(argv)
    asyncio.run(_backends_main(args) if args.cmd == "backends" else _load_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
