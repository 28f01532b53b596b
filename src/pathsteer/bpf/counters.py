"""Per-interface packet and byte counters (``bpf/counters.bpf.c``) at XDP, TC ingress, TC egress.

One loaded object serves every interface: its map ``iface_counters`` is keyed by
(ifindex, hook) with per-CPU {packets, bytes}. Typical use::

    with Counters.load() as counters:
        counters.attach("eth0", [Hook.TC_INGRESS, Hook.TC_EGRESS])
        ...
        counters.totals("eth0", Hook.TC_INGRESS)   # Totals(packets=..., bytes=...)
        counters.detach("eth0")

Another process (say another ``ip netns exec``, where pins are invisible) picks the same
counters up from the interface by the kernel's ids: ``Counters.find("eth0")``.

The hook numbers come from the object's BTF (``enum pathsteer_hook`` in
``bpf/counters_common.h``), and so does the TC slot (``bpf/common.h``, `pathsteer.bpf.tc_order`):
this module only names them.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from pathsteer.bpf.attach import (
    TcAttachment, TcDirection, XdpAttachment, XdpMode, attach_tc, attach_xdp, detach_tc, detach_xdp,
    ifindex_of, tc_program_id, xdp_program_id,
)
from pathsteer.bpf.btf import Btf
from pathsteer.bpf.maps import Map, map_info
from pathsteer.bpf.object import BpfObject, Program, load_object
from pathsteer.bpf.tc_order import TcSlot, compiled_slot, tc_slot
from pathsteer.errors import BpfError, UsageError
from pathsteer.telemetry.load import CounterSample, Totals  # what the counters feed telemetry

OBJECT = "counters"
MAP = "iface_counters"


def tc_place() -> TcSlot:
    """Our TC filter's (handle, priority) as objects/counters.bpf.o was compiled: the last of
    pathsteer's filters on a hook (``enum pathsteer_tc_prio``, bpf/common.h)."""
    return compiled_slot(OBJECT)


class Hook(Enum):
    """Where a frame was counted; names the enumerators of ``enum pathsteer_hook``."""

    XDP = "xdp"
    TC_INGRESS = "tc-ingress"
    TC_EGRESS = "tc-egress"

    @property
    def c_name(self) -> str:
        return f"PATHSTEER_HOOK_{self.name}"

    @property
    def program(self) -> str:
        return {"XDP": "xdp_count", "TC_INGRESS": "tc_count_in", "TC_EGRESS": "tc_count_out"}[self.name]

    @property
    def direction(self) -> TcDirection | None:
        return {"TC_INGRESS": TcDirection.INGRESS, "TC_EGRESS": TcDirection.EGRESS}.get(self.name)


class CounterKey(ctypes.Structure):
    """``struct counter_key`` (bpf/counters_structs.h); checked against BTF when opened."""
    _fields_ = [("ifindex", ctypes.c_uint32), ("hook", ctypes.c_uint32)]  # hook: enum pathsteer_hook


class CounterValue(ctypes.Structure):
    """``struct pathsteer_counter`` (bpf/common.h), one CPU's share."""
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


def hook_ids(btf: Btf) -> dict[Hook, int]:
    """{Hook: number} from ``enum pathsteer_hook`` in the object's (or the kernel's) BTF."""
    return {hook: btf.constant("pathsteer_hook", hook.c_name) for hook in Hook}


