"""HTTP to a daemon's API over its Unix socket (the lab daemon runs in the router namespace;
its Unix socket is a file the host namespace reaches), and a TCP→Unix forwarder for tools that
speak TCP only (a browser, Prometheus, schemathesis) from the host namespace."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from typing import Any


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def request(path: str, method: str, url: str, body: Any = None, *, token: str | None = None,
            headers: dict | None = None, timeout: float = 10.0) -> tuple[int, Any]:
    """(status, JSON body or text). ``body``: a dict/list (sent as JSON), bytes or str."""
    conn = UnixHTTPConnection(path, timeout)
    hdrs = dict(headers or {})
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = body if isinstance(body, bytes | str) else json.dumps(body)
        hdrs.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, url, body=data, headers=hdrs)
        r = conn.getresponse()
        raw = r.read()
        ctype = r.getheader("content-type", "")
    finally:
        conn.close()
    if "json" in ctype:
        return r.status, json.loads(raw)
    return r.status, raw.decode("utf-8", "replace")


class Forwarder:
    """Listens on 127.0.0.1:<port> (host namespace) and copies each connection to a Unix socket.

        with Forwarder(daemon.api_socket) as fwd:  # fwd.url = "http://127.0.0.1:PORT"
    """

    def __init__(self, unix_path: str, port: int = 0) -> None:
        self.unix_path = unix_path
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", port))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True, name="forwarder")

    def __enter__(self) -> "Forwarder":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        try:
            self.server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.server.close()
        for c in list(self._conns):
            try:
                c.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                upstream.connect(self.unix_path)
            except OSError:
                client.close()
                continue
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
