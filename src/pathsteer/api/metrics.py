"""Prometheus ``/metrics``: the daemon's paths, routes, steering, guard and BPF programs as one
exposition (text format 0.0.4), built per scrape from what the components already hold.

    body, content_type = render(ctx)      # the API calls this in a worker thread

How it is built: every scrape makes a fresh `CollectorRegistry` with one `PathsteerCollector`
over the daemon `Context`; its ``collect`` reads the components' state (frozen telemetry
snapshots, the last decision, counters read from BPF maps) and never changes any of it, so a
scrape on a worker thread cannot disturb the loop. What must outlive a scrape is kept per
``ctx`` in a module-level weak map (`_State`): the event counts (``pathsteer_events_total``,
``pathsteer_route_changes_total`` — the bus is subscribed once, by `attach` or lazily at the
first scrape, and the events still held by the bus are counted then) and the per-prefix
series of the last decision (recomputed only when the decision changed: at 1M prefixes the
summing pass takes about a second). `attach(ctx)` at the API's start makes the event counts
cover the whole run; `detach(ctx)` unsubscribes.

Conventions: ``pathsteer_`` prefix, base units (seconds, bytes, ratios 0..1: the views' ms and
percent are converted), ``_total`` counters. Per-prefix series (``pathsteer_route_*``) stop at
``metrics.per_prefix_limit`` prefixes in config order; the rest are summed into
``prefix="_other"``, so 1M prefixes cost ``limit + 1`` series per path, not a million (guard
rule counters are capped the same way, ``rule="_other"``). docs/metrics.md lists every metric.

RTT: ``pathsteer_path_rtt_seconds`` is a histogram of every answered probe since the start
(`pathsteer.telemetry.histogram.RttHistogram`, kept by each `TargetTracker`, summed over a
path's targets); ``pathsteer_path_rtt_window_seconds{stat}`` gives the window's own figures
(what ``steer.status`` shows). BPF run counts (``pathsteer_bpf_program_runs_total``) need
``kernel.bpf_stats_enabled=1``; without it they are left out and
``pathsteer_bpf_stats_enabled`` is 0.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from pathsteer import __version__
from pathsteer.policy.state import ChangeKind

log = logging.getLogger("pathsteer.api.metrics")

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
OTHER = "_other"  # the label value the prefixes (and guard rules) beyond the limit are summed into
PATH_STATES = ("unknown", "up", "degraded", "down", "drained")
CHANGE_KINDS = tuple(k.value for k in ChangeKind)  # pathsteer_route_changes_total starts at 0 for each
BPF_STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"


def render(ctx: Any) -> tuple[bytes, str]:
    """The exposition of the daemon ``ctx`` (a `pathsteer.daemon.reactor.Context`): (body,
    content type). Thread-safe: reads only; call it from a worker thread."""
    collector = PathsteerCollector(ctx, attach(ctx), routes=False)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry) + collector.routes_text(), CONTENT_TYPE


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


# --- what outlives a scrape -----------------------------------------------------------------


class _State:
    """Per daemon context: event counts from the bus and the cached per-prefix series."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus
        self.lock = threading.Lock()
        self.events: dict[str, int] = {}
        self.changes: dict[str, int] = dict.fromkeys(CHANGE_KINDS, 0)
        self.errors: dict[str, int] = {}
        self._backlog: set[int] = set()  # seqs counted from the bus's backlog (not again)
        self.routes_key: tuple | None = None
        self.routes: Any = None
        self.routes_text: tuple | None = None  # (RouteSeries.signature, exposition bytes)

    def on_event(self, e: Any) -> None:
        """Bus callback: quick, never raises."""
        try:
            with self.lock:
                if self._backlog and e.seq in self._backlog:
                    return
                self._count(e)
        except Exception:  # noqa: BLE001 - a subscriber must never raise
            pass

    def _count(self, e: Any) -> None:
        self.events[e.name] = self.events.get(e.name, 0) + 1
        if e.name == "steer.change":
            kind = str(e.fields.get("kind"))
            self.changes[kind] = self.changes.get(kind, 0) + 1

    def subscribe(self) -> None:
        """Subscribe, then count what the bus still holds from before (each event once: one
        published meanwhile is either in the backlog or delivered, and the backlog wins)."""
        self.bus.subscribe(self.on_event)
        backlog = self.bus.recent(0)
        with self.lock:
            for e in backlog:
                if e.seq not in self._backlog:
                    self._backlog.add(e.seq)
                    self._count(e)

    def error(self, section: str, exc: BaseException) -> None:
        with self.lock:
            first = section not in self.errors
            self.errors[section] = self.errors.get(section, 0) + 1
        (log.warning if first else log.debug)("metrics.section-failed section=%s error=%r", section, str(exc))


