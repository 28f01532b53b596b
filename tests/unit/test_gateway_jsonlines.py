"""JSON access logs (Apinto/APIPark, nginx, Envoy) read to records through field mappings. Pure."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from pathsteer.gateways.jsonlines import PRESETS, JsonLinesParser
from pathsteer.gateways.records import Record

NOW = 1_800_000_000.0

# What Apinto's http_output posts with APIPark's formatter ($var names as keys; apinto
# entries/http-entry/reader.go: msec is epoch ms, request_time/proxy_time integer ms).
APINTO = {"msec": 1764771566123, "service": "orders", "provider": "team-a", "request_scheme": "http",
          "request_uri": "/v1/orders", "remote_addr": "198.51.100.7", "src_ip": "6.6.6.6",
          "proxy_addr": "10.1.0.1:8080", "status": 401, "proxy_status": 401, "request_time": 15,
          "proxy_time": 12, "response_time": 12000000, "strategy": "", "request_id": "r-1",
          "request_method": "GET", "request_length": 0, "response_length": "345", "auth_status": "fail"}
NGINX = {"time_iso8601": "2026-12-03T14:19:26+01:00", "remote_addr": "2001:db8::7", "request": "GET / HTTP/1.1",
         "status": 502, "body_bytes_sent": 157, "request_length": 80, "request_time": 0.251,
         "upstream_addr": "10.0.0.1:80, 10.0.0.2:80", "upstream_response_time": "0.001, 0.250",
         "upstream_status": "502, 502"}
ENVOY = {"start_time": "2026-12-03T14:19:26.500Z", "method": "POST", "path": "/api", "protocol": "HTTP/1.1",
         "response_code": 200, "response_flags": "-", "bytes_received": 12, "bytes_sent": 34, "duration": 30,
         "upstream_service_time": "27", "x_forwarded_for": "6.6.6.6", "upstream_host": "10.0.0.3:8080",
         "upstream_cluster": "outbound|8080||api", "downstream_remote_address": "[2001:db8::2]:4431"}


def test_apinto_preset():
    p = JsonLinesParser("apinto")
    r = p.parse(json.dumps(APINTO), NOW)
    assert r == Record(1764771566.123, "198.51.100.7", "10.1.0.1:8080", "orders", None, 401, 0, 345,
                       0.012, 0.015, True)
    assert p.parsed == 1
    assert p.parse(json.dumps({**APINTO, "auth_status": "success"}), NOW).auth_failed is False


def test_apinto_keys_clients_on_the_tcp_peer_not_x_real_ip():
    r = JsonLinesParser("apinto").parse(json.dumps({**APINTO, "src_ip": "203.0.113.9"}), NOW)
    assert r.client == "198.51.100.7"


def test_nginx_preset_takes_the_server_that_answered():
    r = JsonLinesParser("nginx").parse(json.dumps(NGINX).encode(), NOW)
    assert r.at_s == 1796303966.0  # 13:19:26 UTC
    assert (r.client, r.upstream, r.status, r.bytes_in, r.bytes_out) == ("2001:db8::7", "10.0.0.2:80", 502, 80, 157)
    assert r.upstream_time_s == pytest.approx(0.250) and r.total_time_s == pytest.approx(0.251)
    no_upstream = {**NGINX, "upstream_addr": "-", "upstream_response_time": "-", "msec": "1764771566.250"}
    r = JsonLinesParser("nginx").parse(json.dumps(no_upstream), NOW)
    assert (r.upstream, r.upstream_time_s, r.at_s) == (None, None, pytest.approx(1764771566.25))


def test_envoy_preset():
    r = JsonLinesParser("envoy").parse(json.dumps(ENVOY), NOW)
    assert r == Record(1796307566.5, "2001:db8::2", "10.0.0.3:8080", "outbound|8080||api", None, 200, 12, 34,
                       0.027, 0.030, None)
    direct = {**ENVOY, "downstream_direct_remote_address": "192.0.2.1:5555", "response_code": 0,
              "upstream_service_time": None}
    r = JsonLinesParser("envoy").parse(json.dumps(direct), NOW)
    assert (r.client, r.status, r.upstream_time_s) == ("192.0.2.1", None, None)


def test_custom_mapping_dotted_and_units():
    p = JsonLinesParser(fields={"client": "peer.ip", "upstream": "proxy.-1.addr", "status": "res.code",
                                "upstream_time_s": "proxy.-1.time", "at_s": "ts"},
                        units={"upstream_time_s": "us", "at_s": "ns"})
    line = json.dumps({"peer": {"ip": "192.0.2.9"}, "res": {"code": "429"}, "ts": 1_700_000_000_500_000_000,
                       "proxy": [{"addr": "10.0.0.1:80", "time": 5}, {"addr": "10.0.0.2:80", "time": 1500}]})
    r = p.parse(line, NOW)
    assert (r.client, r.upstream, r.status) == ("192.0.2.9", "10.0.0.2:80", 429)
    assert r.upstream_time_s == pytest.approx(0.0015) and r.at_s == pytest.approx(1_700_000_000.5)
    assert p.parse(json.dumps({"peer.ip": "192.0.2.10"}), NOW).client == "192.0.2.10"  # a dotted name itself


def test_a_preset_with_keys_changed_or_dropped():
    p = JsonLinesParser("apinto", fields={"client": "peer", "auth_failed": None}, units={"total_time_s": "s"})
    r = p.parse(json.dumps({**APINTO, "peer": "192.0.2.3", "request_time": 2}), NOW)
    assert (r.client, r.auth_failed, r.total_time_s) == ("192.0.2.3", None, 2.0)


def test_missing_time_is_now_and_wrong_types_read_as_unknown():
    r = JsonLinesParser("apinto").parse(json.dumps({"remote_addr": "192.0.2.1", "status": "teapot",
                                                    "response_length": -5, "proxy_time": "fast",
                                                    "request_time": float("inf"),
                                                    "proxy_addr": 7, "auth_status": 1}), NOW)
    assert r == Record(NOW, "192.0.2.1")


@pytest.mark.parametrize(("line", "kind"), [
    ("", "json"), ("{", "json"), ("not json", "json"), (b"\xff\xfe\x00", "json"),
    ("[1, 2]", "not_object"), ("42", "not_object"), ('"x"', "not_object"),
    ("{}", "no_client"), ('{"remote_addr": 5}', "no_client"), ('{"remote_addr": "-"}', "no_client"),
])
def test_bad_lines_count_by_kind(line, kind):
    p = JsonLinesParser("apinto")
    assert p.parse(line, NOW) is None
    assert dict(p.malformed) == {kind: 1}


@pytest.mark.parametrize(("kw", "message"), [
    ({"preset": "kong"}, "gateway preset: 'kong' is not known (have: apinto, envoy, haproxy-json, nginx)"),
    ({"preset": "nginx", "fields": {"latency": "x"}}, "gateway fields: 'latency' is not a record field"),
    ({"preset": "nginx", "fields": {"client": ""}}, "gateway fields.client: '' is not a key"),
    ({"preset": "nginx", "fields": {"client": 5}}, "gateway fields.client: 5 is not a key"),
    ({"preset": "nginx", "units": {"status": "ms"}}, "gateway units: 'status' is not a time field"),
    ({"preset": "nginx", "units": {"total_time_s": "minutes"}},
     "gateway units.total_time_s: 'minutes' is not a unit (have: s, ms, us, ns)"),
    ({"preset": "nginx", "units": {"speed": "s"}}, "gateway units: 'speed' is not a record field"),
    ({"fields": {"status": "code"}}, "gateway fields: 'client' has no key"),
    ({"preset": "envoy", "fields": {"client": None}}, "gateway fields: 'client' has no key"),
])
def test_config_mistakes_are_one_line_value_errors(kw, message):
    with pytest.raises(ValueError) as e:
        JsonLinesParser(**kw)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(PRESETS)), st.text())
def test_never_raises_on_text(preset, text):
    JsonLinesParser(preset).parse(text, NOW)


@settings(max_examples=200, deadline=None)
@given(st.binary())
def test_never_raises_on_bytes(data):
    JsonLinesParser("nginx").parse(data, NOW)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(PRESETS)), st.data())
def test_never_raises_on_any_values_under_the_presets_keys(preset, data):
    keys = [k for src in PRESETS[preset].values() for k in ((src,) if isinstance(src, str) else src)]
    obj = data.draw(st.fixed_dictionaries({}, optional={k: JSON for k in keys}))
    r = JsonLinesParser(preset).parse(json.dumps(obj), NOW)
    if r is not None:
        assert isinstance(r.client, str) and isinstance(r.bytes_out, int)
        assert r.status is None or 0 < r.status < 1000
        assert all(t is None or t >= 0 for t in (r.upstream_time_s, r.total_time_s))
