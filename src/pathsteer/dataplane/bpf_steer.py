"""The ``bpf`` data plane: `BpfSteerDataPlane` keeps ``steer.bpf.o`` attached at TC ingress and
its maps equal to the decision's `Desired`.

::

    Desired ──apply──► groups: one Maglev table per distinct ((path id, weight), ...) set
                 │         (maglev.build → ch_rings[slot] + group_members[slot])
                 ├──────► routes_v4/v6: prefix → slot   (hashes; bpf_map_update_batch, diff only)
                 │        route_lengths: the prefix lengths present, per family
                 └──────► routes_v4_24: each /24's longest match up to /24 (mmapped, painted:
                          bpf_steer_v4table), flagged where a longer prefix lies inside
    heartbeat ─────────► steer_state.heartbeat_ns       (stale_after_ns later: fail open)
    adopt ◄── interface ─► prog id ─► map ids ─► route hashes + groups ─► Desired (no pins)

Atomic updates (no packet sees half a decision): a table is written only into a slot no route
points to; what changes what packets do is the hash update of a prefix's ``steer_route``
value (the element swapped under RCU) or, for IPv4 up to /24, the single-entry writes of its
/24 entries. A prefix length is named in route_lengths only after its first entry is in the
hash and retired before its last one is deleted; a /24's DEEPER flag likewise. A slot that no
route uses any more is freed only after `GRACE_S` (a TC program holds RCU for microseconds),
so a packet that read the old slot number still finds the old table.

A crash (no `stop`) leaves the program attached and the maps alive (the TC filter holds the
program, the program its maps): flows keep their paths until ``stale_after``, then the kernel
routes them. A restart calls `adopt` within that time and picks everything up by the kernel's
ids, also from a new ``ip netns exec`` where earlier pins are invisible.

At 1M prefixes (issue 11): the mirror of the route maps is keyed by integers (`key_int`), the
diff is one small loop per prefix and the hash writes go in sorted, packed batches from a
thread while the mirror is built and the /24 table painted; handed the `Desired` it applied last (the daemon's reconcile every
second), apply skips the diff. The local routing table (entries marked STEER_GROUP_LOCAL) is
read by rtnetlink, again only after a notification says it changed (`LocalTableWatch`).
"""

from __future__ import annotations

import bisect
import collections
import ctypes
import itertools
import logging
import math
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from pathsteer.bpf import ifindex_of
from pathsteer.dataplane import maglev
from pathsteer import netlink as nl
from pathsteer.dataplane.bpf_steer_abi import (
    V6_FLAG, PathC, Reason, bytes_key_int, int_key_bytes, int_prefix, int_prefixlen, int_version, key_bytes, key_int,
    key_int_of, keys_blob, supernet_keys)
from pathsteer.dataplane.bpf_steer_program import SteerProgram, Totals
from pathsteer.dataplane.bpf_steer_v4table import ENTRIES, V4Table
from pathsteer.dataplane.netlink_monitor import LocalTableWatch
from pathsteer.routes import Desired, NextHop, PathLink, Prefix, RouteIntent
from pathsteer.errors import BpfError, UsageError

log = logging.getLogger("pathsteer.dataplane.bpf")

GRACE_S = 1.0  # a freed group slot is reused only this long after the last route left it
FULL_CHECK_LIMIT = 100_000  # reconcile compares whole route maps up to this many routes ...
WINDOW = 20_000  # ... and beyond that this many prefixes per call, round robin

TRIM_ABOVE = 100_000  # after an apply writing this many entries, free heap goes back to the kernel
# IPv6 lookups use the per-length hash only from this many prefixes on, the trie below (bench
# steer: one IPv6 hash probe about 55 ns; a trie lookup about 20 ns at 1k prefixes, 100 ns at 100k)
V6_HASH_MIN_ROUTES = 10_000
TABLE_CHECK_S = 60.0  # reconcile compares the /24 table with a fresh painting this often
# ... and the route hashes entry by entry this often: reading a hash walks all its buckets
# (2M per family, whatever it holds), ~1 % of a core when done every second on an idle daemon
ENTRIES_CHECK_S = 10.0
_LOW56 = (1 << 56) - 1  # an IPv4 integer key's network number
GroupKey = tuple[tuple[int, int], ...]  # ((path id, weight), ...) sorted by path id


@dataclass(eq=False)  # hashed by identity: the mirror counts prefixes per group at C speed
class _Group:
    key: GroupKey
    slot: int | None = None  # None: not written yet (or freed)
    refs: int = 0
    ring: list[int] | None = field(default=None, repr=False)  # the table as built
    image: bytes | None = field(default=None, repr=False)  # members + table as stored (reconcile compares)


_UNSTEERED = _Group(())  # a prefix with no usable path: not in the route maps (the kernel routes it)


