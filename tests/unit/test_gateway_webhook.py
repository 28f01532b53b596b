"""Webhook output (pathsteer.gateways.webhook) against a real local HTTP server: no mocks."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pathsteer.gateways.webhook import WebhookSender, signature, verify

FAST = {"backoff_s": 0.01, "backoff_max_s": 0.05}


@dataclass
class Script:
    """What the test server answers: statuses in turn (the last one repeats), optional delays in
    turn (seconds before answering), and an optional gate every request waits on."""

    statuses: list[int] = field(default_factory=lambda: [200])
    delays: list[float] = field(default_factory=list)
    gate: threading.Event | None = None
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Event = field(default_factory=threading.Event)

    def next(self) -> tuple[int, float]:
        with self.lock:
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            delay = self.delays.pop(0) if self.delays else 0.0
            return status, delay


@dataclass
class Server:
    url: str
    script: Script

    def bodies(self) -> list[dict[str, Any]]:
        with self.script.lock:
            return [json.loads(body) for _, body in self.script.received]


@pytest.fixture
def server() -> Iterator[Server]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with script.lock:
                script.received.append(({k: v for k, v in self.headers.items()}, body))
            script.arrived.set()
            status, delay = script.next()
            if script.gate is not None:
                script.gate.wait(10)
            if delay:
                time.sleep(delay)
            try:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the client timed out and went away: expected in the timeout test

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(url=f"http://127.0.0.1:{httpd.server_address[1]}/hook?k=v", script=script)
    finally:
        if script.gate is not None:
            script.gate.set()  # let a blocked handler finish before shutdown
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def running(sender: WebhookSender, body: Callable[[], Awaitable[None]]) -> None:
    """Run ``body`` with the sender's task running; the task is cancelled afterwards."""

    async def main() -> None:
        task = asyncio.create_task(sender.run())
        try:
            await body()
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    asyncio.run(main())


def test_events_arrive_in_order_with_body_and_headers(server: Server) -> None:
    sender = WebhookSender(server.url, **FAST)
    events = [{"name": "path.health", "path": "wan1", "up": True, "n": i} for i in range(5)]
    events.append({"no_name": 1})

    async def body() -> None:
        for e in events:
            sender.send(e)
        assert await sender.flush(5)

    running(sender, body)
    assert server.bodies() == events
    headers, raw = server.script.received[0]
    assert raw == json.dumps(events[0], separators=(",", ":"), sort_keys=True).encode()
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "pathsteer"
    assert headers["X-Pathsteer-Event"] == "path.health"
    assert "X-Pathsteer-Signature" not in headers  # no secret, no signature
    ids = [h["X-Pathsteer-Delivery"] for h, _ in server.script.received]
    assert len(set(ids)) == len(ids)
    assert "X-Pathsteer-Event" not in server.script.received[-1][0]
    stats = sender.stats
    assert stats["delivered"] == 6 and stats["queued"] == 0 and stats["retried"] == 0
    assert stats["last_delivery_at"] is not None and stats["last_error"] is None


def test_signature_verifies_and_wrong_secret_fails(server: Server) -> None:
    secret = b"s3cret"
    sender = WebhookSender(server.url, secret=secret, **FAST)

    async def body() -> None:
        sender.send({"name": "route.change", "dst": "10.0.0.0/8", "via": "wan2"})
        assert await sender.flush(5)

    running(sender, body)
    headers, raw = server.script.received[0]
    header = headers["X-Pathsteer-Signature"]
    assert header.startswith("sha256=") and header == signature(secret, raw)
    assert verify(secret, raw, header)
    assert not verify(b"wrong", raw, header)
    assert not verify(secret, raw + b" ", header)
    assert not verify(secret, raw, "sha256=\u00e9")  # non-ASCII header: False, not TypeError


def test_500_500_200_delivered_once_with_two_retries_same_id(server: Server) -> None:
    server.script.statuses = [500, 500, 200]
    sender = WebhookSender(server.url, **FAST)

    async def body() -> None:
        sender.send({"name": "x"})
        assert await sender.flush(5)

    running(sender, body)
    ids = {h["X-Pathsteer-Delivery"] for h, _ in server.script.received}
    assert len(server.script.received) == 3 and len(ids) == 1
    stats = sender.stats
    assert (stats["delivered"], stats["retried"], stats["failed"]) == (1, 2, 0)
    assert stats["last_error"] == "http 500"


