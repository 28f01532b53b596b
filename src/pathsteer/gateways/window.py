"""The last few seconds of gateway records, summed per upstream and per client. Pure; no clock.

Records are placed by arrival (the ``now`` given to `UsageWindow.add`), not by the gateway's own
timestamp: a log line arrives as its request ends, and the gateway's clock may be off from ours.
The window is a ring of buckets (``bucket_s``, default 1 s) spanning ``window_s`` (default 10 s);
a bucket holds, per upstream, counts, bytes, status classes and a log-scale histogram of the
server's response times (bins 5% wide: percentiles within 2.5% of the exact value, memory a few
hundred bins at most whatever the rate), and per client its requests, bytes and the counts of
the watched statuses (default 401, 403, 429: the signs of credential stuffing, scanning and
rate-limited abuse) that `UsageWindow.offenders` reads.

Memory is bounded for floods of distinct clients: one bucket attributes at most
``max_clients`` clients (the rest count in ``dropped_clients``; their requests still count per
upstream), and when all buckets together hold more than ``max_client_entries`` client entries
the oldest bucket's client table is let go early (``evicted_client_buckets``): the client
figures then cover a shorter span, which they report (``span_s``), while the upstream figures
keep the whole window. An entry costs about 200 bytes with its address string: the defaults
(100 000 a bucket, 300 000 in all) hold some 60-70 MB at most, under a flood of 100k+ clients
a second, and a few MB for ordinary traffic.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from pathsteer.gateways.records import Record

DEFAULT_WATCH = (401, 403, 429)
_BIN_WIDTH = 0.05                       # each histogram bin spans a factor of 1.05
_K = 1.0 / math.log1p(_BIN_WIDTH)
_FLOOR_S = 1e-6                         # times under 1 µs (HAProxy's 0 ms) fall in one bin, read as 0
_LOW = math.floor(math.log(_FLOOR_S) * _K) - 1
_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")
# Accumulator slots: [requests, bytes_in, bytes_out, 1xx, 2xx, 3xx, 4xx, 5xx, other] + histogram.
_REQ, _BIN, _BOUT, _CLS = 0, 1, 2, 3
_OTHER = _CLS + 5


@dataclass(frozen=True, slots=True)
class Figures:
    """An upstream's (or all records') figures over ``span_s``: rates per second, the count of
    each status class (``1xx`` … ``5xx``, ``other`` for none/invalid), and the server's response
    time percentiles (None without samples)."""

    requests: int
    requests_per_s: float
    bytes_in_per_s: float
    bytes_out_per_s: float
    statuses: dict[str, int]
    upstream_p50_s: float | None
    upstream_p95_s: float | None
    samples: int
    span_s: float


@dataclass(frozen=True, slots=True)
class ClientFigures:
    """A client's requests, rates and counts of the watched statuses over ``span_s``."""

    requests: int
    requests_per_s: float
    bytes_in_per_s: float
    bytes_out_per_s: float
    watched: dict[int, int]
    span_s: float


class _Bucket:
    __slots__ = ("index", "total", "upstreams", "clients", "watched")

    def __init__(self, index: int) -> None:
        self.index = index
        self.total: list = _acc()
        self.upstreams: dict[str, list] = {}
        self.clients: dict[str, list[int]] | None = {}   # None once evicted early
        self.watched: dict[str, list[int]] = {}


def _acc() -> list:
    return [0, 0, 0, 0, 0, 0, 0, 0, 0, {}]


