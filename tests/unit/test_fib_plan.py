"""fib's pure core: prefix keys, nexthop ids, targets, the diff (plan), ip -batch lines, encoding."""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pathsteer import netlink as nl
from pathsteer.dataplane.fib_plan import (
    NH_GROUP_FIRST, NH_GROUP_LAST, NH_PATH_BASE, FibState, GroupParams, PathNexthop, Plan, applied, batch_lines,
    desired_from, is_group_id, key, parse_path_nh_id, path_nexthops, path_nh_id, plan, prefix_of, targets)
from pathsteer.routes import Desired, NextHop, PathLink, RouteIntent
from pathsteer.errors import UsageError

N = ipaddress.ip_network
A = ipaddress.ip_address
PATHS = [PathLink("p1", 1, "r-p1", A("10.200.1.2"), A("2001:db8:200:1::2")),
         PathLink("p2", 2, "r-p2", A("10.200.2.2"), A("2001:db8:200:2::2")),
         PathLink("p3", 3, "r-p3", A("10.200.3.2"))]          # no IPv6 gateway
NHS = path_nexthops(PATHS)
BY_ID = {nh.id: nh for nh in NHS.values()}
P1, P2, P3 = (path_nh_id(i, 4) for i in (1, 2, 3))
BUCKETS = 128


def d(mapping: dict[str, tuple]) -> Desired:
    out = {}
    for text, hops in mapping.items():
        prefix = N(text)
        out[prefix] = RouteIntent(prefix, tuple(NextHop(*h) if isinstance(h, tuple) else NextHop(h) for h in hops))
    return Desired(out)


def run(des: Desired, have: FibState | None = None):
    have = have or FibState()
    p = plan(targets(des, NHS), have, BY_ID, BUCKETS)
    return p, applied(have, p, BUCKETS)


@pytest.mark.parametrize("text", ["198.51.100.0/24", "0.0.0.0/0", "10.1.2.3/32", "2001:db8:100::/48", "::/0",
                                  "2001:db8::1/128"])
def test_key_round_trip(text):
    assert prefix_of(key(N(text))) == N(text)


def test_keys_of_v4_and_v6_never_collide():
    assert key(N("0.0.0.0/0")) != key(N("::/0"))
    assert key(N("10.0.0.0/8")) != key(N("10.0.0.0/9"))


def test_nexthop_ids_are_ours_and_decode():
    assert path_nh_id(1, 4) == NH_PATH_BASE + 1 == 0x50530001
    assert path_nh_id(7, 6) == 0x50531007
    assert parse_path_nh_id(0x50531007) == (7, 6)
    assert parse_path_nh_id(0x50530001) == (1, 4)
    assert parse_path_nh_id(100) is None and parse_path_nh_id(NH_GROUP_FIRST) is None
    assert is_group_id(NH_GROUP_FIRST) and not is_group_id(P1)
    with pytest.raises(UsageError):
        path_nh_id(0x1000, 4)


def test_targets_single_and_group_members_sorted_by_id():
    t = targets(d({"198.51.100.0/24": ("p2",), "203.0.113.0/24": (("p2", 1), ("p1", 3)),
                   "2001:db8:100::/48": ("p1",)}), NHS)
    assert t[key(N("198.51.100.0/24"))] == P2
    assert t[key(N("203.0.113.0/24"))] == ((P1, 3), (P2, 1))
    assert t[key(N("2001:db8:100::/48"))] == path_nh_id(1, 6)


@pytest.mark.parametrize("routes, message", [
    ({"198.51.100.0/24": ("p9",)}, "path 'p9' is unknown"),
    ({"2001:db8:100::/48": ("p3",)}, "path 'p3' has no IPv6 gateway"),
    ({"198.51.100.0/24": (("p1", 0),)}, "weight 0 of 'p1' is out of range"),
    ({"198.51.100.0/24": (("p1", 256),)}, "weight 256"),
    ({"198.51.100.0/24": ("p1", "p1")}, "path 'p1' given twice"),
    ({"198.51.100.0/24": ()}, "no next hop"),
])
def test_targets_refuse_what_cannot_be_routed(routes, message):
    with pytest.raises(UsageError, match=message):
        targets(d(routes), NHS)


def test_first_apply_sends_nexthops_groups_routes():
    p, state = run(d({"198.51.100.0/24": ("p1",), "203.0.113.0/24": (("p1", 3), ("p2", 1))}))
    assert [nh.id for nh in p.path_nexthops] == [P1, P2]
    assert p.groups_put == {NH_GROUP_FIRST: ((P1, 3), (P2, 1))}
    assert p.routes_put == {key(N("198.51.100.0/24")): P1, key(N("203.0.113.0/24")): NH_GROUP_FIRST}
    assert not p.routes_del and not p.groups_del
    assert state.routes == p.routes_put


