"""The ``bpf`` data plane: `BpfSteerDataPlane` keeps ``steer.bpf.o`` attached at TC ingress and
its maps equal to the decision's `Desired`.

::

    Desired ──apply──► groups: one Maglev table per distinct ((path id, weight), ...) set
                 │         (maglev.build → ch_rings[slot] + group_members[slot])
                 └──────► routes_v4/v6: prefix → slot   (bpf_map_update_batch, diff only)
    heartbeat ─────────► steer_state.heartbeat_ns       (stale_after_ns later: fail open)
    adopt ◄── interface ─► prog id ─► map ids ─► tries + groups ─► Desired (no pins)

Atomic updates (no packet sees half a decision): a table is written only into a slot no route
points to; the one step that changes what packets do is the trie update of a prefix's
``steer_route`` value, which the kernel performs by swapping the trie node under RCU. A slot
that no route uses any more is freed only after `GRACE_S` (a TC program holds RCU for
microseconds), so a packet that read the old slot number still finds the old table.

A crash (no `stop`) leaves the program attached and the maps alive (the TC filter holds the
program, the program its maps): flows keep their paths until ``stale_after``, then the kernel
routes them. A restart calls `adopt` within that time and picks everything up by the kernel's
ids, also from a new ``ip netns exec`` where earlier pins are invisible.
"""

from __future__ import annotations

import collections
import ipaddress
import json
import logging
import subprocess
import time
from dataclasses import dataclass

from pathsteer.bpf import ifindex_of
from pathsteer.dataplane import maglev
from pathsteer.dataplane.bpf_steer_abi import PathC, Reason, key_bytes, key_prefix, V4Key, V6Key
from pathsteer.dataplane.bpf_steer_program import SteerProgram, Totals
from pathsteer.dataplane.routes import Desired, NextHop, PathLink, Prefix, RouteIntent
from pathsteer.errors import BpfError, UsageError

log = logging.getLogger("pathsteer.dataplane.bpf")

GRACE_S = 1.0  # a freed group slot is reused only this long after the last route left it
FULL_CHECK_LIMIT = 100_000  # reconcile compares whole tries up to this many routes ...
WINDOW = 20_000  # ... and beyond that this many prefixes per call, round robin

GroupKey = tuple[tuple[int, int], ...]  # ((path id, weight), ...) sorted by path id


@dataclass
class _Group:
    slot: int
    refs: int = 0
    ring: list[int] | None = None  # the table as built (reconcile compares against it)


