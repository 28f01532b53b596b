"""Passive RTT of real TCP traffic on a path's interface (``bpf/passive.bpf.c``), ePPing-style:
the kernel side (load, attach, find, read); the figures are `pathsteer.telemetry.passive`'s.

::

    egress  tc_passive_out ─── data/SYN/FIN with TSval ─► passive_timestamps
                                 (ifindex, flow, TSval) → first-seen ns   (LRU, bounded)
                                 passive_flows: flow → last TSval stored (once per TSval)
    ingress tc_passive_in ── reverse flow's TSecr ──► match, delete ─► passive_rtt[ifindex]
                                                          per CPU: samples, sum_ns, min_ns,
                                                          max_ns, log-linear histogram
    user space ── read() every few seconds ─► RttAggregate (CPUs merged)
               ── interval(before, after) ──► RttInterval: samples, min/mean/p50/p95/max ns

No packet ever wakes user space: the kernel keeps running aggregates and `RttMeter` turns two
successive reads into one interval's figures (pure functions, unit-tested without root).
Times are nanoseconds (``bpf_ktime_get_ns``), and every field says so (``_ns``).

Typical use (as root, in the namespace of the interfaces)::

    with PassiveRtt.load() as rtt:
        rtt.attach("r-p1")                       # TC egress + ingress
        meter = RttMeter(rtt.sub_bits)
        meter.update(rtt.aggregates({"p1": "r-p1"}))
        ...
        figures = meter.update(rtt.aggregates({"p1": "r-p1"}))["p1"]   # RttInterval
        figures.p50_ns, figures.p95_ns

Another process finds the attached programs by the kernel's ids: ``PassiveRtt.find("r-p1")``.

The histogram layout and the limits come from the object's BTF (``enum passive_limits`` in
``bpf/passive_common.h``).

The TC filters sit first of pathsteer's on a hook, before steering and the counters: their
(handle, priority) is ``PATHSTEER_TC_*_PASSIVE`` of ``bpf/common.h``, read from the object's BTF
(`pathsteer.bpf.tc_order`). Every one of these programs returns TC_ACT_UNSPEC ("next filter"),
so on a hook they share each sees every packet whichever is attached first.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Mapping

from pathsteer.bpf.attach import TcAttachment, TcDirection, attach_tc, detach_tc, ifindex_of, tc_program_id
from pathsteer.bpf.btf import Btf
from pathsteer.bpf.maps import Map, map_info
from pathsteer.bpf.object import BpfObject, Program, load_object
from pathsteer.bpf.tc_order import TcSlot, compiled_slot, tc_slot
from pathsteer.errors import BpfError, UsageError
from pathsteer.telemetry.passive import RttAggregate

OBJECT = "passive"
TIMESTAMPS_MAP = "passive_timestamps"
FLOWS_MAP = "passive_flows"
RTT_MAP = "passive_rtt"
PROGRAMS = {TcDirection.EGRESS: "tc_passive_out", TcDirection.INGRESS: "tc_passive_in"}
# The egress program that also timestamps pure ACKs (for paths carrying downloads; see passive.bpf.c).
EGRESS_WITH_ACKS = "tc_passive_acks"
_NAMES = {TcDirection.EGRESS: {PROGRAMS[TcDirection.EGRESS], EGRESS_WITH_ACKS},
          TcDirection.INGRESS: {PROGRAMS[TcDirection.INGRESS]}}


def tc_place() -> TcSlot:
    """Our TC filters' (handle, priority) as objects/passive.bpf.o was compiled (bpf/common.h)."""
    return compiled_slot(OBJECT)


# --- the C structs ------------------------------------------------------------------------------

class PassiveFlow(ctypes.Structure):
    """``struct passive_flow`` (bpf/passive_structs.h): key of passive_flows; checked against BTF."""
    _fields_ = [("ifindex", ctypes.c_uint32), ("saddr", ctypes.c_uint8 * 16), ("daddr", ctypes.c_uint8 * 16),
                ("sport", ctypes.c_uint16), ("dport", ctypes.c_uint16)]  # ports in network byte order


class PassiveFlowState(ctypes.Structure):
    """``struct passive_flow_state``: the flow's last TSval stored."""
    _fields_ = [("last_tsval", ctypes.c_uint32), ("has_tsval", ctypes.c_uint32)]


