"""What ExaBGP's API process reads (``encoder json``): session states, received updates, acks.

Pure: one line in, one message out (`parse`). ExaBGP 5 writes one JSON object per line, and
``done`` / ``error`` for each command it took (``exabgp.api.ack``).

    {"type": "state", "neighbor": {"address": {"local": L, "peer": P}, "state": "up", ...}}
    {"type": "update", "neighbor": {"address": {"peer": P}, "message": {"update": {
        "attribute": {"community": [[65000, 100]], "large-community": [[65000, 7, 1]], ...},
        "announce": {"ipv4 unicast": {"NEXTHOP": [{"nlri": "192.0.2.0/24"}, ...]}},
        "withdraw": {"ipv4 unicast": [{"nlri": "192.0.2.0/24"}]}}}}}
    {"type": "update", ... "message": {"eor": {"afi": "ipv4", "safi": "unicast"}}}
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field

from pathsteer.routes import Prefix

FAMILIES = ("ipv4 unicast", "ipv6 unicast")


@dataclass(frozen=True)
class Ack:
    ok: bool


@dataclass(frozen=True)
class State:
    peer: str
    state: str  # connected | up | down
    reason: str = ""


@dataclass(frozen=True)
class Update:
    peer: str
    announced: tuple[Prefix, ...] = ()
    withdrawn: tuple[Prefix, ...] = ()
    communities: frozenset[tuple[int, ...]] = field(default_factory=frozenset)  # (A, B) and (A, B, C)
    med: int | None = None
    as_path: tuple[int, ...] = ()
    eor: bool = False


@dataclass(frozen=True)
class Other:
    kind: str  # a message pathsteer does not use (notification, keepalive, ...)


@dataclass(frozen=True)
class Garbage:
    line: str
    why: str


Message = Ack | State | Update | Other | Garbage


def _prefixes(items, bad: list[str]) -> list[Prefix]:
    out = []
    for item in items or ():
        text = item.get("nlri") if isinstance(item, dict) else item
        try:
            out.append(ipaddress.ip_network(text, strict=False))
        except (TypeError, ValueError):
            bad.append(repr(text))
    return out


def _as_path(attrs: dict) -> tuple[int, ...]:
    path = attrs.get("as-path")
    out: list[int] = []
    if isinstance(path, list):
        out = [a for a in path if isinstance(a, int)]
    elif isinstance(path, dict):
        for seg in path.values():
            if isinstance(seg, dict) and isinstance(seg.get("value"), list):
                out.extend(a for a in seg["value"] if isinstance(a, int))
    return tuple(out)


def _communities(attrs: dict) -> frozenset[tuple[int, ...]]:
    out = set()
    for key, size in (("community", 2), ("large-community", 3)):
        for c in attrs.get(key) or ():
            if isinstance(c, list | tuple) and len(c) == size and all(isinstance(x, int) for x in c):
                out.add(tuple(c))
    return frozenset(out)


def parse(line: str) -> Message:
    """One line from ExaBGP; never raises (garbage comes back as `Garbage`)."""
    text = line.strip()
    if text in ("done", "error"):
        return Ack(text == "done")
    try:
        doc = json.loads(text)
    except ValueError:
        return Garbage(text[:200], "not JSON")
    if not isinstance(doc, dict):
        return Garbage(text[:200], "not a JSON object")
    kind = doc.get("type")
    neighbor = doc.get("neighbor") if isinstance(doc.get("neighbor"), dict) else {}
    address = neighbor.get("address") if isinstance(neighbor.get("address"), dict) else {}
    peer = str(address.get("peer") or neighbor.get("ip") or "")
    if kind == "state":
        return State(peer, str(neighbor.get("state") or ""), str(neighbor.get("reason") or ""))
    if kind != "update":
        return Other(str(kind))
    message = neighbor.get("message") if isinstance(neighbor.get("message"), dict) else {}
    if "eor" in message:
        return Update(peer, eor=True)
    update = message.get("update") if isinstance(message.get("update"), dict) else None
    if update is None:
        return Garbage(text[:200], "an update without 'update'")
    attrs = update.get("attribute") if isinstance(update.get("attribute"), dict) else {}
    bad: list[str] = []
    announced: list[Prefix] = []
    for family, by_nexthop in (update.get("announce") or {}).items():
        if family in FAMILIES and isinstance(by_nexthop, dict):
            for items in by_nexthop.values():
                announced.extend(_prefixes(items, bad))
    withdrawn: list[Prefix] = []
    for family, items in (update.get("withdraw") or {}).items():
        if family in FAMILIES:
            withdrawn.extend(_prefixes(items, bad))
    if bad and not announced and not withdrawn:
        return Garbage(text[:200], f"no prefix could be read ({', '.join(bad[:3])})")
    med = attrs.get("med")
    return Update(peer, tuple(announced), tuple(withdrawn), _communities(attrs),
                  med if isinstance(med, int) else None, _as_path(attrs))