_STATES: weakref.WeakKeyDictionary[Any, _State] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def attach(ctx: Any) -> _State:
    """The metrics state of ``ctx``, subscribed to its bus on the first call (idempotent).
    The API calls it at start so that event counts cover the run from then on."""
    with _STATES_LOCK:
        state = _STATES.get(ctx)
        if state is None:
            state = _STATES[ctx] = _State(ctx.bus)
            state.subscribe()
    return state


def detach(ctx: Any) -> None:
    """Unsubscribe ``ctx``'s metrics from its bus and forget its counts (the API's stop)."""
    with _STATES_LOCK:
        state = _STATES.pop(ctx, None)
    if state is not None:
        state.bus.unsubscribe(state.on_event)


# --- pure helpers -----------------------------------------------------------------------------


def ratio(pct: float | None) -> float | None:
    return None if pct is None else pct / 100.0


def histogram_buckets(bounds: Iterable[float], cumulative: list[int]) -> list[tuple[str, float]]:
    """Prometheus buckets from ascending bounds and cumulative counts (one more: +Inf)."""
    out = [(repr(float(b)), float(c)) for b, c in zip(bounds, cumulative)]
    out.append(("+Inf", float(cumulative[-1])))
    return out


def sum_histograms(hists: Iterable[Any]) -> tuple[tuple[float, ...], list[int], float] | None:
    """Several `RttHistogram`s with the same bounds added up: (bounds, cumulative, sum)."""
    bounds, total, sum_s = None, None, 0.0
    for h in hists:
        counts, s = h.cumulative()
        if total is None:
            bounds, total = h.bounds, counts
        elif h.bounds == bounds:
            total = [a + b for a, b in zip(total, counts)]
        else:
            continue
        sum_s += s
    return None if total is None else (bounds, total, sum_s)


class RouteSeries:
    """The per-prefix series of one decision: the first ``limit`` prefixes on their own, the rest
    summed into ``_other``; and, over all prefixes, how many carry each path and policy."""

    def __init__(self, routes: Iterable[Any], limit: int) -> None:
        self.weights: list[tuple[str, str, float]] = []  # (prefix, path, weight)
        self.shares: list[tuple[str, str, float]] = []  # (prefix, path, share 0..1; _other: sum)
        self.unrouted: list[str] = []  # prefixes with no next hop
        other_w: dict[str, float] = {}
        other_s: dict[str, float] = {}
        self.other = 0
        self.other_unrouted = 0
        self.carried: dict[str, float] = {}  # path -> prefixes' worth it carries (shares summed)
        self.policies: dict[str, int] = {}
        carried, policies = self.carried, self.policies
        for i, r in enumerate(routes):
            hops = r.nexthops
            pol = r.policy.value
            policies[pol] = policies.get(pol, 0) + 1
            total = 0
            for h in hops:
                total += h.weight
            if i < limit:
                prefix = str(r.prefix)
                if not hops:
                    self.unrouted.append(prefix)
                for h in hops:
                    share = h.weight / total if total else 0.0
                    self.weights.append((prefix, h.path, float(h.weight)))
                    self.shares.append((prefix, h.path, share))
                    carried[h.path] = carried.get(h.path, 0.0) + share
                continue
            self.other += 1
            if not hops:
                self.other_unrouted += 1
            for h in hops:
                share = h.weight / total if total else 0.0
                other_w[h.path] = other_w.get(h.path, 0.0) + h.weight
                other_s[h.path] = other_s.get(h.path, 0.0) + share
                carried[h.path] = carried.get(h.path, 0.0) + share
        for path in sorted(other_w):
            self.weights.append((OTHER, path, other_w[path]))
            self.shares.append((OTHER, path, other_s[path]))
        self.total = sum(policies.values())

    @property
    def signature(self) -> tuple:
        """Everything the routes section shows: equal signatures, equal text."""
        return (tuple(self.weights), tuple(self.shares), tuple(self.unrouted), self.other, self.other_unrouted,
                tuple(sorted(self.carried.items())), tuple(sorted(self.policies.items())))


# --- BPF program run statistics -------------------------------------------------------------


