"""Each of a destination's paths judged for it: figures, eligibility and why not. Pure.

A path is *eligible* when it is UP (tier 0) or DEGRADED (tier 1) and keeps the destination's
SLA; policies choose from the best tier present, so a DEGRADED path carries traffic only
when no UP path is eligible. When no path is eligible, `least_bad` picks the one to keep
(pathsteer never blackholes a prefix).

A DEGRADED path that is *congested* — its measured load at least `congested_at` of its
capacity at some time within its probe-loss window (`PathLoad.peak_bps`: the loss its full
queue caused stays in the window until those probes age out, and the load's 1 s figure lags
the probes) — stays in tier 0: TCP fills any link until its queue drops packets, and the probes
in that queue see the same loss and delay, so a full link looks degraded by its own traffic.
Taking it out moved its whole load onto the others (the lab: p3 at 98 % of 100 Mbit with 5 %
probe loss left the weighted set and p1, p2 went to 116 % and 172 %), after which it looked
fine again: a flap made of our own traffic. The destination's explicit SLA (``max_loss``,
``max_rtt``, ``max_jitter``, ``max_upstream_time``) and DOWN still take a congested path out.

``max_upstream_time`` judges a path by the gateways' upstream response time while it carried
the destination (``upstream``: per path, an `UpstreamFigure` with when it was seen; one stays
in force for ``sla.upstream_hold`` after that, so a path left for being slow stays out that long
though it brings no more figures): see `pathsteer.policy.upstream`.

A *drained* path (an operator's ``pathsteer drain``, maintenance) is ineligible for every
policy whatever its figures: traffic leaves it as if it had failed, but its eligibility says
DRAINED, not why it would fail. Its probes go on, so the candidate keeps its figures and, in
``health``, what it would be without the drain: when every path of a destination is drained
or down, `least_bad` keeps a drained path that works before any broken one (never blackhole).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Protocol

from pathsteer.policy.params import DestinationParams, PathParams, PolicyParams, RttSource, RttStatistic
from pathsteer.policy.upstream import UPSTREAM_MARGIN, UpstreamFigure, upstream_text
from pathsteer.telemetry.snapshot import PathSnapshot, PathState, RttStats, TelemetrySnapshot


class LoadFigures(Protocol):
    """A path's measured throughput (bit/s) each way; `pathsteer.telemetry.load.PathLoad` is one."""

    @property
    def in_bps(self) -> float: ...

    @property
    def out_bps(self) -> float: ...


class Eligibility(Enum):
    ELIGIBLE = "eligible"  # UP, within SLA
    DEGRADED = "degraded"  # eligible, second choice: DEGRADED, within SLA
    SLA = "sla"  # breaks the destination's SLA
    DOWN = "down"  # telemetry says DOWN (quorum of targets failing)
    NO_DATA = "no-data"  # UNKNOWN (no probe resolved yet) or absent from telemetry
    NO_FAMILY = "no-family"  # the path cannot carry this prefix's IP family
    DRAINED = "drained"  # taken out by the operator (maintenance), whatever its figures

    @property
    def eligible(self) -> bool:
        return self in (Eligibility.ELIGIBLE, Eligibility.DEGRADED)


