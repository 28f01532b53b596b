"""Config: the ``bgp`` section (issue 10, a fleet over BGP via ExaBGP) loads with its defaults;
every mistake is refused with one line naming the field and the value (exit 2); the prefix
filters and communities it holds parse and match as documented."""

from __future__ import annotations

import ipaddress
import subprocess
import sys

import pytest

from pathsteer.config import ConfigError, load_config, parse_config
from pathsteer.config.bgp import (PrefixFilter, announced_destinations, exabgp_command, format_community, parse_asn,
                                  parse_community, require_exabgp)

FULL = """
paths:
  - {name: p1, interface: eth1, gateway: 10.200.1.2, probe: {targets: [198.51.100.9]}}
  - {name: p2, interface: eth2, gateway: 10.200.2.2, gateway6: "2001:db8:2::2", probe: {targets: [198.51.100.10]}}
destinations:
  - {prefix: 198.51.100.0/24, paths: [p1, p2], announce: true}
  - {prefix: 203.0.113.0/24, paths: [p2, p1]}
  - {prefix: 192.0.2.0/24, paths: [p1], announce: false}
bgp:
  local_as: 65001
  router_id: 10.0.0.1
  local_address: 10.100.1.2
  hold_time: 30s
  peers:
    - address: 10.100.1.1
      as: 65000
      name: core1
      password: "s3cret key"
      hold_time: 9s
    - address: "2001:db8::1"
      as: "1.10"
      password_file: /etc/pathsteer/core2.md5
      port: 1179
      passive: true
      local_address: "2001:db8::2"
      learn: false
  announce:
    next_hop: 10.100.1.2
    med_per: 50us
    med_max: 1000
    loss_med: 20
    min_interval: 0s
    min_change: 5%
    communities: ["65001:100", "65001:100", "0:0"]
    large_communities: ["65001:9:1"]
  learn:
    enabled: true
    prefixes: ["10.0.0.0/8 le 24", "192.0.2.0/24", "2001:db8:100::/40 ge 48 le 64"]
    communities: ["65000:100", "65000:1:2"]
    max: 1000
    announce: true
    policy: failover
    paths: [p2]
    hysteresis: {hold_down: 2s}
    sla: {max_loss: 5%}
    rtt: ewma
  exabgp:
    command: /opt/exabgp/bin/exabgp
    restart_min: 500ms
    restart_max: 1m
"""


def test_full_example_loads_with_its_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(FULL)
    c = load_config(path)
    b = c.bgp
    assert "bgp" in c.sections
    assert (b.local_as, str(b.router_id), str(b.local_address), b.hold_time) == \
        (65001, "10.0.0.1", "10.100.1.2", 30)
    core1, core2 = b.peers
    assert (str(core1.address), core1.peer_as, core1.name, core1.password, core1.port, core1.passive, core1.learn) == \
        ("10.100.1.1", 65000, "core1", "s3cret key", 179, False, True)
    assert core1.md5 and core2.md5
    assert (str(core2.address), core2.peer_as, core2.name, core2.password_file, core2.port, core2.passive) == \
        ("2001:db8::1", 65546, "2001:db8::1", "/etc/pathsteer/core2.md5", 1179, True)
    assert (b.peer_hold_time(core1), b.peer_keepalive(core1), b.peer_hold_time(core2), b.peer_keepalive(core2)) == \
        (9, 3, 30, 10)
    assert str(b.peer_local_address(core1)) == "10.100.1.2" and str(b.peer_local_address(core2)) == "2001:db8::2"
    a = b.announce
    assert (a.enabled, str(a.next_hop), a.med_max, a.loss_med, a.min_interval, a.min_change) == \
        (True, "10.100.1.2", 1000, 20, 0.0, 0.05)
    assert a.med_per == pytest.approx(50e-6)
    assert a.communities == ["65001:100", "0:0"] and a.community_list == [(65001, 100), (0, 0)]
    assert a.large_communities == ["65001:9:1"] and a.large_community_list == [(65001, 9, 1)]
    assert a.med(0.010) == 200 and a.med(0.010, 2.0) == 240 and a.med(1.0) == 1000 and a.med(float("inf")) == 1000
    ln = b.learn
    assert ln.prefixes == ["10.0.0.0/8 le 24", "192.0.2.0/24", "2001:db8:100::/40 ge 48 le 64"]
    assert [str(f) for f in ln.filters] == ln.prefixes
    assert ln.community_set == frozenset({(65000, 100), (65000, 1, 2)})
    assert (ln.max, ln.announce, ln.policy, ln.paths, ln.rtt, ln.hysteresis.hold_down, ln.sla.max_loss) == \
        (1000, True, "failover", ["p2"], "ewma", 2.0, 5.0)
    assert b.learning_peers == [core1]
    d = ln.destination("10.1.0.0/16", ["p1", "p2"])
    assert (str(d.prefix), d.paths, d.policy, d.announce) == ("10.1.0.0/16", ["p2"], "failover", True)
    assert (b.exabgp.command, b.exabgp.restart_min, b.exabgp.restart_max) == ("/opt/exabgp/bin/exabgp", 0.5, 60.0)
    assert [c.destinations[i].announce for i in range(3)] == [True, None, False]
    assert [str(x.prefix) for x in announced_destinations(b, c.destinations)] == ["198.51.100.0/24"]
    dumped = b.peers[0].model_dump(by_alias=True)
    assert dumped["as"] == 65000 and "peer_as" not in dumped