def bpf_stats_enabled() -> bool:
    try:
        with open(BPF_STATS_SYSCTL) as f:
            return f.read().strip() not in ("", "0")
    except OSError:
        return False


def _prog_stats_struct():
    """``struct bpf_prog_info`` through ``run_cnt`` (uapi linux/bpf.h; the kernel fills the prefix
    it knows): pathsteer.bpf.libbpf's struct stops at ``name``."""
    from pathsteer.bpf import libbpf as lb
    u32, u64 = ctypes.c_uint32, ctypes.c_uint64

    class ProgStats(lb.bpf_prog_info):
        _fields_ = [
            ("ifindex", u32), ("gpl_compatible", u32), ("netns_dev", u64), ("netns_ino", u64),
            ("nr_jited_ksyms", u32), ("nr_jited_func_lens", u32), ("jited_ksyms", u64), ("jited_func_lens", u64),
            ("btf_id", u32), ("func_info_rec_size", u32), ("func_info", u64), ("nr_func_info", u32),
            ("nr_line_info", u32), ("line_info", u64), ("jited_line_info", u64), ("nr_jited_line_info", u32),
            ("line_info_rec_size", u32), ("jited_line_info_rec_size", u32), ("nr_prog_tags", u32),
            ("prog_tags", u64), ("run_time_ns", u64), ("run_cnt", u64),
        ]
    return lb, ProgStats


def prog_run_stats(fd: int) -> tuple[int, int]:
    """(run count, run time ns) of the program ``fd`` (zeros while bpf stats are off)."""
    lb, cls = _prog_stats_struct()
    info = cls()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    lb.check_int(lb.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)), f"program stats of fd {fd}")
    if size.value < cls.run_cnt.offset + 8:
        return 0, 0  # a kernel before 5.1
    return int(info.run_cnt), int(info.run_time_ns)


def _programs(steer: Any, guard: Any) -> Iterator[tuple[str, Any]]:
    """(label, Program) of every BPF program the daemon loaded."""
    guard_prog = getattr(getattr(guard, "program", None), "program", None)
    if guard_prog is not None:
        yield "guard", guard_prog
    if steer is None:
        return
    prog = getattr(getattr(getattr(steer, "dataplane", None), "prog", None), "program", None)
    if prog is not None:
        yield "steer", prog
    counters = getattr(steer, "_counters", None)
    for hook, p in dict(getattr(counters, "programs", None) or {}).items():
        yield f"counters-{hook.value}", p
    passive = getattr(steer, "_passive", None)
    for direction, p in dict(getattr(passive, "programs", None) or {}).items():
        yield f"passive-{direction.name.lower()}", p
    if getattr(passive, "egress_with_acks", None) is not None:
        yield "passive-egress-acks", passive.egress_with_acks


# --- the collector ----------------------------------------------------------------------------


