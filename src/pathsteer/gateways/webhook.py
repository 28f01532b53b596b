"""Generic webhook output: pathsteer POSTs its events (path health changes, route changes) as JSON
to an operator's URL, so that any gateway, chat bot or script can follow them.

One event is one request: ``POST <url>`` with the body
``json.dumps(event, separators=(",", ":"), sort_keys=True)`` (compact, keys sorted, so the same
event always gives the same bytes) and these headers:

* ``Content-Type: application/json`` and ``User-Agent: pathsteer``;
* ``X-Pathsteer-Event: <event["name"]>`` when the event has a ``name`` (printable ASCII only,
  anything else replaced by ``?``: a header must not carry a line break);
* ``X-Pathsteer-Delivery: <uuid>``: unique per event and the same on each retry of that event, so
  a receiver can drop the duplicates a retry after a lost answer produces;
* ``X-Pathsteer-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>`` when a secret is
  set (the scheme of GitHub's ``X-Hub-Signature-256``).

Delivery and retries: a 2xx answer means delivered. A 5xx, a 429, a connection error or a timeout
is retried after ``backoff_s * 2**attempt`` seconds (capped at ``backoff_max_s``, then ±20 %
jitter so that many senders do not retry in step), at most ``retries`` times; then the event is
given up (``stats["failed"]``). Any other answer (a 4xx but 429, a 1xx or 3xx: redirects are not
followed) will not get better by repeating it: not retried (``stats["rejected"]``). Events go out
one at a time, in the order they were sent; while one is being retried the next ones wait behind
it.

Bounds: `WebhookSender.send` never blocks and never raises. The queue holds at most ``queue_max``
events (the one in flight not included); when it is full the OLDEST queued event is dropped
(``stats["dropped"]``): for a follower of path health the newest state matters most. An event that
cannot be serialised as strict JSON (a set, an object, NaN, a circular reference) is counted as
``rejected`` at `send` time with a warning: it could never be delivered, like a 4xx, and it is
serialised at once so that later changes to the dict by the caller do not change what is sent. A
request lasts at most ``timeout_s`` per socket operation; ``run`` uses one worker thread at a time.

Logging (logger ``pathsteer.gateways``): each kind of failure (a status such as ``http 503``,
``ConnectionRefusedError``, ``TimeoutError``, giving up, a full queue) is logged once per episode;
the episode ends at the next successful delivery, which logs ``webhook.resumed`` with how many
events were lost (failed, rejected or dropped) since the last success. The URL is logged without
its query string (it may carry a token); the secret is never logged.

A receiver verifies the signature over the raw body, before parsing it::

    import hmac, hashlib
    expected = "sha256=" + hmac.new(secret, raw_body, hashlib.sha256).hexdigest()
    ok = hmac.compare_digest(expected, request.headers["X-Pathsteer-Signature"])

(or ``verify(secret, raw_body, header)`` from this module).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import http.client
import json
import logging
import random
import ssl
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("pathsteer.gateways")

__all__ = ["WebhookSender", "signature", "verify"]


def signature(secret: bytes, body: bytes) -> str:
    """The ``X-Pathsteer-Signature`` value for ``body``: ``"sha256=" + hex HMAC-SHA256``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str) -> bool:
    """Whether ``header`` is the signature of ``body`` with ``secret`` (constant-time compare)."""
    if not isinstance(header, str):
        return False
    # compare_digest on str needs ASCII; a forged header may not be, and that is just "no".
    try:
        return hmac.compare_digest(signature(secret, body), header)
    except TypeError:
        return False


@dataclass(frozen=True, slots=True)
class _Item:
    body: bytes
    name: str | None
    delivery: str


def _header_safe(value: Any) -> str:
    # http.client refuses CR/LF and encodes headers as latin-1: keep printable ASCII only, so an
    # odd event name can neither break the request nor inject a header.
    text = "".join(c if " " <= c <= "~" else "?" for c in str(value))
    return text[:200]