STEER = {"paths": [{"name": "p1", "interface": "eth1", "gateway": "10.200.1.2",
                    "probe": {"targets": ["198.51.100.9"]}}],
         "destinations": [{"prefix": "198.51.100.0/24", "paths": ["p1"]}]}
PEER = {"address": "10.100.1.1", "as": 65000}


def bgp(**kw):
    return {**STEER, "bgp": {"local_as": 65001, "router_id": "10.0.0.1", "peers": [PEER], **kw}}


def peer(**kw):
    return bgp(peers=[{**PEER, **kw}])


def test_defaults():
    b = parse_config(bgp(), "c.yaml").bgp
    p = b.peers[0]
    assert (b.local_address, b.hold_time) == (None, 9)
    assert (p.name, p.password, p.password_file, p.hold_time, p.port, p.passive, p.local_address, p.learn, p.md5) == \
        ("10.100.1.1", None, None, None, 179, False, None, True, False)
    assert (b.peer_hold_time(p), b.peer_keepalive(p), b.peer_local_address(p)) == (9, 3, None)
    a = b.announce
    assert (a.enabled, a.next_hop, a.med_per, a.med_max, a.loss_med, a.min_interval, a.min_change) == \
        (True, "self", 100e-6, 65535, 100, 1.0, 0.1)
    assert (a.communities, a.large_communities) == ([], [])
    assert a.med(0.0123) == 123 and a.med(0.0123, 1.5) == 273
    ln = b.learn
    assert (ln.enabled, ln.prefixes, ln.communities, ln.max, ln.announce, ln.policy, ln.paths, ln.rtt) == \
        (False, None, None, 200_000, False, "lowest-latency", [], "robust")
    assert (ln.filters, ln.community_set) == ([], frozenset())
    assert b.learning_peers == []
    assert (b.exabgp.command, b.exabgp.restart_min, b.exabgp.restart_max) == (None, 1.0, 30.0)
    # No destination says announce: every one not saying false is announced.
    c = parse_config(bgp(), "c.yaml")
    assert [str(d.prefix) for d in announced_destinations(c.bgp, c.destinations)] == ["198.51.100.0/24"]
    off = parse_config(bgp(announce={"enabled": False}), "c.yaml")
    assert announced_destinations(off.bgp, off.destinations) == []