class PassiveTsKey(ctypes.Structure):
    """``struct passive_ts_key`` (bpf/passive_structs.h); checked against BTF when opened."""
    _fields_ = [("flow", PassiveFlow),
                ("kind", ctypes.c_uint32),  # enum passive_id_kind
                ("identifier", ctypes.c_uint32)]


@functools.cache
def rtt_agg_type(buckets: int) -> type[ctypes.Structure]:
    """The ctypes mirror of ``struct passive_rtt_agg`` with ``buckets`` histogram buckets
    (``PASSIVE_LIMIT_HIST_BUCKETS`` as compiled); checked against BTF when the map is opened."""
    fields = [("samples", ctypes.c_uint64), ("handshake_samples", ctypes.c_uint64),
              ("sum_ns", ctypes.c_uint64), ("min_ns", ctypes.c_uint64), ("max_ns", ctypes.c_uint64),
              ("recorded", ctypes.c_uint64), ("record_failed", ctypes.c_uint64),
              ("hist", ctypes.c_uint64 * buckets)]
    return type(f"PassiveRttAgg{buckets}", (ctypes.Structure,), {"_fields_": fields})


# --- the kernel side ----------------------------------------------------------------------------

def _limits(btf: Btf) -> dict[str, int]:
    return btf.enum_values("passive_limits")