class Counters:
    """The counter programs and their map. Get one with `load` (new object) or `find`
    (already attached, by kernel ids)."""

    def __init__(self, table: Map, hooks: dict[Hook, int], programs: dict[Hook, Program],
                 obj: BpfObject | None = None, tc: TcSlot | None = None) -> None:
        self.map = table
        self.tc = tc or tc_place()  # where our TC filters sit (handle, priority)
        self._hooks = hooks
        self._by_number = {n: h for h, n in hooks.items()}
        self.programs = programs
        self._obj = obj
        self._netns: int | None = None  # the namespace our attachments live in (its inode)

    @classmethod
    def load(cls) -> Counters:
        """Load ``counters.bpf.o`` (needs root and ``make bpf``)."""
        obj = load_object(OBJECT)
        try:
            table = obj.map(MAP, CounterKey, CounterValue)
            return cls(table, hook_ids(obj.btf), {h: obj.program(h.program) for h in Hook}, obj,
                       tc_slot(obj.btf, OBJECT))
        except BaseException:
            obj.close()
            raise

    @classmethod
    def find(cls, interface: str | int, hooks: Iterable[Hook] = tuple(Hook)) -> Counters:
        """The counters attached to ``interface`` at the first of ``hooks`` that has them,
        found by the kernel's ids: the attached program's id → its map ids → our map."""
        ifindex = ifindex_of(interface)
        hooks = tuple(hooks)
        tc = tc_place()
        for hook in hooks:
            prog_id = (xdp_program_id(ifindex) if hook is Hook.XDP
                       else tc_program_id(ifindex, hook.direction, handle=tc.handle, priority=tc.priority))
            if not prog_id:
                continue
            prog = Program.from_id(prog_id)
            if prog.name != hook.program:
                prog.close()
                continue
            try:
                table = prog.map(MAP, CounterKey, CounterValue)
                with Btf.from_kernel(map_info(table.fd).btf_id) as btf:
                    ids = hook_ids(btf)
            except BaseException:
                prog.close()
                raise
            found = cls(table, ids, {hook: prog}, tc=tc)
            found._netns = os.stat("/proc/thread-self/ns/net").st_ino
            return found
        names = ", ".join(h.value for h in hooks)
        raise BpfError(f"no pathsteer counters attached to {interface} (looked at: {names})")

    @property
    def capacity(self) -> int:
        """How many (interface, hook) pairs the map holds (PATHSTEER_LIMIT_COUNTER_KEYS)."""
        return self.map.max_entries

    def _program(self, hook: Hook) -> Program:
        if hook not in self.programs:
            raise BpfError(f"these counters were found at {', '.join(h.value for h in self.programs)}; "
                           f"load them to attach at {hook.value}")
        return self.programs[hook]

    def attach(self, interface: str | int, hooks: Iterable[Hook] = (Hook.TC_INGRESS, Hook.TC_EGRESS),
               xdp_mode: XdpMode | None = None) -> list[XdpAttachment | TcAttachment]:
        """Attach at each hook; on a failure the hooks attached by this call are detached again.
        A counter program of the same name already in our TC slot (left by a run that was
        killed, or by a Counters object not closed) is replaced; anyone else's is refused.

        The key is the ifindex, which is only unique within a network namespace: one Counters
        attaches in one namespace (the calling thread's; see pathsteer.bpf.netns.in_netns)."""
        here = os.stat("/proc/thread-self/ns/net").st_ino
        if self._netns is not None and self._netns != here:
            raise UsageError("these counters are attached in another network namespace; ifindexes "
                             "would collide in their map: load a second Counters for this one")
        done: list[XdpAttachment | TcAttachment] = []
        try:
            for hook in hooks:
                prog = self._program(hook)
                if hook is Hook.XDP:
                    done.append(attach_xdp(prog, interface, xdp_mode))
                else:
                    there = tc_program_id(interface, hook.direction, handle=self.tc.handle, priority=self.tc.priority)
                    done.append(attach_tc(prog, interface, hook.direction, handle=self.tc.handle,
                                          priority=self.tc.priority,
                                          replace=bool(there) and there != prog.id and _named(there, hook.program)))
        except BaseException:
            for att in done:
                if isinstance(att, XdpAttachment):
                    detach_xdp(att.ifindex, att.prog_id)
                else:
                    detach_tc(att.ifindex, att.direction, handle=att.handle, priority=att.priority, prog_id=att.prog_id)
            raise
        self._netns = here
        return done

    def detach(self, interface: str | int, hooks: Iterable[Hook] = tuple(Hook)) -> list[Hook]:
        """Detach the counter programs from ``interface`` where they are attached (only ours:
        a different program at the same place is left alone). Returns the hooks detached."""
        ifindex = ifindex_of(interface)
        detached = []
        for hook in hooks:
            if hook is Hook.XDP:
                prog_id = xdp_program_id(ifindex)
                if prog_id and self._is_ours(prog_id, hook) and detach_xdp(ifindex, prog_id):
                    detached.append(hook)
            else:
                prog_id = tc_program_id(ifindex, hook.direction, handle=self.tc.handle, priority=self.tc.priority)
                if prog_id and self._is_ours(prog_id, hook) and detach_tc(
                        ifindex, hook.direction, handle=self.tc.handle, priority=self.tc.priority, prog_id=prog_id):
                    detached.append(hook)
        return detached

    def _is_ours(self, prog_id: int, hook: Hook) -> bool:
        if hook in self.programs:
            return self.programs[hook].id == prog_id
        with Program.from_id(prog_id) as prog:  # found via another hook: same map means same object
            return prog.name == hook.program and self.map.id in prog.map_ids()

    def read(self) -> dict[tuple[int, Hook], Totals]:
        """Every counter: {(ifindex, hook): Totals}, one batch syscall per 256 entries."""
        out = {}
        for key, per_cpu in self.map.lookup_batch():
            hook = self._by_number.get(key.hook)
            if hook is not None:
                out[(key.ifindex, hook)] = Totals(sum(v.packets for v in per_cpu), sum(v.bytes for v in per_cpu))
        return out

    def totals(self, interface: str | int, hook: Hook) -> Totals:
        """Packets and bytes seen on ``interface`` at ``hook`` (zero if nothing was seen)."""
        value = self.map.sum(CounterKey(ifindex_of(interface), self._hooks[hook]))
        return Totals(value.packets, value.bytes) if value is not None else Totals()

    def samples(self, interfaces: Mapping[str, str], now: float | None = None) -> dict[str, CounterSample]:
        """One `CounterSample` of each path (``{path name: interface}``) at monotonic ``now``:
        TC ingress as received, TC egress as sent — what `telemetry.load.LoadMeter.update`
        takes."""
        at = time.monotonic() if now is None else now
        indexes = {name: ifindex_of(ifname) for name, ifname in interfaces.items()}
        counts = self.read()  # one batch for every path, not two lookups a path
        zero = Totals()
        return {name: CounterSample(at, counts.get((ifindex, Hook.TC_INGRESS), zero),
                                    counts.get((ifindex, Hook.TC_EGRESS), zero))
                for name, ifindex in indexes.items()}

    def reset(self, interface: str | int, hooks: Iterable[Hook] = tuple(Hook)) -> None:
        """Forget the counts of ``interface`` (the programs start again from zero)."""
        ifindex = ifindex_of(interface)
        for hook in hooks:
            self.map.delete(CounterKey(ifindex, self._hooks[hook]))

    def hook_number(self, hook: Hook) -> int:
        """The value of ``hook`` in ``enum pathsteer_hook`` as compiled."""
        return self._hooks[hook]

    def close(self) -> None:
        """Close fds; attachments stay (detach first to remove them)."""
        self.map.close()
        for prog in self.programs.values():
            prog.close()
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    def __enter__(self) -> Counters:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _named(prog_id: int, name: str) -> bool:
    """Whether program ``prog_id`` is called ``name`` (a counter program of an earlier run)."""
    try:
        with Program.from_id(prog_id) as prog:
            return prog.name == name
    except Exception:  # noqa: BLE001 - gone meanwhile: nothing to take over
        return False