@dataclass(frozen=True)
class Candidate:
    """One path for one destination, with the figures behind the decision.

    ``rtt_s`` is the statistic the destination compares (`path_rtt`); ``why_not`` says in
    words why the path is not (or only second-choice) eligible, e.g. "down (2/3 targets failing)".
    """

    path: str
    order: int  # index in the destination's path list
    state: PathState
    rtt_s: float | None
    loss_pct: float | None
    jitter_s: float | None
    utilization: float | None  # busier direction / capacity (1.0 = full); None: unknown
    capacity_bps: int | None
    eligibility: Eligibility
    why_not: str | None
    violations: int = 0  # SLA limits broken
    samples: int = 0  # answered probes in the path's window (passive: RTT samples in the last second)
    min_samples: int = 0  # what it needs to win on latency (`PolicyParams.min_samples`)
    rtt_source: str = "active"  # where ``rtt_s`` comes from: "active" (probes) or "passive" (real traffic)
    health: Eligibility | None = None  # DRAINED: what the path would be without the drain
    base_rtt_s: float | None = None  # the path's lowest RTT over the last minutes (`PathSnapshot.base_rtt_s`)
    # The highest utilization over the last few seconds (`telemetry.load.RECENT_PEAK_S`).
    recent_utilization: float | None = None
    # The gateways' upstream response time while the path carried the destination (in force:
    # seen within sla.upstream_hold), and whether it breaks sla.max_upstream_time.
    upstream: UpstreamFigure | None = None
    upstream_breach: bool = False

    @property
    def drained(self) -> bool:
        return self.eligibility is Eligibility.DRAINED

    @property
    def eligible(self) -> bool:
        return self.eligibility.eligible

    @property
    def enough_samples(self) -> bool:
        """Whether the path's RTT rests on enough answered probes to win on latency."""
        return self.samples >= self.min_samples

    def samples_text(self) -> str:
        """'2 of min 5 answered probes' (or '... passive RTT samples')."""
        what = "passive RTT samples" if self.rtt_source == "passive" else "answered probes"
        return f"{self.samples} of min {self.min_samples} {what}"

    @property
    def tier(self) -> int:
        return 0 if self.eligibility is Eligibility.ELIGIBLE else 1

    @property
    def rtt_word(self) -> str:
        """'rtt', or 'passive rtt' when the figure is real traffic's."""
        return "passive rtt" if self.rtt_source == "passive" else "rtt"

    def figures(self) -> str:
        text = figures_text(self.rtt_s, self.loss_pct, self.jitter_s)
        if self.upstream is not None:
            text += f", upstream p95 {upstream_text(self.upstream.p95_s)}"
        return text.replace("rtt ", f"{self.rtt_word} ", 1)


def ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.1f} ms"


def figures_text(rtt_s: float | None, loss_pct: float | None, jitter_s: float | None) -> str:
    """'rtt 10.2 ms, loss 0.0%, jitter 1.1 ms' (what is known)."""
    parts = [f"rtt {ms(rtt_s)}"]
    if loss_pct is not None:
        parts.append(f"loss {loss_pct:.1f}%")
    if jitter_s is not None:
        parts.append(f"jitter {ms(jitter_s)}")
    return ", ".join(parts)


def path_rtt(rtt: RttStats, statistic: RttStatistic) -> float | None:
    """The RTT a policy compares.

    ROBUST = min(EWMA, p95): the EWMA alone follows a lasting change within a few probes
    (gain 1/8) and smooths jitter to about a quarter of its spread, but one 1-second spike
    lifts it by 125 ms; the window's p95 ignores any spike that is less than 5 % of the window,
    so the minimum of the two is fast and robust. p50 alone would be robust too, but it moves
    only when half the window (100 probes: 2 s at 20 ms, 100 s at 1 s) has changed.
    """
    if statistic is RttStatistic.EWMA:
        return rtt.ewma_s if rtt.ewma_s is not None else rtt.p50_s
    if statistic is RttStatistic.P50:
        return rtt.p50_s if rtt.p50_s is not None else rtt.ewma_s
    values = [v for v in (rtt.ewma_s, rtt.p95_s) if v is not None]
    return min(values) if values else None


def measured_rtt(snap: PathSnapshot, dest: DestinationParams) -> tuple[float | None, int, str]:
    """(RTT, the samples behind it, "active" | "passive"): what ``dest`` compares for this path
    (`RttSource`). Passive: the median of the path's real TCP traffic over the last second."""
    if dest.rtt_source is not RttSource.ACTIVE:
        passive = snap.passive
        if passive is not None and passive.samples and passive.p50_s is not None:
            return passive.p50_s, passive.samples, "passive"
        if dest.rtt_source is RttSource.PASSIVE:
            return None, 0, "passive"
    return path_rtt(snap.rtt, dest.rtt_statistic), snap.rtt.samples, "active"