def test_accepted_forms():
    assert parse_config(bgp(local_as="65001"), "c.yaml").bgp.local_as == 65001
    assert parse_config(bgp(local_as="0.1"), "c.yaml").bgp.local_as == 1
    assert parse_config(bgp(local_as=4294967295), "c.yaml").bgp.local_as == 4294967295
    assert parse_config(bgp(hold_time="65535s"), "c.yaml").bgp.hold_time == 65535
    assert parse_config(bgp(hold_time=3), "c.yaml").bgp.hold_time == 3
    assert parse_config(bgp(hold_time="1m"), "c.yaml").bgp.hold_time == 60
    assert parse_config(peer(address="127.0.0.1"), "c.yaml").bgp.peers[0].address.is_loopback
    assert str(parse_config(peer(address="10.0.0.1"), "c.yaml").bgp.peers[0].address) == "10.0.0.1"  # = router_id
    assert parse_config(peer(password="x" * 80), "c.yaml").bgp.peers[0].password == "x" * 80
    assert parse_config(bgp(announce={"med_per": "1us"}), "c.yaml").bgp.announce.med_per == 1e-6
    assert parse_config(bgp(announce={"med_per": "1s"}), "c.yaml").bgp.announce.med_per == 1.0
    assert parse_config(bgp(announce={"next_hop": "2001:db8::9"}), "c.yaml").bgp.announce.next_hop.version == 6
    assert parse_config(bgp(learn={"communities": ["1:2"]}), "c.yaml").bgp.learn.community_set == {(1, 2)}
    # A learner-only router: announce on, nothing to announce (no destination says it).
    c = parse_config({**bgp(), "destinations": [{"prefix": "198.51.100.0/24", "paths": ["p1"], "announce": False}]},
                     "c.yaml")
    assert announced_destinations(c.bgp, c.destinations) == []


