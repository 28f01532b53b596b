"""Path health out: the weight each gateway server should have, from the health of the paths
that carry the traffic to it. Pure (no sockets, no clock).

A server (HAProxy ``backend/server``, an APIPark/Apinto upstream node) is reached at an address;
steering carries that address's destination prefix (the longest configured prefix holding it)
over one path or several (weighted). The server's health is the best of those paths' states:

* every carrying path down or drained (nothing eligible: steering fails open to the kernel's
  route) → ``DOWN``: the server is drained (weight 0);
* the best carrying path DEGRADED → ``DEGRADED``: its weight is lowered to ``degraded_factor``
  of the weight the gateway had when pathsteer found it (at least 1);
* an UP path → ``UP``: the weight it was found with;
* an address in no destination, or a path without figures yet → ``UNKNOWN``: left as found
  (pathsteer knows nothing the gateway's own checks do not).

Fail open: a backend always keeps a server with a weight. Where the plan would leave none (every
server of it down as far as pathsteer sees), its drained servers keep the weights they were found
with and the gateway's own health checks decide — pathsteer never drains the last node. When
pathsteer stops, every server gets back the weight it was found with (`restore`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum


class Health(Enum):
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"          # every carrying path down or drained
    UNKNOWN = "unknown"    # no destination holds the address, or no figures yet


# Path states (steering's words: `PathState` values plus "drained") → the health they give.
_PATH_HEALTH = {"up": Health.UP, "degraded": Health.DEGRADED, "down": Health.DOWN,
                "drained": Health.DOWN, "unknown": Health.UNKNOWN}
_BEST_FIRST = (Health.UP, Health.DEGRADED, Health.UNKNOWN, Health.DOWN)


@dataclass(frozen=True)
class Server:
    """A gateway server: ``backend``/``name`` as the gateway calls them, the IP ``address`` it is
    reached at (None: not resolved), and ``found_weight``, the weight the gateway had when
    pathsteer first saw it (what it gets back)."""

    backend: str
    name: str
    address: str | None
    found_weight: int

    @property
    def key(self) -> tuple[str, str]:
        return self.backend, self.name


@dataclass(frozen=True)
class Route:
    """A steered destination: its prefix and the paths carrying it now (empty: none eligible,
    the kernel's own route carries it)."""

    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network
    paths: tuple[str, ...]


@dataclass(frozen=True)
class Verdict:
    """What a server should weigh and why: ``health`` of the path(s) reaching it, the ``path``
    that decided it (None: no route), the ``weight`` to set, ``why`` in words."""

    server: Server
    health: Health
    prefix: str | None
    path: str | None
    weight: int
    why: str


def route_of(address: str | None, routes: Iterable[Route]) -> Route | None:
    """The route whose prefix holds ``address`` most specifically (None: none, or no address)."""
    if address is None:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    best = None
    for r in routes:
        if r.prefix.version == ip.version and ip in r.prefix and (best is None or r.prefix.prefixlen > best.prefix.prefixlen):
            best = r
    return best


def health_of(route: Route | None, path_states: Mapping[str, str]) -> tuple[Health, str | None]:
    """The best health among the paths carrying ``route`` and the path that gives it."""
    if route is None:
        return Health.UNKNOWN, None
    if not route.paths:
        return Health.DOWN, None
    found = [(_PATH_HEALTH.get(path_states.get(p, "unknown"), Health.UNKNOWN), p) for p in route.paths]
    return min(found, key=lambda hp: _BEST_FIRST.index(hp[0]))


def plan(servers: Iterable[Server], routes: Iterable[Route], path_states: Mapping[str, str], *,
         degraded_factor: float = 0.5) -> dict[tuple[str, str], Verdict]:
    """Every server's verdict. ``path_states``: each path's state (``up``, ``degraded``,
    ``down``, ``drained``, ``unknown``); ``degraded_factor`` in (0, 1]."""
    if not 0.0 < degraded_factor <= 1.0:
        raise ValueError(f"degraded_factor {degraded_factor!r} must be in (0, 1]")
    routes = list(routes)
    out: dict[tuple[str, str], Verdict] = {}
    for s in servers:
        route = route_of(s.address, routes)
        health, path = health_of(route, path_states)
        prefix = str(route.prefix) if route is not None else None
        if health is Health.DOWN:
            why = f"{prefix}: no eligible path" if path is None else f"{prefix} is on {path}, {path_states[path]}"
            out[s.key] = Verdict(s, health, prefix, path, 0, why + ": drained")
        elif health is Health.DEGRADED and s.found_weight > 0:
            weight = max(1, round(s.found_weight * degraded_factor))
            out[s.key] = Verdict(s, health, prefix, path, weight,
                                 f"{prefix} is on {path}, degraded: weight {s.found_weight} → {weight}")
        else:
            why = "not steered (its address is in no destination)" if route is None else (
                f"{prefix} is on {path}, {health.value}")
            out[s.key] = Verdict(s, health, prefix, path, s.found_weight, why)
    # Fail open: a backend keeps a server with weight, whatever pathsteer sees.
    for backend in {s.server.backend for s in out.values()}:
        mine = [v for v in out.values() if v.server.backend == backend]
        if any(v.server.found_weight > 0 for v in mine) and not any(v.weight > 0 for v in mine):
            for v in mine:
                out[v.server.key] = Verdict(v.server, v.health, v.prefix, v.path, v.server.found_weight,
                                            f"{v.why.removesuffix(': drained')}; kept: the last servers of "
                                            f"backend {backend} are never drained (fail open)")
    return out


def changes(verdicts: Mapping[tuple[str, str], Verdict], current: Mapping[tuple[str, str], int]
            ) -> list[Verdict]:
    """The verdicts whose weight differs from what the gateway has now (``current``), in a
    stable order (backend, server)."""
    return [v for k, v in sorted(verdicts.items()) if current.get(k) != v.weight]


def restore(servers: Iterable[Server], current: Mapping[tuple[str, str], int]) -> list[tuple[Server, int]]:
    """What to set when pathsteer stops: each server whose weight is not the one it was found with."""
    return [(s, s.found_weight) for s in sorted(servers, key=lambda s: s.key) if current.get(s.key) != s.found_weight]
