"""Steering's pre-flight reads interface addresses over the project's own rtnetlink socket
(no ``ip -j`` subprocess): both families, the subnets, only the interface asked for."""

from __future__ import annotations

import ipaddress

import pytest

from pathsteer.config import parse_config
from pathsteer.errors import UsageError
from pathsteer.steering import preflight


def test_interface_networks_over_netlink(netns):
    nets = preflight.interface_networks(netns.name)
    assert ipaddress.ip_interface("192.0.2.1/24") in nets and ipaddress.ip_interface("2001:db8::1/64") in nets
    assert all(n.ip != ipaddress.ip_address("192.0.2.2") for n in nets)  # the peer's are not ours
    assert preflight.interface_networks("lo") and preflight.interface_networks("no-such-if") == []


def _config(interface: str, gateway: str) -> dict:
    return {"paths": [{"name": "p1", "interface": interface, "gateway": gateway,
                       "probe": {"targets": ["198.51.100.1"]}}],
            "destinations": [{"prefix": "198.51.100.0/24", "paths": ["p1"]}]}


def test_check_names_a_gateway_off_the_interfaces_subnets(netns):
    preflight.check(parse_config(_config(netns.name, "192.0.2.2")))
    with pytest.raises(UsageError) as e:
        preflight.check(parse_config(_config(netns.name, "10.9.9.9")))
    assert str(e.value) == (f"paths[0].gateway: 10.9.9.9 is unreachable: not on a subnet of {netns.name} "
                            "(its IPv4 addresses: 192.0.2.1/24)")