@pytest.mark.parametrize("data, message", [
    # AS numbers
    (bgp(local_as=0), "bgp.local_as: 0 is not an AS number: AS 0 is reserved"),
    (bgp(local_as=23456), "bgp.local_as: 23456 is AS_TRANS"),
    (bgp(local_as=-1), "bgp.local_as: -1 is not an AS number (1..4294967295)"),
    (bgp(local_as=4294967296), "bgp.local_as: 4294967296 is not an AS number (1..4294967295)"),
    (bgp(local_as="abc"), "bgp.local_as: 'abc' is not an AS number"),
    (bgp(local_as=True), "bgp.local_as: True is not an AS number"),
    (bgp(local_as=1.1), "bgp.local_as: 1.1 is not an AS number (1..4294967295; asdot goes in quotes"),
    (bgp(local_as="1.65536"), "bgp.local_as: '1.65536' is not an asdot AS number"),
    (peer(**{"as": 0}), "bgp.peers[0].as: 0 is not an AS number"),
    (peer(**{"as": "23456"}), "bgp.peers[0].as: '23456' is AS_TRANS"),
    (bgp(peers=[{"address": "10.100.1.1"}]), "bgp.peers[0].as: missing (required)"),
    ({**STEER, "bgp": {"router_id": "10.0.0.1", "peers": [PEER]}}, "bgp.local_as: missing (required)"),
    # router ids
    (bgp(router_id="0.0.0.0"), "bgp.router_id: '0.0.0.0' is not a usable router id"),
    (bgp(router_id="255.255.255.255"), "bgp.router_id: '255.255.255.255' is not a usable router id"),
    (bgp(router_id="1.2.3"), "bgp.router_id: '1.2.3' is not a router id"),
    (bgp(router_id="::1"), "bgp.router_id: '::1' is not a router id"),
    (bgp(router_id=167772161), "bgp.router_id: 167772161 is not a router id"),
    # peers
    (bgp(peers=[]), "bgp.peers: []"),
    (peer(address="10.0.0.300"), "bgp.peers[0].address: '10.0.0.300' is not an IPv4 or IPv6 address"),
    (peer(address="hostname"), "bgp.peers[0].address: 'hostname' is not an IPv4 or IPv6 address"),
    (peer(address="0.0.0.0"), "bgp.peers[0].address: '0.0.0.0' is the unspecified address"),
    (peer(address="ff02::5"), "bgp.peers[0].address: 'ff02::5' is a multicast address"),
    (bgp(peers=[PEER, {"address": "10.100.1.1", "as": 65002}]),
     "bgp.peers[1].address: 10.100.1.1 is listed twice (also peers[0])"),
    (bgp(peers=[{**PEER, "name": "core"}, {"address": "10.100.1.9", "as": 65002, "name": "core"}]),
     "bgp.peers[1].name: 'core' is used twice (also peers[0])"),
    (peer(name="Core1"), "bgp.peers[0].name: 'Core1' must be 1-32 of a-z"),
    (peer(port=0), "bgp.peers[0].port: 0 must be between 1 and 65535"),
    (peer(port=True), "bgp.peers[0].port: True is not a whole number"),
    (peer(password="x" * 81), "bgp.peers[0].password: a key of 81 characters: must be 1-80"),
    (peer(password=""), "bgp.peers[0].password: a key of 0 characters: must be 1-80"),
    (peer(password="caf\u00e9"), "bgp.peers[0].password: must be printable ASCII"),
    (peer(password="k", password_file="/etc/k"), "bgp.peers[0].password: give password or password_file, not both"),
    (peer(password_file="k.md5"), "bgp.peers[0].password_file: 'k.md5' must be an absolute path"),
    (peer(local_address="2001:db8::2"), "bgp.peers[0].local_address: 2001:db8::2 is IPv6; the peer 10.100.1.1 is IPv4"),
    (bgp(local_address="2001:db8::2"), "bgp.local_address: 2001:db8::2 is IPv6; peers[0] (10.100.1.1) is IPv4"),
    (peer(colour="red"), "bgp.peers[0].colour: unknown field"),
    # hold time, retry
    (bgp(hold_time=0), "bgp.hold_time: 0 is refused"),
    (bgp(hold_time="0s"), "bgp.hold_time: '0s' is refused"),
    (bgp(hold_time="2s"), "bgp.hold_time: '2s' must be between 3s and 65535s"),
    (bgp(hold_time="1.5s"), "bgp.hold_time: '1.5s' is not whole seconds"),
    (bgp(hold_time="65536s"), "bgp.hold_time: '65536s' must be between 3s and 65535s"),
    (bgp(hold_time="soon"), "bgp.hold_time: 'soon' is not a duration"),
    (peer(hold_time="2500ms"), "bgp.peers[0].hold_time: '2500ms' is not whole seconds"),
    (bgp(connect_retry="5s"), "bgp.connect_retry"),  # not a key: ExaBGP's reconnect backoff is its own
    # announce
    (bgp(announce={"communities": ["65536:1"]}),
     "bgp.announce.communities[0]: '65536:1' is not a standard community (A:B, each 0..65535): 65536 is above 65535"),
    (bgp(announce={"communities": ["1:2:3:4"]}), "bgp.announce.communities[0]: '1:2:3:4' is not a community"),
    (bgp(announce={"communities": ["a:b"]}), "bgp.announce.communities[0]: 'a:b' is not a community"),
    (bgp(announce={"communities": ["1:2:3"]}), "bgp.announce.communities[0]: '1:2:3' is a large community"),
    (bgp(announce={"communities": [3900030]}), "bgp.announce.communities[0]: 3900030 is a number, not a community"),
    (bgp(announce={"large_communities": ["4294967296:1:1"]}),
     "bgp.announce.large_communities[0]: '4294967296:1:1' is not a large community (A:B:C, each 0..4294967295)"),
    (bgp(announce={"large_communities": ["1:1"]}), "bgp.announce.large_communities[0]: '1:1' is a standard community"),
    (bgp(announce={"med_per": 0}), "bgp.announce.med_per: 0 must be a duration above 0"),
    (bgp(announce={"med_per": "500ns"}), "bgp.announce.med_per: '500ns' is not a duration"),
    (bgp(announce={"med_per": "0.5us"}), "bgp.announce.med_per: '0.5us' must be between 1us and 1s"),
    (bgp(announce={"med_per": "2s"}), "bgp.announce.med_per: '2s' must be between 1us and 1s"),
    (bgp(announce={"med_max": 0}), "bgp.announce.med_max: 0 must be between 1 and 4294967295"),
    (bgp(announce={"loss_med": 100_001}), "bgp.announce.loss_med: 100001 must be between 0 and 100000"),
    (bgp(announce={"min_interval": "2m"}), "bgp.announce.min_interval: '2m' must be between 0 and 60s"),
    (bgp(announce={"min_change": "120%"}), "bgp.announce.min_change: '120%' must be between 0% and 100%"),
    (bgp(announce={"next_hop": "me"}), "bgp.announce.next_hop: 'me' is not 'self' or an IP address"),
    (bgp(announce={"next_hop": "::"}), "bgp.announce.next_hop: '::' is the unspecified address"),
    (bgp(announce={"bogus": 1}), "bgp.announce.bogus: unknown field"),
    # learn
    (bgp(learn={"prefixes": ["10.0.0.0/8 le 7"]}),
     "bgp.learn.prefixes[0]: '10.0.0.0/8 le 7' le 7 is not between the prefix's length (8) and 32"),
    (bgp(learn={"prefixes": ["10.0.0.0/8 ge 25 le 24"]}),
     "bgp.learn.prefixes[0]: '10.0.0.0/8 ge 25 le 24' ge 25 is above le 24"),
    (bgp(learn={"prefixes": ["10.0.0.0/33"]}), "bgp.learn.prefixes[0]: '10.0.0.0/33' is not a prefix filter"),
    (bgp(learn={"prefixes": ["garbage"]}), "bgp.learn.prefixes[0]: 'garbage' is not a prefix filter"),
    (bgp(learn={"prefixes": ["10.0.0.0/8 ge 9 ge 10"]}), "bgp.learn.prefixes[0]: '10.0.0.0/8 ge 9 ge 10' gives ge twice"),
    (bgp(learn={"prefixes": ["10.0.0.0/8 le 24 x"]}), "bgp.learn.prefixes[0]: '10.0.0.0/8 le 24 x' is not a prefix filter"),
    (bgp(learn={"prefixes": ["10.0.0.1/8"]}), "bgp.learn.prefixes[0]: '10.0.0.1/8' has host bits set (did you mean 10.0.0.0/8?)"),
    (bgp(learn={"prefixes": ["2001:db8::/32 le 129"]}),
     "bgp.learn.prefixes[0]: '2001:db8::/32 le 129' le 129 is not between the prefix's length (32) and 128"),
    (bgp(learn={"communities": ["65000:1:2:3"]}), "bgp.learn.communities[0]: '65000:1:2:3' is not a community"),
    (bgp(learn={"enabled": True}), "bgp.learn: give prefixes or communities to learn"),
    (bgp(learn={"enabled": True, "prefixes": []}), "bgp.learn.prefixes: [] matches nothing"),
    (bgp(learn={"enabled": True, "communities": []}), "bgp.learn.communities: [] matches nothing"),
    (bgp(learn={"enabled": True, "prefixes": ["10.0.0.0/8"], "paths": ["p9"]}),
     "bgp.learn.paths[0]: unknown path 'p9' (paths: p1)"),
    (bgp(learn={"paths": ["p1", "p1"]}), "bgp.learn.paths: ['p1', 'p1'] lists 'p1' twice"),
    (bgp(learn={"max": 0}), "bgp.learn.max: 0 must be between 1 and 2000000"),
    (bgp(learn={"max": 2_000_001}), "bgp.learn.max: 2000001 must be between 1 and 2000000"),
    (bgp(learn={"policy": "fastest"}), "bgp.learn.policy: 'fastest'"),
    (bgp(learn={"rtt": "passive"}), "bgp.learn.rtt: 'passive' needs passive measurement"),
    (bgp(learn={"hysteresis": {"hold_down": "x"}}), "bgp.learn.hysteresis.hold_down: 'x' is not a duration"),
    # exabgp
    (bgp(exabgp={"command": "bin/exabgp"}), "bgp.exabgp.command: 'bin/exabgp' must be an absolute path or a command"),
    (bgp(exabgp={"restart_min": "10s", "restart_max": "5s"}), "bgp.exabgp.restart_min: 10 s is above restart_max (5 s)"),
    (bgp(exabgp={"restart_max": "2h"}), "bgp.exabgp.restart_max: '2h' must be at most 1h"),
    # the section, cross-section
    (bgp(colour="red"), "bgp.colour: unknown field"),
    ({"guard": {"interfaces": ["eth0"]}, "bgp": {"local_as": 65001, "router_id": "10.0.0.1", "peers": [PEER]}},
     "bgp: needs paths to measure"),
    ({**STEER, "destinations": [{"prefix": "198.51.100.0/24", "paths": ["p1"], "announce": True}]},
     "destinations[0].announce: True but there is no 'bgp' section"),
    ({**bgp(), "destinations": [{"prefix": "198.51.100.0/24", "paths": ["p1"], "announce": "maybe"}]},
     "destinations[0].announce: 'maybe'"),
])
def test_bad_values_name_the_field(data, message):
    with pytest.raises(ConfigError) as info:
        parse_config(data, "c.yaml")
    text = str(info.value)
    assert "\n" not in text and text.startswith("c.yaml: "), text
    assert message in text, text
    assert info.value.exit_code == 2


