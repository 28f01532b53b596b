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
"""

from __future__ import annotations

import errno
import ipaddress
import secrets
import socket
from dataclasses import dataclass

from pathsteer.errors import PathsteerError, UsageError

RULE_PRIORITY = 9000  # before main (32766); after local (0)
AUTO_RANGE = (0x70730000, 0x7073FFFF)  # "ps" + 16 bits: tables and marks picked at start
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
) -> Pin:
    """Add the rule and route that pin probes through ``gateway`` on ``interface``."""
    ifindex = interface_index(interface)
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
                pick = secrets.randbelow(AUTO_RANGE[1] - AUTO_RANGE[0]) + AUTO_RANGE[0]
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
            )
            ipr.rule("add", family=family, table=table, fwmark=mark, fwmask=0xFFFFFFFF, priority=RULE_PRIORITY)
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
                table=pin.table, gateway=pin.gateway, oif=pin.ifindex, flags=RTNH_F_ONLINK,
            )
        except Exception:
            return False
        try:
            ipr.rule("add", family=family, table=pin.table, fwmark=pin.mark, fwmask=0xFFFFFFFF, priority=RULE_PRIORITY)
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