class BpfSteerDataPlane:
    """The DataPlane protocol (pathsteer.dataplane.routes) over steer.bpf.o.

    ``paths``: every path a route may name (ids are the BPF path ids); ``ingress``: the
    interfaces whose incoming traffic is steered (in the calling thread's network namespace);
    ``stale_after_s``: how long the program keeps steering without a heartbeat."""

    def __init__(self, paths: list[PathLink], ingress: list[str], stale_after_s: float = 10.0) -> None:
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
        self.prog: SteerProgram | None = None
        self.installed: dict[Prefix, GroupKey] = {}  # what the tries hold, as we wrote it
        self._groups: dict[GroupKey, _Group] = {}
        self._free: list[int] = []
        self._cooling: collections.deque[tuple[float, int]] = collections.deque()
        self._window = 0
        self.local: set[Prefix] = set()  # local-table entries inside steered prefixes (STEER_GROUP_LOCAL)

    # --- lifecycle ----------------------------------------------------------------------------

    def _ensure_loaded(self) -> SteerProgram:
        if self.prog is None:
            self.prog = SteerProgram.load()
            self._free = list(range(self.prog.abi.max_groups - 1, -1, -1))
            self.prog.heartbeat(self.stale_after_ns)
            self._write_paths()
        return self.prog

    def _path_value(self, p: PathLink) -> PathC:
        flags = self.prog.abi.path_flags
        v = PathC(ifindex=ifindex_of(p.interface))
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

    def _group_key(self, intent: RouteIntent) -> GroupKey:
        members: dict[int, int] = {}
        for nh in intent.nexthops:
            p = self.paths.get(nh.path)
            if p is None:
                raise UsageError(f"route {intent.prefix}: unknown path {nh.path!r} (have: {', '.join(self.paths)})")
            if not 1 <= nh.weight <= 255:
                raise UsageError(f"route {intent.prefix}: weight {nh.weight} of {nh.path} out of 1..255")
            if p.gateway_for(intent.prefix) is None:
                log.warning("bpf.nexthop_skipped prefix=%s path=%s reason=no-gateway-of-family", intent.prefix, p.name)
                continue
            members[p.id] = members.get(p.id, 0) + nh.weight
        return tuple(sorted((pid, min(w, 255)) for pid, w in members.items()))

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

    def _group_for(self, key: GroupKey) -> int:
        g = self._groups.get(key)
        if g is None:
            self._release_cooled()
            slot = self._take_slot()
            ring = maglev.build(dict(key), self.prog.abi.ring_size)
            self.prog.write_group(slot, list(key), ring)
            g = self._groups[key] = _Group(slot, ring=ring)
        return g.slot

    def _unref(self, key: GroupKey, n: int = 1) -> None:
        g = self._groups[key]
        g.refs -= n
        if g.refs <= 0:
            del self._groups[key]
            self._cooling.append((time.monotonic(), g.slot))

    # --- DataPlane ----------------------------------------------------------------------------

    def apply(self, desired: Desired) -> None:
        """Make the maps hold ``desired`` (a diff against what we wrote), attached everywhere.

        Written for 1M prefixes: one dict lookup per unchanged prefix (IPv4Network hashes are
        not cached and dominate), group keys memoised per next-hop tuple, reference counts
        moved in bulk with Counter, trie writes batched."""
        self._ensure_loaded()
        installed = self.installed
        memo: dict[tuple[int, int], GroupKey] = {}  # (id(nexthops), version) → key, this call only
        changed: list[tuple[Prefix, GroupKey, GroupKey | None]] = []
        found = 0
        get = installed.get if installed else (lambda _prefix: None)  # first load: skip a hash per prefix
        for prefix, intent in desired.routes.items():
            mk = (id(intent.nexthops), prefix._version)
            key = memo.get(mk)
            if key is None:
                key = memo[mk] = self._group_key(intent)
                if not key:
                    log.warning("bpf.route_unsteered nexthops=%s reason=no-usable-path", intent.nexthops)
            old = get(prefix)
            if old is not None:
                found += 1
            if old != key:
                changed.append((prefix, key, old))
        removed = [] if found == len(installed) else [p for p in installed if p not in desired.routes]
        # 1. tables first, into free slots: nothing points to them yet
        slot_of = {k: self._group_for(k) for k in {key for _, key, _ in changed if key}}
        # 2. the flips: one trie update per prefix, atomic each
        writes: dict[int, list[tuple[bytes, int]]] = {4: [], 6: []}
        unsteer: dict[int, list[bytes]] = {4: [], 6: []}
        w4, w6 = writes[4].append, writes[6].append
        for prefix, key, _ in changed:
            if key:
                (w4 if prefix._version == 4 else w6)((key_bytes(prefix), slot_of[key]))
            else:
                unsteer[prefix._version].append(key_bytes(prefix))
        for p in removed:
            unsteer[p.version].append(key_bytes(p))
        for version in (4, 6):
            self.prog.write_routes(version, writes[version])
            self.prog.delete_routes(version, unsteer[version])
        # 3. our mirror and reference counts; groups nobody uses any more start their grace
        gained = collections.Counter(key for _, key, _ in changed if key)
        lost = collections.Counter(old for _, _, old in changed if old is not None)
        for prefix, key, _ in changed:
            if key:
                installed[prefix] = key
            else:
                installed.pop(prefix, None)
        for p in removed:
            lost[installed.pop(p)] += 1
        for key, n in gained.items():
            self._groups[key].refs += n
        for key, n in lost.items():
            self._unref(key, n)
        self._sync_local()
        # 4. attach after the first routes are in
        self._attach_all()
        self.heartbeat()
        if changed or removed:
            log.info("bpf.apply changed=%d removed=%d groups=%d", len(changed), len(removed), len(self._groups))

    def _sync_local(self) -> None:
        """Mirror the local routing table's entries that lie inside steered prefixes into the
        tries as STEER_GROUP_LOCAL (packets to the router itself stay with the kernel)."""
        want = {p for p in local_prefixes() if p not in self.installed and _covered(p, self.installed)}
        gone = self.local - want
        new = want - self.local
        mark = self.prog.abi.group_local
        for version in (4, 6):
            self.prog.write_routes(version, [(key_bytes(p), mark) for p in new if p.version == version])
            self.prog.delete_routes(version, [key_bytes(p) for p in gone if p.version == version])
        self.local = want

    def heartbeat(self) -> None:
        if self.prog is not None:
            self.prog.heartbeat(self.stale_after_ns)

    def reconcile(self, desired: Desired) -> list[str]:
        """Re-attach where someone detached us, repair paths, tables and trie entries changed
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
            members, ring = self.prog.read_group(g.slot)
            if members != list(key) or ring != g.ring:
                self.prog.write_group(g.slot, list(key), g.ring)
                repaired.append(f"group slot {g.slot} rewritten")
        repaired += self._repair_routes()
        self.apply(desired)
        for r in repaired:
            log.warning("bpf.repaired what=%r", r)
        return repaired

    def _repair_routes(self) -> list[str]:
        slots = {k: g.slot for k, g in self._groups.items()}
        out = []
        if len(self.installed) <= FULL_CHECK_LIMIT:
            for version in (4, 6):
                have = self.prog.read_routes(version)
                want = {key_bytes(p): slots[k] for p, k in self.installed.items() if p.version == version}
                want.update((key_bytes(p), self.prog.abi.group_local) for p in self.local if p.version == version)
                fix = [(kb, s) for kb, s in want.items() if have.get(kb) != s]
                extra = [kb for kb in have if kb not in want]
                self.prog.write_routes(version, fix)
                self.prog.delete_routes(version, extra)
                out += [f"route {_prefix_of(kb)} restored" for kb, _ in fix]
                out += [f"route {_prefix_of(kb)} removed (not ours)" for kb in extra]
            return out
        prefixes = list(self.installed)
        start = self._window % len(prefixes)
        self._window = start + WINDOW
        for p in prefixes[start:start + WINDOW]:
            kb = key_bytes(p)
            s = slots[self.installed[p]]
            if self.prog.lookup_route(p.version, kb) != s:
                self.prog.write_routes(p.version, [(kb, s)])
                out.append(f"route {p} restored")
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
        groups: dict[int, GroupKey] = {}
        self.local = set()
        self.installed = {}
        self._groups = {}
        for version in (4, 6):
            moves = []
            for kb, slot in prog.read_routes(version).items():
                if slot == prog.abi.group_local:
                    self.local.add(_prefix_of(kb))
                    continue
                if slot not in groups:
                    members, _ = prog.read_group(slot)
                    groups[slot] = tuple(sorted(members))
                key = groups[slot]
                g = self._groups.setdefault(key, _Group(slot))
                if g.slot != slot:
                    # two slots built from the same members (a crash mid-change): same table,
                    # so pointing the prefix at the first one moves no flow
                    moves.append((kb, g.slot))
                self.installed[_prefix_of(kb)] = key
                g.refs += 1
            prog.write_routes(version, moves)
        used = {g.slot for g in self._groups.values()}
        # Slots no route names are free at once: whatever packet read them did so before the
        # old process died, and a restart takes far longer than a TC program run.
        self._free = [s for s in range(prog.abi.max_groups - 1, -1, -1) if s not in used]
        self._cooling = collections.deque()
        self._write_paths()
        self._attach_all()
        desired = Desired({p: RouteIntent(p, self._nexthops(k)) for p, k in self.installed.items()})
        log.info("bpf.adopted prog_id=%d routes=%d groups=%d", prog.id, len(self.installed), len(self._groups))
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
        self.prog.close()
        self.prog = None
        self.installed = {}
        self._groups = {}

    def close(self) -> None:
        """Close fds without detaching (what a crash leaves; tests and handover)."""
        if self.prog is not None:
            self.prog.close()
            self.prog = None

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
        return self.installed.get(prefix)


def local_prefixes() -> set[Prefix]:
    """Destinations of the calling thread's namespace's local routing table (``ip route show
    table local``: type local and broadcast) — what the kernel delivers to the router itself."""
    out: set[Prefix] = set()
    for family in ("-4", "-6"):
        proc = subprocess.run(["ip", "-j", family, "route", "show", "table", "local"],
                              capture_output=True, text=True, check=False)
        try:
            entries = json.loads(proc.stdout or "[]")
        except ValueError:
            continue
        for e in entries:
            if e.get("type") not in ("local", "broadcast"):
                continue
            try:
                out.add(ipaddress.ip_network(e["dst"], strict=False))
            except (KeyError, ValueError):
                continue
    return out


def _covered(prefix: Prefix, routes: dict[Prefix, object]) -> bool:
    """Whether a strictly shorter prefix of ``routes`` contains ``prefix``."""
    for plen in range(prefix.prefixlen - 1, -1, -1):
        if prefix.supernet(new_prefix=plen) in routes:
            return True
    return False


def _prefix_of(kb: bytes) -> Prefix:
    key = (V4Key if len(kb) == 8 else V6Key).from_buffer_copy(kb)
    return key_prefix(key)


__all__ = ["BpfSteerDataPlane", "GRACE_S"]
