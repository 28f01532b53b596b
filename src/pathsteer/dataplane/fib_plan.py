"""The fib data plane's pure core: from a `Desired` and what the kernel holds to the changes.

Nothing here does I/O; `fib.FibDataPlane` reads the kernel into a `FibState`, asks `plan` for
the difference and sends it. Names and numbers that mark kernel objects as pathsteer's:

- routes carry ``proto 83`` (`RTPROT_PATHSTEER`; unassigned in /etc/iproute2/rt_protos), in
  our table or, in main-table mode, in ``main``; rules carry ``protocol 83`` too;
- nexthop ids ``0x5053_0000 + path.id`` (IPv4) and ``0x5053_1000 + path.id`` (IPv6): one
  nexthop object per (path, family), ``via gateway dev interface``; "PS" = 0x50 0x53;
- nexthop ids ``0x5054_0000 .. 0x505F_FFFF``: resilient groups (``type resilient``), allocated
  lowest-free; a multipath route points at one, a single-path route at its path's nexthop;
- the stash table (main-table mode) ``0x5053_0000``: a copy of every route pathsteer replaced
  in main, restored on a clean stop. No rule looks it up, so it never routes anything.

So a restart finds everything of ours by these marks alone (no pins, no files).
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from itertools import compress
from dataclasses import dataclass, field

from pathsteer.routes import Desired, NextHop, PathLink, Prefix, RouteIntent
from pathsteer.errors import UsageError

RTPROT_PATHSTEER = 83
NH_PATH_BASE = 0x5053_0000
NH_V6_OFFSET = 0x1000
MAX_PATH_ID = 0x0FFF
NH_GROUP_FIRST = 0x5054_0000
NH_GROUP_LAST = 0x505F_FFFF
STASH_TABLE = 0x5053_0000
RT_TABLE_MAIN = 254

Members = tuple[tuple[int, int], ...]   # (path nexthop id, weight 1..255), sorted by id
Target = int | Members                  # a path nexthop id, or the members of a group
Key = int  # a prefix as one int (`key`): ints hash in C, ipaddress networks in Python (~10x slower)


def key(prefix: Prefix) -> Key:
    """``network number << 9 | prefixlen << 1 | is_v6``: a dict key for 1M prefixes at C speed.

    The network number is the address without its host bits (``address >> (32 - prefixlen)``,
    128 for IPv6): a dict indexes by the low bits of the hash, which for an int is the int, so
    the address itself (eight zero bits in every /24) would crowd 1M keys into few slots."""
    plen = prefix._prefixlen
    if prefix._version == 4:
        return ((prefix.network_address._ip >> (32 - plen)) << 9) | (plen << 1)
    return ((prefix.network_address._ip >> (128 - plen)) << 9) | (plen << 1) | 1


def key_of(address: int, prefixlen: int, v6: bool) -> Key:
    """The key of ``address/prefixlen`` (host bits dropped)."""
    return ((address >> ((128 if v6 else 32) - prefixlen)) << 9) | (prefixlen << 1) | v6


def key_address(k: Key) -> int:
    """The network address of a key."""
    return (k >> 9) << (((128 if k & 1 else 32) - ((k >> 1) & 0xFF)))


def prefix_of(k: Key) -> Prefix:
    if k & 1:
        return ipaddress.IPv6Network((key_address(k), (k >> 1) & 0xFF))
    return ipaddress.IPv4Network((key_address(k), (k >> 1) & 0xFF))


def path_nh_id(path_id: int, version: int) -> int:
    if not 1 <= path_id <= MAX_PATH_ID:
        raise UsageError(f"path id {path_id} is out of range (1..{MAX_PATH_ID})")
    return NH_PATH_BASE + (NH_V6_OFFSET if version == 6 else 0) + path_id


def parse_path_nh_id(nh_id: int) -> tuple[int, int] | None:
    """``(path id, IP version)`` of one of our path nexthop ids, else None."""
    off = nh_id - NH_PATH_BASE
    if 0 < off <= MAX_PATH_ID:
        return off, 4
    if NH_V6_OFFSET < off <= NH_V6_OFFSET + MAX_PATH_ID:
        return off - NH_V6_OFFSET, 6
    return None


def is_group_id(nh_id: int) -> bool:
    return NH_GROUP_FIRST <= nh_id <= NH_GROUP_LAST


def is_ours(nh_id: int) -> bool:
    return parse_path_nh_id(nh_id) is not None or is_group_id(nh_id)


@dataclass(frozen=True)
class PathNexthop:
    """``ip nexthop replace id ID via GATEWAY dev IFNAME``."""

    id: int
    version: int
    interface: str
    gateway: str


@dataclass(frozen=True)
class GroupParams:
    """Resilient group settings: ``buckets N idle_timer T unbalanced_timer U`` (seconds).

    A bucket keeps its path until it has been idle ``idle_timer`` seconds, so a weight change
    moves idle buckets only: flows stay put. ``unbalanced_timer`` 0: never forced.
    """

    buckets: int = 128
    idle_timer: float = 1.0
    unbalanced_timer: float = 0.0


@dataclass
class FibState:
    """What the kernel holds of ours: routes (prefix → nexthop id), groups and path nexthops."""

    routes: dict[Key, int] = field(default_factory=dict)
    groups: dict[int, Members] = field(default_factory=dict)
    group_buckets: dict[int, int] = field(default_factory=dict)
    path_nexthops: dict[int, PathNexthop] = field(default_factory=dict)


@dataclass
class Plan:
    """Changes in the order they are sent: nexthops, groups, routes, then removals."""

    path_nexthops: list[PathNexthop] = field(default_factory=list)
    groups_put: dict[int, Members] = field(default_factory=dict)
    routes_put: dict[Key, int] = field(default_factory=dict)
    routes_del: list[Key] = field(default_factory=list)
    groups_del: list[int] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.path_nexthops or self.groups_put or self.routes_put or self.routes_del or self.groups_del)

    def describe(self, have: FibState) -> list[str]:
        """One line per change, for logs and reconcile's answer."""
        out = [f"nexthop {nh.id:#x} ({nh.interface} via {nh.gateway}): "
               f"{'changed' if nh.id in have.path_nexthops else 'missing'}, set" for nh in self.path_nexthops]
        out += [f"group {g:#x}: {'weights ' + _members(have.groups[g]) + ' → ' if g in have.groups else 'new '}"
                f"{_members(m)}" for g, m in self.groups_put.items()]
        out += [f"route {prefix_of(k)}: "
                f"{'nexthop ' + hex(have.routes[k]) + ' → ' if k in have.routes else 'missing, added via '}"
                f"{n:#x}" for k, n in self.routes_put.items()]
        out += [f"route {prefix_of(k)}: removed" for k in self.routes_del]
        out += [f"group {g:#x}: removed" for g in self.groups_del]
        return out