REMEMBERED_AFTER_S = 3.0  # an upstream figure older than this is no longer refreshed: its age is told


def upstream_breach(dest: DestinationParams, upstream: UpstreamFigure | None) -> bool:
    limit = dest.sla.max_upstream_time_s
    return limit is not None and upstream is not None and upstream.p95_s > limit


def _upstream_breach_text(dest: DestinationParams, upstream: UpstreamFigure, now: float | None) -> str:
    """'upstream time 412 ms > sla 300 ms', and for a remembered figure (the path no longer
    brings any) '(25 s ago, upstream_hold 60 s)'."""
    sla = dest.sla
    text = f"upstream time {upstream_text(upstream.p95_s)} > sla {sla.max_upstream_time_s * 1e3:g} ms"
    if now is not None and upstream.age(now) >= REMEMBERED_AFTER_S:
        text += f" ({upstream.age(now):.0f} s ago, upstream_hold {sla.upstream_hold_s:g} s)"
    return text


def _sla_breaches(dest: DestinationParams, rtt_s: float | None, p: PathSnapshot,
                  upstream: UpstreamFigure | None = None, now: float | None = None) -> list[str]:
    sla, out = dest.sla, []
    if sla.max_rtt_s is not None and rtt_s is not None and rtt_s > sla.max_rtt_s:
        out.append(f"rtt {ms(rtt_s)} > sla {ms(sla.max_rtt_s)}")
    if sla.max_loss_pct is not None and p.loss_pct is not None and p.loss_pct > sla.max_loss_pct:
        out.append(f"loss {p.loss_pct:.1f}% > sla {sla.max_loss_pct:g}%")
    if sla.max_jitter_s is not None and p.jitter_s is not None and p.jitter_s > sla.max_jitter_s:
        out.append(f"jitter {ms(p.jitter_s)} > sla {ms(sla.max_jitter_s)}")
    if upstream_breach(dest, upstream):
        out.append(_upstream_breach_text(dest, upstream, now))
    return out


def _utilization(load: LoadFigures | None, capacity_bps: int | None) -> float | None:
    if load is None or not capacity_bps:
        return None
    return max(load.in_bps, load.out_bps) / capacity_bps


def _peak_utilization(load: LoadFigures | None, capacity_bps: int | None, peak: str = "peak_bps") -> float | None:
    """The highest utilization over the load meter's memory (the span of the probe-loss
    window; ``recent_peak_bps``: the last few seconds), this interval's when the figures carry
    no peak."""
    if load is None or not capacity_bps:
        return None
    highest = getattr(load, peak, None) or 0.0
    return max(load.in_bps, load.out_bps, highest) / capacity_bps


CONGESTED_BAND = 0.2  # a path is congested from (its weighted.utilization_ceiling − this) up


def congested_at(dest: DestinationParams) -> float:
    """The utilization from which a DEGRADED path counts as congested, not failing: 20 points
    below the ceiling (70 % by default), so a path whose share spill-over has just lowered does
    not leave the set while the loss its queue caused is still in the probe window."""
    return max(0.0, dest.weighted.utilization_ceiling - CONGESTED_BAND)


def _judge(dest: DestinationParams, pp: PathParams, snap: PathSnapshot, rtt: float | None,
           breaches: list[str], source: str = "active",
           utilization: float | None = None, peak: float | None = None) -> tuple[Eligibility, str | None]:
    if not pp.carries(dest.prefix):
        return Eligibility.NO_FAMILY, f"no IPv{dest.prefix.version} gateway"
    if snap.state is PathState.DOWN:
        return Eligibility.DOWN, f"down ({snap.failing}/{len(snap.targets)} targets failing)"
    if snap.state is PathState.UNKNOWN:
        return Eligibility.NO_DATA, "no probe resolved yet"
    if breaches:
        return Eligibility.SLA, "breaks sla: " + ", ".join(breaches)
    if snap.state is PathState.DEGRADED:
        figures = figures_text(rtt, snap.loss_pct, snap.jitter_s)
        if source == "passive":
            figures = figures.replace("rtt ", "passive rtt ", 1)
        if peak is not None and peak >= congested_at(dest):
            at = f"utilization {utilization * 100:.0f}%" if utilization is not None else "utilization"
            if utilization is None or peak > utilization + 0.005:
                at += f", {peak * 100:.0f}% within its loss window"
            return Eligibility.ELIGIBLE, (f"degraded ({figures}) at {at} "
                                          f"(congested from {congested_at(dest) * 100:.0f}%): its own load, kept")
        return Eligibility.DEGRADED, f"degraded ({figures})"
    return Eligibility.ELIGIBLE, None