def test_503_forever_fails_after_retries_logs_once_then_resumed(
        server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pathsteer.gateways")
    server.script.statuses = [503] * 8 + [200]  # 6 attempts for each of the first two events
    sender = WebhookSender(server.url, secret=b"topsecret", retries=3, **FAST)

    async def body() -> None:
        sender.send({"name": "a"})
        sender.send({"name": "b"})
        assert await sender.flush(5)
        assert sender.stats["failed"] == 2
        sender.send({"name": "c"})
        assert await sender.flush(5)

    running(sender, body)
    # a: 4 attempts (1 + 3 retries), b: 4 attempts, c: 200 at once.
    assert [b["name"] for b in server.bodies()] == ["a"] * 4 + ["b"] * 4 + ["c"]
    stats = sender.stats
    assert (stats["failed"], stats["retried"], stats["delivered"]) == (2, 6, 1)
    messages = [r.getMessage() for r in caplog.records if r.name == "pathsteer.gateways"]
    assert len([m for m in messages if m.startswith("webhook.failed")]) == 1
    assert len([m for m in messages if m.startswith("webhook.gave-up")]) == 1
    assert [m for m in messages if m.startswith("webhook.resumed")] == [
        f"webhook.resumed url={server.url.split('?')[0]} lost=2"]
    assert all("topsecret" not in m and "k=v" not in m for m in messages)


def test_400_rejected_not_retried(server: Server) -> None:
    server.script.statuses = [400, 200]
    sender = WebhookSender(server.url, **FAST)

    async def body() -> None:
        sender.send({"name": "bad"})
        sender.send({"name": "good"})
        assert await sender.flush(5)

    running(sender, body)
    assert [b["name"] for b in server.bodies()] == ["bad", "good"]
    stats = sender.stats
    assert (stats["rejected"], stats["retried"]) == (1, 0)
    assert (stats["failed"], stats["delivered"]) == (0, 1)


def test_connection_refused_retried_then_failed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pathsteer.gateways")
    # A bound socket that does not listen: connecting to it is refused, and no one can take it.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        sender = WebhookSender(f"http://127.0.0.1:{sock.getsockname()[1]}/", retries=2, **FAST)

        async def body() -> None:
            sender.send({"name": "x"})
            sender.send({"name": "y"})
            assert await sender.flush(5)

        running(sender, body)
    finally:
        sock.close()
    stats = sender.stats
    assert (stats["failed"], stats["retried"], stats["delivered"]) == (2, 4, 0)
    assert "ConnectionRefusedError" in stats["last_error"]
    failed = [r for r in caplog.records if r.getMessage().startswith("webhook.failed")]
    assert len(failed) == 1 and "ConnectionRefusedError" in failed[0].getMessage()


def test_timeout_is_a_failure_and_retried(server: Server) -> None:
    server.script.delays = [1.0]  # the first answer comes after the client gave up
    sender = WebhookSender(server.url, timeout_s=0.2, **FAST)

    async def body() -> None:
        sender.send({"name": "slow"})
        assert await sender.flush(5)

    running(sender, body)
    stats = sender.stats
    assert (stats["delivered"], stats["retried"], stats["failed"]) == (1, 1, 0)
    assert "timeout" in stats["last_error"].lower()
    ids = {h["X-Pathsteer-Delivery"] for h, _ in server.script.received}
    assert len(server.script.received) == 2 and len(ids) == 1


def test_timeout_forever_fails(server: Server) -> None:
    server.script.delays = [1.0, 1.0]
    sender = WebhookSender(server.url, timeout_s=0.1, retries=1, **FAST)

    async def body() -> None:
        sender.send({"name": "slow"})
        assert await sender.flush(5)

    running(sender, body)
    assert (sender.stats["failed"], sender.stats["retried"]) == (1, 1)


def test_queue_bound_drops_the_oldest(server: Server) -> None:
    gate = threading.Event()
    server.script.gate = gate
    sender = WebhookSender(server.url, timeout_s=5, queue_max=20, **FAST)

    async def body() -> None:
        sender.send({"name": "first"})
        # Wait until "first" is in flight (the server holds it), so the queue is empty.
        assert await asyncio.to_thread(server.script.arrived.wait, 5)
        for i in range(30):
            sender.send({"name": "e", "i": i})
        assert sender.stats["dropped"] == 10 and sender.stats["queued"] == 20
        gate.set()
        assert await sender.flush(5)

    running(sender, body)
    bodies = server.bodies()
    assert bodies[0] == {"name": "first"}
    assert [b["i"] for b in bodies[1:]] == list(range(10, 30))
    assert sender.stats["delivered"] == 21 and sender.stats["dropped"] == 10


def test_send_never_raises_on_unserialisable(server: Server,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pathsteer.gateways")
    sender = WebhookSender(server.url, **FAST)
    loop: dict[str, Any] = {}
    loop["self"] = loop

    async def body() -> None:
        sender.send({"name": "set", "v": {1, 2}})
        sender.send({"name": "nan", "v": float("nan")})
        sender.send(loop)
        sender.send({1: "a", "b": 2})  # sort_keys cannot order int and str
        sender.send({"name": "fine"})
        assert await sender.flush(5)

    running(sender, body)
    assert server.bodies() == [{"name": "fine"}]
    assert sender.stats["rejected"] == 4 and sender.stats["delivered"] == 1
    assert len([r for r in caplog.records
                if r.getMessage().startswith("webhook.unserialisable")]) == 4


def test_send_without_running_loop_does_not_raise() -> None:
    sender = WebhookSender("http://127.0.0.1:9/", queue_max=2)
    for i in range(5):
        sender.send({"i": i})
    assert sender.stats["queued"] == 2 and sender.stats["dropped"] == 3


def test_flush_times_out_when_not_running() -> None:
    sender = WebhookSender("http://127.0.0.1:9/")
    sender.send({"i": 1})
    assert asyncio.run(sender.flush(0.05)) is False


@pytest.mark.parametrize("url", ["ftp://x", "http://", "not a url", "https://h:99999/",
                                 "http://u:p@h/", "http://a\nb/"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ValueError) as info:
        WebhookSender(url)
    message = str(info.value)
    assert "\n" not in message and repr(url) in message


def test_good_urls() -> None:
    WebhookSender("https://example.com")
    WebhookSender("http://[::1]:8080/hook?token=x")
