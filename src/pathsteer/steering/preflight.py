"""Checks that need the running system, made before anything is touched: every interface a
path or the bpf data plane names exists in this network namespace, and every gateway is on a
subnet of its path's interface (or link-local). Errors name the field: ``paths[1].gateway: ...``."""

from __future__ import annotations

import ipaddress
import socket

from pathsteer.config import Config
from pathsteer.errors import UsageError


def interface_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False


def interface_networks(name: str) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """The addresses (with their subnets) of ``name``, dumped over rtnetlink."""
    from pathsteer import netlink as nl
    try:
        index = socket.if_nametoindex(name)
    except OSError:
        return []
    sock = nl.RouteSocket()
    try:
        return nl.dump_addresses(sock, index)
    finally:
        sock.close()


def gateway_reachable(gateway, networks) -> bool:
    if gateway.version == 6 and gateway.is_link_local:
        return True
    return any(n.version == gateway.version and gateway in n.network for n in networks)


def check(config: Config) -> None:
    """Raise `UsageError` naming the first field that does not fit the system."""
    dp = config.dataplane
    if dp is not None and dp.mode == "bpf":
        for i, name in enumerate(dp.ingress):
            if not interface_exists(name):
                raise UsageError(f"dataplane.ingress[{i}]: {name!r} is not an interface in this network namespace")
    for i, p in enumerate(config.paths):
        if not interface_exists(p.interface):
            raise UsageError(f"paths[{i}].interface: {p.interface!r} is not an interface in this network namespace")
        nets = interface_networks(p.interface)
        for field, gw in (("gateway", p.gateway), ("gateway6", p.gateway6)):
            if gw is not None and not gateway_reachable(gw, nets):
                have = ", ".join(str(n) for n in nets if n.version == gw.version) or "none"
                raise UsageError(f"paths[{i}].{field}: {gw} is unreachable: not on a subnet of {p.interface} "
                                 f"(its IPv{gw.version} addresses: {have})")
