"""Passive RTT of real TCP traffic on a path's interface (``bpf/passive.bpf.c``), ePPing-style.

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

The histogram layout (``PASSIVE_LIMIT_HIST_SUB_BITS``, ``..._BUCKETS``) and the limits come from
the object's BTF (``enum passive_limits`` in ``bpf/passive_common.h``); `bucket_of` and
`bucket_bounds` implement the formula written there, and a kernel test checks that the
program puts a sample in the bucket `bucket_of` names.

The TC filters sit at priority `TC_PRIORITY`, before the counters (``pathsteer.bpf.counters``):
the counter programs return TC_ACT_OK, which ends a direct-action filter chain, while ours return
TC_ACT_UNSPEC ("next filter"), so both run whichever is attached first.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pathsteer.bpf.attach import TcAttachment, TcDirection, attach_tc, detach_tc, ifindex_of, tc_program_id
from pathsteer.bpf.btf import Btf
from pathsteer.bpf.maps import Map, map_info
from pathsteer.bpf.object import BpfObject, Program, load_object
from pathsteer.errors import BpfError, UsageError

OBJECT = "passive"
TIMESTAMPS_MAP = "passive_timestamps"
FLOWS_MAP = "passive_flows"
RTT_MAP = "passive_rtt"
PROGRAMS = {TcDirection.EGRESS: "tc_passive_out", TcDirection.INGRESS: "tc_passive_in"}
# The egress program that also timestamps pure ACKs (for paths carrying downloads; see passive.bpf.c).
EGRESS_WITH_ACKS = "tc_passive_acks"
_NAMES = {TcDirection.EGRESS: {PROGRAMS[TcDirection.EGRESS], EGRESS_WITH_ACKS},
          TcDirection.INGRESS: {PROGRAMS[TcDirection.INGRESS]}}
# Our TC filter slot: the counters' handle ("ps" = 0x7073) at a lower priority, so we run first.
TC_HANDLE = 0x7073
TC_PRIORITY = 0x0C


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


# --- the histogram (pure) -----------------------------------------------------------------------

def bucket_of(value_ns: int, sub_bits: int, buckets: int) -> int:
    """The log-linear bucket of ``value_ns`` (the formula of bpf/passive_common.h)."""
    if value_ns < 1 << sub_bits:
        return value_ns
    m = value_ns.bit_length() - 1
    bucket = (m - sub_bits + 1) << sub_bits | (value_ns >> (m - sub_bits)) & ((1 << sub_bits) - 1)
    return min(bucket, buckets - 1)


def bucket_bounds(bucket: int, sub_bits: int) -> tuple[int, int]:
    """[lower, upper) in ns of the values bucket ``bucket`` holds (the last bucket also holds
    everything above its upper bound)."""
    sub = 1 << sub_bits
    if bucket < sub:
        return bucket, bucket + 1
    octave, index = divmod(bucket, sub)  # octave ≥ 1: values with m = octave + sub_bits - 1
    width = 1 << (octave - 1)
    lower = (sub + index) * width
    return lower, lower + width


def percentile_ns(hist: Sequence[int], q: float, sub_bits: int) -> float | None:
    """The ``q`` quantile (0..1) of the samples counted in ``hist``, interpolated linearly
    inside the bucket where the rank falls (samples assumed spread evenly across a bucket).
    None when the histogram is empty."""
    total = sum(hist)
    if total <= 0:
        return None
    rank = min(max(q, 0.0), 1.0) * total
    seen = 0
    last = 0
    for bucket, count in enumerate(hist):
        if count <= 0:
            continue
        last = bucket
        if seen + count >= rank:
            lower, upper = bucket_bounds(bucket, sub_bits)
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    lower, upper = bucket_bounds(last, sub_bits)  # q = 1 with float rounding
    return float(upper)


# --- aggregates and intervals (pure) ------------------------------------------------------------

@dataclass(frozen=True)
class RttAggregate:
    """One interface's running aggregate, CPUs merged: what the kernel has counted so far."""

    samples: int = 0
    handshake_samples: int = 0
    sum_ns: int = 0
    min_ns: int = 0  # 0 while samples == 0
    max_ns: int = 0
    recorded: int = 0  # egress entries stored
    record_failed: int = 0  # egress entries that could not be stored
    hist: tuple[int, ...] = ()

    @classmethod
    def from_cpus(cls, per_cpu: Iterable[ctypes.Structure]) -> RttAggregate:
        """Merge the per-CPU values of ``passive_rtt``: counts add up, min and max are taken
        over the CPUs that have samples (a CPU without samples holds min_ns 0)."""
        per_cpu = list(per_cpu)
        with_samples = [v for v in per_cpu if v.samples]
        hist = [0] * (len(per_cpu[0].hist) if per_cpu else 0)
        for v in per_cpu:
            for i, count in enumerate(v.hist):
                if count:
                    hist[i] += count
        return cls(
            samples=sum(v.samples for v in per_cpu),
            handshake_samples=sum(v.handshake_samples for v in per_cpu),
            sum_ns=sum(v.sum_ns for v in per_cpu),
            min_ns=min((v.min_ns for v in with_samples), default=0),
            max_ns=max((v.max_ns for v in with_samples), default=0),
            recorded=sum(v.recorded for v in per_cpu),
            record_failed=sum(v.record_failed for v in per_cpu),
            hist=tuple(hist),
        )

    @property
    def mean_ns(self) -> float | None:
        return self.sum_ns / self.samples if self.samples else None


