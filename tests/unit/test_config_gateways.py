"""Config: the ``gateways`` section (README, Gateways) loads with its defaults; every mistake is
refused with one line naming the field (exit 2)."""

from __future__ import annotations

import pytest

from pathsteer.config import ConfigError, load_config, parse_config

README_EXAMPLE = """
guard: {interfaces: [eth0]}
gateways:
  - name: edge
    kind: haproxy
    logs: ["unix:/run/pathsteer/edge-log.sock"]
    runtime: /run/haproxy/admin.sock
    acl: /etc/haproxy/pathsteer-blocked.acl
  - name: apipark
    kind: apipark
    logs: ["http:127.0.0.1:9181"]
    admin: http://127.0.0.1:18288
    username: admin
    password_file: /etc/pathsteer/apipark.password
    services: [9f1c2d]
  - name: nginx
    kind: jsonlines
    format: nginx
    logs: ["file:/var/log/nginx/access.json"]
"""


def test_readme_example_and_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(README_EXAMPLE)
    c = load_config(path)
    edge, ap, ng = c.gateways
    assert (edge.kind, edge.log_format, edge.acts) == ("haproxy", "haproxy", True)
    assert edge.abuse.statuses == [401, 403, 429] and edge.abuse.threshold == 100
    assert edge.abuse.window == 10.0 and edge.abuse.ttl == 600.0 and edge.abuse.mirror
    assert edge.health.enabled and edge.health.degraded_factor == 0.5
    assert (ap.log_format, ap.services) == ("apinto", ["9f1c2d"])
    assert (ng.log_format, ng.acts) == ("nginx", False)
    assert "gateways" in c.sections


def gw(**kw):
    return {"guard": {"interfaces": ["eth0"]},
            "gateways": [{"name": "edge", "kind": "haproxy", "logs": ["udp:127.0.0.1:5140"], **kw}]}


@pytest.mark.parametrize("data, message", [
    (gw(name="Edge"), "gateways[0].name: 'Edge' must be 1-32 of a-z"),
    (gw(kind="nginx"), "gateways[0].kind: 'nginx'"),
    (gw(logs=["udp:127.0.0.1"]), "gateways[0].logs[0]: 'udp:127.0.0.1' needs HOST:PORT"),
    (gw(logs=["tcp:1.2.3.4:5"]), "gateways[0].logs[0]: 'tcp:1.2.3.4:5' kind 'tcp' is not one of"),
    (gw(logs=["unix:relative.sock"]), "gateways[0].logs[0]: 'unix:relative.sock' the path must be absolute"),
    (gw(runtime="x y"), "gateways[0].runtime: 'x y' is not"),
    (gw(acl="/etc/x.acl"), "gateways[0].acl: needs 'runtime'"),
    (gw(acl="rel.acl", runtime="/run/h.sock"), "gateways[0].acl: 'rel.acl'"),
    (gw(abuse={"threshold": 0}), "gateways[0].abuse.threshold: 0"),
    (gw(abuse={"statuses": [401, 99]}), "gateways[0].abuse.statuses[1]: 99 is not an HTTP status"),
    (gw(abuse={"statuses": []}), "gateways[0].abuse.statuses: [] must list at least one status"),
    (gw(abuse={"window": "2h"}), "gateways[0].abuse.window: '2h' must be between 1s and 10m"),
    (gw(abuse={"ttl": "0s"}), "gateways[0].abuse.ttl"),
    (gw(abuse={"max_rps": -1}), "gateways[0].abuse.max_rps: -1"),
    (gw(abuse={"prefix_v6": 8}), "gateways[0].abuse.prefix_v6: 8"),
    (gw(abuse={"bogus": 1}), "gateways[0].abuse.bogus: unknown field"),
    (gw(health={"degraded_factor": "0%"}), "gateways[0].health.degraded_factor"),
    (gw(format="nginx"), "gateways[0].format: 'nginx': a haproxy gateway logs in the 'haproxy'"),
    (gw(admin="http://x:1"), "gateways[0].admin: admin/username/password_file/services are for apipark"),
    (gw(kind="apinto", runtime="/run/h.sock"), "gateways[0].runtime: runtime/acl are for haproxy gateways"),
    (gw(kind="jsonlines"), "gateways[0].format: a jsonlines gateway needs 'format'"),
    (gw(kind="jsonlines", fields={"bogus": "x"}), "gateways[0].fields: 'bogus' is not a record field"),
    (gw(kind="jsonlines", format="nginx", units={"at_s": "h"}), "gateways[0].units.at_s: 'h' is not a unit"),
    (gw(kind="apipark", admin="http://x:1"), "gateways[0].admin: an apipark console needs 'username'"),
    (gw(kind="apipark", admin="ftp://x"), "gateways[0].admin: 'ftp://x' is not an http:// or https:// URL"),
    (gw(kind="apinto", services=["a"]), "gateways[0].services: needs 'admin'"),
    (gw(protected=["10.0.0.0/33"]), "gateways[0].protected[0]"),
    ({"guard": {"interfaces": ["eth0"]}, "gateways": [
        {"name": "a", "kind": "haproxy"}, {"name": "a", "kind": "haproxy"}]}, "gateways[1].name: 'a' is used twice"),
    ({"guard": {"interfaces": ["eth0"]}, "gateways": [
        {"name": "a", "kind": "haproxy", "logs": ["udp:127.0.0.1:1"]},
        {"name": "b", "kind": "haproxy", "logs": ["udp:127.0.0.1:1"]}]}, "gateways[1].logs: 'udp:127.0.0.1:1' is also a's"),
])
def test_bad_values_name_the_field(data, message):
    with pytest.raises(ConfigError) as info:
        parse_config(data, "c.yaml")
    text = str(info.value)
    assert "\n" not in text and text.startswith("c.yaml: ")
    assert message in text, text
    assert info.value.exit_code == 2