class PassiveRtt:
    """The passive RTT programs and their maps. Get one with `load` (new object) or `find`
    (already attached, by kernel ids). One PassiveRtt per network namespace: its keys are
    ifindexes, which collide across namespaces."""

    def __init__(self, rtt: Map, timestamps: Map | None, limits: dict[str, int],
                 programs: dict[TcDirection, Program], obj: BpfObject | None = None,
                 egress_with_acks: Program | None = None, tc: TcSlot | None = None) -> None:
        self.rtt_map = rtt
        self.tc = tc or tc_place()  # where our TC filters sit (handle, priority)
        self.timestamps_map = timestamps
        self.sub_bits = limits["PASSIVE_LIMIT_HIST_SUB_BITS"]
        self.buckets = limits["PASSIVE_LIMIT_HIST_BUCKETS"]
        self.limits = limits
        self.programs = programs
        self.egress_with_acks = egress_with_acks
        self._obj = obj
        self._netns: int | None = None

    @classmethod
    def load(cls) -> PassiveRtt:
        """Load ``passive.bpf.o`` (needs root and ``make bpf``)."""
        obj = load_object(OBJECT)
        try:
            limits = _limits(obj.btf)
            rtt = obj.map(RTT_MAP, ctypes.c_uint32, rtt_agg_type(limits["PASSIVE_LIMIT_HIST_BUCKETS"]))
            ts = obj.map(TIMESTAMPS_MAP, PassiveTsKey, ctypes.c_uint64)
            return cls(rtt, ts, limits, {d: obj.program(name) for d, name in PROGRAMS.items()}, obj,
                       obj.program(EGRESS_WITH_ACKS), tc_slot(obj.btf, OBJECT))
        except BaseException:
            obj.close()
            raise

    @classmethod
    def find(cls, interface: str | int) -> PassiveRtt:
        """The passive programs attached to ``interface`` (ingress, else egress), found by the
        kernel's ids: attached program id → its maps → ``passive_rtt``."""
        ifindex = ifindex_of(interface)
        tc = tc_place()
        for direction in (TcDirection.INGRESS, TcDirection.EGRESS):
            prog_id = tc_program_id(ifindex, direction, handle=tc.handle, priority=tc.priority)
            if not prog_id:
                continue
            prog = Program.from_id(prog_id)
            if prog.name not in _NAMES[direction]:
                prog.close()
                continue
            try:
                fd = prog.map_fd(RTT_MAP)
                try:
                    with Btf.from_kernel(map_info(fd).btf_id) as btf:
                        limits = _limits(btf)
                finally:
                    os.close(fd)
                rtt = prog.map(RTT_MAP, ctypes.c_uint32, rtt_agg_type(limits["PASSIVE_LIMIT_HIST_BUCKETS"]))
                ts = prog.map(TIMESTAMPS_MAP, PassiveTsKey, ctypes.c_uint64)
            except BaseException:
                prog.close()
                raise
            found = cls(rtt, ts, limits, {direction: prog}, tc=tc)
            found._netns = os.stat("/proc/thread-self/ns/net").st_ino
            return found
        raise BpfError(f"no pathsteer passive RTT programs attached to {interface}")

    def attach(self, interface: str | int, *, pure_acks: bool = False) -> list[TcAttachment]:
        """Attach at TC egress and ingress of ``interface`` (the calling thread's namespace);
        on a failure what this call attached is detached again.

        ``pure_acks``: timestamp pure ACKs leaving too (``tc_passive_acks``), so downloads over
        the path are measured (their ACKs' TSvals come back in the sender's data); off by
        default, as in ePPing, because an idle sender echoes late (see bpf/passive.bpf.c)."""
        here = os.stat("/proc/thread-self/ns/net").st_ino
        if self._netns is not None and self._netns != here:
            raise UsageError("these passive RTT programs are attached in another network namespace; "
                             "ifindexes would collide in their maps: load a second PassiveRtt for this one")
        if self._obj is None:
            raise BpfError("this PassiveRtt was found by id and holds one program: load one to attach")
        egress = self.egress_with_acks if pure_acks else self.programs[TcDirection.EGRESS]
        done: list[TcAttachment] = []
        new: list[TcAttachment] = []  # what this call attached (an attachment already there stays)
        try:
            for direction, prog in ((TcDirection.INGRESS, self.programs[TcDirection.INGRESS]),  # the matcher first
                                    (TcDirection.EGRESS, egress)):
                there = tc_program_id(interface, direction, handle=self.tc.handle, priority=self.tc.priority)
                att = attach_tc(prog, interface, direction, handle=self.tc.handle, priority=self.tc.priority)
                done.append(att)
                if there != att.prog_id:
                    new.append(att)
        except BaseException:
            for att in new:
                detach_tc(att.ifindex, att.direction, handle=att.handle, priority=att.priority, prog_id=att.prog_id)
            raise
        self._netns = here
        return done

    def detach(self, interface: str | int) -> list[TcDirection]:
        """Remove our filters from ``interface`` (only ours: another program in our slot stays).
        Returns the directions detached."""
        ifindex = ifindex_of(interface)
        detached = []
        for direction in PROGRAMS:
            prog_id = tc_program_id(ifindex, direction, handle=self.tc.handle, priority=self.tc.priority)
            if not prog_id or not self._is_ours(prog_id, _NAMES[direction]):
                continue
            if detach_tc(ifindex, direction, handle=self.tc.handle, priority=self.tc.priority, prog_id=prog_id):
                detached.append(direction)
        return detached

    def _is_ours(self, prog_id: int, names: set[str]) -> bool:
        with Program.from_id(prog_id) as prog:
            return prog.name in names and self.rtt_map.id in prog.map_ids()

    def read(self) -> dict[int, RttAggregate]:
        """Every interface's aggregate: {ifindex: RttAggregate}."""
        return {int(key): RttAggregate.from_cpus(per_cpu) for key, per_cpu in self.rtt_map.lookup_batch(16)}

    def aggregate(self, interface: str | int) -> RttAggregate:
        """``interface``'s aggregate (empty when nothing was measured there yet)."""
        per_cpu = self.rtt_map.lookup(ifindex_of(interface))
        if per_cpu is None:
            return RttAggregate(hist=(0,) * self.buckets)
        return RttAggregate.from_cpus(per_cpu)

    def aggregates(self, interfaces: Mapping[str, str | int]) -> dict[str, RttAggregate]:
        """{path name: aggregate} for {path name: interface}: what `RttMeter.update` takes."""
        return {name: self.aggregate(interface) for name, interface in interfaces.items()}

    def pending(self) -> int:
        """How many sent packets wait for their echo (entries in ``passive_timestamps``)."""
        return sum(1 for _ in self.timestamps_map.keys()) if self.timestamps_map is not None else 0

    def reset(self, interface: str | int) -> None:
        """Forget ``interface``'s aggregate (the programs start it again from zero)."""
        self.rtt_map.delete(ifindex_of(interface))

    def close(self) -> None:
        """Close fds; attachments stay (detach first to remove them)."""
        self.rtt_map.close()
        if self.timestamps_map is not None:
            self.timestamps_map.close()
        for prog in self.programs.values():
            prog.close()
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    def __enter__(self) -> PassiveRtt:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
