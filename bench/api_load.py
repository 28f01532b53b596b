"""Load on a daemon's HTTP API for the benchmarks: ``rate`` requests/s over its Unix socket
(rotating through the dashboard's reads: paths, routes, events, metrics, status) and one open
event stream read to the end (a dashboard left open).

    with ApiLoad(daemon.api_socket, rate=200) as load: ...   # load.done, load.errors, load.sse_frames
"""

from __future__ import annotations

import threading
import time

from pathsteer_lab.http import UnixHTTPConnection, request

URLS = ("/api/v1/paths", "/api/v1/routes", "/api/v1/events?limit=100", "/metrics", "/api/v1/status")


class ApiLoad:
    def __init__(self, socket_path: str, rate: float = 200.0, *, sse: bool = True) -> None:
        self.path, self.rate, self.sse = socket_path, rate, sse
        self.done = self.errors = self.sse_frames = 0
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._requests, daemon=True)]
        if sse:
            self._threads.append(threading.Thread(target=self._stream, daemon=True))

    def __enter__(self) -> "ApiLoad":
        for th in self._threads:
            th.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(5)

    def _requests(self) -> None:
        period, i = 1.0 / self.rate, 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                status, _ = request(self.path, "GET", URLS[i % len(URLS)], timeout=5)
                self.done += 1
                self.errors += status >= 500
                self.latencies.append(time.monotonic() - t0)
            except OSError:
                self.errors += 1
            i += 1
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()  # behind: do not burst to catch up

    def _stream(self) -> None:
        while not self._stop.is_set():
            try:
                conn = UnixHTTPConnection(self.path, timeout=5)
                conn.request("GET", "/api/v1/events/stream")
                r = conn.getresponse()
                while not self._stop.is_set():
                    chunk = r.read1(65536)
                    if not chunk:
                        break
                    self.sse_frames += chunk.count(b"\n\n")
                conn.close()
            except OSError:
                self._stop.wait(0.2)