@pytest.mark.parametrize("data, message", [
    ({"guard": {"interfaces": ["e"]}, "gateways": [{"name": "h", "kind": "webhook"}]},
     "gateways[0].webhook: a webhook gateway needs 'webhook'"),
    ({"guard": {"interfaces": ["e"]}, "gateways": [{"name": "h", "kind": "webhook", "webhook": {"url": "ftp://x"}}]},
     "gateways[0].webhook.url: 'ftp://x' must be http:// or https://"),
    ({"guard": {"interfaces": ["e"]}, "gateways": [{"name": "h", "kind": "webhook",
                                                    "webhook": {"url": "http://x/", "events": ["nope"]}}]},
     "gateways[0].webhook.events[0]: 'nope' is not an event sent out"),
    ({"guard": {"interfaces": ["e"]}, "gateways": [{"name": "h", "kind": "webhook", "logs": ["udp:127.0.0.1:9"],
                                                    "webhook": {"url": "http://x/"}}]},
     "gateways[0].logs: a webhook gateway only sends"),
])
def test_webhook_mistakes(data, message):
    with pytest.raises(ConfigError) as info:
        parse_config(data, "c.yaml")
    assert message in str(info.value), str(info.value)


STEER = {"dataplane": {"mode": "fib", "table": 200},
         "paths": [{"name": "p1", "interface": "eth1", "gateway": "10.200.1.2",
                    "probe": {"targets": ["198.51.100.9"]}}],
         "destinations": [{"prefix": "198.51.100.0/24", "paths": ["p1"]}]}


@pytest.mark.parametrize("data, message", [
    ({"guard": {"interfaces": ["e"]}, "gateways": [{"name": "h", "kind": "haproxy", "auto_destinations": {}}]},
     "gateways[0].auto_destinations: needs steering"),
    ({**STEER, "gateways": [{"name": "h", "kind": "haproxy", "auto_destinations": {"paths": ["p9"]}}]},
     "gateways[0].auto_destinations.paths[0]: unknown path 'p9' (paths: p1)"),
    ({**STEER, "gateways": [{"name": "h", "kind": "haproxy", "auto_destinations": {"idle": "1s"}}]},
     "gateways[0].auto_destinations.idle: '1s' must be between 10s and 7d"),
    ({**STEER, "gateways": [{"name": "h", "kind": "haproxy", "auto_destinations": {"prefix_len": 40}}]},
     "gateways[0].auto_destinations.prefix_len: 40"),
    ({**STEER, "gateways": [{"name": "h", "kind": "haproxy", "auto_destinations": {"policy": "fastest"}}]},
     "gateways[0].auto_destinations.policy: 'fastest'"),
    ({**STEER, "gateways": [{"name": "h", "kind": "haproxy", "auto_destinations": {"max": 0}}]},
     "gateways[0].auto_destinations.max: 0"),
])
def test_auto_destination_mistakes(data, message):
    with pytest.raises(ConfigError) as info:
        parse_config(data, "c.yaml")
    text = str(info.value)
    assert "\n" not in text and message in text, text


def test_auto_destinations_defaults():
    c = parse_config({**STEER, "gateways": [{"name": "h", "kind": "haproxy", "auto_destinations": {}}]}, "c.yaml")
    ad = c.gateways[0].auto_destinations
    assert (ad.prefix_len, ad.prefix_len6, ad.idle, ad.min_requests, ad.max, ad.policy, ad.paths) == \
        (32, 128, 600.0, 1, 256, "lowest-latency", None)
    d = ad.destination("203.0.113.10/32", ["p1"])
    assert str(d.prefix) == "203.0.113.10/32" and d.paths == ["p1"]