def test_a_password_is_never_echoed():
    for bad in ("x" * 81 + "SECRET", "SECRET\u00e9"):
        with pytest.raises(ConfigError) as info:
            parse_config(peer(password=bad), "c.yaml")
        assert "SECRET" not in str(info.value)


def test_unquoted_communities_in_yaml_are_caught(tmp_path):
    """``65000:30`` unquoted is a base-60 number to YAML 1.1 (3900030): refused, not misread."""
    path = tmp_path / "c.yaml"
    path.write_text(FULL.replace('communities: ["65001:100", "65001:100", "0:0"]', "communities: [65000:30]"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "bgp.announce.communities[0]: 3900030 is a number, not a community: write it in quotes" in str(info.value)


@pytest.mark.parametrize("text, network, ge, le", [
    ("10.0.0.0/8", "10.0.0.0/8", 8, 32),
    ("10.0.0.0/8 le 24", "10.0.0.0/8", 8, 24),
    ("10.0.0.0/8 ge 16", "10.0.0.0/8", 16, 32),
    ("10.0.0.0/8 ge 16 le 24", "10.0.0.0/8", 16, 24),
    ("10.0.0.0/8 le 24 ge 16", "10.0.0.0/8", 16, 24),
    ("  192.0.2.0/24  ", "192.0.2.0/24", 24, 32),
    ("192.0.2.1", "192.0.2.1/32", 32, 32),
    ("2001:db8::/32 ge 48 le 64", "2001:db8::/32", 48, 64),
    ("::/0 le 48", "::/0", 0, 48),
])
def test_prefix_filter_parses(text, network, ge, le):
    f = PrefixFilter.parse(text)
    assert (str(f.network), f.ge, f.le) == (network, ge, le)
    assert PrefixFilter.parse(str(f)) == f


def test_prefix_filter_matches():
    plain = PrefixFilter.parse("10.0.0.0/8")  # P and everything inside it
    assert plain.matches("10.0.0.0/8") and plain.matches("10.1.0.0/16") and plain.matches("10.1.2.3/32")
    assert not plain.matches("11.0.0.0/8") and not plain.matches("10.0.0.0/7") and not plain.matches("0.0.0.0/0")
    le = PrefixFilter.parse("10.0.0.0/8 le 24")
    assert le.matches("10.0.0.0/8") and le.matches("10.9.9.0/24") and not le.matches("10.9.9.128/25")
    ge = PrefixFilter.parse("10.0.0.0/8 ge 16")
    assert not ge.matches("10.0.0.0/8") and not ge.matches("10.0.0.0/15") and ge.matches("10.1.0.0/16")
    assert ge.matches("10.1.2.3/32")
    both = PrefixFilter.parse("10.0.0.0/8 ge 16 le 24")
    assert [both.matches(f"10.0.0.0/{n}") for n in (15, 16, 20, 24, 25)] == [False, True, True, True, False]
    exact = PrefixFilter.parse("192.0.2.0/24 le 24")
    assert exact.matches("192.0.2.0/24") and not exact.matches("192.0.2.0/25")
    assert plain.matches(ipaddress.ip_network("10.2.0.0/16"))
    assert plain.matches("10.1.2.3/16")  # a route with host bits is taken as its network


def test_prefix_filter_matches_ipv6():
    f = PrefixFilter.parse("2001:db8::/32 ge 48 le 64")
    assert f.matches("2001:db8:1::/48") and f.matches("2001:db8:1:2::/64")
    assert not f.matches("2001:db8::/32") and not f.matches("2001:db8:1:2::/65") and not f.matches("2001:db9::/48")
    anything6 = PrefixFilter.parse("::/0")
    assert anything6.matches("2001:db8::/32") and anything6.matches("::/0")
    assert not anything6.matches("10.0.0.0/8")  # families never mix
    assert not PrefixFilter.parse("0.0.0.0/0").matches("::/0")
    assert not PrefixFilter.parse("0.0.0.0/0").matches("2001:db8::/32")


def test_learn_matches_prefixes_and_communities():
    ln = parse_config(bgp(learn={"enabled": True, "prefixes": ["10.0.0.0/8 le 24"],
                                 "communities": ["65000:100", "65000:1:2"]}), "c.yaml").bgp.learn
    assert ln.matches("10.1.0.0/16", [(65000, 100)])
    assert ln.matches("10.1.0.0/16", ["1:1", "65000:1:2"])
    assert not ln.matches("10.1.0.0/16", [(65000, 101)])
    assert not ln.matches("10.1.0.0/16")
    assert not ln.matches("10.1.1.0/25", [(65000, 100)])
    only_prefix = parse_config(bgp(learn={"enabled": True, "prefixes": ["192.0.2.0/24"]}), "c.yaml").bgp.learn
    assert only_prefix.matches("192.0.2.0/24") and not only_prefix.matches("198.51.100.0/24", [(1, 1)])
    only_comm = parse_config(bgp(learn={"enabled": True, "communities": ["1:1"]}), "c.yaml").bgp.learn
    assert only_comm.matches("198.51.100.0/24", [(1, 1)]) and not only_comm.matches("198.51.100.0/24", [])


def test_parse_community_and_asn():
    assert parse_community("65000:100") == (65000, 100)
    assert parse_community(" 0:65535 ") == (0, 65535)
    assert parse_community("4294967295:0:4294967295") == (4294967295, 0, 4294967295)
    assert format_community((65000, 1, 2)) == "65000:1:2"
    for bad in ("65000", "1:2:3:4", "a:b", "-1:2", "1:65536", "4294967296:1:1", "", 5, None):
        with pytest.raises(ValueError):
            parse_community(bad)
    assert parse_asn(65001) == parse_asn("65001") == 65001
    assert parse_asn("1.10") == 65546 and parse_asn("65535.65535") == 4294967295
    for bad in (0, 23456, -1, 2**32, "abc", True, 1.5, "0.0", None):
        with pytest.raises(ValueError):
            parse_asn(bad)


def test_exabgp_command(tmp_path, monkeypatch):
    b = parse_config(bgp(), "c.yaml").bgp
    tool = tmp_path / "exabgp"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    with_path = parse_config(bgp(exabgp={"command": str(tool)}), "c.yaml").bgp
    assert exabgp_command(with_path) == str(tool) == require_exabgp(with_path)
    missing = parse_config(bgp(exabgp={"command": str(tmp_path / "none")}), "c.yaml").bgp
    assert exabgp_command(missing) is None
    with pytest.raises(ValueError, match=r"bgp.exabgp.command: '.*none' is not an executable"):
        require_exabgp(missing)
    # By name: looked up on PATH.
    monkeypatch.setenv("PATH", str(tmp_path))
    assert exabgp_command(parse_config(bgp(exabgp={"command": "exabgp"}), "c.yaml").bgp) == str(tool)
    # Absent: beside sys.executable first, else on PATH, else None.
    venv = tmp_path / "venv"
    venv.mkdir()
    monkeypatch.setattr(sys, "executable", str(venv / "python"))
    assert exabgp_command(b) == str(tool)
    (venv / "exabgp").write_text("#!/bin/sh\n")
    (venv / "exabgp").chmod(0o755)
    assert exabgp_command(b) == str(venv / "exabgp")
    (venv / "exabgp").unlink()
    monkeypatch.setenv("PATH", str(venv))
    assert exabgp_command(b) is None
    with pytest.raises(ValueError, match="bgp.exabgp.command: no exabgp found"):
        require_exabgp(b)


def test_check_command_on_a_bad_file_is_one_line_exit_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(FULL.replace("local_as: 65001", "local_as: 23456"))
    proc = subprocess.run([sys.executable, "-m", "pathsteer", "run", "--config", str(path), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "bgp.local_as: 23456 is AS_TRANS" in lines[0], proc.stderr
