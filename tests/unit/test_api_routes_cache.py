"""`RoutesCache`: /routes from per-route fragments; whatever the order of queries, a body is
exactly what a fresh build of the current decision gives (pure: no daemon, no sockets)."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import replace
from types import SimpleNamespace

from hypothesis import given, settings, strategies as st

from pathsteer.api.app import RoutesCache, route_json
from pathsteer.policy import ChangeKind, PolicyKind
from pathsteer.policy.state import RouteStatus
from pathsteer.routes import NextHop
from pathsteer.steering import views

PREFIXES = [ipaddress.ip_network(f"198.51.{i}.0/24") for i in range(6)]


class Steer:
    """What the cache reads of a steering service: its decision and its clock."""

    def __init__(self, routes: tuple[RouteStatus, ...]) -> None:
        self.decision = SimpleNamespace(routes=routes)

    def _clock(self) -> views.Clock:
        return views.Clock(100.0, 1_700_000_100.0)


def route(i: int, path: str = "p1", since: float = 1.0, reason: str = "r", pending: str | None = None) -> RouteStatus:
    return RouteStatus(PREFIXES[i], PolicyKind.LOWEST_LATENCY, (NextHop(path),), since, ChangeKind.MEASURED,
                       reason, pending, ())


def fresh(steer: Steer, net=None, path=None, limit=100_000, offset=0) -> dict:
    return json.loads(RoutesCache().body(steer, net, path, limit, offset))


def test_a_body_has_every_route_with_since_and_no_age():
    s = Steer(tuple(route(i) for i in range(3)))
    body = json.loads(RoutesCache().body(s, None, None, 100_000, 0))
    assert body["total"] == 3 and [r["prefix"] for r in body["routes"]] == [str(p) for p in PREFIXES[:3]]
    assert body["routes"][0]["since"] == 1_700_000_001.0 and "age_s" not in body["routes"][0]


def test_the_last_whole_body_is_served_again_until_a_route_changes():
    s = Steer(tuple(route(i) for i in range(3)))
    cache = RoutesCache()
    first = cache.body(s, None, None, 100_000, 0)
    s.decision = SimpleNamespace(routes=tuple(route(i) for i in range(3)))  # a new decision, same content
    assert cache.body(s, None, None, 100_000, 0) is first
    s.decision = SimpleNamespace(routes=(route(0), route(1, "p2", since=5.0), route(2)))
    changed = json.loads(cache.body(s, None, None, 100_000, 0))
    assert changed["routes"][1]["via"] == "p2" and changed == fresh(s)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["p1", "p2", "wan-ä"]), st.integers(1, 1000)), max_size=4),
       st.text(max_size=40), st.none() | st.text(max_size=20), st.floats(0, 1e6))
def test_the_written_json_is_exactly_what_dumping_the_view_gives(hops, reason, pending, since):
    r = RouteStatus(PREFIXES[0], PolicyKind.WEIGHTED, tuple(NextHop(p, w) for p, w in hops), since,
                    ChangeKind.REBALANCED, reason, pending, ())
    clock = views.Clock(100.0, 1_700_000_100.0)
    view = views.route_view(r, clock)
    del view["age_s"]
    assert route_json(r, clock) == json.dumps(view, separators=(",", ":"))


def test_a_watched_table_is_made_ahead_and_served_without_work():
    s = Steer(tuple(route(i) for i in range(3)))
    cache = RoutesCache()
    assert not cache.wanted(s.decision)  # nobody asked: nothing made ahead (idle cost 0)
    cache.watch()
    assert cache.wanted(s.decision) and cache.ready(s.decision) is None
    cache.prebuild(s)
    assert not cache.wanted(s.decision)
    assert json.loads(cache.ready(s.decision)) == fresh(s)
    s.decision = SimpleNamespace(routes=(route(0, "p2", since=7.0), route(1), route(2)))
    assert cache.ready(s.decision) is None and cache.wanted(s.decision)  # a new decision: not served stale
    cache.prebuild(s)
    assert json.loads(cache.ready(s.decision)) == fresh(s)
    cache.body(s, None, "p2", 100_000, 0)  # a filtered query changes no made table
    assert json.loads(cache.ready(s.decision)) == fresh(s)


OPS = st.lists(st.tuples(
    st.sampled_from(["whole", "net", "path", "page", "change", "shrink", "grow"]),
    st.integers(0, 5), st.sampled_from(["p1", "p2"]), st.integers(0, 3)), min_size=1, max_size=25)


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_any_sequence_of_queries_and_changes_gives_what_a_fresh_build_gives(ops):
    routes = [route(i) for i in range(4)]
    s = Steer(tuple(routes))
    cache = RoutesCache()
    for op, i, path, n in ops:
        if op == "change" and i < len(routes):
            routes[i] = replace(routes[i], nexthops=(NextHop(path),), since=routes[i].since + 1, pending=f"x{n}")
        elif op == "shrink" and len(routes) > 1:
            routes.pop()
        elif op == "grow" and len(routes) < len(PREFIXES):
            routes.append(route(len(routes), path))
        s.decision = SimpleNamespace(routes=tuple(routes))
        query = {"whole": {}, "net": {"net": ipaddress.ip_network(f"198.51.{i}.0/24")}, "path": {"path": path},
                 "page": {"limit": n + 1, "offset": i % 3}}.get(op, {})
        args = dict(net=None, path=None, limit=100_000, offset=0) | query
        assert json.loads(cache.body(s, **args)) == fresh(s, **args), (op, args)
        made = cache.ready(s.decision)
        assert made is None or json.loads(made) == fresh(s), op