def _members(m: Members) -> str:
    return "/".join(f"{i:#x},{w}" for i, w in m)


def path_nexthops(paths: list[PathLink]) -> dict[tuple[str, int], PathNexthop]:
    """``(path name, version) → PathNexthop`` for every path with a gateway of that family."""
    out = {}
    for p in paths:
        for version, gw in ((4, p.gateway), (6, p.gateway6)):
            if gw is not None:
                out[(p.name, version)] = PathNexthop(path_nh_id(p.id, version), version, p.interface, str(gw))
    return out


def targets(desired: Desired, nexthops: dict[tuple[str, int], PathNexthop]) -> dict[Key, Target]:
    """Each prefix's target; raises `UsageError` (nothing touched yet) for what cannot be routed.

    Written for 1M prefixes: most share a few next-hop choices, so a choice is resolved once
    per tuple object (by identity, then by value; a run of prefixes with the same tuple skips
    even that) and the loop body stays small. Prefixes with the same choice get the same
    target object (`plan` counts them by identity).
    """
    out: dict[Key, Target] = {}
    by_id: tuple[dict, dict] = ({}, {})                         # IPv4, IPv6: id(nexthops) → (nexthops, target)
    by_value: dict[tuple[tuple[NextHop, ...], int], Target] = {}
    last_hops, last_target = [None, None], [None, None]         # per family: the last tuple, its target
    for prefix, intent in desired.routes.items():
        if intent.prefix is not prefix and intent.prefix != prefix:
            raise UsageError(f"routes[{prefix}]: intent is for {intent.prefix}")
        hops = intent.nexthops
        plen = prefix._prefixlen
        if prefix._version == 4:
            v6 = 0
            k = ((prefix.network_address._ip >> (32 - plen)) << 9) | (plen << 1)
        else:
            v6 = 1
            k = ((prefix.network_address._ip >> (128 - plen)) << 9) | (plen << 1) | 1
        if hops is last_hops[v6]:
            out[k] = last_target[v6]
            continue
        hit = by_id[v6].get(id(hops))
        if hit is None or hit[0] is not hops:
            target = by_value.get((hops, v6))
            if target is None:
                target = by_value[(hops, v6)] = _target(prefix, intent, nexthops)
            hit = by_id[v6][id(hops)] = (hops, target)
        last_hops[v6], last_target[v6] = hops, hit[1]
        out[k] = hit[1]
    return out


