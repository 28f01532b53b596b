"""Pinning a probe to a path: out of one interface, through one gateway, whatever the main
routing table says about the target.

How: the probe's socket carries a mark (SO_MARK) and is bound to the interface
(SO_BINDTODEVICE). An ``ip rule fwmark MARK lookup TABLE`` sends marked packets to a
per-path table holding one route, ``default via GW dev IF onlink``. The rule comes before
the main table, so routes pathsteer (or anyone) puts in main for the target do not move
the probe; the bind makes the kernel refuse any route out of another interface.

Why not SO_BINDTODEVICE alone: with a device bound, the IPv4 FIB skips routes through
other devices (fib_table_lookup checks flowi4_oif) and, when none is left, assumes the
target is on-link (ip_route_output_key_hash_rcu: "Apparently, routing tables are wrong.
Assume that the destination is on link.") — it would ARP for the target instead of
sending to the gateway. So without a gateway we bind only (the kernel's routes through
the interface, else on-link); with one we add the table.

``onlink`` makes any gateway acceptable to the kernel (RTNH_F_ONLINK); one nobody answers
for is then a network condition (neighbour resolution fails, probes are lost and counted),
not a configuration error.

Numbers (documented, so a restart finds what a killed run left): rules at priority 9000 with
protocol 83 (pathsteer's, as on its routes), table = mark. The daemon's probe engine owns
``SLOT_RANGE``: path i of its config is pinned at table/mark 0x70730000 + i, and at start it
sweeps every rule and table route of that range left by a run that was killed (one daemon
per network namespace). One-shot runs (``pathsteer probe``) pick at random from
``ONESHOT_RANGE`` and are never swept.

Everything goes through `pathsteer.netlink` (one short-lived NETLINK_ROUTE socket per call,
synchronous and sub-millisecond: callable from the daemon's event loop).
"""

from __future__ import annotations

import errno
import ipaddress
import secrets
import socket
from dataclasses import dataclass

from pathsteer import netlink as nl
from pathsteer.errors import PathsteerError, UsageError

RULE_PRIORITY = 9000  # before main (32766); after local (0)
PIN_PROTOCOL = 83  # RTPROT_PATHSTEER, as on the data plane's routes (unassigned in rt_protos)
SLOT_RANGE = (0x70730000, 0x70730FFF)  # "ps" + slot: the daemon's pins, path i at base + i
MAX_PATHS = SLOT_RANGE[1] - SLOT_RANGE[0] + 1  # 4096 (the config refuses more: paths)
ONESHOT_RANGE = (0x70731000, 0x7073FFFF)  # random picks of one-shot runs


@dataclass(frozen=True)
class Pin:
    """How one path's probes are pinned. ``table``/``mark`` are None without a gateway."""

    interface: str
    ifindex: int
    gateway: str | None
    version: int
    table: int | None
    mark: int | None


def interface_index(name: str, field: str = "--interface") -> int:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise UsageError(f"{field}: unknown interface {name!r}") from None


def _family(version: int) -> int:
    return socket.AF_INET if version == 4 else socket.AF_INET6


def _used_tables_and_marks(sock: nl.RouteSocket, family: int) -> set[int]:
    used: set[int] = set()
    for rule in nl.dump_rules(sock, family):
        used.add(rule.table)
        used.add(rule.fwmark or 0)
    return used


def _rule(pin: Pin, *, delete: bool = False) -> bytes:
    return nl.encode_rule(_family(pin.version), RULE_PRIORITY, pin.table, PIN_PROTOCOL, fwmark=pin.mark,
                          delete=delete)


def _put(sock: nl.RouteSocket, pin: Pin) -> None:
    """The table route (replaced) and the rule (kept when it is there) of ``pin``."""
    sock.request(nl.encode_gateway_route(_family(pin.version), pin.table, PIN_PROTOCOL, pin.gateway, pin.ifindex),
                 f"pin route table {pin.table} via {pin.gateway}")
    try:
        sock.request(_rule(pin), f"pin rule fwmark {pin.mark:#x} lookup {pin.table}")
    except nl.NetlinkError as exc:
        if exc.errno != errno.EEXIST:
            raise


