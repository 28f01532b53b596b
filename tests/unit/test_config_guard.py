"""Config: the issue's guard section loads; every bad value is refused with one line naming
the field and the value."""

from __future__ import annotations

import ipaddress

import pytest

from pathsteer.config import ConfigError, load_config, parse_config

ISSUE_EXAMPLE = """
guard:
  interfaces: [r-a, r-c]
  allow: [10.200.0.0/24]
  deny: [192.0.2.0/24, "2001:db8:bad::/48"]
  rate_limit: {per_source_pps: 5000, burst: 10000}
  syn_limit: {per_destination_pps: 2000}
  auto_block: {threshold_pps: 20000, ttl: 10m}
  state_dir: /var/lib/pathsteer
"""


def test_issue_example(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(ISSUE_EXAMPLE)
    config = load_config(path)
    g = config.guard
    assert config.control.socket == "/run/pathsteer/pathsteer.sock"
    assert g.interfaces == ["r-a", "r-c"]
    assert g.deny == [ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8:bad::/48")]
    assert (g.rate_limit.per_source_pps, g.rate_limit.burst) == (5000, 10000)
    assert g.auto_block.ttl == 600.0
    assert config.sections == ["guard"]


def guard(**kw):
    return {"guard": {"interfaces": ["r-a"], **kw}}


@pytest.mark.parametrize("data, message", [
    (guard(deny=["192.0.2.0/24", "10.0.0.0/33"]), "guard.deny[1]: '10.0.0.0/33' is not a CIDR"),
    (guard(deny=["nonsense"]), "guard.deny[0]: 'nonsense' is not a CIDR"),
    (guard(allow=["10.0.0.1/8"]), "guard.allow[0]: '10.0.0.1/8' is not a CIDR (host bits set)"),
    (guard(rate_limit={"per_source_pps": 0}), "guard.rate_limit.per_source_pps: 0 must be between 1"),
    (guard(rate_limit={"burst": 5}), "guard.rate_limit.per_source_pps: missing (required)"),
    (guard(auto_block={"threshold_pps": 5, "ttl": "10q"}), "guard.auto_block.ttl: '10q' is not a duration"),
    (guard(auto_block={"threshold_pps": 5, "ttl": "0s"}), "guard.auto_block.ttl: '0s' must be a duration above 0"),
    (guard(syn_limit={"per_destination_pps": True}), "guard.syn_limit.per_destination_pps: True is not a whole number"),
    (guard(rules=[{"proto": "sctpx"}]), "guard.rules[0].proto: 'sctpx' is not a protocol"),
    (guard(rules=[{"dport": "9-3"}]), "guard.rules[0].dport: '9-3' is not a port range within 0-65535"),
    (guard(rules=[{"action": "reject"}]), "guard.rules[0].action: 'reject': input should be 'drop' or 'pass'"),
    (guard(bogus=1), "guard.bogus: unknown field"),
    (guard(state_dir="relative"), "guard.state_dir: 'relative' must be an absolute path"),
    ({"guard": {"interfaces": []}}, "guard.interfaces: []: list should have at least 1 item"),
    ({"guard": {"interfaces": ["r-a", "r-a"]}}, "guard.interfaces: ['r-a', 'r-a'] lists 'r-a' twice"),
    ({"guard": {"interfaces": ["a b"]}}, "guard.interfaces[0]: 'a b' is not an interface name"),
    (guard(syn_cookies={}), "guard.syn_cookies.ports: missing (required)"),
    (guard(syn_cookies={"ports": []}), "guard.syn_cookies.ports: []: list should have at least 1 item"),
    (guard(syn_cookies={"ports": [80, "99999"]}), "guard.syn_cookies.ports[1]: '99999' is not a port range within 0-65535"),
    (guard(syn_cookies={"ports": ["0-1024"]}), "guard.syn_cookies.ports: ['0-1024'] includes port 0 (0-1024)"),
    (guard(syn_cookies={"ports": [80], "interfaces": ["r-x"]}),
     "guard.syn_cookies.interfaces[0]: 'r-x' is not one of guard.interfaces (r-a)"),
    (guard(syn_cookies={"ports": [80], "interfaces": ["r-a", "r-a"]}), "guard.syn_cookies.interfaces[1]: 'r-a' is listed twice"),
    (guard(syn_cookies={"ports": [80], "mss": 100}), "guard.syn_cookies.mss: 100: input should be greater than or equal to 536"),
    (guard(syn_cookies={"ports": [80], "mss6": 70000}), "guard.syn_cookies.mss6: 70000: input should be less than or equal to 65475"),
    (guard(syn_cookies={"ports": [80], "wscale": 15}), "guard.syn_cookies.wscale: 15: input should be less than or equal to 14"),
    (guard(syn_cookies={"ports": [80], "ttl": 0}), "guard.syn_cookies.ttl: 0: input should be greater than or equal to 1"),
    (guard(syn_cookies={"ports": [80], "netfilter": "iptables"}),
     "guard.syn_cookies.netfilter: 'iptables': input should be 'managed' or 'external'"),
    (guard(syn_cookies={"ports": [80], "on": True}), "guard.syn_cookies.on: unknown field"),
    (guard(syn_cookies="on"), "guard.syn_cookies: 'on': input should be a valid dictionary"),
    ({"control": {"socket": "x.sock"}, **guard()}, "control.socket: 'x.sock' must be an absolute path"),
    ({}, "nothing to run: the config needs a 'guard' section"),
    ({"steering": {}}, "steering: unknown field"),
    ([1, 2], "the top level must be a mapping"),
])
def test_bad_values_name_field_and_value(data, message):
    with pytest.raises(ConfigError) as info:
        parse_config(data, "c.yaml")
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith("c.yaml: ")
    assert message in text, text
    assert info.value.exit_code == 2


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("guard:\n  interfaces: [r-a\n  deny: x\n")
    with pytest.raises(ConfigError, match=r"line \d+ column \d+: not valid YAML"):
        load_config(path)


def test_missing_file():
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/pathsteer.yaml")


def test_port_rules_and_defaults():
    c = parse_config(guard(rules=[{"proto": "udp", "sport": 19}, {"proto": 47, "action": "pass"},
                                  {"dport": "1000-2000"}]))
    r = c.guard.rules
    assert (r[0].proto, r[0].sport, r[0].dport, r[0].action) == (17, (19, 19), (0, 65535), "drop")
    assert (r[1].proto, r[1].action) == (47, "pass")
    assert r[2].dport == (1000, 2000)
    assert c.guard.rate_limit is None and c.guard.xdp_mode == "auto"


def test_syn_cookies_off_by_default_and_defaults():
    assert parse_config(guard()).guard.syn_cookies is None
    sc = parse_config(guard(syn_cookies={"ports": [443, "8000-8080"]})).guard.syn_cookies
    assert sc.ports == [(443, 443), (8000, 8080)]
    assert (sc.interfaces, sc.mss, sc.mss6, sc.wscale, sc.ttl, sc.netfilter) == (None, 1460, 1440, 7, 64, "managed")
    sc = parse_config({"guard": {"interfaces": ["r-a", "r-c"], "syn_cookies": {
        "ports": [80], "interfaces": ["r-a"], "mss": 1400, "wscale": 9, "netfilter": "external"}}}).guard.syn_cookies
    assert (sc.interfaces, sc.mss, sc.wscale, sc.netfilter) == (["r-a"], 1400, 9, "external")