class UsageWindow:
    """Sliding per-upstream and per-client figures of gateway records (see the module doc)."""

    __slots__ = ("window_s", "bucket_s", "watch", "max_clients", "max_client_entries", "dropped_clients",
                 "evicted_client_buckets", "_n", "_buckets", "_cur", "_entries", "_watch_at")

    def __init__(self, window_s: float = 10.0, bucket_s: float = 1.0, watch: Iterable[int] = DEFAULT_WATCH,
                 max_clients: int = 100_000, max_client_entries: int = 300_000) -> None:
        if not (window_s > 0 and bucket_s > 0 and window_s >= bucket_s):
            raise ValueError(f"usage window: window_s={window_s!r} must be at least bucket_s={bucket_s!r} > 0")
        if max_clients < 1 or max_client_entries < max_clients:
            raise ValueError(f"usage window: max_client_entries={max_client_entries!r} must be at least "
                             f"max_clients={max_clients!r} >= 1")
        self.window_s = window_s
        self.bucket_s = bucket_s
        self.watch = tuple(dict.fromkeys(int(s) for s in watch))
        self._watch_at = {s: i for i, s in enumerate(self.watch)}
        self.max_clients = max_clients
        self.max_client_entries = max_client_entries
        self.dropped_clients = 0          # records not attributed to their client (a bucket was full)
        self.evicted_client_buckets = 0   # client tables let go before their time (memory)
        self._n = max(1, round(window_s / bucket_s))
        self._buckets: deque[_Bucket] = deque()
        self._cur: _Bucket | None = None
        self._entries = 0

    # --- the hot path ---------------------------------------------------------------------------
    def add(self, record: Record, now: float) -> None:
        b = self._cur
        index = int(now // self.bucket_s)
        if b is None or index > b.index:
            b = self._advance(index)
        # (an earlier now than the current bucket's — a clock step back — counts in the current one)
        status = record.status
        cls = status // 100 + 2 if status is not None and 100 <= status < 600 else _OTHER
        b_in = record.bytes_in or 0
        b_out = record.bytes_out
        t = record.upstream_time_s
        key = record.upstream
        if key is None and record.server is not None:
            key = f"{record.backend}/{record.server}"
        tot = b.total
        tot[0] += 1
        tot[1] += b_in
        tot[2] += b_out
        tot[cls] += 1
        if t is not None and t < 1e7:  # (NaN and infinities too: never from the parsers)
            h = tot[9]
            k = math.floor(math.log(t) * _K) if t >= _FLOOR_S else _LOW
            h[k] = h.get(k, 0) + 1
        if key is not None:
            acc = b.upstreams.get(key)
            if acc is None:
                acc = b.upstreams[key] = _acc()
            acc[0] += 1
            acc[1] += b_in
            acc[2] += b_out
            acc[cls] += 1
            if t is not None and t < 1e7:
                h = acc[9]
                h[k] = h.get(k, 0) + 1
        clients = b.clients
        if clients is None:
            return
        client = record.client
        c = clients.get(client)
        if c is None:
            if len(clients) >= self.max_clients:
                self.dropped_clients += 1
                return
            if self._entries >= self.max_client_entries:
                self._evict_oldest_clients()
                if b.clients is None:  # cannot happen: max_client_entries >= max_clients
                    return
            c = clients[client] = [0, 0, 0]
            self._entries += 1
        c[0] += 1
        c[1] += b_in
        c[2] += b_out
        w = self._watch_at.get(status) if status is not None else None
        if w is None and record.auth_failed:  # Apinto's $auth_status=fail: counts as a 401
            w = self._watch_at.get(401)
        if w is not None:
            counts = b.watched.get(client)
            if counts is None:
                counts = b.watched[client] = [0] * len(self.watch)
            counts[w] += 1

    def _advance(self, index: int) -> _Bucket:
        b = _Bucket(index)
        self._buckets.append(b)
        self._cur = b
        horizon = index - self._n
        while self._buckets and self._buckets[0].index <= horizon:
            old = self._buckets.popleft()
            if old.clients is not None:
                self._entries -= len(old.clients)
        return b

    def _evict_oldest_clients(self) -> None:
        for b in self._buckets:
            if b.clients is not None and b is not self._cur:
                self._entries -= len(b.clients)
                b.clients = None
                b.watched = {}
                self.evicted_client_buckets += 1
                return

    # --- reading --------------------------------------------------------------------------------
    def _live(self, now: float) -> list[_Bucket]:
        index = int(now // self.bucket_s)
        return [b for b in self._buckets if index - self._n < b.index <= index]

    def _client_buckets(self, now: float) -> tuple[list[_Bucket], float]:
        """The buckets still holding clients, and the span they cover (shorter after eviction)."""
        index = int(now // self.bucket_s)
        live = [b for b in self._live(now) if b.clients is not None]
        if len(live) == sum(1 for b in self._live(now)):
            return live, self._n * self.bucket_s
        first = live[0].index if live else index
        return live, (index - first + 1) * self.bucket_s

    def totals(self, now: float) -> Figures:
        """All records of the window, whatever their upstream."""
        return _figures([b.total for b in self._live(now)], self._n * self.bucket_s)

    def upstreams(self, now: float) -> dict[str, Figures]:
        """Per upstream (``"ip:port"``, or ``"backend/server"`` when the address is not known)."""
        grouped: dict[str, list[list]] = {}
        for b in self._live(now):
            for key, acc in b.upstreams.items():
                grouped.setdefault(key, []).append(acc)
        span = self._n * self.bucket_s
        return {key: _figures(accs, span) for key, accs in grouped.items()}

    def clients(self, now: float, top: int | None = None) -> dict[str, ClientFigures]:
        """Per client, the ``top`` by requests (all when None)."""
        live, span = self._client_buckets(now)
        sums: dict[str, list[int]] = {}
        for b in live:
            for client, c in b.clients.items():  # type: ignore[union-attr]
                s = sums.get(client)
                if s is None:
                    sums[client] = list(c)
                else:
                    s[0] += c[0]
                    s[1] += c[1]
                    s[2] += c[2]
        items = sorted(sums.items(), key=lambda kv: (-kv[1][0], kv[0]))
        if top is not None:
            items = items[:top]
        watched = self._watched_sums(live, set(c for c, _ in items))
        zero = [0] * len(self.watch)
        return {client: ClientFigures(s[0], s[0] / span, s[1] / span, s[2] / span,
                                      dict(zip(self.watch, watched.get(client, zero))), span)
                for client, s in items}

    def _watched_sums(self, live: list[_Bucket], only: set[str] | None = None) -> dict[str, list[int]]:
        sums: dict[str, list[int]] = {}
        for b in live:
            for client, counts in b.watched.items():
                if only is not None and client not in only:
                    continue
                s = sums.get(client)
                if s is None:
                    sums[client] = list(counts)
                else:
                    for i, n in enumerate(counts):
                        s[i] += n
        return sums

    def offenders(self, threshold: int, statuses: Iterable[int] | None = None, *,
                  now: float) -> list[tuple[str, int, str]]:
        """Clients answered ``statuses`` (default: all watched) at least ``threshold`` times in
        the window, most first: ``(client, count, "401×120/10s")``."""
        chosen = self.watch if statuses is None else tuple(dict.fromkeys(int(s) for s in statuses))
        for s in chosen:
            if s not in self._watch_at:
                raise ValueError(f"offenders: status {s!r} is not watched (watch: {', '.join(map(str, self.watch))})")
        if threshold < 1:
            raise ValueError(f"offenders: threshold {threshold!r} must be 1 or more")
        live, span = self._client_buckets(now)
        at = [self._watch_at[s] for s in chosen]
        found = []
        for client, counts in self._watched_sums(live).items():
            total = sum(counts[i] for i in at)
            if total >= threshold:
                parts = " ".join(f"{self.watch[i]}×{counts[i]}" for i in at if counts[i])
                found.append((client, total, f"{parts}/{span:g}s"))
        found.sort(key=lambda f: (-f[1], f[0]))
        return found


def _figures(accs: list[list], span: float) -> Figures:
    req = sum(a[_REQ] for a in accs)
    hist: dict[int, int] = {}
    for a in accs:
        for k, n in a[9].items():
            hist[k] = hist.get(k, 0) + n
    samples = sum(hist.values())
    statuses = {name: sum(a[_CLS + i] for a in accs) for i, name in enumerate(_CLASSES)}
    return Figures(req, req / span, sum(a[_BIN] for a in accs) / span, sum(a[_BOUT] for a in accs) / span,
                   statuses, _percentile(hist, samples, 50), _percentile(hist, samples, 95), samples, span)


def _percentile(hist: dict[int, int], samples: int, p: float) -> float | None:
    """Nearest rank over the histogram: the bin holding the rank, read at its geometric middle."""
    if not samples:
        return None
    rank = max(1, math.ceil(p / 100.0 * samples))
    seen = 0
    for k in sorted(hist):
        seen += hist[k]
        if seen >= rank:
            return 0.0 if k == _LOW else math.exp((k + 0.5) / _K)
    raise AssertionError("unreachable: the ranks add up to samples")
