"""Policy parameters: what the config layer builds for the decision (frozen, validated).

Units are in the field names: seconds (``_s``), bit/s (``_bps``), percent points (``_pct``);
``min_improvement``, ``utilization_ceiling``, ``min_free``, ``min_shift`` and ``max_step`` are fractions
(0.1 = 10 %).
Every check raises `UsageError` naming the field and the value, as the config layer does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from enum import Enum

from pathsteer.routes import Prefix
from pathsteer.errors import UsageError


class PolicyKind(Enum):
    LOWEST_LATENCY = "lowest-latency"
    WEIGHTED = "weighted"
    FAILOVER = "failover"


class RttStatistic(Enum):
    """Which RTT the policy compares (see `pathsteer.policy.candidates.path_rtt`).

    ROBUST (default): the EWMA (gain 1/8, RFC 6298 §2) capped at the window's p95 — as quick
    as the EWMA to see a lasting change, deaf to isolated spikes (fewer than 5 % of the window).
    """

    ROBUST = "robust"
    EWMA = "ewma"
    P50 = "p50"


class RttSource(Enum):
    """Where the RTT a policy compares comes from (see `pathsteer.policy.candidates.measured_rtt`).

    ACTIVE (default): the probes (``rtt_statistic`` of their window). PASSIVE: the path's real
    TCP traffic over the last second (``paths[].passive``); a path without such samples has no
    RTT to compare (it is still used in its configured order). BEST: the passive figure when
    the path carried traffic in the last second, else the probes' — real traffic informs the
    choice when probes are sparse, and an idle path is still compared.
    """

    ACTIVE = "active"
    PASSIVE = "passive"
    BEST = "best"


def _fraction(value: float, name: str, *, low: float = 0.0, high: float = 1.0) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise UsageError(f"{name}: {value!r} must be a fraction between {low:g} and {high:g}")


def _nonneg(value: float | None, name: str, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise UsageError(f"{name}: {value!r} must be a finite number of 0 or more")


@dataclass(frozen=True)
class Hysteresis:
    """Move to a better path only when it wins by ``min_improvement`` (relative RTT for
    lowest-latency) and by ``min_improvement_abs_s`` (absolute: 10 % of a 50 µs RTT is noise,
    and paths of a LAN or a data centre would flap on it) and has kept winning for
    ``hold_down_s``; failback (failover), a path joining a weighted set and a rebalance also
    wait ``hold_down_s``."""

    min_improvement: float = 0.10
    hold_down_s: float = 1.0
    min_improvement_abs_s: float = 0.0005

    def __post_init__(self) -> None:
        _fraction(self.min_improvement, "hysteresis.min_improvement", high=0.99)
        _nonneg(self.hold_down_s, "hysteresis.hold_down", optional=False)
        _nonneg(self.min_improvement_abs_s, "hysteresis.min_improvement_abs", optional=False)


@dataclass(frozen=True)
class Sla:
    """Limits a path must keep to be eligible; None: no limit. A path that breaks one is left
    at once.

    ``max_upstream_time_s``: the gateways' upstream response time (p95 over their window,
    `pathsteer.policy.upstream`) above which a path is not eligible for the destination;
    ``upstream_hold_s``: how long such a figure stays in force after it was last seen (traffic
    that left a slow path brings no more figures of it: the verdict stands that long, then the
    path is eligible again and re-tried)."""

    max_rtt_s: float | None = None
    max_loss_pct: float | None = None
    max_jitter_s: float | None = None
    max_upstream_time_s: float | None = None
    upstream_hold_s: float = 60.0

    def __post_init__(self) -> None:
        _nonneg(self.max_rtt_s, "sla.max_rtt")
        _nonneg(self.max_jitter_s, "sla.max_jitter")
        _nonneg(self.max_upstream_time_s, "sla.max_upstream_time")
        _nonneg(self.upstream_hold_s, "sla.upstream_hold", optional=False)
        if self.max_loss_pct is not None:
            _fraction(self.max_loss_pct, "sla.max_loss", high=100.0)


@dataclass(frozen=True)
class WeightedParams:
    """How `weighted` turns capacity, latency and load into weights (see
    `pathsteer.policy.weighted`): base shares ∝ capacity × (best rtt + ``latency_scale_s``) /
    (rtt + ``latency_scale_s``) (None: latency ignored); while a path is past
    ``utilization_ceiling`` flows spill over toward equal utilization, but no path's share is
    pushed below ``min_free`` of its base share (it keeps some flows, so its figures stay
    real); weights move only when a share would move by more than ``min_shift``, and by at most
    ``max_step`` per ``hold_down``. (Field order kept: the config layer builds it positionally.)
    """

    utilization_ceiling: float = 0.9
    min_free: float = 0.1
    latency_scale_s: float | None = 0.010
    min_shift: float = 0.05
    max_step: float = 0.20

    def __post_init__(self) -> None:
        _fraction(self.utilization_ceiling, "weighted.utilization_ceiling", low=0.01)
        _fraction(self.min_free, "weighted.min_free")
        _nonneg(self.latency_scale_s, "weighted.latency_scale")
        _fraction(self.min_shift, "weighted.min_shift", high=0.5)
        _fraction(self.max_step, "weighted.max_step", low=0.01)
        if self.max_step < self.min_shift:
            raise UsageError(f"weighted.max_step: {self.max_step!r} must be at least min_shift ({self.min_shift!r})")


@dataclass(frozen=True)
class DestinationParams:
    """One destination prefix: its policy and its paths, in order of preference."""

    prefix: Prefix
    policy: PolicyKind
    paths: tuple[str, ...]
    hysteresis: Hysteresis = field(default_factory=Hysteresis)
    sla: Sla = field(default_factory=Sla)
    weighted: WeightedParams = field(default_factory=WeightedParams)
    rtt_statistic: RttStatistic = RttStatistic.ROBUST
    rtt_source: RttSource = RttSource.ACTIVE


@dataclass(frozen=True)
class PathParams:
    """A path as the policy sees it. ``capacity_bps`` None: unknown (no utilization, and the
    weighted policy counts it as the mean of the known capacities). ``ipv4``/``ipv6``: whether
    the path has a gateway (or is on-link) for that family; a route of the other family never
    uses it."""

    name: str
    capacity_bps: int | None = None
    ipv4: bool = True
    ipv6: bool = True

    def __post_init__(self) -> None:
        if self.capacity_bps is not None and (isinstance(self.capacity_bps, bool)
                                              or not isinstance(self.capacity_bps, int) or self.capacity_bps <= 0):
            raise UsageError(f"paths[{self.name}].capacity: {self.capacity_bps!r} must be a bit rate above 0")

    def carries(self, prefix: Prefix) -> bool:
        return self.ipv4 if prefix.version == 4 else self.ipv6


@dataclass(frozen=True)
class PolicyParams:
    """Everything `decide` needs from the config.

    ``startup_grace_s``: how long after a prefix's first decision the policy waits for paths
    without data (state UNKNOWN, or absent from telemetry), or with fewer than ``min_samples``,
    before deciding without them.

    ``min_samples``: answered probes a path needs in its window (`RttStats.samples`) before it
    can win on latency: become or displace the best (lowest-latency), be the RTT the others
    are measured against (weighted). A path with fewer is still used when no path has enough,
    and when it is the only eligible one (never a blackhole).
    """

    paths: tuple[PathParams, ...]
    destinations: tuple[DestinationParams, ...]
    startup_grace_s: float = 5.0
    min_samples: int = 5

    def __post_init__(self) -> None:
        names: dict[str, PathParams] = {}
        for i, p in enumerate(self.paths):
            if p.name in names:
                raise UsageError(f"paths[{i}].name: {p.name!r} is used twice")
            names[p.name] = p
        prefixes: set[Prefix] = set()
        checked: set[tuple] = set()  # (paths, family) already found good: 1M destinations share a few
        for i, d in enumerate(self.destinations):
            if d.prefix in prefixes:
                raise UsageError(f"destinations[{i}].prefix: {str(d.prefix)!r} is listed twice")
            prefixes.add(d.prefix)
            if (d.paths, d.prefix.version) in checked:
                continue
            checked.add((d.paths, d.prefix.version))
            where = f"destinations[{i}]"
            if not d.paths:
                raise UsageError(f"{where}.paths: needs at least one path")
            for j, name in enumerate(d.paths):
                if name not in names:
                    raise UsageError(f"{where}.paths[{j}]: unknown path {name!r}")
                if name in d.paths[:j]:
                    raise UsageError(f"{where}.paths[{j}]: {name!r} is listed twice")
            if not any(names[n].carries(d.prefix) for n in d.paths):
                raise UsageError(f"{where}.paths: none of {list(d.paths)} has an IPv{d.prefix.version} gateway "
                                 f"for {d.prefix}")
        _nonneg(self.startup_grace_s, "startup_grace", optional=False)
        if isinstance(self.min_samples, bool) or not isinstance(self.min_samples, int) or self.min_samples < 1:
            raise UsageError(f"min_samples: {self.min_samples!r} must be a whole number of answered probes (1 or more)")

    @cached_property
    def _by_name(self) -> dict[str, PathParams]:
        return {p.name: p for p in self.paths}

    def path(self, name: str) -> PathParams:
        return self._by_name[name]

    @cached_property
    def setups(self) -> tuple[int, ...]:
        """Per destination, a number shared by the destinations that differ only in their prefix
        (same family): `decide` judges and decides each such group once per call."""
        ids: dict[tuple, int] = {}
        return tuple(ids.setdefault((d.paths, d.policy, d.hysteresis, d.sla, d.weighted, d.rtt_statistic,
                                     d.rtt_source, d.prefix.version), len(ids)) for d in self.destinations)

    @cached_property
    def judgings(self) -> tuple[int, ...]:
        """Per destination, a number shared by the destinations that judge a path alike
        (`pathsteer.policy.candidates.judging_key`)."""
        from pathsteer.policy.candidates import judging_key
        ids: dict[tuple, int] = {}
        return tuple(ids.setdefault(judging_key(d), len(ids)) for d in self.destinations)

    @cached_property
    def positions(self) -> dict[Prefix, int]:
        """Each destination's index in ``destinations`` (config order)."""
        return {d.prefix: i for i, d in enumerate(self.destinations)}

    def destination(self, prefix: Prefix) -> DestinationParams:
        i = self.positions.get(prefix)
        if i is None:
            raise KeyError(prefix)
        return self.destinations[i]