def drained_text(note: str | None) -> str:
    """'drained (maintenance)' or 'drained (maintenance: swapping the modem)'."""
    return f"drained (maintenance: {note})" if note else "drained (maintenance)"


def _drained(c: Candidate, note: str | None) -> Candidate:
    """``c`` taken out by a drain; its figures and, in ``health``, its own verdict kept."""
    if c.eligibility is Eligibility.NO_FAMILY:
        return c  # it carries nothing for this prefix anyway
    why = drained_text(note)
    if c.why_not:
        why += f"; otherwise {c.why_not}"
    return replace(c, eligibility=Eligibility.DRAINED, why_not=why, health=c.eligibility)


def evaluate(dest: DestinationParams, params: PolicyParams, telemetry: TelemetrySnapshot | Mapping[str, PathSnapshot],
             load: Mapping[str, LoadFigures], drains: Mapping[str, str | None] | None = None,
             upstream: Mapping[str, UpstreamFigure] | None = None, now: float | None = None
             ) -> tuple[Candidate, ...]:
    """Every path of ``dest``, in its order, judged. ``telemetry``: a snapshot, or its paths by
    name; ``drains``: the drained paths, each with the operator's note (or None);
    ``upstream``: per path, the gateways' upstream response time for this destination (those
    seen ``sla.upstream_hold`` or longer before ``now`` no longer count)."""
    snapshots = telemetry if isinstance(telemetry, Mapping) else {p.name: p for p in telemetry.paths}
    drains = drains or {}
    upstream = upstream or {}
    out = []
    for order, name in enumerate(dest.paths):
        up = upstream.get(name)
        if up is not None and now is not None and not up.in_force(now, dest.sla.upstream_hold_s):
            up = None
        out.append(judge(dest, params, name, order, snapshots, load, drains, up, now))
    return tuple(out)


def judging_key(dest: DestinationParams) -> tuple:
    """What of ``dest`` `judge` depends on besides the path (its upstream figure aside):
    destinations with the same key get the same judgment of a path."""
    return (dest.sla, dest.weighted.utilization_ceiling, dest.rtt_statistic, dest.rtt_source, dest.prefix.version)


def judge(dest: DestinationParams, params: PolicyParams, name: str, order: int, snapshots: Mapping[str, PathSnapshot],
          load: Mapping[str, LoadFigures], drains: Mapping[str, str | None],
          up: UpstreamFigure | None = None, now: float | None = None) -> Candidate:
    """Path ``name`` (index ``order`` in ``dest.paths``) judged for ``dest`` (`evaluate`);
    ``up``: its upstream figure in force, if any."""
    pp = params.path(name)
    util = _utilization(load.get(name), pp.capacity_bps)
    snap = snapshots.get(name)
    if snap is None:
        c = Candidate(name, order, PathState.UNKNOWN, None, None, None, util, pp.capacity_bps,
                      Eligibility.NO_DATA, "no telemetry for this path", 0, 0, params.min_samples,
                      upstream=up, upstream_breach=upstream_breach(dest, up))
    else:
        rtt, samples, source = measured_rtt(snap, dest)
        breaches = _sla_breaches(dest, rtt, snap, up, now)
        eligibility, why_not = _judge(dest, pp, snap, rtt, breaches, source, util,
                                      _peak_utilization(load.get(name), pp.capacity_bps))
        c = Candidate(name, order, snap.state, rtt, snap.loss_pct, snap.jitter_s, util, pp.capacity_bps,
                      eligibility, why_not, len(breaches), samples, params.min_samples, source,
                      base_rtt_s=snap.base_rtt_s,
                      recent_utilization=_peak_utilization(load.get(name), pp.capacity_bps, "recent_peak_bps"),
                      upstream=up, upstream_breach=upstream_breach(dest, up))
    return _drained(c, drains[name]) if name in drains else c


