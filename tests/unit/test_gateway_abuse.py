"""Abuse signals in: which gateway clients become guard blocks (pure)."""

from __future__ import annotations

import ipaddress

import pytest

from pathsteer.gateways.abuse import AbuseRule, blocks, network_of
from pathsteer.gateways.records import Record
from pathsteer.gateways.window import UsageWindow

net = ipaddress.ip_network
RULE = AbuseRule(threshold=100, ttl_s=600)


def offenders_of(records: list[tuple[str, int]], threshold: int = 100) -> list[tuple[str, int, str]]:
    w = UsageWindow()
    for client, status in records:
        w.add(Record(0.0, client, "10.0.0.1:80", status=status), 1000.0)
    return w.offenders(threshold, now=1000.5)


def test_a_client_over_the_threshold_is_blocked_with_the_gateways_reason():
    offenders = offenders_of([("198.51.100.66", 401)] * 120 + [("198.51.100.7", 200)] * 500)
    made, spared = blocks("edge", offenders, {}, RULE, allow=[], protected=[], blocked=[])
    assert [(str(b.cidr), b.client, b.reason) for b in made] == [("198.51.100.66/32", "198.51.100.66",
                                                                   "gateway:edge 401×120/10s")]
    assert spared == []


def test_allow_listed_protected_and_already_blocked_clients_are_never_blocked_again():
    offenders = [("10.200.0.2", 150, "401×150/10s"), ("10.200.1.2", 150, "403×150/10s"),
                 ("192.0.2.9", 150, "429×150/10s"), ("2001:db8:250::9", 120, "401×120/10s")]
    made, spared = blocks("edge", offenders, {}, RULE, allow=[net("10.200.0.0/24")],
                          protected=[net("10.200.1.2/32")], blocked=[net("192.0.2.0/24")])
    assert [str(b.cidr) for b in made] == ["2001:db8:250::/64"]
    assert [(s.client, s.why) for s in spared] == [
        ("10.200.0.2", "in the guard's allow list (10.200.0.0/24)"),
        ("10.200.1.2", "a gateway, path or upstream address (10.200.1.2/32): never blocked")]


def test_a_block_wider_than_the_client_never_swallows_a_protected_address():
    """An IPv6 client's /64 holds a path gateway: the block would cut the path — spared."""
    made, spared = blocks("edge", [("2001:db8:200:1::99", 200, "401×200/10s")], {}, RULE, allow=[],
                          protected=[net("2001:db8:200:1::2/128")], blocked=[])
    assert made == [] and spared[0].why.startswith("a gateway, path or upstream address")


def test_request_rate_over_max_rps_blocks_too():
    rule = AbuseRule(threshold=100, max_rps=50)
    made, _ = blocks("edge", [], {"198.51.100.5": 80.4, "198.51.100.6": 10}, rule, allow=[], protected=[], blocked=[])
    assert [(str(b.cidr), b.reason) for b in made] == [("198.51.100.5/32", "gateway:edge 80 req/s > 50/s")]


def test_clients_of_one_ipv6_64_make_one_block_and_mapped_ipv4_is_ipv4():
    made, _ = blocks("edge", [("2001:db8:250::1", 120, "x"), ("2001:db8:250::2", 120, "y"),
                              ("::ffff:198.51.100.66", 120, "z")], {}, RULE, allow=[], protected=[], blocked=[])
    assert [str(b.cidr) for b in made] == ["2001:db8:250::/64", "198.51.100.66/32"]


def test_a_client_that_is_not_an_address_is_spared_and_said():
    made, spared = blocks("edge", [("unknown", 120, "x")], {}, RULE, allow=[], protected=[], blocked=[])
    assert made == [] and [(s.client, s.why) for s in spared] == [("unknown", "not an IP address")]
    assert network_of("-", RULE) is None


@pytest.mark.parametrize("kw, message", [
    ({"threshold": 0}, "abuse threshold 0 must be 1 or more"),
    ({"max_rps": 0}, "abuse max_rps 0 must be above 0"),
    ({"ttl_s": 0}, "abuse ttl 0 s must be above 0"),
    ({"prefix_v6": 8}, r"abuse prefix lengths /32 \(8..32\), /8 \(16..128\)"),
])
def test_a_bad_rule_is_one_line(kw, message):
    with pytest.raises(ValueError, match=message):
        AbuseRule(**kw)
