"""The fib data plane: each destination prefix as a kernel route via a nexthop object.

    Desired ──targets()──▶ prefix → path nexthop | resilient group members
                 plan(want, FibState read from the kernel or cached) ──▶ Plan (differences only)
                 RouteSocket.send_batch: nexthops, groups, routes (256 per sendmsg), removals

Where the routes live (``table``):

- a table of ours (e.g. 200), looked up by one rule per family placed before main:
  ``ip rule add priority 1000 lookup 200 protocol 83``. The table holds only managed
  prefixes, so a lookup there that finds nothing falls through to the next rules (main,
  default) and unmanaged traffic keeps the kernel's own routing; a managed prefix wins over
  main even where main has something more specific, which is what "managed" means. One rule
  per family, not one per prefix: rules are searched linearly, 1M of them would not do. No
  ``suppress_prefixlength`` trick either: it would let main's own route for a managed prefix
  win. A clean stop removes the rules first, so every prefix falls back to main at once.
- ``None``: the main table. Every route main has at a managed prefix (not ours) is first
  copied into the stash table; ours then replaces the one with our metric (IPv4 0, IPv6
  1024) atomically, and those with another metric (which could win over ours) are deleted
  once ours is in place. A clean stop (or the prefix leaving `Desired`) copies them back —
  over ours, again as a replace — then deletes what is left of ours.

Multipath: one resilient nexthop group per set of (path, weight) members, changed in place
when the weights of all its prefixes change (`fib_plan.plan`), so buckets, and the flows in
them, stay put. Ids, ``proto`` number and the stash table are in `fib_plan`; ``adopt`` finds
our routes, nexthops and rules by them after a restart, also from a new ``ip netns exec``.

Reconcile: the kernel's route notifications (RTNLGRP_IPV4_ROUTE/IPV6_ROUTE) move the cached
state on, so a route deleted or changed by hand is repaired without reading 1M routes back;
anything the notifications cannot tell exactly (a nexthop, rule or link change — IPv4 routes
go silently with their nexthop or device —, a lost notification, someone else's route at a
managed prefix) and every ``full_every`` seconds: one filtered dump of the table instead (the
periodic one at most every `FULL_BUDGET_FACTOR` times its last duration: a dump of 1M routes
takes 1-2 s, and every 10 s would be a tenth of a core for a check of what notifications
already tell).

A crash leaves the kernel as it was: routes and nexthop objects do not belong to a process.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import time

from pathsteer import logs
from pathsteer.bpf.netns import in_netns
from pathsteer import netlink as nl
from pathsteer.dataplane.netlink_monitor import MonitorSocket
from pathsteer.dataplane.fib_plan import (
    RT_TABLE_MAIN, RTPROT_PATHSTEER, STASH_TABLE, FibState, GroupParams, Key, PathNexthop, Plan, applied,
    desired_from, is_group_id, key, parse_path_nh_id, path_nexthops, plan, targets)
from pathsteer.routes import Desired, PathLink
from pathsteer.errors import PathsteerError, UsageError

log = logging.getLogger("pathsteer.fib")

RESERVED_TABLES = {0: "unspec", 253: "default", 254: "main", 255: "local"}
MAIN_RULE_PRIORITY = 32766
V6_DEFAULT_METRIC = 1024  # IP6_RT_PRIO_USER: what a route without RTA_PRIORITY gets
FULL_BUDGET_FACTOR = 20   # periodic full reads: at most 1/20 of the time (5 % of a core)


def _ref(text: str) -> tuple[str, ...]:
    """The object a change line or a failure is about: ("route", "198.51.100.0/24"), ("group", "0x…")."""
    return tuple(w.rstrip(":") for w in text.split()[:2])


def _event(name: str, **fields: object) -> None:
    logs.event(log, name, **fields)


class FibDataPlane:
    """`DataPlane` over the kernel FIB. See the module docstring for the scheme.

    ``netns``: a named network namespace to work in (tests, benchmarks); the netlink socket is
    opened there and stays there. ``group``: resilient group settings.
    """

    def __init__(self, paths: list[PathLink], table: int | None = None, rule_priority: int = 1000, *,
                 group: GroupParams = GroupParams(), netns: str | None = None,
                 stash_table: int = STASH_TABLE, protocol: int = RTPROT_PATHSTEER,
                 watch: bool = True, full_every: float = 10.0) -> None:
        if table is not None and table in RESERVED_TABLES:
            raise UsageError(f"dataplane.table: {table} is the kernel's {RESERVED_TABLES[table]!r} table "
                             "(give a table of pathsteer's own, or none for main)")
        if table is not None and not 1 <= table < 2**32:
            raise UsageError(f"dataplane.table: {table} is out of range (1..{2**32 - 1})")
        if not 1 <= rule_priority < MAIN_RULE_PRIORITY:
            raise UsageError(f"dataplane.rule_priority: {rule_priority} must be in 1..{MAIN_RULE_PRIORITY - 1} "
                             "(before the main table's rule)")
        if not 1 <= group.buckets <= 0xFFFF:
            raise UsageError(f"dataplane.buckets: {group.buckets} is out of range (1..65535)")
        names = [p.name for p in paths]
        if len(set(names)) != len(names) or len({p.id for p in paths}) != len(paths):
            raise UsageError("paths: names and ids must be unique")
        self.paths = list(paths)
        self.owns_table = table is not None
        self.table = table if table is not None else RT_TABLE_MAIN
        self.rule_priority = rule_priority
        self.group = group
        self.netns = netns
        self.stash_table = stash_table
        self.protocol = protocol
        self._nexthops = path_nexthops(self.paths)
        self._by_id = {nh.id: nh for nh in self._nexthops.values()}
        with self._in_ns():
            self.sock = nl.RouteSocket()
            self._monitor = MonitorSocket() if watch else None
        self.full_every = full_every
        self._last_full = -float("inf")
        self._last_full_s = 0.0   # how long the last full read took
        self._state: FibState | None = None   # what we installed; None: read the kernel first
        self._rules_ok = False
        self._last_targets: tuple | None = None
        self._synced: dict | None = None   # the targets the kernel was last found (or made) to hold

    def _targets(self, desired: Desired):
        """`targets`, reused while the daemon hands the same `Desired` again (reconcile every
        second): a `Desired` is frozen and never changed once made; a new decision is a new one."""
        cached = self._last_targets
        if cached is not None and cached[0] is desired and cached[1] == len(desired.routes):
            return cached[2]
        want = targets(desired, self._nexthops)
        self._last_targets = (desired, len(desired.routes), want)
        return want

    def _in_ns(self):
        return in_netns(self.netns) if self.netns else contextlib.nullcontext()

    def close(self) -> None:
        self.sock.close()
        if self._monitor is not None:
            self._monitor.close()

    # -- DataPlane ----------------------------------------------------------------------------

    def adopt(self) -> Desired | None:
        state = self._read()
        self._state = state
        self._synced = None
        if not state.routes:
            return None
        desired = desired_from(state, self.paths)
        _event("fib.adopt", routes=len(state.routes), groups=len(state.groups), table=self.table)
        return desired

    def apply(self, desired: Desired) -> None:
        want = self._targets(desired)   # raises before anything is touched
        if self.owns_table and not self._rules_ok:
            self._ensure_rules()
        have = self._state if self._state is not None else self._read()
        p = plan(want, have, self._by_id, self.group.buckets)
        if p.empty():
            self._synced = want
            return
        t0 = time.perf_counter()
        failures = self._send(p, have)
        self._state = applied(have, p, self.group.buckets) if not failures else None
        self._synced = want if not failures else None
        _event("fib.apply", put=len(p.routes_put), removed=len(p.routes_del), groups=len(p.groups_put),
               nexthops=len(p.path_nexthops), failed=len(failures), ms=round((time.perf_counter() - t0) * 1e3, 1))
        if failures:
            more = f" (and {len(failures) - 3} more)" if len(failures) > 3 else ""
            raise PathsteerError("fib: the kernel refused " + "; ".join(str(f) for f in failures[:3]) + more)

    def reconcile(self, desired: Desired) -> list[str]:
        want = self._targets(desired)
        repaired = self._ensure_rules() if self.owns_table else []
        have, moved = self._known(want)
        if not moved and want is self._synced:
            return repaired   # nothing happened since the kernel was found to hold ``want``
        p = plan(want, have, self._by_id, self.group.buckets)
        if p.empty():
            self._state = have
            self._synced = want
            return repaired
        lines = p.describe(have)
        failures = self._send(p, have)
        self._state = applied(have, p, self.group.buckets) if not failures else None
        self._synced = want if not failures else None
        failed = {_ref(f.what) for f in failures}
        repaired += [line for line in lines if _ref(line) not in failed] + [f"failed: {f}" for f in failures]
        for line in repaired:
            _event("fib.repair", what=line)
        return repaired

    def heartbeat(self) -> None:
        """Nothing to do: kernel routes do not go stale (only the bpf plane fails open)."""


    def path_totals(self) -> dict:
        """None of its own: the kernel forwards; per-path load comes from the TC counters."""
        return {}
    def stop(self) -> None:
        """Remove rules, routes, groups and nexthops of ours; restore what main had."""
        t0 = time.perf_counter()
        if self.owns_table:
            self._remove_rules()   # first: every prefix falls back to main in one step
        have = self._read()
        failures = [] if self.owns_table else self._restore(list(have.routes))
        # Deleting a nexthop object deletes every route using it (nexthop.c: remove_nexthop →
        # fib_flush / fib6_clean_all): one kernel walk instead of a message per route.
        failures += self.sock.send_batch(
            (nl.encode_nexthop(g, 0, delete=True), f"delete nexthop {g:#x}") for g in sorted(have.groups))
        failures += self.sock.send_batch(
            (nl.encode_nexthop(n, 0, delete=True), f"delete nexthop {n:#x}") for n in sorted(have.path_nexthops))
        left = nl.dump_route_nhids(self.sock, self.table, self.protocol)
        failures += self.sock.send_routes(((k, 0) for k in left), self.table, self.protocol, delete=True)
        self._state = FibState()
        self._synced = None
        self._rules_ok = False
        failures = [f for f in failures if f.errno not in (errno.ENOENT, errno.ESRCH)]
        _event("fib.stop", routes=len(have.routes), ms=round((time.perf_counter() - t0) * 1e3, 1),
               failed=len(failures))
        if failures:
            raise PathsteerError("fib: stop: " + "; ".join(str(f) for f in failures[:3]))

    # -- reading the kernel -------------------------------------------------------------------

    def _known(self, want: dict) -> tuple[FibState, bool]:
        """What the kernel holds of ours: the cached state moved on by the route notifications
        since the last look, or (no notifications to trust, a nexthop/rule/link change, a
        foreign route at a managed prefix, or ``full_every`` seconds gone by) a full read.
        Also whether it may differ from the last look (a notification of ours, a full read)."""
        now = time.monotonic()
        if self._monitor is None:
            return self._read(), True
        events, other, overflow = self._monitor.drain()
        state = self._state
        every = max(self.full_every, FULL_BUDGET_FACTOR * self._last_full_s)
        full = state is None or other or overflow or now - self._last_full >= every
        moved = False
        if not full:
            table, proto, routes = self.table, self.protocol, state.routes
            for e in events:
                if e.table != table:
                    continue
                moved = True
                if e.protocol == proto:
                    if e.deleted:
                        routes.pop(e.key, None)
                    else:
                        routes[e.key] = e.nh_id
                elif e.key in want:
                    full = True   # someone else's route at a prefix of ours: look at the kernel
                    break
        if full:
            self._monitor.drain()  # notifications older than the dump below: superseded by it
            state = self._read()
            self._last_full = now
            self._last_full_s = time.monotonic() - now
            moved = True
        return state, moved

    def _read(self) -> FibState:
        """Our routes (one filtered dump of the table) and our nexthop objects."""
        routes = nl.dump_route_nhids(self.sock, self.table, self.protocol)
        groups, buckets, nhs = {}, {}, {}
        for nh in nl.dump_nexthops(self.sock):
            if is_group_id(nh.id):
                groups[nh.id] = tuple(sorted(nh.group))
                buckets[nh.id] = nh.buckets
            elif (parsed := parse_path_nh_id(nh.id)) is not None and nh.oif is not None:
                with self._in_ns():
                    try:
                        ifname = socket.if_indextoname(nh.oif)
                    except OSError:
                        ifname = f"#{nh.oif}"
                nhs[nh.id] = PathNexthop(nh.id, parsed[1], ifname, nh.gateway or "")
        return FibState(routes, groups, buckets, nhs)

    # -- sending ------------------------------------------------------------------------------

    def _send(self, p: Plan, have: FibState) -> list[nl.NetlinkError]:
        sock, table, proto = self.sock, self.table, self.protocol
        failures: list[nl.NetlinkError] = []
        if p.path_nexthops:
            with self._in_ns():
                msgs = []
                for nh in p.path_nexthops:
                    try:
                        oif = nl.ifindex(nh.interface)
                    except PathsteerError as e:
                        failures.append(nl.NetlinkError(f"nexthop {nh.id:#x} dev {nh.interface}", errno.ENODEV,
                                                        str(e)))
                        continue
                    msgs.append((nl.encode_nexthop(nh.id, proto, family=socket.AF_INET if nh.version == 4
                                                   else socket.AF_INET6, oif=oif, gateway=nh.gateway),
                                 f"nexthop {nh.id:#x} via {nh.gateway} dev {nh.interface}"))
            failures += sock.send_batch(msgs)
        g = self.group
        failures += sock.send_batch(
            (nl.encode_nexthop(gid, proto, group=m, buckets=g.buckets, idle_timer=g.idle_timer,
                               unbalanced_timer=g.unbalanced_timer), f"group {gid:#x}")
            for gid, m in p.groups_put.items())
        evict = [] if self.owns_table else self._stash([k for k in p.routes_put if k not in have.routes])
        failures += sock.send_routes(p.routes_put.items(), table, proto)
        failures += [f for f in sock.send_batch((nl.encode_route_delete_exact(r), f"evict {r.dst}") for r in evict)
                     if f.errno != errno.ESRCH]
        if p.routes_del:
            if self.owns_table:
                failures += [f for f in sock.send_routes(((k, 0) for k in p.routes_del), table, proto, delete=True)
                             if f.errno != errno.ESRCH]
            else:
                failures += self._restore(p.routes_del)
        failures += [f for f in sock.send_batch(
            (nl.encode_nexthop(gid, 0, delete=True), f"delete group {gid:#x}") for gid in p.groups_del)
            if f.errno != errno.ENOENT]
        return failures

    # -- main-table mode: stash and restore what we replace ------------------------------------

    def _our_metric(self, route: nl.RouteMsg) -> bool:
        """Does ``route`` have the metric ours get (so that our replace overwrites it)?"""
        raw = route.attrs.get(nl.RTA_PRIORITY)
        metric = int.from_bytes(raw, "little") if raw else 0
        return metric == (0 if route.family == socket.AF_INET else V6_DEFAULT_METRIC)

    def _stash(self, prefixes: list[Key]) -> list[nl.RouteMsg]:
        """Copy main's routes at ``prefixes`` into the stash table; return those with another
        metric than ours: our replace does not overwrite them, they go once ours is in place."""
        if not prefixes:
            return []
        wanted = set(prefixes)
        originals = [r for r in nl.dump_routes(self.sock, RT_TABLE_MAIN)
                     if r.protocol != self.protocol and key(r.dst) in wanted]
        if not originals:
            return []
        failures = self.sock.send_batch((nl.encode_route_copy(r, self.stash_table), f"stash {r.dst}")
                                        for r in originals)
        if failures:
            raise PathsteerError(f"fib: cannot keep a copy of main's route: {failures[0]}")
        _event("fib.stash", routes=len(originals), table=self.stash_table)
        return [r for r in originals if not self._our_metric(r)]

    def _restore(self, prefixes: list[Key]) -> list[nl.NetlinkError]:
        """Put stashed originals back over ours (replace), drop the copies, delete the rest of ours."""
        wanted = set(prefixes)
        stashed = [r for r in nl.dump_routes(self.sock, self.stash_table) if key(r.dst) in wanted]
        failures = self.sock.send_batch((nl.encode_route_copy(r, RT_TABLE_MAIN), f"restore {r.dst}")
                                        for r in stashed)
        failures += self.sock.send_batch((nl.encode_route_delete_exact(r), f"unstash {r.dst}") for r in stashed)
        restored = {r.dst for r in stashed}
        # ours where nothing was restored, or where the original's metric differs
        failures += self.sock.send_routes(((k, 0) for k in prefixes), RT_TABLE_MAIN, self.protocol, delete=True)
        if restored:
            _event("fib.restore", routes=len(restored))
        return [f for f in failures if f.errno != errno.ESRCH]

    # -- rules --------------------------------------------------------------------------------

    def _ensure_rules(self) -> list[str]:
        """One rule per family: ``priority P lookup TABLE protocol 83``; stale ones of ours go."""
        repaired = []
        for family, name in ((socket.AF_INET, "IPv4"), (socket.AF_INET6, "IPv6")):
            ours = [r for r in nl.dump_rules(self.sock, family)
                    if r.protocol == self.protocol and r.action == nl.FR_ACT_TO_TBL]
            good = [r for r in ours if r.priority == self.rule_priority and r.table == self.table]
            for r in ours:
                if r not in good and (r.table == self.table or r.priority == self.rule_priority):
                    self.sock.request(nl.encode_rule(family, r.priority, r.table, self.protocol, delete=True),
                                      f"delete stale {name} rule {r.priority}")
                    repaired.append(f"rule {name} priority {r.priority} lookup {r.table}: stale, removed")
            if not good:
                try:
                    self.sock.request(nl.encode_rule(family, self.rule_priority, self.table, self.protocol),
                                      f"{name} rule priority {self.rule_priority} lookup {self.table}")
                except nl.NetlinkError as e:
                    if family == socket.AF_INET6 and e.errno == errno.EAFNOSUPPORT:
                        continue   # IPv6 disabled here: no IPv6 route can be installed either
                    raise
                repaired.append(f"rule {name} priority {self.rule_priority} lookup {self.table}: missing, added")
        self._rules_ok = True
        return repaired

    def _remove_rules(self) -> None:
        for family in (socket.AF_INET, socket.AF_INET6):
            for r in nl.dump_rules(self.sock, family):
                if r.protocol == self.protocol and r.table == self.table:
                    with contextlib.suppress(nl.NetlinkError):
                        self.sock.request(nl.encode_rule(family, r.priority, r.table, self.protocol, delete=True),
                                          "delete rule")