class PathsteerCollector(Collector):
    """Every pathsteer metric of one daemon context; each section read on its own (one that fails
    is left out of that scrape and counted in ``pathsteer_metrics_errors_total``)."""

    def __init__(self, ctx: Any, state: _State, routes: bool = True) -> None:
        self.ctx = ctx
        self.state = state
        self.routes = routes  # False: `routes_text` gives the per-prefix families (see render)

    def routes_text(self) -> bytes:
        """The routes section's exposition, written again only when what it shows changed: at
        10k prefixes its ~2k per-prefix samples were a third of every scrape's time, and they
        change only when routes move. Empty when steering does not run (or the section failed)."""
        steer = self.ctx.component("steer")
        if steer is None:
            return b""
        try:
            series = self._route_series(steer)
            signature = series.signature if series is not None else None
            with self.state.lock:
                cached = self.state.routes_text
            if cached is not None and cached[0] == signature:
                return cached[1]
            families = list(self._routes(steer))
        except Exception as exc:  # noqa: BLE001 - the other sections answered
            self.state.error("routes", exc)
            return b""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(families))
        text = generate_latest(registry)
        with self.state.lock:
            self.state.routes_text = (signature, text)
        return text

    def collect(self) -> Iterator[Metric]:
        t0 = time.perf_counter()
        steer = self.ctx.component("steer")
        guard = self.ctx.component("guard")
        sections = [("daemon", self._daemon, ()), ("events", self._events, ())]
        if steer is not None:
            sections += [("paths", self._paths, (steer,)), ("probes", self._probes, (steer,))]
            if self.routes:
                sections.append(("routes", self._routes, (steer,)))
            sections.append(("steering", self._steering, (steer,)))
        if guard is not None:
            sections.append(("guard", self._guard, (guard,)))
        bgp = self.ctx.component("bgp")
        if bgp is not None:
            sections.append(("bgp", self._bgp, (bgp,)))
        sections.append(("bpf", self._bpf, (steer, guard)))
        for name, fn, args in sections:
            try:
                families = list(fn(*args))
            except Exception as exc:  # noqa: BLE001 - the other sections still answer
                self.state.error(name, exc)
                continue
            yield from families
        with self.state.lock:
            errors = dict(self.state.errors)
        m = CounterMetricFamily("pathsteer_metrics_errors", "Scrape sections that failed to read, by section",
                                labels=["section"])
        for section, n in sorted(errors.items()):
            m.add_metric([section], n)
        yield m
        yield GaugeMetricFamily("pathsteer_metrics_collect_duration_seconds",
                                "How long this scrape took to collect (before the last two families)",
                                value=time.perf_counter() - t0)

    # --- daemon ---------------------------------------------------------------------------

    def _daemon(self) -> Iterator[Metric]:
        yield InfoMetricFamily("pathsteer_build", "The running pathsteer's version", value={"version": __version__})
        yield GaugeMetricFamily("pathsteer_ready", "1 when every component started and steering's first "
                                "decision was applied", value=1 if self.ctx.ready else 0)
        yield GaugeMetricFamily("pathsteer_start_time_seconds", "When the daemon started, seconds since the epoch",
                                value=self.ctx.started_wall)
        pauses = getattr(self.ctx, "gc_pauses", None)
        if pauses is not None:
            fam = HistogramMetricFamily("pathsteer_gc_pause_seconds", "How long each cyclic garbage collection "
                                        "stopped the daemon (all its threads), by generation", labels=["generation"])
            for gen, hist in sorted(pauses.hists.items()):
                cumulative, total = hist.cumulative()
                fam.add_metric([str(gen)], histogram_buckets(hist.bounds, cumulative), total)
            yield fam
        config = self.ctx.config
        limit = config.metrics.per_prefix_limit if config is not None else 0
        yield GaugeMetricFamily("pathsteer_metrics_per_prefix_limit", "Prefixes with series of their own; the "
                                "rest are summed into prefix=\"_other\" (metrics.per_prefix_limit)", value=limit)

    def _events(self) -> Iterator[Metric]:
        with self.state.lock:
            events, changes = dict(self.state.events), dict(self.state.changes)
        m = CounterMetricFamily("pathsteer_events", "Structured events published since the metrics attached, "
                                "by name", labels=["name"])
        for name, n in sorted(events.items()):
            m.add_metric([name], n)
        yield m
        m = CounterMetricFamily("pathsteer_route_changes", "Prefixes' next hops changed (steer.change events), "
                                "by kind", labels=["kind"])
        for kind, n in sorted(changes.items()):
            m.add_metric([kind], n)
        yield m

    # --- paths ----------------------------------------------------------------------------

    def _paths(self, steer: Any) -> Iterator[Metric]:
        names = [p.name for p in steer.config.paths]
        capacity = {p.name: p.capacity for p in steer.config.paths}
        telemetry = steer.telemetry
        snaps = {p.name: p for p in telemetry.paths} if telemetry is not None else {}
        views = {v["name"]: v for v in steer.view_paths()}

        up = GaugeMetricFamily("pathsteer_path_up", "1 when the path is reachable (up or degraded, drained or "
                               "not), 0 when down or not yet measured", labels=["path"])
        state = GaugeMetricFamily("pathsteer_path_state", "The path's state: 1 for the current one",
                                  labels=["path", "state"])
        since = GaugeMetricFamily("pathsteer_path_state_since_timestamp_seconds", "When the path entered its "
                                  "state, seconds since the epoch", labels=["path"])
        window = GaugeMetricFamily("pathsteer_path_rtt_window_seconds", "RTT over the probe window "
                                   "(stat: policy = what the policy compares, ewma, min, p50, p95, p99, max)",
                                   labels=["path", "stat"])
        samples = GaugeMetricFamily("pathsteer_path_rtt_window_samples", "Answered probes in the window",
                                    labels=["path"])
        jitter = GaugeMetricFamily("pathsteer_path_jitter_seconds", "RFC 3550 interarrival jitter of the RTTs "
                                   "(median of the live targets)", labels=["path"])
        loss = GaugeMetricFamily("pathsteer_path_loss_ratio", "Lost / resolved probes in the window (0..1)",
                                 labels=["path"])
        failing = GaugeMetricFamily("pathsteer_path_failing_targets", "Targets failing now (the path is down "
                                    "at the quorum)", labels=["path"])
        util = GaugeMetricFamily("pathsteer_path_utilization_ratio", "Busier direction's throughput / capacity "
                                 "(0..1; paths with a capacity)", labels=["path"])
        cap = GaugeMetricFamily("pathsteer_path_capacity_bytes_per_second", "The path's configured capacity "
                                "(each direction)", labels=["path"])
        thr = GaugeMetricFamily("pathsteer_path_throughput_bytes_per_second", "Throughput over the last second "
                                "(in: arrived from the path, out: sent into it)", labels=["path", "direction"])
        hist = HistogramMetricFamily("pathsteer_path_rtt_seconds", "RTT of every answered probe since the "
                                     "probes started (all the path's targets)", labels=["path"])
        passive = GaugeMetricFamily("pathsteer_path_passive_rtt_seconds", "Passive RTT of the path's TCP traffic "
                                    "over the last window (stat: min, mean, p50, p95, max)", labels=["path", "stat"])
        passive_n = CounterMetricFamily("pathsteer_path_passive_rtt_samples", "Passive RTT samples since the "
                                        "program was attached", labels=["path"])
        trackers = {p.name: p for p in getattr(steer.engine, "paths", ()) or ()}
        for name in names:
            v = views.get(name, {})
            s = snaps.get(name)
            st = v.get("state", "unknown")
            if v.get("drained"):
                st = "drained"
            reachable = s is not None and s.state.value in ("up", "degraded")
            up.add_metric([name], 1 if reachable else 0)
            for each in PATH_STATES:
                state.add_metric([name, each], 1 if each == st else 0)
            if v.get("since") is not None:
                since.add_metric([name], v["since"])
            if s is not None:
                r = s.rtt
                stats = {"policy": None if v.get("rtt_ms") is None else v["rtt_ms"] / 1e3, "ewma": r.ewma_s,
                         "min": r.min_s, "p50": r.p50_s, "p95": r.p95_s, "p99": r.p99_s, "max": r.max_s}
                for stat, value in stats.items():
                    if value is not None:
                        window.add_metric([name, stat], value)
                samples.add_metric([name], r.samples)
                if s.jitter_s is not None:
                    jitter.add_metric([name], s.jitter_s)
                if s.loss_pct is not None:
                    loss.add_metric([name], ratio(s.loss_pct))
                failing.add_metric([name], s.failing)
                if s.passive is not None:
                    p = s.passive
                    for stat, value in (("min", p.min_s), ("mean", p.mean_s), ("p50", p.p50_s), ("p95", p.p95_s),
                                        ("max", p.max_s)):
                        if value is not None:
                            passive.add_metric([name, stat], value)
                    passive_n.add_metric([name], p.total_samples)
            if v.get("utilization") is not None:
                util.add_metric([name], v["utilization"])
            if capacity.get(name):
                cap.add_metric([name], capacity[name] / 8)
            lf = steer.load.get(name)
            if lf is not None:
                thr.add_metric([name, "in"], lf.in_bps / 8)
                thr.add_metric([name, "out"], lf.out_bps / 8)
            tracker = trackers.get(name)
            if tracker is not None:
                summed = sum_histograms(t.histogram for t in list(tracker.targets.values()))
                if summed is not None:
                    bounds, cumulative, sum_s = summed
                    hist.add_metric([name], histogram_buckets(bounds, cumulative), sum_s)
        yield from (up, state, since, window, samples, jitter, loss, failing, util, cap, thr, hist, passive, passive_n)
        yield from self._traffic(steer)

    def _traffic(self, steer: Any) -> Iterator[Metric]:
        by = CounterMetricFamily("pathsteer_path_bytes", "Bytes counted on the path's interface since the counters "
                                 "were attached (L2 frames; in: from the path, out: into it)",
                                 labels=["path", "direction"])
        pk = CounterMetricFamily("pathsteer_path_packets", "Packets counted on the path's interface since the "
                                 "counters were attached", labels=["path", "direction"])
        meter = steer.load_meter
        if meter is not None:
            for name, sample in sorted(meter.last().items()):
                by.add_metric([name, "in"], sample.rx.bytes)
                by.add_metric([name, "out"], sample.tx.bytes)
                pk.add_metric([name, "in"], sample.rx.packets)
                pk.add_metric([name, "out"], sample.tx.packets)
        yield by
        yield pk
        dp = steer.dataplane
        if dp is None or steer.dp_config.mode != "bpf":
            return
        sb = CounterMetricFamily("pathsteer_path_steered_bytes", "Bytes the bpf data plane steered onto the path",
                                 labels=["path"])
        sp = CounterMetricFamily("pathsteer_path_steered_packets", "Packets the bpf data plane steered onto the "
                                 "path", labels=["path"])
        for name, t in sorted(dp.path_totals().items()):
            sb.add_metric([name], t.bytes)
            sp.add_metric([name], t.packets)
        yield sb
        yield sp
        reasons = getattr(dp, "reason_totals", None)
        if reasons is not None:
            rp = CounterMetricFamily("pathsteer_steer_packets", "Packets the bpf steer program saw, by what it did "
                                     "with them (steered, or passed to the kernel and why)", labels=["reason"])
            for reason, t in sorted(reasons().items(), key=lambda rt: rt[0].value):
                rp.add_metric([reason.value.removeprefix("STEER_").lower().replace("_", "-")], t.packets)
            yield rp

    def _probes(self, steer: Any) -> Iterator[Metric]:
        telemetry = steer.telemetry
        counts = {k: CounterMetricFamily(f"pathsteer_probes_{k}", doc, labels=["path", "target"]) for k, doc in (
            ("sent", "Probes sent"), ("answered", "Probes answered in time"),
            ("lost", "Probes whose timeout passed (a late answer counts here too)"),
            ("late", "Answers after their probe's timeout"), ("duplicate", "Second answers to an answered probe"),
            ("foreign", "Replies matching no probe sent"), ("errors", "Sends the kernel refused and ICMP errors"))}
        target_up = GaugeMetricFamily("pathsteer_probe_target_up", "1 when the target answers (not failing)",
                                      labels=["path", "target"])
        target_rtt = GaugeMetricFamily("pathsteer_probe_target_rtt_seconds", "The target's RTT p50 over the window",
                                       labels=["path", "target"])
        target_loss = GaugeMetricFamily("pathsteer_probe_target_loss_ratio", "The target's loss over the window "
                                        "(0..1)", labels=["path", "target"])
        for p in telemetry.paths if telemetry is not None else ():
            for t in p.targets:
                labels = [p.name, t.address]
                c = t.counters
                for k, m in counts.items():
                    m.add_metric(labels, getattr(c, k))
                target_up.add_metric(labels, 1 if t.state.value == "up" else 0)
                if t.rtt.p50_s is not None:
                    target_rtt.add_metric(labels, t.rtt.p50_s)
                if t.loss_pct is not None:
                    target_loss.add_metric(labels, ratio(t.loss_pct))
        yield from counts.values()
        yield from (target_up, target_rtt, target_loss)

    # --- routes -----------------------------------------------------------------------------

    def _route_series(self, steer: Any) -> RouteSeries | None:
        decision = steer.decision
        if decision is None:
            return None
        limit = self.ctx.config.metrics.per_prefix_limit
        key = (id(decision), limit)
        with self.state.lock:
            if self.state.routes_key == key and self.state.routes[0] is decision:
                return self.state.routes[1]
        series = RouteSeries(decision.routes, limit)
        with self.state.lock:
            self.state.routes_key, self.state.routes = key, (decision, series)  # the decision held: its id stays
        return series

    def _routes(self, steer: Any) -> Iterator[Metric]:
        series = self._route_series(steer)
        weight = GaugeMetricFamily("pathsteer_route_nexthop_weight", "Weight of each next hop of a prefix "
                                   "(prefix=\"_other\": summed over the prefixes beyond the limit)",
                                   labels=["prefix", "path"])
        share = GaugeMetricFamily("pathsteer_route_nexthop_share", "Share of a prefix's flows on each next hop, "
                                  "0..1 (prefix=\"_other\": summed, so in prefixes)", labels=["prefix", "path"])
        unrouted = GaugeMetricFamily("pathsteer_route_unrouted", "1 for a prefix with no next hop (the kernel's "
                                     "routing carries it; prefix=\"_other\": how many)", labels=["prefix"])
        carried = GaugeMetricFamily("pathsteer_path_prefixes", "Prefixes the path carries (each prefix's share "
                                    "summed, all prefixes)", labels=["path"])
        routes = GaugeMetricFamily("pathsteer_routes", "Steered prefixes, by policy", labels=["policy"])
        other = GaugeMetricFamily("pathsteer_route_other_prefixes", "Prefixes beyond metrics.per_prefix_limit "
                                  "(summed into prefix=\"_other\")")
        if series is not None:
            for prefix, path, w in series.weights:
                weight.add_metric([prefix, path], w)
            for prefix, path, s in series.shares:
                share.add_metric([prefix, path], s)
            for prefix in series.unrouted:
                unrouted.add_metric([prefix], 1)
            if series.other:
                unrouted.add_metric([OTHER], series.other_unrouted)
            for path in sorted(series.carried):
                carried.add_metric([path], series.carried[path])
            for policy in sorted(series.policies):
                routes.add_metric([policy], series.policies[policy])
            other.add_metric([], series.other)
        yield from (weight, share, unrouted, carried, routes, other)

    def _bgp(self, bgp: Any) -> Iterator[Metric]:
        st = bgp.cmd_status(None)
        up = GaugeMetricFamily("pathsteer_bgp_session_up", "1 while the BGP session with the peer is up",
                               labels=["peer", "address"])
        received = GaugeMetricFamily("pathsteer_bgp_received_prefixes", "Prefixes the peer announces now",
                                     labels=["peer"])
        learned_p = GaugeMetricFamily("pathsteer_bgp_learned_prefixes_by_peer", "Of them, learned as destinations",
                                      labels=["peer"])
        flaps = CounterMetricFamily("pathsteer_bgp_session_downs", "Times the session went down", labels=["peer"])
        for sess in st["sessions"]:
            up.add_metric([sess["name"], sess["address"]], 1.0 if sess["state"] == "up" else 0.0)
            received.add_metric([sess["name"]], sess["received"])
            learned_p.add_metric([sess["name"]], sess["learned"])
            flaps.add_metric([sess["name"]], sess["downs"])
        yield from (up, received, learned_p, flaps)
        yield GaugeMetricFamily("pathsteer_bgp_announced_prefixes", "Prefixes announced now", value=st["announced"])
        yield GaugeMetricFamily("pathsteer_bgp_withdrawn_prefixes", "Destinations withdrawn here (no eligible path, "
                                "not measured yet)", value=st["withdrawn_here"])
        yield GaugeMetricFamily("pathsteer_bgp_learned_prefixes", "Prefixes learned from the peers",
                                value=st["learned"])
        ex = st["exabgp"]
        yield GaugeMetricFamily("pathsteer_bgp_exabgp_up", "1 while ExaBGP runs and its API process is connected",
                                value=1.0 if ex["running"] and ex["connected"] else 0.0)
        yield CounterMetricFamily("pathsteer_bgp_exabgp_restarts", "Times ExaBGP exited and was started again",
                                  value=ex["restarts"])
        yield CounterMetricFamily("pathsteer_bgp_exabgp_errors", "ExaBGP commands answered 'error', and lines "
                                  "from it that could not be read", value=ex["errors"] + ex["garbage"])

    def _steering(self, steer: Any) -> Iterator[Metric]:
        s = dict(steer.stats)
        yield CounterMetricFamily("pathsteer_decisions", "Decisions made (probes and load to routes)",
                                  value=s.get("decisions", 0))
        yield GaugeMetricFamily("pathsteer_decision_last_duration_seconds", "How long the last decision took",
                                value=s.get("decide_ms_last", 0.0) / 1e3)
        for name, what, hist in (("decision", "every decision (probes and load to routes)", "decide_hist"),
                                 ("apply", "every successful data-plane apply", "apply_hist")):
            h = getattr(steer, hist, None)
            if h is not None:
                cumulative, total = h.cumulative()
                fam = HistogramMetricFamily(f"pathsteer_{name}_duration_seconds", f"How long {what} took")
                fam.add_metric([], histogram_buckets(h.bounds, cumulative), total)
                yield fam
        yield CounterMetricFamily("pathsteer_applies", "Decisions applied to the data plane", value=s.get("applies", 0))
        yield CounterMetricFamily("pathsteer_apply_errors", "Data-plane applies that failed (retried next tick)",
                                  value=s.get("apply_errors", 0))
        yield GaugeMetricFamily("pathsteer_apply_last_duration_seconds", "How long the last successful apply took",
                                value=s.get("apply_ms_last", 0.0) / 1e3)
        yield CounterMetricFamily("pathsteer_reconciles", "Reconcile passes over the data plane",
                                  value=s.get("reconciles", 0))
        yield CounterMetricFamily("pathsteer_reconcile_repairs", "Outside changes the reconcile repaired",
                                  value=s.get("repairs", 0))
        info = InfoMetricFamily("pathsteer_dataplane", "The data plane steering runs", value={
            "mode": steer.dp_config.mode})
        yield info

    # --- guard ------------------------------------------------------------------------------

    def _guard(self, guard: Any) -> Iterator[Metric]:
        from pathsteer.guard.rules import Verdict
        from pathsteer.guard.service import StatsArgs
        if guard.program is None:
            return
        stats = guard.cmd_stats(StatsArgs(top=0))
        pk = CounterMetricFamily("pathsteer_guard_packets", "Packets the guard judged, by verdict (action: drop, "
                                 "pass, or answer: a SYN-ACK cookie sent back)", labels=["verdict", "action"])
        by = CounterMetricFamily("pathsteer_guard_bytes", "Bytes the guard judged, by verdict",
                                 labels=["verdict", "action"])
        for verdict, t in sorted(stats["verdicts"].items()):
            v = Verdict(verdict)
            action = "drop" if v.drops else "answer" if v.answers else "pass"
            pk.add_metric([verdict, action], t["packets"])
            by.add_metric([verdict, action], t["bytes"])
        yield pk
        yield by
        limit = self.ctx.config.metrics.per_prefix_limit
        rp = CounterMetricFamily("pathsteer_guard_rule_packets", "Packets each rule matched (kind: allow, deny (a "
                                 "config entry or a block), rule; rule=\"_other\": the rules beyond the limit)",
                                 labels=["kind", "rule"])
        rb = CounterMetricFamily("pathsteer_guard_rule_bytes", "Bytes each rule matched", labels=["kind", "rule"])
        other: dict[str, list[int]] = {}
        for i, r in enumerate(stats["rules"]):
            if i < limit:
                rp.add_metric([r["kind"], r["rule"]], r["packets"])
                rb.add_metric([r["kind"], r["rule"]], r["bytes"])
            else:
                o = other.setdefault(r["kind"], [0, 0])
                o[0] += r["packets"]
                o[1] += r["bytes"]
        for kind, (p, b) in sorted(other.items()):
            rp.add_metric([kind, OTHER], p)
            rb.add_metric([kind, OTHER], b)
        yield rp
        yield rb
        blocks = GaugeMetricFamily("pathsteer_guard_blocks", "Active deny entries, by origin (config, manual, auto)",
                                   labels=["origin"])
        origins = dict.fromkeys(("config", "manual", "auto"), 0)
        origins["config"] = len(guard.config.deny)
        for b in list(guard.blocks.values()):
            origins[b.origin.value] = origins.get(b.origin.value, 0) + 1
        for origin, n in origins.items():
            blocks.add_metric([origin], n)
        yield blocks
        yield CounterMetricFamily("pathsteer_guard_heavy_hitter_events", "Sources the program reported above "
                                  "auto_block.threshold_pps", value=stats["heavy_hitter_events"])
        yield GaugeMetricFamily("pathsteer_guard_sources_tracked", "Sources the rate meter tracks now",
                                value=stats["sources_tracked"])
        yield GaugeMetricFamily("pathsteer_guard_sources_capacity", "Sources the rate meter can track",
                                value=stats["sources_capacity"])

    # --- BPF programs ---------------------------------------------------------------------------

    def _bpf(self, steer: Any, guard: Any) -> Iterator[Metric]:
        enabled = bpf_stats_enabled()
        yield GaugeMetricFamily("pathsteer_bpf_stats_enabled", "1 when kernel.bpf_stats_enabled is on (program run "
                                "counts are exported only then)", value=1 if enabled else 0)
        if not enabled:
            return
        runs = CounterMetricFamily("pathsteer_bpf_program_runs", "Times the program ran while bpf stats were on",
                                   labels=["program"])
        secs = CounterMetricFamily("pathsteer_bpf_program_run_seconds", "Time the program ran while bpf stats "
                                   "were on", labels=["program"])
        for label, prog in _programs(steer, guard):
            if prog is None or prog.fd < 0:
                continue
            cnt, ns = prog_run_stats(prog.fd)
            runs.add_metric([label], cnt)
            secs.add_metric([label], ns / 1e9)
        yield runs
        yield secs