def test_same_desired_twice_sends_nothing():
    des = d({"198.51.100.0/24": ("p1",), "203.0.113.0/24": (("p1", 3), ("p2", 1))})
    _p, state = run(des)
    p, _ = run(des, state)
    assert p.empty()


def test_prefixes_with_the_same_members_share_one_group():
    p, _ = run(d({"198.51.100.0/24": ("p1", "p2"), "203.0.113.0/24": ("p2", "p1")}))
    assert list(p.groups_put) == [NH_GROUP_FIRST]
    assert set(p.routes_put.values()) == {NH_GROUP_FIRST}


def test_weight_change_updates_the_group_in_place():
    _p, state = run(d({"198.51.100.0/24": (("p1", 1), ("p2", 1)), "203.0.113.0/24": (("p1", 1), ("p2", 1))}))
    p, state2 = run(d({"198.51.100.0/24": (("p1", 5), ("p2", 1)), "203.0.113.0/24": (("p1", 5), ("p2", 1))}), state)
    assert p.groups_put == {NH_GROUP_FIRST: ((P1, 5), (P2, 1))}
    assert not p.routes_put and not p.groups_del     # routes keep pointing at the same group id
    assert state2.groups == {NH_GROUP_FIRST: ((P1, 5), (P2, 1))}


def test_member_change_is_in_place_too():
    _p, state = run(d({"198.51.100.0/24": ("p1", "p2")}))
    p, _ = run(d({"198.51.100.0/24": ("p1", "p2", "p3")}), state)
    assert p.groups_put == {NH_GROUP_FIRST: ((P1, 1), (P2, 1), (P3, 1))} and not p.routes_put


def test_one_prefix_leaving_a_shared_group_gets_its_own():
    shared = {"198.51.100.0/24": ("p1", "p2"), "203.0.113.0/24": ("p1", "p2"), "192.0.2.0/24": ("p1", "p2")}
    _p, state = run(d(shared))
    p, state2 = run(d({**shared, "192.0.2.0/24": (("p1", 9), ("p2", 1))}), state)
    assert p.groups_put == {NH_GROUP_FIRST + 1: ((P1, 9), (P2, 1))}      # the majority kept the old group
    assert p.routes_put == {key(N("192.0.2.0/24")): NH_GROUP_FIRST + 1}
    assert state2.routes[key(N("198.51.100.0/24"))] == NH_GROUP_FIRST


def test_removed_prefix_and_its_unused_group_go():
    _p, state = run(d({"198.51.100.0/24": ("p1",), "203.0.113.0/24": ("p1", "p2")}))
    p, state2 = run(d({"198.51.100.0/24": ("p1",)}), state)
    assert p.routes_del == [key(N("203.0.113.0/24"))]
    assert p.groups_del == [NH_GROUP_FIRST]
    assert state2.groups == {}


def test_multipath_to_single_path_and_back_reuses_nothing_stale():
    _p, state = run(d({"198.51.100.0/24": ("p1", "p2")}))
    p, state = run(d({"198.51.100.0/24": ("p2",)}), state)
    assert p.routes_put == {key(N("198.51.100.0/24")): P2} and p.groups_del == [NH_GROUP_FIRST]
    p, _ = run(d({"198.51.100.0/24": ("p1", "p2")}), state)
    assert p.routes_put == {key(N("198.51.100.0/24")): NH_GROUP_FIRST}


def test_a_group_with_other_buckets_is_replaced_by_a_new_group():
    _p, state = run(d({"198.51.100.0/24": ("p1", "p2")}))
    state.group_buckets[NH_GROUP_FIRST] = 64
    p, _ = run(d({"198.51.100.0/24": ("p1", "p2")}), state)
    assert p.groups_put == {NH_GROUP_FIRST + 1: ((P1, 1), (P2, 1))}
    assert p.groups_del == [NH_GROUP_FIRST]


def test_drifted_path_nexthop_is_set_again():
    _p, state = run(d({"198.51.100.0/24": ("p1",)}))
    state.path_nexthops[P1] = PathNexthop(P1, 4, "r-p1", "10.200.1.99")
    p, _ = run(d({"198.51.100.0/24": ("p1",)}), state)
    assert p.path_nexthops == [BY_ID[P1]] and not p.routes_put


def test_route_deleted_by_hand_is_put_back():
    des = d({"198.51.100.0/24": ("p1",), "203.0.113.0/24": ("p2",)})
    _p, state = run(des)
    del state.routes[key(N("203.0.113.0/24"))]
    p, _ = run(des, state)
    assert p.routes_put == {key(N("203.0.113.0/24")): P2}
    assert p.describe(state) == ["route 203.0.113.0/24: missing, added via 0x50530002"]


