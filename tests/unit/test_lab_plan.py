"""The lab's plan as data: names, addresses, ip -batch commands, JSON (no root needed)."""

from __future__ import annotations

import ipaddress

import pytest

from pathsteer.errors import UsageError
from pathsteer_lab import build
from pathsteer_lab.topology import Topology, validate_name, validate_paths


def test_plan_names_and_addresses():
    t = Topology.plan("demo", 3)
    assert t.namespaces == {"client": "ps-demo-client", "router": "ps-demo-router",
                            "server": "ps-demo-server", "attacker": "ps-demo-attacker"}
    assert [p.name for p in t.paths] == ["p1", "p2", "p3"]
    p2 = t.path("p2")
    assert (p2.namespace, p2.router_interface, p2.gateway, p2.probe_address) == (
        "ps-demo-p2", "r-p2", "10.200.2.2", "10.201.2.2")
    assert p2.gateway6 == "2001:db8:200:2::2" and p2.probe_address6 == "2001:db8:201:2::2"
    assert t.ingress_interface == "r-c"
    assert t.control_socket == "/run/pathsteer/lab/demo/ctl.sock"


def test_server_addresses_lie_in_distinct_prefixes():
    t = Topology.plan("demo", 2)
    for addrs, prefixes in ((t.server_addresses, t.prefixes), (t.server_addresses6, t.prefixes6)):
        nets = [ipaddress.ip_network(p) for p in prefixes]
        assert len(nets) >= 2 and not nets[0].overlaps(nets[1])
        for a, n in zip(addrs, nets):
            assert ipaddress.ip_address(a) in n


def test_all_subnets_are_distinct_at_64_paths():
    t = Topology.plan("big", 64)
    nets = [ipaddress.ip_network(f"{p.gateway}/24", strict=False) for p in t.paths]
    nets += [ipaddress.ip_network(f"{p.probe_address}/24", strict=False) for p in t.paths]
    nets += [ipaddress.ip_network(f"{p.gateway6}/64", strict=False) for p in t.paths]
    nets += [ipaddress.ip_network(f"{p.probe_address6}/64", strict=False) for p in t.paths]
    nets += [ipaddress.ip_network(n) for n in ("10.200.0.0/24", "10.250.0.0/24", "2001:db8:200::/64",
                                                "2001:db8:250::/64", *t.prefixes, *t.prefixes6)]
    for i, a in enumerate(nets):
        for b in nets[i + 1:]:
            assert a.version != b.version or not a.overlaps(b), (a, b)


@pytest.mark.parametrize("name", ["", "Demo", "-x", "a" * 33, "a b", "a/b", "x!"])
def test_invalid_names(name):
    with pytest.raises(UsageError, match="lab name"):
        validate_name(name)


@pytest.mark.parametrize("value", ["0", "65", "abc", "-1", "1.5", ""])
def test_invalid_path_counts(value):
    with pytest.raises(UsageError, match="--paths"):
        validate_paths(value)


def test_unknown_path_names_the_path():
    with pytest.raises(UsageError, match="'p7'"):
        Topology.plan("demo", 3).path("p7")


def test_json_round_trip():
    t = Topology.plan("demo", 4)
    assert Topology.from_json(t.to_json()) == t
    d = t.to_json()
    for key in ("namespaces", "paths", "client_address", "attacker_address", "server_addresses",
                "prefixes", "ingress_interface"):
        assert key in d


def test_every_veth_is_created_inside_a_namespace_with_its_peer_in_another():
    t = Topology.plan("demo", 3)
    cmds = build.veth_commands(t)
    assert set(cmds) <= set(t.all_namespaces())
    lines = [c for cs in cmds.values() for c in cs]
    assert len(lines) == 2 + 2 * 3
    for line in lines:
        assert line.startswith("link add name ") and " type veth peer name " in line
        assert " netns ps-demo-" in line


def test_server_replies_follow_the_incoming_path():
    t = Topology.plan("demo", 2)
    s = build.route_commands(t)[t.server]
    assert "rule add fwmark 2 lookup 102 pref 1000" in s
    assert "-6 rule add fwmark 2 lookup 102 pref 1000" in s
    assert "route add default via 10.201.2.1 dev s-p2 table 102" in s
    nft = build.server_nft(t)
    assert '"s-p1" : 1' in nft and '"s-p2" : 2' in nft
    assert "type route hook output" in nft and "meta mark set ct mark" in nft