class BpfSteerDataPlane:
    """The DataPlane protocol (pathsteer.routes) over steer.bpf.o.

    ``paths``: every path a route may name (ids are the BPF path ids); ``ingress``: the
    interfaces whose incoming traffic is steered (in the calling thread's network namespace);
    ``stale_after_s``: how long the program keeps steering without a heartbeat; ``object_path``:
    a build of steer.bpf.c other than the shipped object (the bench's LPM and per-step builds).

    The mirror of the route maps (``_inst``) is keyed by integer keys (`bpf_steer_abi.key_int`),
    its values the `_Group` objects themselves; ``installed`` shows it as prefixes."""

    def __init__(self, paths: list[PathLink], ingress: list[str], stale_after_s: float = 10.0, *,
                 object_path: str | None = None) -> None:
        if not ingress:
            raise UsageError("dataplane.ingress: the bpf data plane needs at least one interface")
        if stale_after_s <= 0:
            raise UsageError(f"dataplane.stale_after: {stale_after_s!r} must be positive")
        names = [p.name for p in paths]
        if len(set(names)) != len(names) or len({p.id for p in paths}) != len(paths):
            raise UsageError("paths: names and ids must be unique")
        self.paths = {p.name: p for p in paths}
        self._by_id = {p.id: p for p in paths}
        self.ingress = list(ingress)
        self.stale_after_ns = int(stale_after_s * 1e9)
        self.object_path = object_path  # another build of steer.bpf.c (the bench's); None: the shipped one
        self.prog: SteerProgram | None = None
        self._inst: dict[int, _Group] = {}  # what the route maps hold, as we wrote it (integer keys)
        self._groups: dict[GroupKey, _Group] = {}
        self._free: list[int] = []
        self._cooling: collections.deque[tuple[float, int]] = collections.deque()
        self._window = 0
        self._local: set[int] = set()  # local-table entries inside steered prefixes (STEER_GROUP_LOCAL)
        self._local_seen: frozenset[int] | None = None  # the local table at the last _sync_local
        self._local_watch: LocalTableWatch | None | bool = None  # tells when to read the local table again
        self._synced: tuple[Desired, int] | None = None  # the Desired the route maps hold (and its size)
        self._lens = _no_lengths()  # entries per prefix length in routes_v4/v6 (ours and local ones)
        self._v4: V4Table | None = None  # routes_v4_24, painted from the mirror
        self._v6_lpm: bool | None = None  # route_lengths.lookup_lpm as we last wrote it
        self._v4_checked = time.monotonic()  # when reconcile last compared routes_v4_24 with the mirror
        self._entries_checked = -math.inf  # when reconcile last compared the route hashes with what we wrote

    # --- views --------------------------------------------------------------------------------

    @property
    def installed(self) -> dict[Prefix, GroupKey]:
        """What the route maps hold, as prefixes (made on each call: for tests and inspection)."""
        return {int_prefix(k): g.key for k, g in self._inst.items()}

    @property
    def local(self) -> set[Prefix]:
        return {int_prefix(k) for k in self._local}

    # --- lifecycle ----------------------------------------------------------------------------

    def _ensure_loaded(self) -> SteerProgram:
        if self.prog is None:
            self.prog = SteerProgram.load() if self.object_path is None else SteerProgram.load(self.object_path)
            self._v4 = self._v4_table(self.prog.v4_table())
            self._free = list(range(self.prog.abi.max_groups - 1, -1, -1))
            self.prog.heartbeat(self.stale_after_ns)
            self._write_paths()
        return self.prog

    def _path_value(self, p: PathLink) -> PathC:
        flags = self.prog.abi.path_flags
        v = PathC(ifindex=ifindex_of(p.interface))
        mtu = _mtu_of(p.interface)
        if mtu is not None and mtu < self.prog.abi.mtu_floor_v4:
            log.warning("bpf.path_mtu_below_floor path=%s interface=%s mtu=%d floor=%d (IPv4 packets up to the floor "
                        "are redirected without an MTU check)", p.name, p.interface, mtu, self.prog.abi.mtu_floor_v4)
        if p.gateway is not None:
            v.flags |= flags["STEER_PATH_HAS_GW4"]
            v.gateway4[:] = list(p.gateway.packed)
        if p.gateway6 is not None:
            v.flags |= flags["STEER_PATH_HAS_GW6"]
            v.gateway6[:] = list(p.gateway6.packed)
        return v

    def _write_paths(self) -> list[str]:
        """Make steer_paths hold our paths (each entry replaced atomically); returns changes."""
        have = self.prog.read_paths()
        changes = []
        for pid, p in self._by_id.items():
            want = self._path_value(p)
            if pid not in have or bytes(have[pid]) != bytes(want):
                self.prog.write_path(pid, want)
                changes.append(f"path {p.name} (id {pid}) written")
        for pid in have:
            if pid not in self._by_id and not any(pid == m for k in self._groups for m, _ in k):
                self.prog.delete_path(pid)
                changes.append(f"unknown path id {pid} removed")
        return changes

    def _attach_all(self) -> list[str]:
        done = []
        for name in self.ingress:
            if not self.prog.is_attached(name):
                self.prog.attach(name)
                done.append(f"attached to {name}")
        return done

    # --- groups -------------------------------------------------------------------------------

    def _group_key(self, intent: RouteIntent, version: int) -> GroupKey:
        members: dict[int, int] = {}
        for nh in intent.nexthops:
            p = self.paths.get(nh.path)
            if p is None:
                raise UsageError(f"route {intent.prefix}: unknown path {nh.path!r} (have: {', '.join(self.paths)})")
            if not 1 <= nh.weight <= 255:
                raise UsageError(f"route {intent.prefix}: weight {nh.weight} of {nh.path} out of 1..255")
            if (p.gateway if version == 4 else p.gateway6) is None:
                log.warning("bpf.nexthop_skipped prefix=%s path=%s reason=no-gateway-of-family", intent.prefix, p.name)
                continue
            members[p.id] = members.get(p.id, 0) + nh.weight
        return tuple(sorted((pid, min(w, 255)) for pid, w in members.items()))

    def _resolve(self, intent: RouteIntent, version: int, fresh: dict[GroupKey, _Group]) -> _Group:
        """The group a route wants: ours if we have it, else a new one (no slot yet)."""
        key = self._group_key(intent, version)
        if not key:
            log.warning("bpf.route_unsteered nexthops=%s reason=no-usable-path", intent.nexthops)
            return _UNSTEERED
        g = self._groups.get(key) or fresh.get(key)
        if g is None:
            g = fresh[key] = _Group(key)
        return g

    def _take_slot(self) -> int:
        if self._free:
            return self._free.pop()
        if self._cooling:
            since, slot = self._cooling.popleft()
            wait = since + GRACE_S - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # every slot busy or cooling: wait out the oldest one's grace
            return slot
        raise BpfError(f"all {self.prog.abi.max_groups} group slots in use (STEER_MAX_GROUPS)")

    def _release_cooled(self) -> None:
        now = time.monotonic()
        while self._cooling and self._cooling[0][0] + GRACE_S <= now:
            self._free.append(self._cooling.popleft()[1])

    def _write_table(self, g: _Group) -> None:
        """Give a new group a slot and write its table there (no route points to it yet)."""
        self._release_cooled()
        slot = self._take_slot()
        g.ring = maglev.build(dict(g.key), self.prog.abi.ring_size)
        self.prog.write_group(slot, list(g.key), g.ring)
        g.slot = slot
        self._groups[g.key] = g

    def _drop(self, g: _Group) -> None:
        """A group no route uses any more: its slot starts the grace period."""
        if self._groups.get(g.key) is g:
            del self._groups[g.key]
        if g.slot is not None:
            self._cooling.append((time.monotonic(), g.slot))
            g.slot = None

    # --- DataPlane ----------------------------------------------------------------------------

    def apply(self, desired: Desired) -> None:
        """Make the maps hold ``desired`` (a diff against what we wrote), attached everywhere.

        Written for 1M prefixes: per prefix an integer key, one memo lookup (the group of its
        next-hop tuple, per family) and one dict lookup in the mirror with an identity compare;
        the changed keys are collected per group, sorted as ints (address order, which the
        LPM build takes fastest) and written as one packed batch per group and family; the mirror
        and reference counts move in bulk. The same `Desired` object again (the daemon's
        reconcile hands over the last one it applied) skips the diff."""
        self._ensure_loaded()
        synced = self._synced
        if synced is not None and synced[0] is desired and synced[1] == len(desired.routes):
            changed = False
        else:
            self._synced = None
            changed = self._apply_diff(desired)
            self._synced = (desired, len(desired.routes))
        self._sync_local(changed)
        self._choose_v6_lookup()
        # attach after the first routes are in
        self._attach_all()
        self.heartbeat()

    def _apply_diff(self, desired: Desired) -> bool:
        t0 = time.perf_counter()
        inst = self._inst
        get = inst.get
        fresh: dict[GroupKey, _Group] = {}
        memo4: dict[int, _Group] = {}  # id(nexthops) → group, this call only (the tuples stay alive)
        memo6: dict[int, _Group] = {}
        moves4: collections.defaultdict[_Group, list[int]] = collections.defaultdict(list)
        moves6: collections.defaultdict[_Group, list[int]] = collections.defaultdict(list)
        olds: list[_Group] = []
        new = absent = 0
        lens4, lens6 = [0] * 33, [0] * 129  # new entries per prefix length
        resolve = self._resolve
        hops4 = hops6 = g4 = g6 = None  # the last next-hop tuple seen per family (runs share one)
        for prefix, intent in desired.routes.items():
            hops = intent.nexthops
            if prefix._version == 4:
                plen = prefix._prefixlen
                k = (plen << 56) | (prefix.network_address._ip >> (32 - plen))
                if hops is not hops4:
                    g4 = memo4.get(id(hops))
                    if g4 is None:
                        g4 = memo4[id(hops)] = resolve(intent, 4, fresh)
                    hops4 = hops
                g, moves, lens = g4, moves4, lens4
            else:
                plen = prefix._prefixlen
                k = V6_FLAG | (plen << 152) | (prefix.network_address._ip >> (128 - plen))
                if hops is not hops6:
                    g6 = memo6.get(id(hops))
                    if g6 is None:
                        g6 = memo6[id(hops)] = resolve(intent, 6, fresh)
                    hops6 = hops
                g, moves, lens = g6, moves6, lens6
            old = get(k)
            if old is not g:
                if old is None:
                    if g is _UNSTEERED:
                        absent += 1
                        continue
                    new += 1
                    lens[plen] += 1
                else:
                    olds.append(old)
                moves[g].append(k)
        found = len(desired.routes) - new - absent
        removed: list[int] = []
        if found != len(inst):
            want = {key_int(p) for p in desired.routes}
            removed = [k for k in inst if k not in want]
        if not (moves4 or moves6 or removed):
            return False
        t1 = time.perf_counter()
        # 1. tables first, into free slots: nothing points to them yet
        for moves in (moves4, moves6):
            for g in moves:
                if g is not _UNSTEERED and g.slot is None:
                    self._write_table(g)
        # 2. the flips (one hash update per prefix, atomic each), then the removals: in a
        # thread, as the kernel's inserts run without the GIL while the mirror is built
        batches = []
        for version, moves in ((4, moves4), (6, moves6)):
            for g, keys in moves.items():
                if g is not _UNSTEERED:
                    keys.sort()  # by length, then address: runs per length for the /24 table
                    batches.append((version, g, keys))
        gone = removed + moves4.get(_UNSTEERED, []) + moves6.get(_UNSTEERED, [])
        # the prefix lengths to announce once the writes are in, and those still present after
        # the removals (route_lengths: announced after the first entry, retired before the last)
        grown = {4: [a + b for a, b in zip(self._lens[4], lens4)], 6: [a + b for a, b in zip(self._lens[6], lens6)]}
        after = {4: list(grown[4]), 6: list(grown[6])}
        for k in gone:
            after[int_version(k)][int_prefixlen(k)] -= 1
        kernel = _KernelWrites(self.prog, batches, gone, {v: _mask(c) for v, c in grown.items()},
                               {v: _mask(c) for v, c in after.items()})
        kernel.start()
        try:
            # 3. the new mirror (swapped in once the kernel took everything) and reference counts
            if inst:
                mirror = inst.copy()
                for moves in (moves4, moves6):
                    for g, keys in moves.items():
                        if g is _UNSTEERED:
                            for k in keys:
                                del mirror[k]
                        else:
                            mirror.update(zip(keys, itertools.repeat(g)))
            elif len(batches) == 1:  # first apply, one group: the dict straight from the keys
                mirror = dict.fromkeys(batches[0][2], batches[0][1])
            else:
                mirror = {}
                for _v, g, keys in batches:
                    mirror.update(zip(keys, itertools.repeat(g)))
            lost = collections.Counter(olds)
            for k in removed:
                lost[mirror.pop(k)] += 1
            # 4. the IPv4 /24 table's entries of prefixes up to /24, while the kernel takes the
            # hash writes: the program reads no hash entry of those lengths (the tables they
            # name are written, the old slots not cooling yet: every entry names a live table)
            v4sets = [(g, keys) for v, g, keys in batches if v == 4]
            v4gone = [k for k in gone if k < V6_FLAG]
            self._paint_v4_short(v4sets, v4gone, mirror)
        except BaseException:
            kernel.join()
            self._repaint_v4()  # the table back to the mirror we keep
            raise
        kernel.join()
        if kernel.error is not None:
            self._repaint_v4()
            raise kernel.error  # the mirror stays as it was: reconcile puts the maps back
        self._inst = mirror
        self._lens = after
        # 5. its flags of longer prefixes: now that their hash entries and lengths are in
        self._paint_v4_deep(v4sets, v4gone)
        for moves in (moves4, moves6):
            for g, keys in moves.items():
                if g is not _UNSTEERED:
                    g.refs += len(keys)
        for g, n in lost.items():
            g.refs -= n
            if g.refs <= 0:
                self._drop(g)
        for g in fresh.values():
            if g.refs <= 0 and g.slot is not None:
                self._drop(g)
        log.info("bpf.apply changed=%d removed=%d groups=%d diff_ms=%.1f write_ms=%.1f", kernel.written, len(gone),
                 len(self._groups), (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3)
        if kernel.written + len(gone) >= TRIM_ABOVE:
            _trim_heap()
        return True

    def _sync_local(self, routes_changed: bool = True) -> None:
        """Mirror the local routing table's entries that lie inside steered prefixes into the
        route maps as STEER_GROUP_LOCAL (packets to the router itself stay with the kernel).
        Nothing to do while neither the local table nor our routes changed: the table is read
        again only when a route notification of table local came (or none could be trusted)."""
        if self._local_watch is None:
            try:
                self._local_watch = LocalTableWatch()  # first, so no change after the read is missed
            except OSError as exc:  # no notifications to be had: read the table every time
                log.warning("bpf.local_watch_unavailable error=%s", exc)
                self._local_watch = False
            seen = frozenset(local_keys())
        elif self._local_watch is False or self._local_seen is None or self._local_watch.changed():
            seen = frozenset(local_keys())
        else:
            seen = self._local_seen
        if not routes_changed and seen == self._local_seen:
            return
        inst = self._inst
        want = {k for k in seen if k not in inst and any(s in inst for s in supernet_keys(k))}
        gone = self._local - want
        new = want - self._local
        mark = self.prog.abi.group_local
        for version in (4, 6):
            counts = self._lens[version]
            add = sorted(k for k in new if int_version(k) == version)
            if add:
                self.prog.write_routes_packed(version, keys_blob(add, version), struct.pack("<I", mark) * len(add))
                before = _mask(counts)
                for k in add:
                    counts[int_prefixlen(k)] += 1
                if _mask(counts) != before:  # the entries first, then their lengths
                    self.prog.write_lengths(version, _mask(counts))
            drop = [k for k in gone if int_version(k) == version]
            if drop:
                before = _mask(counts)
                for k in drop:
                    counts[int_prefixlen(k)] -= 1
                # a local entry that became a route of ours was overwritten by the apply (and
                # counted there): it stays in the map
                drop = [k for k in drop if k not in inst]
                if _mask(counts) != before:  # a length retired before its last entry goes
                    self.prog.write_lengths(version, _mask(counts))
                if drop:
                    self.prog.delete_routes_packed(version, keys_blob(drop, version))
        v4 = self._v4
        for k in sorted((k for k in new if k < V6_FLAG), key=int_prefixlen):  # after their hash entries
            plen, net = k >> 56, k & _LOW56
            if plen <= 24:
                v4.set(plen, net, v4.local)
            else:
                v4.add_deep(k, net >> (plen - 24))
        for k in gone:
            if k < V6_FLAG and k not in inst:
                plen, net = k >> 56, k & _LOW56
                if plen <= 24:
                    v4.unset(plen, net, self._cover(k, inst, want))
                else:
                    v4.remove_deep(k, net >> (plen - 24))
        self._local = want
        self._local_seen = seen

    # --- the IPv4 /24 table -------------------------------------------------------------------

    def _v4_table(self, view: memoryview) -> V4Table:
        e = self.prog.abi.v4_entry
        return V4Table(view, none=e["STEER_V4_NONE"], local=e["STEER_V4_LOCAL"], deeper=e["STEER_V4_DEEPER"],
                       slot_base=e["STEER_V4_SLOT_BASE"])

    def _cover(self, k: int, inst: dict[int, _Group], local: set[int]) -> tuple[int, int] | None:
        """(length, routes_v4_24 entry) of the longest prefix of length <= 24 in ``inst`` or
        ``local`` strictly holding IPv4 key ``k``; None if none."""
        v4 = self._v4
        for s in supernet_keys(k):
            plen = s >> 56
            if plen > 24:
                continue
            g = inst.get(s)
            if g is not None:
                return plen, v4.entry_of_slot(g.slot)
            if s in local:
                return plen, v4.local
        return None

    def _paint_v4_short(self, sets: list[tuple[_Group, list[int]]], gone: list[int], inst: dict[int, _Group]) -> None:
        """routes_v4_24's entries for the prefixes up to /24 an apply wrote (``sets``: group,
        sorted IPv4 keys) and deleted (``gone``), against the new mirror ``inst``."""
        v4 = self._v4
        for g, keys in sets:
            entry = v4.entry_of_slot(g.slot)
            i, n = 0, len(keys)
            while i < n and keys[i] >> 56 <= 24:  # one run per prefix length (the keys are sorted)
                plen = keys[i] >> 56
                j = bisect.bisect_left(keys, (plen + 1) << 56, i)
                if plen == 24:
                    v4.set_24s([k & _LOW56 for k in keys[i:j]], entry)
                else:
                    for k in keys[i:j]:
                        v4.set(plen, k & _LOW56, entry)
                i = j
        for k in sorted((k for k in gone if k >> 56 <= 24), key=int_prefixlen, reverse=True):
            v4.unset(k >> 56, k & _LOW56, self._cover(k, inst, self._local))

    def _paint_v4_deep(self, sets: list[tuple[_Group, list[int]]], gone: list[int]) -> None:
        """routes_v4_24's DEEPER flags for the /25../32 prefixes of an apply."""
        v4 = self._v4
        for _g, keys in sets:
            for k in keys[bisect.bisect_left(keys, 25 << 56):]:
                v4.add_deep(k, (k & _LOW56) >> ((k >> 56) - 24))
        for k in gone:
            if k >> 56 > 24:
                v4.remove_deep(k, (k & _LOW56) >> ((k >> 56) - 24))

    def _painted_v4(self) -> V4Table:
        """routes_v4_24 as the mirror makes it, painted into a private buffer."""
        scratch = self._v4_table(memoryview(bytearray(2 * ENTRIES)).cast("H"))
        keys = [k for k in itertools.chain(self._inst, self._local) if k < V6_FLAG]
        keys.sort(key=int_prefixlen)  # shortest first, as a longer prefix paints over a shorter one
        for k in keys:
            plen, net = k >> 56, k & _LOW56
            if plen > 24:
                scratch.add_deep(k, net >> (plen - 24))
                continue
            g = self._inst.get(k)
            scratch.set(plen, net, scratch.local if g is None else scratch.entry_of_slot(g.slot))
        return scratch

    def _repaint_v4(self) -> bool:
        """Bring routes_v4_24 back to the mirror (adopt, a failed apply, reconcile): painted
        aside, then copied over the live table where it differs (every entry is written whole).
        Returns whether anything differed."""
        scratch, live = self._painted_v4(), self._v4.t
        differed = live.cast("B") != scratch.t.cast("B")
        if differed:
            live[:] = scratch.t
        scratch.t = live
        self._v4 = scratch
        return differed

    def _choose_v6_lookup(self) -> None:
        """IPv6 through the trie while the table is small (route_lengths.lookup_lpm)."""
        want = sum(self._lens[6]) < V6_HASH_MIN_ROUTES
        if self._v6_lpm is not want:
            self.prog.set_v6_lookup_lpm(want)
            self._v6_lpm = want

    def heartbeat(self) -> None:
        if self.prog is not None:
            self.prog.heartbeat(self.stale_after_ns)

    def reconcile(self, desired: Desired) -> list[str]:
        """Re-attach where someone detached us, repair paths, tables and route entries changed
        behind our back, then apply ``desired``. Returns what was repaired."""
        if self.prog is None:
            self.apply(desired)
            return ["loaded and attached"]
        repaired = self._attach_all()
        state = self.prog.read_state()
        if state is None or state.stale_after_ns != self.stale_after_ns:
            self.prog.heartbeat(self.stale_after_ns)
            repaired.append("stale_after rewritten")
        repaired += self._write_paths()
        for key, g in self._groups.items():
            if g.ring is None:  # adopted: built on first check
                g.ring = maglev.build(dict(key), self.prog.abi.ring_size)
            if g.image is None:
                g.image = self.prog.group_image(list(key), g.ring)
            if self.prog.read_group_image(g.slot) != g.image:  # raw bytes: no decoding per check
                self.prog.write_group(g.slot, list(key), g.ring)
                repaired.append(f"group slot {g.slot} rewritten")
        repaired += self._repair_routes()
        self.apply(desired)
        for r in repaired:
            log.warning("bpf.repaired what=%r", r)
        return repaired

    def _repair_routes(self) -> list[str]:
        now = time.monotonic()
        out = []
        if now - self._entries_checked >= ENTRIES_CHECK_S:
            self._entries_checked = now
            out = self._repair_entries()
        for version in (4, 6):  # after the entries are back, before anything else is deleted
            want = _mask(self._lens[version])
            if self.prog.read_lengths(version) != want:
                self.prog.write_lengths(version, want)
                out.append(f"route lengths v{version} rewritten")
        # the /24 table against a fresh painting (0.1-0.2 s up to FULL_CHECK_LIMIT routes: not
        # every second; beyond that only applies write it)
        if len(self._inst) + len(self._local) <= FULL_CHECK_LIMIT and now - self._v4_checked >= TABLE_CHECK_S:
            self._v4_checked = now
            if self._repaint_v4():
                out.append("IPv4 /24 table repainted")
        return out

    def _repair_entries(self) -> list[str]:
        inst, local = self._inst, self._local
        mark = self.prog.abi.group_local
        out = []
        if len(inst) <= FULL_CHECK_LIMIT:
            matched = 0
            for version in (4, 6):
                fix: list[tuple[bytes, int]] = []
                extra: list[bytes] = []
                for kb, s in self.prog.read_routes(version).items():
                    k = bytes_key_int(kb)
                    g = inst.get(k)
                    want = g.slot if g is not None else mark if k in local else None
                    if want is None:
                        extra.append(kb)
                    elif s != want:
                        fix.append((kb, want))
                    else:
                        matched += 1
                if extra:
                    self.prog.delete_routes(version, extra)
                    out += [f"route {_prefix_of(kb)} removed (not ours)" for kb in extra]
                if fix:
                    self.prog.write_routes(version, fix)
                    out += [f"route {_prefix_of(kb)} restored" for kb, _ in fix]
                matched += len(fix)
            if matched != len(inst) + len(local):  # some are missing altogether
                for version in (4, 6):
                    have = {bytes_key_int(kb) for kb in self.prog.read_routes(version)}
                    missing = [(int_key_bytes(k), g.slot) for k, g in inst.items()
                               if int_version(k) == version and k not in have]
                    missing += [(int_key_bytes(k), mark) for k in local if int_version(k) == version and k not in have]
                    self.prog.write_routes(version, missing)
                    out += [f"route {_prefix_of(kb)} restored" for kb, _ in missing]
            return out
        start = self._window % len(inst)
        self._window = start + WINDOW
        lookup = self.prog.lookup_route
        for k, g in itertools.islice(inst.items(), start, start + WINDOW):
            kb = int_key_bytes(k)
            version = 4 if k < V6_FLAG else 6
            if lookup(version, kb) != g.slot:
                self.prog.write_routes(version, [(kb, g.slot)])
                out.append(f"route {int_prefix(k)} restored")
        return out

    def adopt(self) -> Desired | None:
        """Take over the program an earlier run left attached on our ingress interfaces (found
        by kernel ids), rebuild our view from its maps and return what it holds; None when
        nothing is attached. The heartbeat is refreshed at once."""
        prog = self.prog or SteerProgram.find(self.ingress, *self._tc_place())
        if prog is None:
            return None
        self.prog = prog
        prog.heartbeat(self.stale_after_ns)
        by_slot: dict[int, _Group] = {}
        self._local = set()
        self._local_seen = None
        self._inst = inst = {}
        self._groups = {}
        self._synced = None
        self._lens = lens = _no_lengths()
        for version in (4, 6):
            moves = []
            for kb, slot in prog.read_routes(version).items():
                k = bytes_key_int(kb)
                lens[version][int_prefixlen(k)] += 1
                if slot == prog.abi.group_local:
                    self._local.add(k)
                    continue
                g = by_slot.get(slot)
                if g is None:
                    members, _ = prog.read_group(slot)
                    key = tuple(sorted(members))
                    g = self._groups.get(key)
                    if g is None:
                        g = self._groups[key] = _Group(key, slot)
                    by_slot[slot] = g
                if g.slot != slot:
                    # two slots built from the same members (a crash mid-change): same table,
                    # so pointing the prefix at the first one moves no flow
                    moves.append((kb, g.slot))
                inst[k] = g
                g.refs += 1
            prog.write_routes(version, moves)
            if prog.read_lengths(version) != _mask(lens[version]):  # every entry is in already
                prog.write_lengths(version, _mask(lens[version]))
        self._v4 = self._v4_table(prog.v4_table())
        self._repaint_v4()
        self._v6_lpm = None
        self._choose_v6_lookup()
        used = {g.slot for g in self._groups.values()}
        # Slots no route names are free at once: whatever packet read them did so before the
        # old process died, and a restart takes far longer than a TC program run.
        self._free = [s for s in range(prog.abi.max_groups - 1, -1, -1) if s not in used]
        self._cooling = collections.deque()
        self._write_paths()
        self._attach_all()
        hops = {g.key: self._nexthops(g.key) for g in self._groups.values()}
        routes = {}
        for k, g in inst.items():
            p = int_prefix(k)
            routes[p] = RouteIntent(p, hops[g.key])
        desired = Desired(routes)
        log.info("bpf.adopted prog_id=%d routes=%d groups=%d", prog.id, len(inst), len(self._groups))
        return desired

    def _nexthops(self, key: GroupKey) -> tuple[NextHop, ...]:
        out = []
        for pid, weight in key:
            p = self._by_id.get(pid)
            if p is not None:
                out.append(NextHop(p.name, weight))
        return tuple(out)

    def _tc_place(self) -> tuple[int, int]:
        from pathsteer.bpf import BpfObject
        from pathsteer.dataplane.bpf_steer_abi import Abi, OBJECT
        with BpfObject.open(OBJECT) as obj:
            a = Abi.from_btf(obj.btf)
        return a.tc_handle, a.tc_priority

    def stop(self) -> None:
        """Clean stop: detach our filter from every ingress interface (other filters stay) and
        close our fds, which frees the maps; the kernel routes everything again."""
        if self.prog is None:
            return
        for name in self.ingress:
            try:
                self.prog.detach(name)
            except Exception as exc:  # interface gone: nothing attached there any more
                log.warning("bpf.detach_failed interface=%s error=%s", name, exc)
        self._v4 = None
        self._v6_lpm = None
        self.prog.close()
        self.prog = None
        self._inst = {}
        self._groups = {}
        self._synced = None
        self._local = set()
        self._lens = _no_lengths()
        self._close_watch()

    def _close_watch(self) -> None:
        if self._local_watch:
            self._local_watch.close()
        self._local_watch = None
        self._local_seen = None

    def close(self) -> None:
        """Close fds without detaching (what a crash leaves; tests and handover)."""
        if self.prog is not None:
            self._v4 = None
            self._v6_lpm = None
            self.prog.close()
            self.prog = None
        self._synced = None
        self._close_watch()

    # --- observability ------------------------------------------------------------------------

    def path_totals(self) -> dict[str, Totals]:
        """Packets and bytes steered onto each path since the program was loaded."""
        if self.prog is None:
            return {name: Totals() for name in self.paths}
        got = self.prog.path_totals(self._by_id)
        return {self._by_id[pid].name: t for pid, t in got.items()}

    def reason_totals(self) -> dict[Reason, Totals]:
        return self.prog.reason_totals() if self.prog is not None else {}

    def path_of(self, prefix: Prefix) -> GroupKey | None:
        g = self._inst.get(key_int(prefix))
        return g.key if g is not None else None


def _trim_heap() -> None:
    """glibc's malloc_trim(0): the batch buffers of a 1M apply (tens of MiB, much of it in the
    writer thread's arena) are freed but kept by malloc; hand them back (-20 MiB of RSS at 1M)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class _KernelWrites(threading.Thread):
    """The route hash writes of one apply, in order: ``batches`` of (version, group, sorted integer
    keys), then the deletion of ``gone``. A thread because bpf_map_update_batch runs without
    the GIL (ctypes releases it): the caller builds its mirror meanwhile and joins."""

    def __init__(self, prog: SteerProgram, batches: list[tuple[int, _Group, list[int]]], gone: list[int],
                 grown: dict[int, int], after: dict[int, int]) -> None:
        super().__init__(name="bpf-steer-writes", daemon=True)
        self.prog, self.batches, self.gone = prog, batches, gone
        self.grown, self.after = grown, after  # route_lengths once the writes are in / after the removals
        self.error: BaseException | None = None
        self.written = 0

    def run(self) -> None:
        try:
            for version, g, keys in self.batches:
                self.prog.write_routes_packed(version, keys_blob(keys, version), struct.pack("<I", g.slot) * len(keys))
                self.written += len(keys)
            for version in (4, 6):
                have = self.prog.read_lengths(version)
                if self.grown[version] != have:  # new lengths: announced now that their entries are in
                    self.prog.write_lengths(version, self.grown[version])
                if self.after[version] != self.grown[version]:  # emptied lengths: retired first
                    self.prog.write_lengths(version, self.after[version])
                keys = [k for k in self.gone if int_version(k) == version]
                if keys:
                    self.prog.delete_routes_packed(version, keys_blob(keys, version))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self.error = exc


def _mtu_of(interface: str) -> int | None:
    try:
        with open(f"/sys/class/net/{interface}/mtu") as f:
            return int(f.read())
    except (OSError, ValueError):  # another namespace's /sys, or gone
        return None


def _no_lengths() -> dict[int, list[int]]:
    """Entries per prefix length of each family: none."""
    return {4: [0] * 33, 6: [0] * 129}


def _mask(counts: list[int]) -> int:
    """route_lengths' bit set of per-length entry counts: bit L while some /L is present."""
    return sum(1 << plen for plen, n in enumerate(counts) if n > 0)


RTN_LOCAL, RTN_BROADCAST = 2, 3
RT_TABLE_LOCAL = 255


def local_keys() -> set[int]:
    """Destinations of the calling thread's namespace's local routing table (type local and
    broadcast: what the kernel delivers to the router itself) as integer keys: one rtnetlink
    dump of table local per family, on a socket opened for it (so in the caller's namespace)."""
    out: set[int] = set()
    sock = nl.RouteSocket()
    try:
        for family in (socket.AF_INET, socket.AF_INET6):
            body = nl.RTMSG.pack(family, 0, 0, 0, RT_TABLE_LOCAL, 0, 0, 0, 0)
            body += nl.attr(nl.RTA_TABLE, struct.pack("=I", RT_TABLE_LOCAL))
            try:
                answers = list(sock.dump(nl._header(nl.RTM_GETROUTE, nl.NLM_F_DUMP, body)))
            except nl.NetlinkError:
                continue  # (IPv6 disabled)
            for kind, mv, off, end in answers:
                if kind != nl.RTM_NEWROUTE:
                    continue
                fam, dst_len, _s, _t, t8, _p, _sc, rtype, _f = nl.RTMSG.unpack_from(mv, off)
                if rtype not in (RTN_LOCAL, RTN_BROADCAST):
                    continue
                a = nl.parse_attrs(mv, off + nl.RTMSG.size, end)
                if (nl.attr_u32(a[nl.RTA_TABLE]) if nl.RTA_TABLE in a else t8) != RT_TABLE_LOCAL:
                    continue
                addr = int.from_bytes(bytes(a[nl.RTA_DST]), "big") if nl.RTA_DST in a else 0
                out.add(key_int_of(4 if fam == socket.AF_INET else 6, addr, dst_len))
    finally:
        sock.close()
    return out


def local_prefixes() -> set[Prefix]:
    """`local_keys` as prefixes (``ip route show table local``, types local and broadcast)."""
    return {int_prefix(k) for k in local_keys()}


def _prefix_of(kb: bytes) -> Prefix:
    return int_prefix(bytes_key_int(kb))


__all__ = ["BpfSteerDataPlane", "GRACE_S", "key_bytes", "local_keys", "local_prefixes"]