def install(
    interface: str,
    gateway: str | None,
    version: int,
    *,
    table: int | None = None,
    mark: int | None = None,
    slot: int | None = None,
) -> Pin:
    """Add the rule and route that pin probes through ``gateway`` on ``interface``: at
    ``slot`` of the daemon's range, at ``table``/``mark``, or at a free random pick."""
    ifindex = interface_index(interface)
    if slot is not None:
        if not 0 <= slot <= SLOT_RANGE[1] - SLOT_RANGE[0]:
            raise ValueError(f"slot {slot}: at most {SLOT_RANGE[1] - SLOT_RANGE[0] + 1} probed paths")
        table = SLOT_RANGE[0] + slot if table is None else table
        mark = SLOT_RANGE[0] + slot if mark is None else mark
    if gateway is None:
        return Pin(interface, ifindex, None, version, None, None)
    gw = ipaddress.ip_address(gateway)
    if gw.version != version:
        raise ValueError(f"gateway {gateway} is IPv{gw.version}; the target is IPv{version}")
    family = _family(version)
    sock = nl.RouteSocket()
    try:
        if table is None or mark is None:
            used = _used_tables_and_marks(sock, family)
            while True:
                pick = secrets.randbelow(ONESHOT_RANGE[1] - ONESHOT_RANGE[0]) + ONESHOT_RANGE[0]
                if pick not in used:
                    break
            table = pick if table is None else table
            mark = pick if mark is None else mark
        pin = Pin(interface, ifindex, str(gw), version, table, mark)
        try:
            _put(sock, pin)
        except nl.NetlinkError as exc:
            _remove(sock, pin)
            if exc.errno == errno.EPERM:
                raise UsageError("pinning a probe to a gateway needs root (CAP_NET_ADMIN)") from None
            raise PathsteerError(f"cannot pin to {gateway} on {interface}: {exc}") from None
    finally:
        sock.close()
    return pin


def ensure(pin: Pin) -> bool:
    """Put back the route (and rule) of ``pin`` if they are gone; True when they are in place.

    The kernel deletes a path's table route when its interface goes down (IPv4 and IPv6
    flush routes through a device on NETDEV_DOWN), and once the link is back the marked
    probes would fall through to the main table. The engine calls this while a path fails;
    while the link is still down the kernel refuses the route (ENETDOWN) and we try again
    later."""
    if pin.table is None:
        return True
    sock = nl.RouteSocket()
    try:
        _put(sock, pin)
    except nl.NetlinkError:
        return False
    finally:
        sock.close()
    return True


def _remove(sock: nl.RouteSocket, pin: Pin) -> None:
    family = _family(pin.version)
    try:
        sock.request(_rule(pin, delete=True), "pin rule")
    except nl.NetlinkError:
        pass
    for route in nl.dump_routes(sock, pin.table, family=family):
        try:
            sock.request(nl.encode_route_delete_exact(route), "pin route")
        except nl.NetlinkError:
            pass


def remove(pin: Pin) -> None:
    """Delete the rule and table route of ``pin`` (missing ones are fine)."""
    if pin.table is None:
        return
    sock = nl.RouteSocket()
    try:
        _remove(sock, pin)
    finally:
        sock.close()


def _in_slots(value: int | None) -> bool:
    return value is not None and SLOT_RANGE[0] <= value <= SLOT_RANGE[1]


SWEEP_SLOTS = 256  # tables looked into beyond those a rule names: slots 0..255 (or as many as paths)


def _leftovers(sock: nl.RouteSocket, slots: int = SWEEP_SLOTS) -> tuple[list[nl.RuleMsg], list[nl.RouteMsg]]:
    """Our rules, and the routes of the slot tables they name or that the first ``slots`` slots
    use: one dump per table (the kernel filters by table; a dump of every table would walk
    a million data-plane routes in Python)."""
    rules, routes = [], []
    for family in (socket.AF_INET, socket.AF_INET6):
        mine = [r for r in nl.dump_rules(sock, family)
                if r.priority == RULE_PRIORITY and (_in_slots(r.table) or _in_slots(r.fwmark))]
        rules += mine
        tables = {r.table for r in mine if _in_slots(r.table)}
        tables |= set(range(SLOT_RANGE[0], min(SLOT_RANGE[0] + slots, SLOT_RANGE[1] + 1)))
        for table in sorted(tables):
            routes += nl.dump_routes(sock, table, family=family)
    return rules, routes


def leftovers(slots: int = SWEEP_SLOTS) -> list[tuple[int, int, int | None]]:
    """(family, table, mark) of every daemon pin in this namespace: rules at our priority
    whose table or mark is in ``SLOT_RANGE``, and the tables of that range holding routes
    (those the rules name and the first ``slots``)."""
    sock = nl.RouteSocket()
    try:
        rules, routes = _leftovers(sock, slots)
    finally:
        sock.close()
    found = {(r.family, r.table, r.fwmark) for r in rules} | {(r.family, r.table, None) for r in routes}
    return sorted(found, key=lambda f: (f[0], f[1], f[2] or 0))


def sweep(slots: int = SWEEP_SLOTS) -> int:
    """Remove what a killed daemon left (the rules and table routes `leftovers` finds);
    returns how many rules and routes were removed. Call before pinning at slots."""
    removed = 0
    sock = nl.RouteSocket()
    try:
        rules, routes = _leftovers(sock, slots)
        for rule in rules:
            try:
                sock.request(nl.encode_rule(rule.family, rule.priority, rule.table, rule.protocol,
                                            fwmark=rule.fwmark, fwmask=rule.fwmask if rule.fwmask is not None
                                            else 0xFFFFFFFF, delete=True), "pin rule")
                removed += 1
            except nl.NetlinkError:  # gone meanwhile, or refused: the next start tries again
                pass
        for route in routes:
            try:
                sock.request(nl.encode_route_delete_exact(route), "pin route")
                removed += 1
            except nl.NetlinkError:
                pass
    finally:
        sock.close()
    return removed
