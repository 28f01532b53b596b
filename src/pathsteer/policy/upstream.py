"""L7 response time as a path signal: what a gateway hands steering, and how it is attributed. Pure.

A gateway in front of the services sees what the probes cannot: how long each upstream takes to
answer. Its component (`pathsteer.gateways`) reads the access logs and, about once a second,
hands steering each upstream address's response time over its window (`UpstreamTime`:
p50, p95, the requests timed) through `SteeringService.note_upstream_times`. Steering:

1. attributes each address to the destination whose prefix holds it (longest match among the
   configured destinations, `PrefixIndex`) and to the path(s) carrying that destination at that
   time (the current decision's next hops), and keeps, per (destination, path), the latest
   figure with when it was seen (`UpstreamFigure`; several addresses of one destination: the
   slowest, `combine`);
2. ignores a figure of fewer than `MIN_REQUESTS` requests (a p95 of a handful of requests is
   their slowest one), and every figure of a destination whose paths changed less than the
   figure's window ago (the gateway's window still holds requests sent over the old paths:
   they would be blamed on the new one);
3. hands the figures to `decide` (its ``upstream`` input, with their times): a path whose p95
   is above the destination's ``sla.max_upstream_time`` breaks the SLA and is left at once, as
   for ``max_rtt``.

Once traffic has left a slow path, that path gets no more figures, so the verdict is
remembered: a figure stays in force for ``sla.upstream_hold`` (60 s by default) after it was
last seen, then it is forgotten and the path is eligible again — taken back under the policy's
own rules (better by min_improvement for hold_down, failback after hold_down), and left again
if its figures are still slow. A breach never blackholes: when every path is ineligible the
least bad one carries (`candidates.least_bad`: among paths that only break the SLA, the one
with the lowest upstream p95; the current one is kept unless another's is lower by
`UPSTREAM_MARGIN`, so remembered and fresh figures do not swap traffic back and forth).

A weighted destination spreads each upstream's requests over the paths of its set (flows are
hashed), so a figure is attributed to every path of the set: a breach takes them all out, and
the least bad single path (or the paths outside the set) carries until figures tell more.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pathsteer.routes import Prefix

MIN_REQUESTS = 20  # fewer timed requests in the window: the figure is ignored (p95 of 19 is their slowest)
DEFAULT_WINDOW_S = 10.0  # the span a figure covers when the gateway does not say (its usage window)
UPSTREAM_MARGIN = 0.2  # least bad among slow paths: another's p95 must be 20 % lower to move
DEFAULT_HOLD_S = 60.0  # sla.upstream_hold

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _finite(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"UpstreamTime.{name}: {value!r} must be a finite number of seconds, 0 or more")


@dataclass(frozen=True, slots=True)
class UpstreamTime:
    """One upstream address's response time over the gateway's window, as a gateway hands it
    to steering: the server's own time (HAProxy ``Tr``, nginx ``$upstream_response_time``,
    Apinto ``$proxy_time``) in seconds, its median (None: unknown; only shown) and 95th
    percentile (what ``sla.max_upstream_time`` judges), and how many requests were timed
    (``requests``). ``window_s``: the span the figure covers (the gateway's sliding window):
    after a destination's paths change, its figures are ignored for that long."""

    p50_s: float | None
    p95_s: float
    requests: int
    window_s: float = DEFAULT_WINDOW_S

    def __post_init__(self) -> None:
        if self.p50_s is not None:
            _finite(self.p50_s, "p50_s")
        _finite(self.p95_s, "p95_s")
        _finite(self.window_s, "window_s")
        if isinstance(self.requests, bool) or not isinstance(self.requests, int) or self.requests < 0:
            raise ValueError(f"UpstreamTime.requests: {self.requests!r} must be a whole number, 0 or more")


@dataclass(frozen=True, slots=True)
class UpstreamFigure:
    """What steering keeps per (destination, path) and hands `decide`: the response time of the
    destination's upstreams while the path carried it, seen at ``at`` (monotonic seconds, the
    decision's clock); ``addresses``: how many upstream addresses it combines."""

    p50_s: float | None
    p95_s: float
    requests: int
    at: float
    addresses: int = 1

    def age(self, now: float) -> float:
        return max(0.0, now - self.at)

    def in_force(self, now: float, hold_s: float) -> bool:
        """Whether the figure still counts at ``now``: seen less than ``hold_s`` ago."""
        return now - self.at < hold_s


def combine(times: Iterable[UpstreamTime], at: float) -> UpstreamFigure:
    """Several upstream addresses of one destination over one path: the slowest (highest p95,
    and highest p50) speaks for the path; the requests add up."""
    times = list(times)
    p50 = max((t.p50_s for t in times if t.p50_s is not None), default=None)
    return UpstreamFigure(p50, max(t.p95_s for t in times), sum(t.requests for t in times), at, len(times))


def parse_address(key: str) -> Address | None:
    """The IP address of an upstream key: ``192.0.2.7``, ``192.0.2.7:8080``, ``2001:db8::7``,
    ``[2001:db8::7]:8080`` (how gateways log a server); None for anything else (a
    ``backend/server`` name, a host name)."""
    if not isinstance(key, str):
        return None
    text = key.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


T = TypeVar("T")


class PrefixIndex(Generic[T]):
    """Longest-prefix match over a fixed set of prefixes, each with a value (a dict per prefix
    length present: a lookup costs one probe per distinct length of the address's family)."""

    __slots__ = ("_by_len", "_lengths")

    def __init__(self, items: Iterable[tuple[Prefix, T]]) -> None:
        self._by_len: dict[tuple[int, int], dict[int, T]] = {}
        for prefix, value in items:
            self._by_len.setdefault((prefix.version, prefix.prefixlen), {})[int(prefix.network_address)] = value
        self._lengths = {v: sorted((n for ver, n in self._by_len if ver == v), reverse=True) for v in (4, 6)}

    def lookup(self, address: Address) -> T | None:
        bits = 32 if address.version == 4 else 128
        value = int(address)
        for n in self._lengths[address.version]:
            mask = ((1 << n) - 1) << (bits - n) if n else 0
            hit = self._by_len[(address.version, n)].get(value & mask)
            if hit is not None:
                return hit
        return None


def upstream_text(seconds: float) -> str:
    """'412 ms' — gateways log whole milliseconds."""
    return f"{seconds * 1e3:.0f} ms"


__all__ = ["DEFAULT_HOLD_S", "DEFAULT_WINDOW_S", "MIN_REQUESTS", "PrefixIndex", "UPSTREAM_MARGIN", "UpstreamFigure",
           "UpstreamTime", "combine", "parse_address", "upstream_text"]