def test_desired_from_state_round_trips():
    des = d({"198.51.100.0/24": ("p1",), "203.0.113.0/24": (("p1", 3), ("p2", 1)),
             "2001:db8:100::/48": ("p2",)})
    _p, state = run(des)
    assert desired_from(state, PATHS) == des


def test_batch_lines():
    p, _ = run(d({"198.51.100.0/24": ("p1",), "203.0.113.0/24": (("p1", 3), ("p2", 1))}))
    assert batch_lines(p, 200, GroupParams(buckets=64, idle_timer=2)) == [
        "nexthop replace id 1347616769 via 10.200.1.2 dev r-p1 proto 83",
        "nexthop replace id 1347616770 via 10.200.2.2 dev r-p2 proto 83",
        "nexthop replace id 1347682304 group 1347616769,3/1347616770,1 type resilient buckets 64 idle_timer 2 "
        "unbalanced_timer 0 proto 83",
        "route replace 198.51.100.0/24 table 200 proto 83 nhid 1347616769",
        "route replace 203.0.113.0/24 table 200 proto 83 nhid 1347682304",
    ]
    p2, _ = run(d({}), applied(FibState(), p, BUCKETS))
    assert batch_lines(p2, 254) == ["route del 198.51.100.0/24 table main proto 83",
                                    "route del 203.0.113.0/24 table main proto 83",
                                    "nexthop del id 1347682304"]


# -- wire format ----------------------------------------------------------------------------------

def test_route_message_v4():
    msg = nl.encode_route(key(N("198.51.100.0/24")), 200, 83, P1)
    length, kind, flags = struct.unpack_from("=IHH", msg)
    assert length == len(msg) == 16 + 12 + 8 + 8 + 8
    assert kind == nl.RTM_NEWROUTE
    assert flags == nl.NLM_F_REQUEST | nl.NLM_F_CREATE | nl.NLM_F_REPLACE   # replace: atomic per prefix
    family, dst_len, _s, _tos, table8, proto, _scope, rtype = struct.unpack_from("=8B", msg, 16)
    assert (family, dst_len, table8, proto, rtype) == (socket.AF_INET, 24, 200, 83, nl.RTN_UNICAST)
    a = nl.parse_attrs(msg, 28, len(msg))
    assert bytes(a[nl.RTA_DST]) == bytes([198, 51, 100, 0])
    assert struct.unpack("=I", a[nl.RTA_NH_ID])[0] == P1
    assert struct.unpack("=I", a[nl.RTA_TABLE])[0] == 200


def test_route_message_v6_big_table_and_delete():
    msg = nl.encode_route(key(N("2001:db8:100::/48")), 70000, 83, 0, delete=True)
    _l, kind, flags = struct.unpack_from("=IHH", msg)
    assert kind == nl.RTM_DELROUTE and not flags & nl.NLM_F_CREATE
    family, dst_len, _s, _tos, table8, proto, scope, _t = struct.unpack_from("=8B", msg, 16)
    assert (family, dst_len, table8, proto, scope) == (socket.AF_INET6, 48, nl.RT_TABLE_COMPAT, 83,
                                                        nl.RT_SCOPE_NOWHERE)
    a = nl.parse_attrs(msg, 28, len(msg))
    assert struct.unpack("=I", a[nl.RTA_TABLE])[0] == 70000 and nl.RTA_NH_ID not in a
    assert bytes(a[nl.RTA_DST]) == A("2001:db8:100::").packed


def test_group_message_weights_are_stored_minus_one():
    msg = nl.encode_nexthop(NH_GROUP_FIRST, 83, group=((P1, 3), (P2, 255)), buckets=64, idle_timer=1.5)
    a = nl.parse_attrs(msg, 24, len(msg))
    assert struct.unpack("=IBBH", bytes(a[nl.NHA_GROUP])[:8]) == (P1, 2, 0, 0)
    assert struct.unpack("=IBBH", bytes(a[nl.NHA_GROUP])[8:]) == (P2, 254, 0, 0)
    res = nl.parse_attrs(a[nl.NHA_RES_GROUP], 0, len(a[nl.NHA_RES_GROUP]))
    assert struct.unpack("=H", res[nl.NHA_RES_GROUP_BUCKETS])[0] == 64
    assert struct.unpack("=I", res[nl.NHA_RES_GROUP_IDLE_TIMER])[0] == 150      # clock_t, USER_HZ 100


# -- plan against the straightforward per-prefix algorithm it replaced (same answers) -----------

