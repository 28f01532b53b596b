"""What the decision hands the data planes: routes per destination prefix, as plain data.

The policy (``pathsteer.policy``) computes a `Desired` from telemetry; a data plane
(``pathsteer.dataplane``: ``fib`` or ``bpf``) makes the kernel match it. Neither side knows how
the other works and neither imports the other: both import this module, the whole contract
between them (`DataPlane` is what the daemon needs of a plane).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Protocol

Prefix = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class _KeyV4(ipaddress.IPv4Network):
    """An IPv4Network that computes its hash once (the standard one recomputes it from the
    address and mask at every dict lookup: most of a decision's time at 100k prefixes). Equal
    to, and hashing like, the plain network."""

    def __hash__(self) -> int:
        d = self.__dict__
        h = d.get("_key_hash")
        if h is None:
            h = d["_key_hash"] = ipaddress.IPv4Network.__hash__(self)
        return h

    def __repr__(self) -> str:
        return f"IPv4Network('{self}')"


class _KeyV6(ipaddress.IPv6Network):
    """`_KeyV4` for IPv6."""

    def __hash__(self) -> int:
        d = self.__dict__
        h = d.get("_key_hash")
        if h is None:
            h = d["_key_hash"] = ipaddress.IPv6Network.__hash__(self)
        return h

    def __repr__(self) -> str:
        return f"IPv6Network('{self}')"


def prefix_key(net: Prefix) -> Prefix:
    """``net`` as a dict key that hashes once (the same network, equal and with the same hash)."""
    if type(net) in (_KeyV4, _KeyV6):
        return net
    cls = _KeyV4 if net.version == 4 else _KeyV6
    key = object.__new__(cls)
    key.__dict__.update(net.__dict__)
    key.__dict__.pop("_key_hash", None)
    return key


@dataclass(frozen=True)
class PathLink:
    """How to send traffic over one path: out of ``interface`` to its gateway.

    ``id`` is a small stable number (1..N in config order) the data planes use where the kernel
    wants numbers (nexthop ids, BPF path slots). A path may lack a gateway for one family; a
    route of that family cannot then use it.
    """

    name: str
    id: int
    interface: str
    gateway: ipaddress.IPv4Address | None = None
    gateway6: ipaddress.IPv6Address | None = None

    def gateway_for(self, prefix: Prefix) -> Address | None:
        return self.gateway if prefix.version == 4 else self.gateway6


@dataclass(frozen=True)
class NextHop:
    """One path carrying a prefix, with its share: ``weight`` in 1..255 (the kernel's range)."""

    path: str
    weight: int = 1


@dataclass(frozen=True)
class RouteIntent:
    """A prefix and the paths carrying it. One next hop: a plain route; several: weighted."""

    prefix: Prefix
    nexthops: tuple[NextHop, ...]


@dataclass(frozen=True)
class Desired:
    """Everything the data plane should hold: one `RouteIntent` per prefix."""

    routes: dict[Prefix, RouteIntent] = field(default_factory=dict)


class DataPlane(Protocol):
    """What the daemon needs of a data plane (`fib` or `bpf`): all of it, no optional parts."""

    def adopt(self) -> Desired | None:
        """Find what an earlier run left installed (by kernel state, not pins); None if nothing."""

    def apply(self, desired: Desired) -> None:
        """Make the kernel hold ``desired``, atomically per prefix; idempotent."""

    def reconcile(self, desired: Desired) -> list[str]:
        """Compare the kernel with ``desired``, repair drift, return what was repaired."""

    def heartbeat(self) -> None:
        """Tell the kernel side the control plane is alive (bpf: stale_after fail-open)."""

    def path_totals(self) -> dict:
        """Packets and bytes the plane itself steered over each path, {path name: Totals}
        (bpf: its per-path counters; fib: none of its own, {})."""

    def stop(self) -> None:
        """Clean stop: remove what pathsteer installed and restore what it replaced."""

    def close(self) -> None:
        """Let go without restoring (a hand-over to the next plane, or after stop): fds closed,
        what is installed stays."""
