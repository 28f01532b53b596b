"""APIPark / Apinto clients against the contract server (tests/unit/apipark_contract.py)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from apipark_contract import ContractServer

from pathsteer.errors import PathsteerError
from pathsteer.gateways.apipark import (
    ApintoClient,
    ApiparkClient,
    GatewayApiError,
    GatewayRefused,
    access_log_output,
)

PASSWORD = "s3cret-pw"


@pytest.fixture
def contract(request):
    srv = ContractServer().start()
    request.addfinalizer(srv.stop)
    return srv


def run(coro):
    return asyncio.run(coro)


def apipark(srv, password=PASSWORD, **kw):
    return ApiparkClient(srv.url, username="admin", password=password, **kw)


def writes(srv):
    return [r for r in srv.requests() if r.method in ("PUT", "POST", "PATCH", "DELETE")
            and "login" not in r.path]


# ---------------------------------------------------------------- APIPark


def test_set_weights_puts_whole_upstream_then_publishes(contract):
    original = contract.state.upstreams["svc1"]
    before = run(apipark(contract).set_weights("svc1", {"10.0.0.1:80": 0}, reason="path down"))
    assert before == {"10.0.0.1:80": 100}

    login = contract.requests("POST", "/api/v1/account/login/username")
    assert len(login) == 1 and login[0].json == {"name": "admin", "password": PASSWORD}

    puts = contract.requests("PUT", "/api/v1/service/upstream")
    assert len(puts) == 1
    assert puts[0].query == {"service": "svc1"}
    assert puts[0].headers["cookie"].startswith("session=")
    expected = {**original, "nodes": [{"address": "10.0.0.1:80", "weight": 0},
                                      {"address": "10.0.0.2:80", "weight": 50}]}
    assert puts[0].json == expected

    pubs = contract.requests("POST", "/api/v1/service/publish/release/do")
    assert len(pubs) == 1 and pubs[0].query == {"service": "svc1"}
    body = pubs[0].json
    assert set(body) == {"version", "version_remark", "remark"}
    assert body["version"].startswith("pathsteer-")
    assert "pathsteer" in body["remark"] and "path down" in body["remark"]
    # the order: read, save, publish
    methods = [(r.method, r.path) for r in contract.requests() if "login" not in r.path]
    assert methods == [("GET", "/api/v1/service/upstream"), ("PUT", "/api/v1/service/upstream"),
                       ("POST", "/api/v1/service/publish/release/do")]
    assert contract.state.releases[0]["upstream"]["nodes"][0]["weight"] == 0


def test_versions_are_unique_and_restore_works(contract):
    client = apipark(contract)

    async def go():
        old = await client.set_weights("svc1", {"10.0.0.1:80": 0, "10.0.0.2:80": 5})
        back = await client.set_weights("svc1", old)
        return old, back

    old, back = run(go())
    assert old == {"10.0.0.1:80": 100, "10.0.0.2:80": 50}
    assert back == {"10.0.0.1:80": 0, "10.0.0.2:80": 5}
    assert contract.state.upstreams["svc1"]["nodes"] == [{"address": "10.0.0.1:80", "weight": 100},
                                                         {"address": "10.0.0.2:80", "weight": 50}]
    versions = [r["version"] for r in contract.state.releases]
    assert len(versions) == 2 and len(set(versions)) == 2
    assert len(contract.requests("POST", "/api/v1/account/login/username")) == 1


def test_upstream_returns_the_config(contract):
    up = run(apipark(contract).upstream("svc1"))
    for field in ("driver", "balance", "timeout", "retry", "limit_peer_second", "proxy_headers",
                  "scheme", "pass_host", "upstream_host", "nodes", "discover"):
        assert field in up
    assert up["nodes"][1] == {"address": "10.0.0.2:80", "weight": 50}


def test_publish_failure_says_saved_not_published(contract):
    contract.state.publish_error = "release conflict"
    with pytest.raises(GatewayRefused) as ei:
        run(apipark(contract).set_weights("svc1", {"10.0.0.2:80": 0}))
    msg = str(ei.value)
    assert "saved but not published" in msg and "release conflict" in msg
    assert "/api/v1/service/publish/release/do?service=svc1" in msg
    assert "\n" not in msg
    assert len(contract.requests("PUT", "/api/v1/service/upstream")) == 1


@pytest.mark.parametrize("reply", ["http401", "envelope"])
def test_expired_session_relogs_once(contract, reply):
    contract.state.auth_reply = reply
    client = apipark(contract)

    async def go():
        await client.login()
        contract.state.expire_once = True
        return await client.set_weights("svc1", {"10.0.0.1:80": 7})

    assert run(go()) == {"10.0.0.1:80": 100}
    assert len(contract.requests("POST", "/api/v1/account/login/username")) == 2
    assert contract.state.upstreams["svc1"]["nodes"][0]["weight"] == 7
    assert len(contract.state.releases) == 1


def test_session_refused_twice_is_refused(contract):
    contract.state.always_refuse_session = True
    with pytest.raises(GatewayRefused) as ei:
        run(apipark(contract).upstream("svc1"))
    assert "after a fresh login" in str(ei.value)
    assert len(contract.requests("POST", "/api/v1/account/login/username")) == 2
    assert len(contract.requests("GET", "/api/v1/service/upstream")) == 2


def test_wrong_password_is_refused_without_the_password(contract):
    with pytest.raises(GatewayRefused) as ei:
        run(apipark(contract, password="wrong-horse-battery").upstream("svc1"))
    msg = str(ei.value)
    assert "wrong user name or password" in msg and contract.url in msg
    assert "wrong-horse-battery" not in msg and "\n" not in msg
    assert contract.requests("GET", "/api/v1/service/upstream") == []


def test_unknown_service_refused_nothing_written(contract):
    with pytest.raises(GatewayRefused) as ei:
        run(apipark(contract).set_weights("nope", {"10.0.0.1:80": 0}))
    assert str(ei.value) == (f"apipark {contract.url}: GET /api/v1/service/upstream?service=nope: "
                             "code 1: service not found")
    assert writes(contract) == []


def test_unknown_node_refused_nothing_written(contract):
    with pytest.raises(GatewayRefused) as ei:
        run(apipark(contract).set_weights("svc1", {"10.0.0.1:80": 0, "10.9.9.9:80": 0}))
    assert "10.9.9.9:80" in str(ei.value) and "nothing sent" in str(ei.value)
    assert writes(contract) == []


def test_bad_weight_is_usage_error(contract):
    with pytest.raises(PathsteerError):
        run(apipark(contract).set_weights("svc1", {"10.0.0.1:80": -1}))
    assert contract.requests() == []


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_connection_refused_is_api_error_one_line():
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(GatewayApiError) as ei:
        run(ApiparkClient(url, username="admin", password=PASSWORD, timeout_s=2).upstream("svc1"))
    msg = str(ei.value)
    assert not isinstance(ei.value, GatewayRefused)
    assert msg.startswith(f"apipark {url}: POST /api/v1/account/login/username: ")
    assert "refused" in msg.lower() and "\n" not in msg and PASSWORD not in msg


def test_non_json_body_is_api_error(contract):
    contract.state.garbage = True
    with pytest.raises(GatewayApiError) as ei:
        run(apipark(contract).upstream("svc1"))
    msg = str(ei.value)
    assert not isinstance(ei.value, GatewayRefused)
    assert "not JSON" in msg and "\n" not in msg and PASSWORD not in msg


def test_timeout_is_api_error(contract):
    contract.state.delay_s = 1.0
    with pytest.raises(GatewayApiError) as ei:
        run(apipark(contract, timeout_s=0.2).upstream("svc1"))
    assert "no answer within 0.2s" in str(ei.value)


def test_client_repr_hides_password(contract):
    assert PASSWORD not in repr(apipark(contract))


# ---------------------------------------------------------------- Apinto


def test_apinto_set_weights_patch_and_confirm(contract):
    before = run(ApintoClient(contract.url).set_weights("svc1", {"10.0.0.2:80": 0}))
    assert before == {"10.0.0.2:80": 20}
    patches = contract.requests("PATCH", "/api/service/svc1")
    assert len(patches) == 1
    assert patches[0].json == {"nodes": ["10.0.0.1:80 weight=10", "10.0.0.2:80 weight=0"]}
    # GET, PATCH, then a confirming re-GET
    assert [r.method for r in contract.requests()] == ["GET", "PATCH", "GET"]
    assert contract.state.services["svc1"]["nodes"][1] == "10.0.0.2:80 weight=0"
    assert contract.state.services["svc1"]["timeout"] == 3000


def test_apinto_ignored_patch_is_refused(contract):
    contract.state.ignore_patch = True
    with pytest.raises(GatewayRefused) as ei:
        run(ApintoClient(contract.url).set_weights("svc1", {"10.0.0.1:80": 0}))
    msg = str(ei.value)
    assert "re-GET" in msg and "10.0.0.1:80 weight=10 (wanted 0)" in msg


def test_apinto_unknown_service_carries_its_text(contract):
    with pytest.raises(GatewayRefused) as ei:
        run(ApintoClient(contract.url).set_weights("ghost", {"10.0.0.1:80": 0}))
    assert str(ei.value) == (f"apinto {contract.url}: GET /api/service/ghost: HTTP 500: "
                             "ghost@service not found")
    assert writes(contract) == []


def test_apinto_unknown_node_nothing_sent(contract):
    with pytest.raises(GatewayRefused) as ei:
        run(ApintoClient(contract.url).set_weights("svc1", {"10.0.0.3:80": 0}))
    assert "10.0.0.3:80" in str(ei.value)
    assert writes(contract) == []


def test_apinto_long_error_text_trimmed(contract):
    contract.state.services.pop("svc1")
    with pytest.raises(GatewayRefused) as ei:
        run(ApintoClient(contract.url).service("x" * 500))
    words = str(ei.value).split("HTTP 500: ", 1)[1]
    assert len(words) <= 200 and "\n" not in str(ei.value)


def test_apinto_connection_refused():
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(GatewayApiError) as ei:
        run(ApintoClient(url, timeout_s=2).service("svc1"))
    assert not isinstance(ei.value, GatewayRefused)
    assert str(ei.value).startswith(f"apinto {url}: GET /api/service/svc1: ")


def test_set_blocklist_create_update_delete(contract):
    client = ApintoClient(contract.url)
    run(client.set_blocklist("pathsteer-xdp", ["1.2.3.4", "10.0.0.0/24"], priority=3))
    posts = contract.requests("POST", "/api/strategy")
    assert len(posts) == 1
    assert posts[0].json == {"name": "pathsteer-xdp", "driver": "visit", "priority": 3,
                             "filters": {"ip": ["1.2.3.4", "10.0.0.0/24"]},
                             "visit": {"visit_rule": "refuse", "continue": False}}
    contract.clear()

    run(client.set_blocklist("pathsteer-xdp", ["5.6.7.8"]))
    assert [(r.method, r.path) for r in contract.requests()] == [
        ("GET", "/api/strategy/pathsteer-xdp"), ("PUT", "/api/strategy/pathsteer-xdp")]
    assert contract.state.strategies["pathsteer-xdp"]["filters"] == {"ip": ["5.6.7.8"]}
    assert contract.state.strategies["pathsteer-xdp"]["priority"] == 1
    contract.clear()

    # empty: the strategy is deleted (never an empty ip filter)
    run(client.set_blocklist("pathsteer-xdp", []))
    assert [r.method for r in contract.requests()] == ["GET", "DELETE"]
    assert "pathsteer-xdp" not in contract.state.strategies
    contract.clear()
    run(client.set_blocklist("pathsteer-xdp", []))
    assert [r.method for r in contract.requests()] == ["GET"]


# ---------------------------------------------------------------- access log


def test_access_log_output_fields():
    body = access_log_output("http://10.0.0.9:8089/apinto", name="ps")
    assert body["name"] == "ps" and body["driver"] == "http_output"
    assert body["scopes"] == ["access_log"] and body["method"] == "POST"
    assert body["url"] == "http://10.0.0.9:8089/apinto" and body["type"] == "json"
    fields = body["formatter"]["fields"]
    for f in ("$msec", "$remote_addr", "$src_ip", "$proxy_addr", "$status", "$proxy_status",
              "$request_time", "$proxy_time", "$request_length", "$response_length",
              "$auth_status", "$block_name", "$service", "$api", "$node", "$cluster",
              "$request_id"):
        assert f in fields
    assert "$remote_addr" in access_log_output.__doc__ and "X-Real-IP" in access_log_output.__doc__
    with pytest.raises(PathsteerError):
        access_log_output("http://x/", kind="kafka_output")
