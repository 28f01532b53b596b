"""Receivers of gateways' access logs: where the lines come in, before a parser reads them.

* **syslog** over UDP (``udp:HOST:PORT``) or a Unix datagram socket (``unix:/path``): HAProxy's
  ``log`` target and Apinto's ``syslog_output`` send one message per datagram (RFC 5426 §3.1,
  RFC 3164 §4.1: "one message per packet"); a datagram carrying several lines is split.
* **file** (``file:/path``): a log file tailed from its end, as ``tail -F`` does — a file that
  is replaced (another inode: logrotate's rename) or truncated (``copytruncate``) is read again
  from its start; a line is handed on once its newline is there. As with ``tail``, a truncation
  is seen when the file is shorter than what was read: one that grew past that again between
  two polls (a quarter second) is read from the old offset.
* **HTTP**: Apinto's ``http_output`` posts one formatted record per request (the body: a JSON
  object, or lines); its ``loki`` output pushes ``{"streams":[{"stream":{...},"values":[["<ns>",
  "<line>"], ...]}]}`` to ``/loki/api/v1/push`` (apinto ``drivers/output/loki``; Loki's JSON push
  format). `http_lines` turns either body into lines; `records_app` is the ASGI app serving them.

Every receiver calls ``on_line(line: str)`` for each line and counts what it got and what it
could not use (``stats``); nothing here raises on input.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pathsteer.waker import beat

log = logging.getLogger("pathsteer.gateways")

MAX_DATAGRAM = 65535  # a UDP datagram's most; syslog's own limit is lower (RFC 5426 §3.2: 480-2048+)
MAX_BODY = 1 << 20    # an HTTP body pathsteer takes (a Loki push batches lines: 1 MiB is thousands)
TAIL_POLL_S = 0.25    # how often a tailed file is looked at
MAX_LINE = 65536      # a tailed line longer than this without a newline is cut and counted
RCVBUF = 4 << 20      # a syslog socket's receive buffer asked for (a burst of some 10k lines)
STOP_POLL_S = 0.2     # a syslog receiver's thread notices a stop within this


@dataclass(frozen=True)
class Listen:
    """Where a receiver listens: ``kind`` udp, unix, file or http; ``host``/``port`` (udp, http)
    or ``path`` (unix, file)."""

    kind: str
    host: str | None = None
    port: int | None = None
    path: str | None = None

    def __str__(self) -> str:
        if self.path is not None:
            return f"{self.kind}:{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{self.kind}:{host}:{self.port}"


def parse_listen(text: str, where: str = "listen", kinds: tuple[str, ...] = ("udp", "unix", "file", "http")) -> Listen:
    """``udp:127.0.0.1:5140``, ``udp:[::1]:5140``, ``unix:/run/x.sock``, ``file:/var/log/x.log``,
    ``http:127.0.0.1:9181``; ValueError, one line naming ``where`` and the value, otherwise."""
    if not isinstance(text, str) or ":" not in text:
        raise ValueError(f"{where}: {text!r} is not KIND:ADDRESS ({', '.join(kinds)})")
    kind, _, rest = text.partition(":")
    if kind not in kinds:
        raise ValueError(f"{where}: {text!r}: kind {kind!r} is not one of {', '.join(kinds)}")
    if kind in ("unix", "file"):
        if not rest.startswith("/") or "\0" in rest:
            raise ValueError(f"{where}: {text!r}: the path must be absolute")
        if kind == "unix" and len(rest.encode()) > 107:
            raise ValueError(f"{where}: {text!r}: a Unix socket path is at most 107 bytes")
        return Listen(kind, path=rest)
    host, sep, port = rest.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        number = int(port) if sep else -1
    except ValueError:
        number = -1
    if not host or not 1 <= number <= 65535:
        raise ValueError(f"{where}: {text!r}: needs HOST:PORT (port 1-65535)")
    try:
        socket.getaddrinfo(host, number, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        raise ValueError(f"{where}: {text!r}: {host!r} is not an IP address") from None
    return Listen(kind, host=host, port=number)


@dataclass
class ReceiverStats:
    lines: int = 0
    bytes: int = 0
    datagrams: int = 0
    rejected: int = 0        # bodies or datagrams that were not what the receiver takes
    cut: int = 0             # over-long lines cut
    reopened: int = 0        # a tailed file replaced or truncated
    last_error: str | None = None
    extra: dict = field(default_factory=dict)


def _split(data: bytes) -> list[str]:
    text = data.decode("utf-8", "replace")
    return [line for line in text.splitlines() if line.strip()]


class SyslogReceiver:
    """Syslog datagrams on UDP or a Unix datagram socket; each line to ``on_line``, called from
    the receiver's own thread (``on_line`` must be thread-safe: the gateways' adapter takes its
    lock). A thread, not the loop: 10k lines a second parsed on the daemon's loop would delay
    the probes' ticks behind them; in a thread blocked in ``recv`` (no GIL held) each line holds
    the GIL for its parse alone."""

    def __init__(self, listen: Listen, on_line: Callable[[str], None]) -> None:
        if listen.kind not in ("udp", "unix"):
            raise ValueError(f"syslog receiver: {listen} is not udp: or unix:")
        self.listen = listen
        self.on_line = on_line
        self.stats = ReceiverStats()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    async def start(self) -> None:
        if self.listen.kind == "udp":
            family = socket.AF_INET6 if ":" in (self.listen.host or "") else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            address: Any = (self.listen.host, self.listen.port)
        else:
            path = self.listen.path
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)  # a socket left by an earlier run; any other file is not ours
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            address = path
        try:
            sock.bind(address)
            if self.listen.kind == "unix":
                os.chmod(path, 0o660)
            sock.settimeout(STOP_POLL_S)  # the thread looks at _stopping this often when idle
            with contextlib.suppress(OSError):  # room for a burst (net.core.rmem_max caps it)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"syslog {self.listen}", daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple | str | None:
        """The bound address (a UDP port 0 becomes the one the kernel chose)."""
        return self._sock.getsockname() if self._sock is not None else None

    def _run(self) -> None:
        sock, recv = self._sock, self._sock.recv
        while not self._stopping.is_set():
            try:
                data = recv(MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError as exc:  # closed at stop, an ICMP error queued on the socket, ...
                if self._stopping.is_set() or sock.fileno() < 0:
                    return
                self.stats.last_error = str(exc)
                continue
            try:
                self._datagram(data)
            except Exception as exc:  # noqa: BLE001 - never the receiver's end
                self.stats.last_error = f"{type(exc).__name__}: {exc}"

    def _datagram(self, data: bytes) -> None:
        self.stats.datagrams += 1
        self.stats.bytes += len(data)
        if b"\n" not in data.rstrip(b"\r\n"):  # one line a datagram: the usual case
            line = data.decode("utf-8", "replace").rstrip("\r\n")
            if line.strip():
                self.stats.lines += 1
                self.on_line(line)
            return
        for line in _split(data):
            self.stats.lines += 1
            self.on_line(line)

    async def stop(self) -> None:
        if self._sock is None:
            return
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2 * STOP_POLL_S + 1.0)
        self._sock.close()
        self._sock = None
        self._thread = None
        if self.listen.kind == "unix":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.listen.path)


class FileTail:
    """A log file followed from its end (``from_start``: from its first line), like ``tail -F``."""

    def __init__(self, path: str, on_line: Callable[[str], None], *, poll_s: float = TAIL_POLL_S,
                 from_start: bool = False) -> None:
        self.path = path
        self.on_line = on_line
        self.poll_s = poll_s
        self.from_start = from_start
        self.stats = ReceiverStats()
        self._file = None
        self._inode: tuple[int, int] | None = None
        self._partial = b""
        self._task: asyncio.Task | None = None
        self._missing_said = False

    async def start(self) -> None:
        self._open(at_end=not self.from_start)
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"tail {self.path}")

    def _open(self, *, at_end: bool) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - kept open while tailed
        except OSError as exc:
            if not self._missing_said:
                log.warning("gateway.tail-missing path=%s error=%r", self.path, exc.strerror)
                self._missing_said = True
            self.stats.last_error = exc.strerror
            return
        st = os.fstat(f.fileno())
        self._inode = (st.st_dev, st.st_ino)
        if at_end:
            f.seek(0, os.SEEK_END)
        self._file, self._partial, self._missing_said = f, b"", False

    def poll(self) -> None:
        """Read what was appended since the last poll; reopen a replaced or truncated file."""
        if self._file is None:
            self._open(at_end=False)  # appeared (or came back) after start: all of it is new
            if self._file is None:
                return
        try:
            st = os.stat(self.path)
            replaced = (st.st_dev, st.st_ino) != self._inode
        except OSError:
            replaced = False  # gone for now (between rename and create): read what is left
        self._read()
        if replaced or os.fstat(self._file.fileno()).st_size < self._file.tell():
            self.stats.reopened += 1
            self._open(at_end=False)
            self._read()

    def _read(self) -> None:
        while True:
            chunk = self._file.read(65536)
            if not chunk:
                break
            self.stats.bytes += len(chunk)
            data = self._partial + chunk
            lines = data.split(b"\n")
            self._partial = lines.pop()
            if len(self._partial) > MAX_LINE:
                lines.append(self._partial[:MAX_LINE])
                self._partial = b""
                self.stats.cut += 1
            for raw in lines:
                line = raw.decode("utf-8", "replace").rstrip("\r")
                if line.strip():
                    self.stats.lines += 1
                    self.on_line(line)

    async def _loop(self) -> None:
        while True:
            await beat(self.poll_s)
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - a tail never stops the daemon
                self.stats.last_error = str(exc)
                log.warning("gateway.tail-failed path=%s error=%r", self.path, str(exc))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._file is not None:
            self._file.close()
            self._file = None


LOKI_PUSH = "/loki/api/v1/push"


def http_lines(path: str, body: bytes) -> list[str] | None:
    """The lines an HTTP body carries: a Loki JSON push (``path`` is `LOKI_PUSH`: every value's
    line), or an ``http_output`` post (a JSON object: itself, as one line; else the body's
    lines). None: the body is not what that path takes (counted, answered 400)."""
    if path == LOKI_PUSH:
        try:
            doc = json.loads(body)
            out = []
            for stream in doc["streams"]:
                for value in stream["values"]:
                    line = value[1]
                    if not isinstance(line, str):
                        return None
                    out.append(line)
            return out
        except (ValueError, KeyError, IndexError, TypeError):
            return None
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            json.loads(text)
            return [text]  # one record, maybe pretty-printed over several lines
        except ValueError:
            pass
    return [line for line in text.splitlines() if line.strip()]


def records_app(on_line: Callable[[str], None], stats: ReceiverStats, *, max_body: int = MAX_BODY):
    """The ASGI app receiving ``http_output`` posts (any path but `LOKI_PUSH`) and Loki pushes:
    204 when taken, 400 for a body that is not what the path takes, 405 for other methods,
    413 past ``max_body``."""

    async def app(scope, receive, send) -> None:  # noqa: ANN001 - ASGI
        if scope["type"] != "http":
            return
        async def answer(status: int, text: str = "") -> None:
            body = (json.dumps({"error": text}) if text else "").encode()
            headers = [(b"content-type", b"application/json")] if body else []
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        if scope["method"] != "POST":
            await answer(405, f"{scope['method']}: only POST takes records")
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > max_body:
                stats.rejected += 1
                await answer(413, f"body over {max_body} bytes")
                return
        lines = http_lines(scope["path"], body)
        if lines is None:
            stats.rejected += 1
            await answer(400, "body: not a Loki JSON push (streams[].values[][1])")
            return
        stats.bytes += len(body)
        for line in lines:
            stats.lines += 1
            on_line(line)
        await answer(204)

    return app


class HttpReceiver:
    """Apinto's ``http_output`` posts and Loki pushes (`records_app`) on ``http:HOST:PORT``,
    served by uvicorn on the running loop (no signal handlers: the daemon owns them)."""

    def __init__(self, listen: Listen, on_line: Callable[[str], None], *, max_body: int = MAX_BODY) -> None:
        if listen.kind != "http":
            raise ValueError(f"http receiver: {listen} is not http:")
        self.listen = listen
        self.on_line = on_line
        self.stats = ReceiverStats()
        self.max_body = max_body
        self._server = None
        self._task: asyncio.Task | None = None
        self._sock: socket.socket | None = None

    async def start(self) -> None:
        import uvicorn

        class _Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self):  # noqa: ANN202 - the daemon's loop owns the signals
                yield

        family = socket.AF_INET6 if ":" in (self.listen.host or "") else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.listen.host, self.listen.port))
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        config = uvicorn.Config(records_app(self.on_line, self.stats, max_body=self.max_body), log_level="warning",
                                access_log=False, lifespan="off", loop="none", http="h11", ws="none",
                                timeout_keep_alive=30, timeout_graceful_shutdown=1, limit_concurrency=256,
                                server_header=False, date_header=False)
        config.load()
        self._server = _Server(config)
        self._sock = sock
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]),
                                                            name=f"gateway receiver {self.listen}")
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            exc = self._task.exception() if not self._task.cancelled() else None
            sock.close()
            raise OSError(f"{self.listen}: the HTTP receiver did not start ({exc})")

    @property
    def address(self) -> tuple | None:
        return self._sock.getsockname() if self._sock is not None else None

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 3)
        except Exception:  # noqa: BLE001 - closing anyway
            self._server.force_exit = True
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        self._sock.close()
        self._server = self._task = self._sock = None


def make_receiver(listen: Listen, on_line: Callable[[str], None]):
    """The receiver for ``listen``: syslog (udp, unix), a tailed file, or HTTP."""
    if listen.kind in ("udp", "unix"):
        return SyslogReceiver(listen, on_line)
    if listen.kind == "file":
        return FileTail(listen.path, on_line)
    return HttpReceiver(listen, on_line)
