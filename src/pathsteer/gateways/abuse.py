"""Abuse signals in: which of a gateway's clients to block in XDP, from what the gateway answered
them. Pure (no sockets, no clock).

`window.UsageWindow.offenders` lists the clients answered the watched statuses (401, 403, 429 by
default: credential stuffing, scanning, rate-limited abuse) at least ``threshold`` times in the
window; `UsageWindow.clients` gives each client's request rate. `blocks` turns them into guard
blocks (fail2ban's job, done in XDP before the gateway spends anything on the next request),
never on an address that must not be blocked:

* the guard's allow list (an operator's word that the address is never dropped);
* ``protected``: the gateway's own addresses, the paths' gateways, the probe targets, the
  configured upstreams — blocking one of those would cut the service it protects;
* an address already inside a block (nothing to add).

An IPv4 client is blocked as its /32; an IPv6 client as its /64 by default (a host usually
holds a whole /64 and picks new addresses in it at will; the guard's rate limits key IPv6 the
same way). Clients are the TCP peers the gateway saw (`records.Record.client`): a forwarded-for
header is never read, so a block cannot be aimed at someone else's address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AbuseRule:
    """When a client is blocked: ``threshold`` watched answers in the window, or (if set) more
    than ``max_rps`` requests a second over it; for ``ttl_s`` seconds."""

    threshold: int = 100
    max_rps: float | None = None
    ttl_s: float = 600.0
    prefix_v4: int = 32
    prefix_v6: int = 64

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError(f"abuse threshold {self.threshold!r} must be 1 or more")
        if self.max_rps is not None and not self.max_rps > 0:
            raise ValueError(f"abuse max_rps {self.max_rps!r} must be above 0")
        if not self.ttl_s > 0:
            raise ValueError(f"abuse ttl {self.ttl_s!r} s must be above 0")
        if not 8 <= self.prefix_v4 <= 32 or not 16 <= self.prefix_v6 <= 128:
            raise ValueError(f"abuse prefix lengths /{self.prefix_v4} (8..32), /{self.prefix_v6} (16..128)")


@dataclass(frozen=True)
class Block:
    """A block to make: the ``cidr``, the ``client`` it is for, and the ``reason`` the guard
    shows (``gateway:edge 401×120/10s``)."""

    cidr: Network
    client: str
    reason: str


@dataclass(frozen=True)
class Spared:
    """An offender not blocked, and why (for the adapter's status: the last actions)."""

    client: str
    why: str


def network_of(client: str, rule: AbuseRule) -> Network | None:
    """The block for ``client``: its /32 (IPv4) or /``prefix_v6`` (IPv6); None if not an address."""
    try:
        ip = ipaddress.ip_address(client)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:192.0.2.1, as a dual-stack listener logs an IPv4 peer
    length = rule.prefix_v4 if ip.version == 4 else rule.prefix_v6
    return ipaddress.ip_network(f"{ip}/{length}", strict=False)


def _covered(net: Network, nets: Iterable[Network]) -> Network | None:
    for other in nets:
        if other.version == net.version and net.subnet_of(other):
            return other
    return None


def _touches(net: Network, nets: Iterable[Network]) -> Network | None:
    """A network of ``nets`` that overlaps ``net`` (either inside the other)."""
    for other in nets:
        if other.version == net.version and net.overlaps(other):
            return other
    return None


def blocks(gateway: str, offenders: Iterable[tuple[str, int, str]], rates: Mapping[str, float],
           rule: AbuseRule, *, allow: Iterable[Network], protected: Iterable[Network],
           blocked: Iterable[Network]) -> tuple[list[Block], list[Spared]]:
    """The blocks to make for gateway ``gateway``, and the offenders spared with the reason.

    ``offenders``: ``(client, count, "401×120/10s")`` from `UsageWindow.offenders` (already at
    or over the threshold); ``rates``: each client's requests per second over the window (only
    read when ``rule.max_rps`` is set); ``allow``/``protected``/``blocked``: see the module
    docstring. One block per network (two IPv6 clients of one /64 make one)."""
    allow, protected, blocked = list(allow), list(protected), list(blocked)
    wanted: dict[str, str] = {}
    for client, _count, what in offenders:
        wanted.setdefault(client, f"gateway:{gateway} {what}")
    if rule.max_rps is not None:
        for client, rps in sorted(rates.items(), key=lambda kv: (-kv[1], kv[0])):
            if rps > rule.max_rps:
                wanted.setdefault(client, f"gateway:{gateway} {rps:.0f} req/s > {rule.max_rps:g}/s")
    made: list[Block] = []
    spared: list[Spared] = []
    seen: set[Network] = set()
    for client, reason in wanted.items():
        net = network_of(client, rule)
        if net is None:
            spared.append(Spared(client, "not an IP address"))
            continue
        hit = _touches(net, allow)
        if hit is not None:
            spared.append(Spared(client, f"in the guard's allow list ({hit})"))
            continue
        hit = _touches(net, protected)
        if hit is not None:
            spared.append(Spared(client, f"a gateway, path or upstream address ({hit}): never blocked"))
            continue
        hit = _covered(net, blocked)
        if hit is not None or net in seen:
            continue  # already blocked: nothing to say
        seen.add(net)
        made.append(Block(net, client, reason))
    return made, spared