def _reference_plan(want, have, want_nexthops, buckets):
    """plan as first written: a Python loop per prefix (kept here as the specification)."""
    p = Plan()
    distinct = set(want.values())
    used = {t for t in distinct if type(t) is int}
    used |= {m for t in distinct if type(t) is not int for m, _w in t}
    for nh_id in sorted(used):
        if have.path_nexthops.get(nh_id) != want_nexthops[nh_id]:
            p.path_nexthops.append(want_nexthops[nh_id])
    users = {}
    for prefix, nh_id in have.routes.items():
        if nh_id in have.groups:
            users.setdefault(nh_id, []).append(prefix)
    final = {}
    assign = dict(want)
    for gid in sorted(have.groups):
        if have.group_buckets.get(gid, buckets) != buckets:
            continue
        wishes = Counter(want[u] for u in users.get(gid, ()) if u in want and type(want[u]) is not int)
        if not wishes:
            continue
        current = have.groups[gid]
        best = max(wishes.items(), key=lambda kv: (kv[1], kv[0] == current))[0]
        final[gid] = best
        for u in users[gid]:
            if want.get(u) == best:
                assign[u] = gid
    by_members = {}
    for gid, m in final.items():
        by_members.setdefault(m, gid)
    taken = set(have.groups) | set(final)
    next_free = NH_GROUP_FIRST
    for prefix, t in assign.items():
        if type(t) is int:
            continue
        gid = by_members.get(t)
        if gid is None:
            while next_free in taken:
                next_free += 1
            assert next_free <= NH_GROUP_LAST
            gid = next_free
            taken.add(gid)
            final[gid] = t
            by_members[t] = gid
        assign[prefix] = gid
    p.groups_put = {g: m for g, m in sorted(final.items())
                    if have.groups.get(g) != m or have.group_buckets.get(g, buckets) != buckets}
    if assign != have.routes:
        p.routes_put = dict(assign.items() - have.routes.items()) if have.routes else assign
        p.routes_del = sorted(have.routes.keys() - want.keys())
    p.groups_del = sorted(g for g in have.groups if g not in final)
    return p


def _same_plan(a, b, ordered: bool):
    assert a.path_nexthops == b.path_nexthops
    assert a.groups_put == b.groups_put and list(a.groups_put) == list(b.groups_put)
    assert a.routes_put == b.routes_put
    if ordered:
        assert list(a.routes_put) == list(b.routes_put)
    assert a.routes_del == b.routes_del and a.groups_del == b.groups_del


_UNIVERSE = [key(N(f"10.{i}.0.0/16")) for i in range(12)] + [key(N(f"2001:db8:{i}::/48")) for i in range(3)]
_MEMBERS = [((P1, 1), (P2, 1)), ((P1, 2), (P2, 1)), ((P1, 1), (P2, 1), (P3, 1)), ((P2, 5), (P3, 1))]
_TARGETS = st.sampled_from([P1, P2, P3] + _MEMBERS)
_GIDS = [NH_GROUP_FIRST + i for i in range(4)]


@settings(max_examples=300, deadline=None)
@given(want_items=st.lists(st.tuples(st.sampled_from(_UNIVERSE), _TARGETS), max_size=15),
       have_items=st.lists(st.tuples(st.sampled_from(_UNIVERSE), st.sampled_from([P1, P2, 0] + _GIDS)), max_size=15),
       groups=st.dictionaries(st.sampled_from(_GIDS), st.sampled_from(_MEMBERS), max_size=4),
       odd_buckets=st.sets(st.sampled_from(_GIDS), max_size=2),
       shared=st.booleans())
def test_plan_answers_as_the_per_prefix_algorithm(want_items, have_items, groups, odd_buckets, shared):
    # targets() hands out one object per choice; also check value-equal copies (shared=False)
    pool = {t: t for t in [P1, P2, P3] + _MEMBERS}
    want = {k: (pool[t] if shared else (tuple(list(t)) if type(t) is tuple else t)) for k, t in want_items}
    have = FibState(dict(have_items), dict(groups), {g: (64 if g in odd_buckets else BUCKETS) for g in groups},
                    {P1: BY_ID[P1]})
    got = plan(want, have, BY_ID, BUCKETS)
    ref = _reference_plan(want, have, BY_ID, BUCKETS)
    _same_plan(got, ref, ordered=not have.routes)


def test_plan_of_a_weight_change_over_many_prefixes_moves_no_route():
    keys = [key(N(f"10.{i // 256}.{i % 256}.0/24")) for i in range(20_000)]
    before = dict.fromkeys(keys, ((P1, 1), (P2, 1)))
    _p, state = run_targets(before)
    p = plan(dict.fromkeys(keys, ((P1, 3), (P2, 1))), state, BY_ID, BUCKETS)
    assert p.groups_put == {NH_GROUP_FIRST: ((P1, 3), (P2, 1))} and not p.routes_put and not p.routes_del


def run_targets(want):
    p = plan(want, FibState(), BY_ID, BUCKETS)
    return p, applied(FibState(), p, BUCKETS)