def rtt_key(c: Candidate) -> tuple[float, int]:
    """Lowest RTT first; unknown RTT last; ties by configured order."""
    return (c.rtt_s if c.rtt_s is not None else math.inf, c.order)


def latency_best(tier: Iterable[Candidate]) -> tuple[Candidate, list[Candidate]]:
    """The candidate of ``tier`` that wins on latency: the lowest RTT among those with enough
    samples; when none has enough, the first in the configured order (an RTT on too few
    probes decides nothing). Also returns the candidates with too few samples whose RTT is
    lower than the winner's (what `explain` says was not chosen, and why)."""
    tier = list(tier)
    proven = [c for c in tier if c.enough_samples]
    best = min(proven, key=rtt_key) if proven else min(tier, key=lambda c: c.order)
    passed = [c for c in tier if not c.enough_samples and c is not best and c.rtt_s is not None
              and (best.rtt_s is None or c.rtt_s < best.rtt_s)]
    return best, passed


def passed_text(passed: Iterable[Candidate]) -> str:
    """'; p2 (rtt 5.0 ms) not chosen: 2 of min 5 answered probes' for each one passed over."""
    return "".join(f"; {c.path} ({c.rtt_word} {ms(c.rtt_s)}) not chosen: {c.samples_text()}" for c in passed)


def best_tier(candidates: tuple[Candidate, ...]) -> tuple[Candidate, ...]:
    """The eligible candidates of the best tier present (UP before DEGRADED); () if none."""
    eligible = [c for c in candidates if c.eligible]
    if not eligible:
        return ()
    tier = min(c.tier for c in eligible)
    return tuple(c for c in eligible if c.tier == tier)


_BADNESS = {Eligibility.ELIGIBLE: -1, Eligibility.DEGRADED: -1, Eligibility.SLA: 0, Eligibility.NO_DATA: 1,
            Eligibility.DOWN: 2}


def badness(c: Candidate) -> tuple[float, ...]:
    """Order among ineligible paths: drained paths that work, then SLA breakers (fewest
    breaches, lowest upstream time where that is one of them, least loss, lowest RTT) before
    paths without data before DOWN paths — a drained one after an undrained one as bad; a path
    of the wrong family never."""
    if c.eligibility is Eligibility.NO_FAMILY:
        return (math.inf,)
    loss = c.loss_pct if c.loss_pct is not None else 100.0
    kind = c.health if c.drained and c.health is not None else c.eligibility
    slow = c.upstream.p95_s if c.upstream_breach and c.upstream is not None else 0.0
    return (_BADNESS.get(kind, 0), int(c.drained), c.violations, slow, loss, rtt_key(c)[0], c.order)


def least_bad(candidates: tuple[Candidate, ...], current: str | None) -> Candidate:
    """The path to keep when none is eligible: the least bad, but ``current`` when it is as bad
    as that one in kind, drain and number of breaches (no churn between equally broken paths) —
    unless both are too slow upstream and the other's p95 is lower by `UPSTREAM_MARGIN` (fail
    open to the best figure, without swapping on noise between a fresh and a remembered one)."""
    best = min(candidates, key=badness)
    for c in candidates:
        if c.path == current and badness(c)[:3] == badness(best)[:3]:
            if (c is not best and c.upstream_breach and best.upstream_breach
                    and best.upstream.p95_s < c.upstream.p95_s * (1.0 - UPSTREAM_MARGIN)):
                return best
            return c
    return best
