"""Probe pins through pathsteer's own rtnetlink socket (`pathsteer.netlink`), in a fresh
namespace: what `ip` shows of them, the sweep of what a killed daemon left (a rule whose route
is gone, a table route whose rule is gone, both families), and nothing of others' touched."""

from __future__ import annotations

import socket

from pathsteer import netlink as nl
from pathsteer.probe import pinning


def _rules(veth, family: str) -> list[str]:
    out = veth.in_ns("ip", family, "rule", "show", "priority", str(pinning.RULE_PRIORITY)).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def test_install_shows_in_ip_and_remove_leaves_nothing(netns):
    pin = pinning.install(netns.name, netns.peer_addr4, 4, slot=3)
    table = pinning.SLOT_RANGE[0] + 3
    assert (pin.table, pin.mark) == (table, table)
    rules = _rules(netns, "-4")
    assert rules == [f"{pinning.RULE_PRIORITY}:\tfrom all fwmark {table:#x} lookup {table} proto 83"], rules
    route = netns.in_ns("ip", "-4", "route", "show", "table", str(table)).stdout.strip()
    assert route == f"default via {netns.peer_addr4} dev {netns.name} proto 83 onlink", route
    # ensure() on a pin in place changes nothing (the rule is kept, not duplicated)
    assert pinning.ensure(pin) and _rules(netns, "-4") == rules
    # the kernel drops the route when the link goes down; ensure() puts it back once it is up
    netns.in_ns("ip", "link", "set", "dev", netns.name, "down")
    assert netns.in_ns("ip", "-4", "route", "show", "table", str(table)).stdout.strip() == ""
    assert not pinning.ensure(pin)  # ENETDOWN while the link is down
    netns.in_ns("ip", "link", "set", "dev", netns.name, "up")
    assert pinning.ensure(pin)
    assert netns.in_ns("ip", "-4", "route", "show", "table", str(table)).stdout.strip() == route
    pinning.remove(pin)
    assert _rules(netns, "-4") == []
    assert netns.in_ns("ip", "-4", "route", "show", "table", str(table)).stdout.strip() == ""


def test_sweep_removes_every_leftover_of_the_range_and_nothing_else(netns):
    base = pinning.SLOT_RANGE[0]
    pinning.install(netns.name, netns.peer_addr6, 6, slot=0)
    pinning.install(netns.name, netns.peer_addr4, 4, slot=1)
    # a rule whose route is gone, and a route whose rule is gone (a kill between the two steps)
    netns.in_ns("ip", "-4", "route", "flush", "table", str(base + 1))
    netns.in_ns("ip", "-4", "route", "add", "default", "via", netns.peer_addr4, "table", str(base + 200),
                "proto", "83")
    # others': a rule at our priority outside the range, a one-shot pin, a route in main
    netns.in_ns("ip", "rule", "add", "priority", str(pinning.RULE_PRIORITY), "fwmark", "0x99", "lookup", "99")
    oneshot = pinning.install(netns.name, netns.peer_addr4, 4)
    assert pinning.ONESHOT_RANGE[0] <= oneshot.table <= pinning.ONESHOT_RANGE[1]
    netns.in_ns("ip", "route", "add", "198.51.100.0/24", "via", netns.peer_addr4, "proto", "83")

    found = pinning.leftovers()
    assert (socket.AF_INET6, base, base) in found and (socket.AF_INET6, base, None) in found
    assert (socket.AF_INET, base + 1, base + 1) in found and (socket.AF_INET, base + 200, None) in found
    assert all(pinning.SLOT_RANGE[0] <= t <= pinning.SLOT_RANGE[1] for _, t, _ in found), found
    assert pinning.sweep() == 4  # 2 rules (v6, v4), 2 routes (v6 slot 0, v4 slot 200)
    assert pinning.leftovers() == []
    rules4 = _rules(netns, "-4")
    assert len(rules4) == 2 and any("0x99" in r for r in rules4) and any(f"{oneshot.mark:#x}" in r for r in rules4)
    assert _rules(netns, "-6") == []
    assert "198.51.100.0/24" in netns.in_ns("ip", "route", "show").stdout
    assert netns.in_ns("ip", "-4", "route", "show", "table", str(oneshot.table)).stdout.strip()
    pinning.remove(oneshot)


def test_neighbour_dump_names_the_gateway_state(netns):
    netns.in_ns("ping", "-c", "1", "-W", "1", "-q", netns.peer_addr4)
    sock = nl.RouteSocket()
    try:
        states = nl.dump_neighbours(sock, socket.if_nametoindex(netns.name))
        rules = nl.dump_rules(sock, socket.AF_INET)
    finally:
        sock.close()
    assert states.get(netns.peer_addr4) in ("reachable", "stale", "delay", "probe"), states
    assert all(r.fwmark is None for r in rules)  # the default rules carry no mark