def _target(prefix: Prefix, intent: RouteIntent, nexthops: dict[tuple[str, int], PathNexthop]) -> Target:
    if not intent.nexthops:
        raise UsageError(f"routes[{prefix}]: no next hop")
    ids: dict[int, int] = {}
    for hop in intent.nexthops:
        nh = nexthops.get((hop.path, prefix.version))
        if nh is None:
            known = {name for name, _v in nexthops}
            why = "has no IPv%d gateway" % prefix.version if hop.path in known else "is unknown"
            raise UsageError(f"routes[{prefix}]: path {hop.path!r} {why}")
        if not 1 <= hop.weight <= 255:
            raise UsageError(f"routes[{prefix}]: weight {hop.weight} of {hop.path!r} is out of range (1..255)")
        if nh.id in ids:
            raise UsageError(f"routes[{prefix}]: path {hop.path!r} given twice")
        ids[nh.id] = hop.weight
    return next(iter(ids)) if len(ids) == 1 else tuple(sorted(ids.items()))


def plan(want: dict[Key, Target], have: FibState, want_nexthops: dict[int, PathNexthop],
         buckets: int) -> Plan:
    """The changes that turn ``have`` into ``want`` (only differences).

    Groups: a group keeps its id and is changed in place (``ip nexthop replace``) so that its
    flows stay put. Of the prefixes using it, the largest set that wants the same members keeps
    it; others move to a group with their members, reused or new. A group with no user left is
    removed after the routes have moved. Path nexthops used by ``want`` are (re)set when missing
    or different; unused ones stay until stop.

    Written for 1M prefixes: no Python loop per prefix. A prefix's fate depends only on its pair
    (installed nexthop id, wanted target); the pairs are counted with `Counter` over C iterators
    (targets by identity: `targets` hands out one object per choice), each distinct pair decided
    once, and only the prefixes of pairs that change are picked out (``compress``).
    """
    p = Plan()
    routes = have.routes
    groups = have.groups
    keys, vals = want.keys(), want.values()
    objs = dict(zip(map(id, vals), vals))                 # distinct target objects, first seen first
    canon: dict[Target, Target] = {}
    by_id = {i: canon.setdefault(t, t) for i, t in objs.items()}   # id → one target per value
    distinct = list(canon)
    used = {t for t in distinct if type(t) is int}
    used |= {m for t in distinct if type(t) is not int for m, _w in t}
    for nh_id in sorted(used):
        nh = want_nexthops[nh_id]
        if have.path_nexthops.get(nh_id) != nh:
            p.path_nexthops.append(nh)

    final: dict[int, Members] = {}
    # (installed nexthop, wanted target) of every wanted prefix, in the caller's order; the
    # installed nexthops are looked up once (1M lookups in a dict of 1M: the expensive part)
    curs = list(map(routes.get, keys)) if routes else []
    pairs = Counter(zip(curs, map(id, vals))) if routes else Counter()
    if groups:
        def wishes_by(counted) -> dict[int, dict[Members, int]]:
            """What the users of each group want: members → how many, first seen first."""
            out: dict[int, dict[Members, int]] = {}
            for (cur, tid), n in counted.items():
                t = by_id.get(tid)
                if cur not in groups or t is None or type(t) is int:
                    continue
                w = out.setdefault(cur, {})
                w[t] = w.get(t, 0) + n
            return out
        wishes_of = wishes_by(pairs)
        in_have_order = None
        for gid in sorted(groups):
            if have.group_buckets.get(gid, buckets) != buckets:
                continue  # the bucket count cannot change in place: its users move to a new group
            wishes = wishes_of.get(gid)
            if not wishes:
                continue
            current = groups[gid]
            rank = {t: (n, t == current) for t, n in wishes.items()}
            top = max(rank.values())
            if sum(r == top for r in rank.values()) > 1:
                # a tie: the first seen among the group's users in the kernel's order wins
                # (as it always did); counted again in that order, only for ties
                if in_have_order is None:
                    in_have_order = wishes_by(Counter(zip(routes.values(), map(id, map(want.get, routes.keys())))))
                wishes = in_have_order[gid]
            final[gid] = max(wishes.items(), key=lambda kv: (kv[1], kv[0] == current))[0]
    kept = dict(final)                                    # group → the members its users keep it for
    by_members: dict[Members, int] = {}
    for gid, m in final.items():
        by_members.setdefault(m, gid)
    taken = set(groups) | set(final)
    next_free = NH_GROUP_FIRST
    for t in distinct:
        if type(t) is int or t in by_members:
            continue
        while next_free in taken:
            next_free += 1
        if next_free > NH_GROUP_LAST:
            raise UsageError(f"more than {NH_GROUP_LAST - NH_GROUP_FIRST + 1} distinct nexthop groups")
        taken.add(next_free)
        final[next_free] = t
        by_members[t] = next_free

    def assigned(cur: int | None, tid: int) -> int:
        t = by_id[tid]
        if type(t) is int:
            return t
        return cur if kept.get(cur) == t else by_members[t]  # type: ignore[arg-type]

    p.groups_put = {g: m for g, m in sorted(final.items())
                    if groups.get(g) != m or have.group_buckets.get(g, buckets) != buckets}
    if not routes:   # the first apply: every prefix, in the caller's order
        rule = {tid: assigned(None, tid) for tid in by_id}
        p.routes_put = dict(zip(keys, map(rule.__getitem__, map(id, vals))))
    else:
        rule2 = {pair: assigned(*pair) for pair in pairs}
        moving = {pair for pair, nh in rule2.items() if pair[0] != nh}
        if moving:
            mask = list(map(moving.__contains__, zip(curs, map(id, vals))))
            p.routes_put = dict(zip(compress(keys, mask),
                                    map(rule2.__getitem__, compress(zip(curs, map(id, vals)), mask))))
        installed = len(want) - sum(n for (cur, _t), n in pairs.items() if cur is None)
        if installed != len(routes):
            p.routes_del = sorted(routes.keys() - keys)
    p.groups_del = sorted(g for g in groups if g not in final)
    return p


