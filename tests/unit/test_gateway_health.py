"""Path health out: the weight each gateway server gets from the paths that reach it (pure)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, strategies as st

from pathsteer.gateways.health import Health, Route, Server, changes, plan, restore, route_of

A = Server("be_app", "a", "198.51.100.21", 100)
B = Server("be_app", "b", "203.0.113.21", 50)
OTHER = Server("be_other", "x", "192.0.2.7", 10)
ROUTES = [Route(ipaddress.ip_network("198.51.100.0/24"), ("p1",)),
          Route(ipaddress.ip_network("203.0.113.0/24"), ("p2",)),
          Route(ipaddress.ip_network("198.51.100.16/28"), ("p3",))]
UP = {"p1": "up", "p2": "up", "p3": "up"}


def weights(verdicts) -> dict[str, int]:
    return {k[1]: v.weight for k, v in verdicts.items()}


def test_servers_on_up_paths_keep_the_weight_they_were_found_with():
    v = plan([A, B], ROUTES, UP)
    assert weights(v) == {"a": 100, "b": 50}
    assert v[A.key].health is Health.UP and v[A.key].path == "p3"  # the longest prefix holding it
    assert v[A.key].prefix == "198.51.100.16/28" and v[A.key].why == "198.51.100.16/28 is on p3, up"


def test_a_server_whose_path_is_down_or_drained_is_drained_and_the_other_keeps_its_weight():
    for state in ("down", "drained"):
        v = plan([A, B], ROUTES, {**UP, "p3": state})
        assert weights(v) == {"a": 0, "b": 50}
        assert v[A.key].health is Health.DOWN and v[A.key].why == f"198.51.100.16/28 is on p3, {state}: drained"


def test_no_eligible_path_drains_and_a_degraded_path_lowers_the_weight():
    v = plan([A, B], [Route(ipaddress.ip_network("198.51.100.0/24"), ()), ROUTES[1]], {"p2": "degraded"})
    assert weights(v) == {"a": 0, "b": 25}
    assert v[A.key].why == "198.51.100.0/24: no eligible path: drained"
    assert v[B.key].why == "203.0.113.0/24 is on p2, degraded: weight 50 → 25"
    assert weights(plan([B], ROUTES[1:2], {"p2": "degraded"}, degraded_factor=0.01)) == {"b": 1}  # never 0 for degraded


def test_the_best_carrying_path_decides():
    weighted = [Route(ipaddress.ip_network("198.51.100.0/24"), ("p1", "p2"))]
    a = Server("be", "a", "198.51.100.9", 80)
    assert weights(plan([a], weighted, {"p1": "down", "p2": "up"})) == {"a": 80}
    assert weights(plan([a], weighted, {"p1": "down", "p2": "degraded"})) == {"a": 40}


def test_unsteered_or_unresolved_servers_are_left_as_found():
    lost = Server("be_app", "c", None, 7)
    v = plan([OTHER, lost, Server("be_app", "d", "not-an-ip", 3)], ROUTES, {})
    assert weights(v) == {"x": 10, "c": 7, "d": 3}
    assert v[OTHER.key].health is Health.UNKNOWN and v[OTHER.key].why == "not steered (its address is in no destination)"


def test_the_last_servers_of_a_backend_are_never_drained():
    """Fail open: every server of be_app behind a dead path as pathsteer sees it — the gateway's
    own checks decide, pathsteer drains none."""
    v = plan([A, B], ROUTES, {"p1": "down", "p2": "down", "p3": "down"})
    assert weights(v) == {"a": 100, "b": 50}
    assert v[B.key].why == ("203.0.113.0/24 is on p2, down; kept: the last servers of backend be_app are never "
                            "drained (fail open)")
    # A server the operator set to 0 does not count as one that carries traffic.
    v = plan([A, Server("be_app", "b", "203.0.113.21", 0)], ROUTES, {"p3": "down", "p2": "up"})
    assert weights(v) == {"a": 100, "b": 0}


def test_changes_and_restore_name_only_what_differs():
    v = plan([A, B], ROUTES, {**UP, "p3": "down"})
    assert [c.server.name for c in changes(v, {A.key: 100, B.key: 50})] == ["a"]
    assert changes(v, {A.key: 0, B.key: 50}) == []
    assert restore([A, B], {A.key: 0, B.key: 50}) == [(A, 100)]


def test_a_degraded_factor_out_of_range_is_one_line():
    with pytest.raises(ValueError, match=r"degraded_factor 0 must be in \(0, 1\]"):
        plan([A], ROUTES, UP, degraded_factor=0)


def test_route_of_matches_the_family_and_the_longest_prefix():
    six = Route(ipaddress.ip_network("2001:db8:100::/48"), ("p1",))
    assert route_of("2001:db8:100::10", [six, *ROUTES]) is six
    assert route_of("198.51.100.200", [six, *ROUTES]) is ROUTES[0]
    assert route_of("10.0.0.1", ROUTES) is None and route_of(None, ROUTES) is None


@given(st.lists(st.tuples(st.sampled_from(["b1", "b2"]), st.integers(0, 3), st.integers(0, 255),
                          st.sampled_from(["up", "degraded", "down", "drained", "unknown"])), max_size=12))
def test_every_backend_that_had_weight_keeps_some(rows):
    servers, states, routes = [], {}, []
    for i, (backend, _, weight, state) in enumerate(rows):
        servers.append(Server(backend, f"s{i}", f"10.9.{i}.1", weight))
        routes.append(Route(ipaddress.ip_network(f"10.9.{i}.0/24"), (f"p{i}",)))
        states[f"p{i}"] = state
    v = plan(servers, routes, states)
    for backend in ("b1", "b2"):
        mine = [x for x in v.values() if x.server.backend == backend]
        if any(x.server.found_weight > 0 for x in mine):
            assert any(x.weight > 0 for x in mine)
        for x in mine:
            assert x.weight <= x.server.found_weight
