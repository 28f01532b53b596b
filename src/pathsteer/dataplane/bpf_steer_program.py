"""The loaded (or found) steering program and its maps: bpf_steer's only I/O with BPF.

    prog = SteerProgram.load()                  # a fresh steer.bpf.o
    prog = SteerProgram.find("r-c")             # the one attached there, by the kernel's ids
    prog.write_path(1, PathC(...)); prog.write_group(slot, {1: 3, 2: 1}, ring)
    prog.write_routes(4, [(key_bytes, slot), ...])   # bpf_map_update_batch, 64k per syscall
    prog.attach("r-c"); prog.heartbeat(); prog.path_totals()

Nothing here decides anything: bpf_steer.BpfSteerDataPlane does.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pathsteer.bpf import (
    BpfObject, Program, TcDirection, attach_tc, detach_tc, ifindex_of, load_object, tc_program_id,
)
from pathsteer.bpf import libbpf as lb
from pathsteer.bpf.btf import Btf
from pathsteer.bpf.maps import Map, map_info
from pathsteer.dataplane import bpf_steer_abi as abi_mod
from pathsteer.dataplane.bpf_steer_abi import Abi, Counter, PathC, Reason, Route, State
from pathsteer.errors import BpfError

BATCH = 65536  # route entries per bpf_map_update_batch syscall
SORT_ABOVE = 4096  # batches larger than this are written in address order
PATH_GRACE_S = 0.1  # a steer_paths slot is rewritten only this long after it stopped being live


def _address_order(item: tuple[bytes, int]) -> bytes:
    return item[0][4:]


@dataclass(frozen=True)
class Totals:
    packets: int = 0
    bytes: int = 0

    def __sub__(self, other: Totals) -> Totals:
        return Totals(self.packets - other.packets, self.bytes - other.bytes)


class SteerProgram:
    """One steer.bpf.o in the kernel: its program, typed maps and compiled numbers."""

    def __init__(self, program: Program, maps: dict[str, Map], abi: Abi, obj: BpfObject | None = None) -> None:
        self.program = program
        self.maps = maps
        self.abi = abi
        self._obj = obj
        self.id = program.id
        self._retired: dict[int, float] = {}  # steer_paths slot → when packets stopped being sent to it
        self._mapped: list[tuple[mmap.mmap, memoryview]] = []

    # --- getting one ----------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> SteerProgram:
        """Load a fresh ``steer.bpf.o`` (needs root and ``make bpf``); nothing attached yet.
        ``path``: another build of the same source (the bench's variants)."""
        obj = load_object(abi_mod.OBJECT if path is None else path)
        try:
            abi = abi_mod.check_layouts(obj.btf)
            maps = {name: obj.map(name, k, v) for name, (k, v) in abi.map_types().items()}
            return cls(obj.program(abi_mod.PROGRAM), maps, abi, obj)
        except BaseException:
            obj.close()
            raise

    @classmethod
    def from_program(cls, prog: Program) -> SteerProgram:
        """Wrap a program the kernel gave back by id: its maps by name, numbers from its BTF."""
        if prog.name != abi_mod.PROGRAM:
            raise BpfError(f"program id {prog.id} is {prog.name!r}, not {abi_mod.PROGRAM}")
        maps: dict[str, Map] = {}
        try:
            fd = prog.map_fd("steer_state")
            try:
                with Btf.from_kernel(map_info(fd).btf_id) as btf:
                    abi = abi_mod.check_layouts(btf)
            finally:
                os.close(fd)
            for name, (k, v) in abi.map_types().items():
                maps[name] = prog.map(name, k, v)
            return cls(prog, maps, abi)
        except BaseException:
            for m in maps.values():
                m.close()
            raise

    @staticmethod
    def attached_id(interface: str | int, handle: int, priority: int) -> int | None:
        return tc_program_id(interface, TcDirection.INGRESS, handle=handle, priority=priority)

    @classmethod
    def find(cls, interfaces: Iterable[str], handle: int, priority: int) -> SteerProgram | None:
        """The steering program attached at (handle, priority) on the first of ``interfaces``
        that has one, by the kernel's ids (works from a fresh ``ip netns exec``); None if none."""
        for name in interfaces:
            try:
                prog_id = cls.attached_id(name, handle, priority)
            except Exception:
                continue
            if not prog_id:
                continue
            prog = Program.from_id(prog_id)
            if prog.name != abi_mod.PROGRAM:
                prog.close()
                continue
            try:
                return cls.from_program(prog)
            except BaseException:
                prog.close()
                raise
        return None

    def close(self) -> None:
        """Close our fds; an attached program keeps its maps alive (the kernel holds them)."""
        for mm, view in self._mapped:
            view.release()  # raises while a caller still holds a slice of it
            mm.close()
        self._mapped = []
        for m in self.maps.values():
            m.close()
        self.maps = {}
        self.program.close()
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    # --- attachment -----------------------------------------------------------------------

    def attach(self, interface: str | int) -> None:
        """Our filter at (PATHSTEER_TC_HANDLE_STEER, PATHSTEER_TC_PRIO_STEER) of bpf/common.h on
        TC ingress. An older steering program at that place is replaced in one netlink request
        (no gap); anything else there is left alone (BpfError)."""
        h, p = self.abi.tc_handle, self.abi.tc_priority
        current = self.attached_id(interface, h, p)
        if current == self.id:
            return
        if current is not None:
            with Program.from_id(current) as other:
                if other.name != abi_mod.PROGRAM:
                    raise BpfError(f"{interface}: TC ingress handle {h:#x} priority {p} holds program "
                                   f"{other.name!r} (id {current}); not replaced")
        attach_tc(self.program, interface, TcDirection.INGRESS, handle=h, priority=p, replace=current is not None)

    def detach(self, interface: str | int) -> bool:
        """Remove our filter (only if it runs this program); other filters stay."""
        h, p = self.abi.tc_handle, self.abi.tc_priority
        try:
            ifindex_of(interface)
        except Exception:
            return False
        if self.attached_id(interface, h, p) != self.id:
            return False
        return detach_tc(interface, TcDirection.INGRESS, handle=h, priority=p, prog_id=self.id)

    def is_attached(self, interface: str | int) -> bool:
        return self.attached_id(interface, self.abi.tc_handle, self.abi.tc_priority) == self.id

    # --- state ----------------------------------------------------------------------------

    def read_state(self) -> State:
        return self.maps["steer_state"].lookup(0)

    def write_state(self, heartbeat_ns: int, stale_after_ns: int) -> None:
        self.maps["steer_state"].update(0, State(heartbeat_ns, stale_after_ns))

    def heartbeat(self, stale_after_ns: int, now_ns: int | None = None) -> None:
        """Write CLOCK_MONOTONIC now (what bpf_ktime_get_ns reads in every namespace)."""
        self.write_state(time.monotonic_ns() if now_ns is None else now_ns, stale_after_ns)

    # --- paths ----------------------------------------------------------------------------

    def read_paths(self) -> dict[int, PathC]:
        """Path id → its live steer_paths entry, for every id path_slots names."""
        slots, paths = self.maps["path_slots"], self.maps["steer_paths"]
        out = {}
        for pid, slot in slots.items():
            if pid and slot and slot >> 1 == pid:
                out[int(pid)] = paths.lookup(slot)
        return out

    def write_path(self, path_id: int, value: PathC) -> None:
        """Write the path into its slot that packets do not read, then point path_slots at it
        (steer_maps.h): a packet reads the old path or the new one. A slot is written again
        only `PATH_GRACE_S` after packets stopped being sent to it."""
        if not 0 < path_id < self.abi.max_paths:
            raise BpfError(f"path id {path_id} out of range 1..{self.abi.max_paths - 1}")
        live = self.maps["path_slots"].lookup(path_id)
        target = 2 * path_id + 1 if live == 2 * path_id else 2 * path_id
        wait = self._retired.get(target, 0.0) + PATH_GRACE_S - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.maps["steer_paths"].update(target, value)
        self.maps["path_slots"].update(path_id, target)
        if live:
            self._retired[live] = time.monotonic()

    def delete_path(self, path_id: int) -> None:
        live = self.maps["path_slots"].lookup(path_id)
        self.maps["path_slots"].update(path_id, 0)  # slot 0: zero, no gateway of either family
        if live:
            self._retired[live] = time.monotonic()

    # --- groups ---------------------------------------------------------------------------

    def write_group(self, slot: int, members: Sequence[tuple[int, int]], ring: Sequence[int]) -> None:
        """Write a Maglev table and its members into ``slot`` (which no route may point to)."""
        a = self.abi
        if len(members) > a.max_group_paths:
            raise BpfError(f"{len(members)} paths in one group; at most {a.max_group_paths}")
        g = a.group_type()
        g.count = len(members)
        for i, (pid, weight) in enumerate(members):
            g.path[i], g.weight[i] = pid, weight
        r = a.ring_type()
        r.path[:] = list(ring)
        self.maps["ch_rings"].update(slot, r)
        self.maps["group_members"].update(slot, g)

    def read_group(self, slot: int) -> tuple[list[tuple[int, int]], list[int]]:
        g = self.maps["group_members"].lookup(slot)
        r = self.maps["ch_rings"].lookup(slot)
        return [(g.path[i], g.weight[i]) for i in range(min(g.count, self.abi.max_group_paths))], list(r.path)

    def ring_bytes(self, slot: int) -> bytes:
        return bytes(self.maps["ch_rings"].lookup(slot))

    def group_image(self, members: Sequence[tuple[int, int]], ring: Sequence[int]) -> bytes:
        """What `write_group` stores for ``members`` and ``ring``, as raw bytes (members, then
        the ring): reconcile compares `read_group_image` against it instead of decoding."""
        g = self.abi.group_type()
        g.count = len(members)
        for i, (pid, weight) in enumerate(members):
            g.path[i], g.weight[i] = pid, weight
        return bytes(g) + struct.pack(f"<{len(ring)}H", *ring)

    def read_group_image(self, slot: int) -> bytes:
        g = self.maps["group_members"].lookup(slot)
        r = self.maps["ch_rings"].lookup(slot)
        return (bytes(g) if g is not None else b"") + (bytes(r) if r is not None else b"")

    # --- routes ---------------------------------------------------------------------------

    def _routes(self, version: int) -> Map:
        return self.maps[f"routes_v{version}"]

    def write_routes(self, version: int, items: Sequence[tuple[bytes, int]]) -> int:
        """Store (raw route key, group slot) pairs with bpf_map_update_batch, BATCH per syscall;
        each entry is replaced atomically (the hash swaps its element under RCU). A new prefix
        length still has to be announced (`write_lengths`) before packets look for it."""
        if not items:
            return 0
        if len(items) > SORT_ABOVE:
            # Address order: what the bench's LPM build takes fastest (consecutive inserts walk
            # the same trie nodes); the hash does not mind.
            items = sorted(items, key=_address_order)
        return self.write_routes_packed(version, b"".join(k for k, _ in items),
                                        struct.pack(f"<{len(items)}I", *(g for _, g in items)))

    def write_routes_packed(self, version: int, keys: bytes, values: bytes) -> int:
        """`write_routes` for bulk callers: the keys packed back to back (in the order they are
        to go in; address order is the fast one) and the u32 slots likewise. IPv6 entries go
        into routes_v6 and routes_v6_lpm alike (the program reads one or the other)."""
        m = self._routes(version)
        ksize = ctypes.sizeof(m.key_type)
        total = len(keys) // ksize
        if len(keys) != ksize * total or len(values) != 4 * total:
            raise BpfError(f"routes_v{version}: {len(keys)} bytes of keys and {len(values)} of values "
                           f"are not {total} entries of {ksize} + 4 bytes")
        opts = lb.opts(lb.bpf_map_batch_opts)
        kbuf = ctypes.create_string_buffer(keys, len(keys) or 1)
        vbuf = ctypes.create_string_buffer(values, len(values) or 1)
        kbase, vbase = ctypes.addressof(kbuf), ctypes.addressof(vbuf)
        for target in self._written(version):
            done = 0
            while done < total:
                n = min(BATCH, total - done)
                count = ctypes.c_uint32(n)
                ret = lb.bpf_map_update_batch(target.fd, ctypes.c_void_p(kbase + done * ksize),
                                              ctypes.c_void_p(vbase + done * 4), ctypes.byref(count),
                                              ctypes.byref(opts))
                lb.check_int(ret, f"map {target.name}: update_batch ({done + count.value} of {total} stored)")
                done += n
        return total

    def _written(self, version: int) -> list[Map]:
        """The maps a route of ``version`` is written to: routes_v4; routes_v6 and routes_v6_lpm."""
        if version == 6 and "routes_v6_lpm" in self.maps:
            return [self.maps["routes_v6"], self.maps["routes_v6_lpm"]]
        return [self._routes(version)]

    def delete_routes(self, version: int, keys: Iterable[bytes]) -> int:
        keys = list(keys)
        n = 0
        for i, m in enumerate(self._written(version)):
            for k in keys:
                ret = lb.bpf_map_delete_elem(m.fd, k)
                if ret == 0:
                    n += i == 0
                elif ret != -errno.ENOENT:
                    lb.check_int(ret, f"map {m.name}: delete")
        return n

    def delete_routes_packed(self, version: int, keys: bytes) -> int:
        """Delete many route keys (packed back to back) with bpf_map_delete_batch; absent ones
        are skipped. Returns how many were deleted (from routes_vN)."""
        if not keys:
            return 0
        return [m.delete_batch(keys, missing_ok=True, batch_size=BATCH) for m in self._written(version)][0]

    def lookup_route(self, version: int, key: bytes) -> int | None:
        m = self._routes(version)
        out = ctypes.c_uint32()
        ret = lb.bpf_map_lookup_elem(m.fd, key, ctypes.byref(out))
        if ret == -errno.ENOENT:
            return None
        lb.check_int(ret, f"map routes_v{version}: lookup")
        return out.value

    def read_routes(self, version: int, batch: int = 8192) -> dict[bytes, int]:
        """Every (raw key → group slot) of one routes map: bpf_map_lookup_batch into raw buffers
        (the kernel walks the map for us; -ENOENT marks the end with
        ``count`` still filled in, PLATFORM.md)."""
        m = self._routes(version)
        ksize = ctypes.sizeof(m.key_type)
        out: dict[bytes, int] = {}
        tokens = [ctypes.create_string_buffer(max(ksize, 8)), ctypes.create_string_buffer(max(ksize, 8))]
        keys = ctypes.create_string_buffer(ksize * batch)
        values = ctypes.create_string_buffer(4 * batch)
        opts = lb.opts(lb.bpf_map_batch_opts)
        first = True
        while True:
            count = ctypes.c_uint32(batch)
            ret = lb.bpf_map_lookup_batch(m.fd, None if first else tokens[0], tokens[1], keys, values,
                                          ctypes.byref(count), ctypes.byref(opts))
            if ret < 0 and ret != -errno.ENOENT:
                lb.check_int(ret, f"map routes_v{version}: lookup_batch")
            n = count.value
            kraw, vals = keys.raw, struct.unpack_from(f"<{n}I", values.raw)
            for i in range(n):
                out[kraw[i * ksize:(i + 1) * ksize]] = vals[i]
            if ret == -errno.ENOENT:
                return out
            tokens.reverse()
            first = False

    # --- the IPv4 /24 table ---------------------------------------------------------------

    def v4_table(self) -> memoryview:
        """routes_v4_24 mapped into this process (BPF_F_MMAPABLE), as its 2^24 u16 entries
        (valid until `close`). Writes through it are what packets read next."""
        m = self.maps["routes_v4_24"]
        mm = mmap.mmap(m.fd, m.max_entries * ctypes.sizeof(m.value_type), mmap.MAP_SHARED,
                       mmap.PROT_READ | mmap.PROT_WRITE)
        view = memoryview(mm).cast("H")
        self._mapped.append((mm, view))
        return view

    # --- prefix lengths -------------------------------------------------------------------

    def read_lengths(self, version: int) -> int:
        """route_lengths of one family as an integer bit set (bit L: some /L is in routes_vN)."""
        v = self.maps["route_lengths"].lookup(self.abi.lengths_index[version])
        return self.abi.lengths_mask(v) if v is not None else 0

    def write_lengths(self, version: int, mask: int) -> None:
        """Announce the prefix lengths of one family (one array update). Callers write a length's
        first entry before its bit and clear the bit before deleting its last entry: the
        program probes only the lengths named here. IPv6's lookup_lpm is kept."""
        limit = 32 if version == 4 else 128
        if mask >> (limit + 1):
            raise BpfError(f"route_lengths v{version}: lengths beyond /{limit} in {mask:#x}")
        self.maps["route_lengths"].update(self.abi.lengths_index[version],
                                          self.abi.lengths_value(mask, version == 6 and self.v6_lookup_lpm()))

    def v6_lookup_lpm(self) -> bool:
        """Whether IPv6 lookups use routes_v6_lpm whatever the lengths (route_lengths.lookup_lpm)."""
        v = self.maps["route_lengths"].lookup(self.abi.lengths_index[6])
        return bool(v is not None and v.lookup_lpm)

    def set_v6_lookup_lpm(self, on: bool) -> None:
        """Switch IPv6 lookups between the per-length hash and the trie (both always hold every
        prefix, so either may be read at any time)."""
        self.maps["route_lengths"].update(self.abi.lengths_index[6], self.abi.lengths_value(self.read_lengths(6), on))

    # --- counters -------------------------------------------------------------------------

    def path_totals(self, path_ids: Iterable[int]) -> dict[int, Totals]:
        m = self.maps["path_counters"]
        out = {}
        for pid in path_ids:
            c = m.sum(pid)
            out[pid] = Totals(c.packets, c.bytes) if c is not None else Totals()
        return out

    def reason_totals(self) -> dict[Reason, Totals]:
        m = self.maps["steer_stats"]
        out = {}
        for reason, index in self.abi.reasons.items():
            c = m.sum(index)
            out[reason] = Totals(c.packets, c.bytes) if c is not None else Totals()
        return out

    def reset_counters(self) -> None:
        for name, count in (("path_counters", self.abi.max_paths), ("steer_stats", len(self.abi.reasons))):
            for i in range(count):
                self.maps[name].update(i, Counter())


__all__ = ["SteerProgram", "Totals", "Route", "PathC", "State"]