@dataclass(frozen=True)
class RttInterval:
    """RTT figures of the samples taken between two reads (None when there were none).

    ``mean_ns`` is exact (sum / count); ``p50_ns``/``p95_ns`` come from the histogram, within a
    bucket's width (≤ 1/2^sub_bits of the value: 3.1 % as built); ``min_ns``/``max_ns`` are
    exact when the interval set a new all-time extreme (or is the first), otherwise the edge of
    the interval's lowest/highest bucket, clamped by the all-time extremes."""

    samples: int
    handshake_samples: int
    recorded: int
    record_failed: int
    min_ns: float | None
    mean_ns: float | None
    p50_ns: float | None
    p95_ns: float | None
    max_ns: float | None


def interval(before: RttAggregate | None, after: RttAggregate, sub_bits: int) -> RttInterval:
    """The figures of the samples ``after`` has and ``before`` had not. A ``before`` with more
    samples than ``after`` means the kernel's entry was reset or evicted meanwhile: then all
    of ``after`` counts as the interval (as Prometheus treats a counter reset)."""
    if before is None or before.samples > after.samples or len(before.hist) != len(after.hist):
        before = RttAggregate(hist=(0,) * len(after.hist))
    samples = after.samples - before.samples
    common = dict(samples=samples, handshake_samples=after.handshake_samples - before.handshake_samples,
                  recorded=max(after.recorded - before.recorded, 0),
                  record_failed=max(after.record_failed - before.record_failed, 0))
    if samples <= 0:
        return RttInterval(**common, min_ns=None, mean_ns=None, p50_ns=None, p95_ns=None, max_ns=None)
    hist = [a - b for a, b in zip(after.hist, before.hist)]
    nonempty = [i for i, c in enumerate(hist) if c > 0]
    # An extreme the interval set is exact; otherwise the edge of its outermost bucket, within
    # the all-time extremes.
    if before.samples == 0 or after.min_ns < before.min_ns or not nonempty:
        low = float(after.min_ns)
    else:
        low = float(max(bucket_bounds(nonempty[0], sub_bits)[0], after.min_ns))
    if before.samples == 0 or after.max_ns > before.max_ns or not nonempty:
        high = float(after.max_ns)
    else:
        high = float(min(bucket_bounds(nonempty[-1], sub_bits)[1] - 1, after.max_ns))
    high = max(high, low)

    def clamp(v: float | None) -> float | None:
        return None if v is None else min(max(v, low), high)

    return RttInterval(**common, min_ns=low, mean_ns=(after.sum_ns - before.sum_ns) / samples,
                       p50_ns=clamp(percentile_ns(hist, 0.50, sub_bits)),
                       p95_ns=clamp(percentile_ns(hist, 0.95, sub_bits)), max_ns=high)


class RttMeter:
    """Successive reads → per-interval figures, per path (pure: give it the reads)."""

    def __init__(self, sub_bits: int) -> None:
        self.sub_bits = sub_bits
        self._last: dict[str, RttAggregate] = {}

    def update(self, reads: Mapping[str, RttAggregate]) -> dict[str, RttInterval]:
        """The interval since the previous `update` for every path in ``reads`` (the first
        read of a path covers everything the kernel counted before it)."""
        out = {name: interval(self._last.get(name), agg, self.sub_bits) for name, agg in reads.items()}
        self._last.update(reads)
        return out


# --- the kernel side ----------------------------------------------------------------------------

def _limits(btf: Btf) -> dict[str, int]:
    return btf.enum_values("passive_limits")


class PassiveRtt:
    """The passive RTT programs and their maps. Get one with `load` (new object) or `find`
    (already attached, by kernel ids). One PassiveRtt per network namespace: its keys are
    ifindexes, which collide across namespaces."""

    def __init__(self, rtt: Map, timestamps: Map | None, limits: dict[str, int],
                 programs: dict[TcDirection, Program], obj: BpfObject | None = None,
                 egress_with_acks: Program | None = None) -> None:
        self.rtt_map = rtt
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
                       obj.program(EGRESS_WITH_ACKS))
        except BaseException:
            obj.close()
            raise

    @classmethod
    def find(cls, interface: str | int) -> PassiveRtt:
        """The passive programs attached to ``interface`` (ingress, else egress), found by the
        kernel's ids: attached program id → its maps → ``passive_rtt``."""
        ifindex = ifindex_of(interface)
        for direction in (TcDirection.INGRESS, TcDirection.EGRESS):
            prog_id = tc_program_id(ifindex, direction, handle=TC_HANDLE, priority=TC_PRIORITY)
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
            found = cls(rtt, ts, limits, {direction: prog})
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
                there = tc_program_id(interface, direction, handle=TC_HANDLE, priority=TC_PRIORITY)
                att = attach_tc(prog, interface, direction, handle=TC_HANDLE, priority=TC_PRIORITY)
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
            prog_id = tc_program_id(ifindex, direction, handle=TC_HANDLE, priority=TC_PRIORITY)
            if not prog_id or not self._is_ours(prog_id, _NAMES[direction]):
                continue
            if detach_tc(ifindex, direction, handle=TC_HANDLE, priority=TC_PRIORITY, prog_id=prog_id):
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