def applied(have: FibState, p: Plan, buckets: int) -> FibState:
    """The state after ``p`` was applied to ``have`` (without failures)."""
    routes = dict(have.routes)
    routes.update(p.routes_put)
    for pfx in p.routes_del:
        routes.pop(pfx, None)
    groups = {g: m for g, m in have.groups.items() if g not in p.groups_del}
    groups.update(p.groups_put)
    gb = {g: (buckets if g in p.groups_put else have.group_buckets.get(g, buckets)) for g in groups}
    nhs = dict(have.path_nexthops)
    nhs.update({nh.id: nh for nh in p.path_nexthops})
    return FibState(routes, groups, gb, nhs)


def desired_from(state: FibState, paths: list[PathLink]) -> Desired:
    """The `Desired` that ``state`` implements (adopt); routes via unknown nexthops are left out."""
    names = {p.id: p.name for p in paths}

    def hop(nh_id: int, weight: int) -> NextHop | None:
        parsed = parse_path_nh_id(nh_id)
        if parsed is None or parsed[0] not in names:
            return None
        return NextHop(names[parsed[0]], weight)

    routes: dict[Prefix, RouteIntent] = {}
    for k, nh_id in state.routes.items():
        members = state.groups.get(nh_id, ((nh_id, 1),))
        hops = [hop(m, w) for m, w in members]
        if hops and all(hops):
            prefix = prefix_of(k)
            routes[prefix] = RouteIntent(prefix, tuple(hops))  # type: ignore[arg-type]
    return Desired(routes)


# -- iproute2 batch form (benchmark anchor, debugging) -------------------------------------------

def table_word(table: int) -> str:
    return "main" if table == RT_TABLE_MAIN else str(table)


def batch_lines(p: Plan, table: int, group: GroupParams = GroupParams(), proto: int = RTPROT_PATHSTEER) -> list[str]:
    """The same changes as ``ip -batch`` input lines, in the order `FibDataPlane` sends them."""
    lines = [f"nexthop replace id {nh.id} via {nh.gateway} dev {nh.interface} proto {proto}"
             for nh in p.path_nexthops]
    lines += [f"nexthop replace id {g} group {'/'.join(f'{m},{w}' for m, w in members)} type resilient "
              f"buckets {group.buckets} idle_timer {group.idle_timer:g} unbalanced_timer {group.unbalanced_timer:g} "
              f"proto {proto}" for g, members in p.groups_put.items()]
    t = table_word(table)
    lines += [f"route replace {prefix_of(k)} table {t} proto {proto} nhid {n}" for k, n in p.routes_put.items()]
    lines += [f"route del {prefix_of(k)} table {t} proto {proto}" for k in p.routes_del]
    lines += [f"nexthop del id {g}" for g in p.groups_del]
    return lines