class WebhookSender:
    """Queues events and POSTs them, one at a time and in order, to one URL (see module doc)."""

    def __init__(
        self,
        url: str,
        *,
        secret: bytes | None = None,
        timeout_s: float = 2.0,
        queue_max: int = 1000,
        retries: int = 5,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(url, str) or any(c.isspace() or not c.isprintable() for c in url):
            # urlsplit silently deletes tabs and line breaks: "http://a\nb/" would become host
            # "ab". A URL with whitespace is a configuration mistake; say so.
            raise ValueError(f"webhook url {url!r} is not a valid http:// or https:// URL")
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port  # raises ValueError for a port that is not a number or out of range
        except (ValueError, TypeError, AttributeError):
            raise ValueError(f"webhook url {url!r} is not a valid http:// or https:// URL") \
                from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook url {url!r} must be http:// or https:// with a host")
        if parts.username is not None or parts.password is not None:
            # Not silently ignored: credentials belong in the signature secret, not the URL.
            raise ValueError(f"webhook url {url!r}: credentials in the URL are not supported")
        if secret is not None and not isinstance(secret, (bytes, bytearray)):
            raise ValueError("webhook secret must be bytes")
        if timeout_s <= 0 or queue_max < 1 or retries < 0 or backoff_s < 0 or backoff_max_s < 0:
            raise ValueError("webhook: needs timeout_s > 0, queue_max >= 1, retries, backoff >= 0")

        self._url = url
        # What the logs show: no query string, which may carry an access token.
        self._log_url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        self._https = parts.scheme == "https"
        self._host: str = parts.hostname
        self._port: int | None = port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._secret = bytes(secret) if secret is not None else None
        self._timeout_s = float(timeout_s)
        self._queue_max = int(queue_max)
        self._retries = int(retries)
        self._backoff_s = float(backoff_s)
        self._backoff_max_s = float(backoff_max_s)
        self._clock = clock
        # One SSL context for the sender's lifetime: loading the CA store is not free.
        self._ssl = ssl.create_default_context() if self._https else None

        self._queue: collections.deque[_Item] = collections.deque()
        self._in_flight = False
        # asyncio.Event binds to the running loop on first wait, not here: the sender may be
        # built before the loop starts.
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

        self._delivered = 0
        self._retried = 0
        self._failed = 0
        self._rejected = 0
        self._dropped = 0
        self._last_error: str | None = None
        self._last_delivery_at: float | None = None

        # Log-once bookkeeping: kinds already logged in this failure episode, events lost since
        # the last success, and whether the full-queue warning was given since the queue drained.
        self._logged_kinds: set[str] = set()
        self._lost = 0
        self._overflow_logged = False

    # --- producer side -------------------------------------------------------------------------

    def send(self, event: dict) -> None:
        """Queue ``event`` for delivery. Never blocks, never raises (the daemon's loop calls it)."""
        try:
            try:
                body = json.dumps(event, separators=(",", ":"), sort_keys=True,
                                  allow_nan=False).encode()
            except (TypeError, ValueError, RecursionError) as exc:
                self._rejected += 1
                self._lost += 1
                self._last_error = f"not JSON: {exc}"
                log.warning("webhook.unserialisable url=%s error=%r", self._log_url, str(exc))
                return
            name = event.get("name") if isinstance(event, dict) else None
            item = _Item(body=body, name=None if name is None else _header_safe(name),
                         delivery=str(uuid.uuid4()))
            if len(self._queue) >= self._queue_max:
                self._queue.popleft()
                self._dropped += 1
                self._lost += 1
                if not self._overflow_logged:
                    self._overflow_logged = True
                    log.warning("webhook.queue-full url=%s queue_max=%d (dropping the oldest)",
                                self._log_url, self._queue_max)
            self._queue.append(item)
            self._idle.clear()
            self._wake.set()
        except Exception as exc:  # never let a webhook take the daemon's loop down
            self._dropped += 1
            self._lost += 1
            log.warning("webhook.send-error url=%s error=%r", self._log_url, str(exc))

    # --- consumer side -------------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver queued events until cancelled. A request in flight when cancelled is lost
        (its worker thread ends within ``timeout_s``)."""
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            item = self._queue.popleft()
            self._in_flight = True
            try:
                await self._deliver(item)
            finally:
                self._in_flight = False
                if not self._queue:
                    self._overflow_logged = False
                    self._idle.set()

    async def flush(self, timeout_s: float) -> bool:
        """Wait until nothing is queued or in flight; False if ``timeout_s`` passed first.
        Needs `run` to be running."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            return False
        return True

    @property
    def stats(self) -> dict[str, Any]:
        """Counters since creation; ``queued`` is the current queue length (in-flight excluded)."""
        return {
            "queued": len(self._queue),
            "delivered": self._delivered,
            "retried": self._retried,
            "failed": self._failed,
            "rejected": self._rejected,
            "dropped": self._dropped,
            "last_error": self._last_error,
            "last_delivery_at": self._last_delivery_at,
        }

    # --- internals -----------------------------------------------------------------------------

    async def _deliver(self, item: _Item) -> None:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "pathsteer",
            "X-Pathsteer-Delivery": item.delivery,
        }
        if item.name is not None:
            headers["X-Pathsteer-Event"] = item.name
        if self._secret is not None:
            headers["X-Pathsteer-Signature"] = signature(self._secret, item.body)

        attempt = 0
        while True:
            status: int | None = None
            try:
                # http.client blocks: in a worker thread, so the daemon's loop never waits on it.
                status = await asyncio.to_thread(self._post, item.body, headers)
            except Exception as exc:  # OSError, timeouts, HTTPException: all worth a retry
                kind = type(exc).__name__
                error = f"{kind}: {exc}" if str(exc) else kind
            if status is not None and 200 <= status < 300:
                self._succeeded()
                return
            if status is not None:
                kind = error = f"http {status}"
                if status != 429 and status < 500:
                    self._last_error = error
                    self._rejected += 1
                    self._lost += 1
                    self._log_once(kind, "webhook.rejected url=%s status=%d (not retried)",
                                   self._log_url, status)
                    return
            self._last_error = error
            self._log_once(kind, "webhook.failed url=%s error=%r", self._log_url, error)
            if attempt >= self._retries:
                self._failed += 1
                self._lost += 1
                self._log_once("gave-up", "webhook.gave-up url=%s retries=%d last_error=%r",
                               self._log_url, self._retries, error)
                return
            delay = min(self._backoff_s * 2 ** attempt, self._backoff_max_s)
            delay *= random.uniform(0.8, 1.2)
            attempt += 1
            self._retried += 1
            await asyncio.sleep(delay)

    def _post(self, body: bytes, headers: dict[str, str]) -> int:
        """One POST on a fresh connection (runs in a worker thread); returns the status."""
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout_s,
                                               context=self._ssl)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
        try:
            conn.request("POST", self._target, body=body, headers=headers)
            response = conn.getresponse()
            response.read(65536)  # the answer body is not used; read a bounded amount of it
            return response.status
        finally:
            conn.close()

    def _succeeded(self) -> None:
        self._delivered += 1
        self._last_delivery_at = self._clock()
        if self._logged_kinds:
            log.info("webhook.resumed url=%s lost=%d", self._log_url, self._lost)
            self._logged_kinds.clear()
        self._lost = 0

    def _log_once(self, kind: str, msg: str, *args: Any) -> None:
        # Once per kind per episode: an unreachable receiver must not flood the log at each retry.
        if kind not in self._logged_kinds:
            self._logged_kinds.add(kind)
            log.warning(msg, *args)
