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
"""

from __future__ import annotations

import errno
import ipaddress
import secrets
import socket
from dataclasses import dataclass

from pathsteer.errors import PathsteerError, UsageError

RULE_PRIORITY = 9000  # before main (32766); after local (0)
PIN_PROTOCOL = 83  # RTPROT_PATHSTEER, as on the data plane's routes (unassigned in rt_protos)
SLOT_RANGE = (0x70730000, 0x70730FFF)  # "ps" + slot: the daemon's pins, path i at base + i
ONESHOT_RANGE = (0x70731000, 0x7073FFFF)  # random picks of one-shot runs
RTNH_F_ONLINK = 4  # include/uapi/linux/rtnetlink.h


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


def _used_tables_and_marks(ipr, family: int) -> set[int]:
    used: set[int] = set()
    for rule in ipr.get_rules(family=family):
        used.add(rule.get("table") or 0)
        used.add(rule.get_attr("FRA_TABLE") or 0)
        used.add(rule.get_attr("FRA_FWMARK") or 0)
    return used


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
            raise UsageError(f"paths: at most {SLOT_RANGE[1] - SLOT_RANGE[0] + 1} probed paths")
        table = SLOT_RANGE[0] + slot if table is None else table
        mark = SLOT_RANGE[0] + slot if mark is None else mark
    if gateway is None:
        return Pin(interface, ifindex, None, version, None, None)
    gw = ipaddress.ip_address(gateway)
    if gw.version != version:
        raise UsageError(f"--gateway: {gateway} is IPv{gw.version}; the target is IPv{version}")
    from pyroute2 import IPRoute  # imported here: the CLI stays quick when it is not needed

    family = _family(version)
    with IPRoute() as ipr:
        if table is None or mark is None:
            used = _used_tables_and_marks(ipr, family)
            while True:
                pick = secrets.randbelow(ONESHOT_RANGE[1] - ONESHOT_RANGE[0]) + ONESHOT_RANGE[0]
                if pick not in used:
                    break
            table = pick if table is None else table
            mark = pick if mark is None else mark
        pin = Pin(interface, ifindex, str(gw), version, table, mark)
        try:
            ipr.route(
                "replace",
                family=family,
                dst="0.0.0.0/0" if version == 4 else "::/0",
                table=table,
                gateway=str(gw),
                oif=ifindex,
                flags=RTNH_F_ONLINK,
                proto=PIN_PROTOCOL,
            )
            ipr.rule("add", family=family, table=table, fwmark=mark, fwmask=0xFFFFFFFF, priority=RULE_PRIORITY,
                     protocol=PIN_PROTOCOL)
        except Exception as exc:  # pyroute2 raises NetlinkError (an OSError) with the errno
            remove(pin)
            code = getattr(exc, "code", 0)
            if code == errno.EPERM:
                raise UsageError("pinning a probe to a gateway needs root (CAP_NET_ADMIN)") from None
            raise PathsteerError(
                f"cannot pin to {gateway} on {interface}: {exc}"
            ) from None
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
    from pyroute2 import IPRoute

    family = _family(pin.version)
    with IPRoute() as ipr:
        try:
            ipr.route(
                "replace", family=family, dst="0.0.0.0/0" if pin.version == 4 else "::/0",
                table=pin.table, gateway=pin.gateway, oif=pin.ifindex, flags=RTNH_F_ONLINK, proto=PIN_PROTOCOL,
            )
        except Exception:
            return False
        try:
            ipr.rule("add", family=family, table=pin.table, fwmark=pin.mark, fwmask=0xFFFFFFFF, priority=RULE_PRIORITY,
                     protocol=PIN_PROTOCOL)
        except Exception as exc:
            if getattr(exc, "code", 0) != errno.EEXIST:
                return False
    return True


def remove(pin: Pin) -> None:
    """Delete the rule and table route of ``pin`` (missing ones are fine)."""
    if pin.table is None:
        return
    from pyroute2 import IPRoute

    family = _family(pin.version)
    with IPRoute() as ipr:
        try:
            ipr.rule("del", family=family, table=pin.table, fwmark=pin.mark, fwmask=0xFFFFFFFF, priority=RULE_PRIORITY)
        except Exception:
            pass
        try:
            ipr.route(
                "del", family=family, dst="0.0.0.0/0" if pin.version == 4 else "::/0", table=pin.table
            )
        except Exception:
            pass


def _in_slots(value: int | None) -> bool:
    return value is not None and SLOT_RANGE[0] <= value <= SLOT_RANGE[1]


def leftovers() -> list[tuple[int, int, int | None]]:
    """(family, table, mark) of every daemon pin in this namespace: rules at our priority
    whose table or mark is in ``SLOT_RANGE``, and tables of that range holding routes."""
    from pyroute2 import IPRoute

    found: set[tuple[int, int, int | None]] = set()
    with IPRoute() as ipr:
        for family in (socket.AF_INET, socket.AF_INET6):
            for rule in ipr.get_rules(family=family):
                table = rule.get_attr("FRA_TABLE") or rule.get("table")
                mark = rule.get_attr("FRA_FWMARK")
                if rule.get_attr("FRA_PRIORITY") == RULE_PRIORITY and (_in_slots(table) or _in_slots(mark)):
                    found.add((family, table, mark))
            for route in ipr.get_routes(family=family):  # every table (a table filter would hide them)
                table = route.get_attr("RTA_TABLE") or route.get("table")
                if _in_slots(table):
                    found.add((family, table, None))
    return sorted(found, key=lambda f: (f[0], f[1], f[2] or 0))


def sweep() -> int:
    """Remove what a killed daemon left (every rule and table route of ``SLOT_RANGE``);
    returns how many rules and tables were removed. Call before pinning at slots."""
    from pyroute2 import IPRoute

    removed = 0
    with IPRoute() as ipr:
        for family, table, mark in leftovers():
            try:
                if mark is not None:
                    ipr.rule("del", family=family, table=table, fwmark=mark, fwmask=0xFFFFFFFF,
                             priority=RULE_PRIORITY)
                else:
                    for route in ipr.get_routes(family=family, table=table):
                        ipr.route("del", family=family, table=table, dst_len=route["dst_len"],
                                  dst=route.get_attr("RTA_DST"))
                removed += 1
            except Exception:  # gone meanwhile, or refused: the next start tries again
                pass
    return removed
