"""The steering sections: ``dataplane``, ``paths``, ``destinations`` (and ``decision`` tuning).

Units are the ones users write (``20ms``, ``100mbit``, ``10%``); the models hold seconds,
bit/s, fractions (``min_improvement``, ``utilization_ceiling``) and percent points (``max_loss``).
Cross-section rules (unknown path, duplicates, prefix overlaps) are in `check_steering`, run by
`Config._check`; what needs the running system (interfaces, gateways on a connected subnet) is
in `pathsteer.steering.preflight`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from pathsteer.config.fields import Fraction, InterfaceName, IpAddress, Percent, Prefix, Rate, Seconds
from pathsteer.config.sections import Section
from pathsteer.telemetry.config import (DEFAULT_TIMEOUT_INITIAL_S, DEFAULT_TIMEOUT_MAX_S, DEFAULT_TIMEOUT_MIN_SLACK_S,
                                        AdaptiveTimeout)


class DataplaneConfig(Section):
    """``dataplane``: where the decision is programmed.

    ``fib``: kernel routes through nexthop objects in ``table`` (reached by an ip rule at
    ``rule_priority``), or in ``main`` when ``table`` is absent or ``main``. ``bpf``: a TC
    ingress program on ``ingress`` that fails open after ``stale_after`` without a heartbeat."""

    mode: Literal["fib", "bpf"] = "fib"
    ingress: list[InterfaceName] = []
    table: int | Literal["main"] | None = None
    rule_priority: int = Field(default=1000, ge=1, le=32765)
    buckets: int = Field(default=128, ge=1, le=65535)  # fib resilient group buckets
    stale_after: Seconds = 10.0
    reconcile_interval: Seconds = 1.0
    heartbeat_interval: Seconds = 1.0

    @field_validator("table")
    @classmethod
    def _table(cls, value):
        if isinstance(value, int) and not isinstance(value, bool):
            if value in (0, 253, 254, 255):
                raise ValueError("is a table of the kernel's own (0, 253, 254, 255): give one of pathsteer's "
                                 "own (e.g. 200) or 'main'")
            if not 1 <= value < 2**32:
                raise ValueError("is not a table number (1..4294967295)")
        return None if value == "main" else value

    @field_validator("stale_after")
    @classmethod
    def _stale(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be a duration above 0")
        return value

    @field_validator("reconcile_interval", "heartbeat_interval")
    @classmethod
    def _at_most_1s(cls, value: float) -> float:
        if not 0.05 <= value <= 1.0:
            raise ValueError("must be between 50ms and 1s")
        return value

    @field_validator("ingress")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists an interface twice")
        return value

    @model_validator(mode="after")
    def _mode(self) -> DataplaneConfig:
        if self.mode == "bpf" and not self.ingress:
            raise ValueError(".ingress: the bpf data plane needs at least one interface to steer")
        if self.heartbeat_interval * 2 > self.stale_after:
            raise ValueError(f".heartbeat_interval: {self.heartbeat_interval:g} s must be at most half "
                             f"of stale_after ({self.stale_after:g} s)")
        return self


class ProbeConfig(Section):
    """``paths[].probe``: how the path is measured (see pathsteer.telemetry)."""

    targets: list[IpAddress] = Field(min_length=1)
    method: Literal["icmp", "udp"] = "icmp"
    interval: Seconds = 1.0
    timeout: Seconds | None = None  # fixed; absent: adaptive per target (SRTT + max(4 RTTVAR, timeout_slack))
    timeout_slack: Seconds | None = None  # adaptive: least wait beyond the smoothed RTT (40ms)
    timeout_max: Seconds | None = None  # adaptive: the ceiling (2s)
    port: int = Field(default=862, ge=1, le=65535)  # udp (TWAMP-light)
    quorum: int | None = Field(default=None, ge=1)
    down_after: int = Field(default=3, ge=1, le=100)  # consecutive lost probes: target failing
    up_after: int = Field(default=5, ge=1, le=100)  # consecutive answers: target back
    hold: Seconds = 0.5  # a path state is held at least this long
    degraded_loss: Percent = 5.0
    recover_loss: Percent = 2.0
    window: int = Field(default=100, ge=1, le=100_000)  # probes per target in the sliding window
    window_seconds: Seconds = 60.0

    @property
    def window_span_s(self) -> float:
        """How long a probe counts in a target's window: ``window`` probes at ``interval``,
        at most ``window_seconds`` (5 s at 50 ms, 60 s at the default 1 s)."""
        return min(self.window_seconds, self.window * self.interval)

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if value < 0.010:
            raise ValueError("is below the 10ms minimum")
        return value

    @field_validator("timeout", "timeout_slack", "timeout_max", "window_seconds")
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be a duration above 0")
        return value

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: list) -> list:
        if len(set(value)) != len(value):
            raise ValueError("lists a target twice")
        if len({a.version for a in value}) > 1:
            raise ValueError("mixes IPv4 and IPv6 targets (a path's probes use one family)")
        return value

    @model_validator(mode="after")
    def _checks(self) -> ProbeConfig:
        if self.quorum is not None and self.quorum > len(self.targets):
            raise ValueError(f".quorum: {self.quorum} is more than the {len(self.targets)} targets")
        if self.recover_loss > self.degraded_loss:
            raise ValueError(f".recover_loss: {self.recover_loss:g}% is above degraded_loss "
                             f"({self.degraded_loss:g}%)")
        if self.timeout is not None:
            for name in ("timeout_slack", "timeout_max"):
                if getattr(self, name) is not None:
                    raise ValueError(f".{name}: applies to the adaptive timeout only; a fixed timeout "
                                     f"({self.timeout:g} s) is set")
        slack = self.timeout_slack if self.timeout_slack is not None else DEFAULT_TIMEOUT_MIN_SLACK_S
        ceiling = self.timeout_max if self.timeout_max is not None else DEFAULT_TIMEOUT_MAX_S
        if slack > ceiling:
            raise ValueError(f".timeout_slack: {slack:g} s is above timeout_max ({ceiling:g} s)")
        return self

    @property
    def timeout_s(self) -> float | None:
        """The fixed timeout, or None: adaptive (see `adaptive_timeout`)."""
        return self.timeout

    @property
    def adaptive_timeout(self) -> AdaptiveTimeout:
        slack = self.timeout_slack if self.timeout_slack is not None else DEFAULT_TIMEOUT_MIN_SLACK_S
        ceiling = self.timeout_max if self.timeout_max is not None else DEFAULT_TIMEOUT_MAX_S
        return AdaptiveTimeout(min_slack_s=slack, max_s=ceiling, initial_s=min(DEFAULT_TIMEOUT_INITIAL_S, ceiling))

    @property
    def version(self) -> int:
        return self.targets[0].version


class PathConfig(Section):
    """``paths[]``: one way out: ``interface`` to ``gateway`` (IPv4) and/or ``gateway6``."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
    interface: InterfaceName
    gateway: IpAddress | None = None
    gateway6: IpAddress | None = None
    capacity: Rate | None = None
    passive: bool = False  # also measure the RTT of real TCP traffic on interface (TC, eBPF)
    probe: ProbeConfig

    @field_validator("gateway")
    @classmethod
    def _v4(cls, value):
        if value is not None and value.version != 4:
            raise ValueError("is not an IPv4 address (put an IPv6 gateway in gateway6)")
        return value

    @field_validator("gateway6")
    @classmethod
    def _v6(cls, value):
        if value is not None and value.version != 6:
            raise ValueError("is not an IPv6 address (put an IPv4 gateway in gateway)")
        return value

    @model_validator(mode="after")
    def _gw(self) -> PathConfig:
        if self.gateway is None and self.gateway6 is None:
            raise ValueError("needs a gateway (IPv4) or gateway6 (IPv6)")
        if self.probe_gateway is None:
            v = self.probe.version
            raise ValueError(f".probe.targets: IPv{v} targets need an IPv{v} gateway "
                             f"({'gateway' if v == 4 else 'gateway6'})")
        return self

    @property
    def probe_gateway(self):
        return self.gateway if self.probe.version == 4 else self.gateway6


class HysteresisConfig(Section):
    min_improvement: Fraction = 0.10
    min_improvement_abs: Seconds = 0.0005  # and at least this much lower, absolute (0.5 ms)
    hold_down: Seconds = 1.0


class SlaConfig(Section):
    max_rtt: Seconds | None = None
    max_loss: Percent | None = None
    max_jitter: Seconds | None = None
    # The gateways' upstream response time (p95 over their window) above which a path is not
    # eligible for the destination, and how long that verdict stands after the last figure
    # (a path left for being slow brings no more figures; then it is re-tried).
    max_upstream_time: Seconds | None = None
    upstream_hold: Seconds = 60.0

    @field_validator("max_upstream_time")
    @classmethod
    def _upstream_time(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be a duration above 0")
        return value

    @field_validator("upstream_hold")
    @classmethod
    def _upstream_hold(cls, value: float) -> float:
        if value < 1.0:
            raise ValueError("must be at least 1s (the gateways report once a second)")
        return value


class WeightedConfig(Section):
    utilization_ceiling: Fraction = 0.9
    min_free: Fraction = 0.1
    latency_scale: Seconds | None = 0.010
    min_shift: Fraction = 0.05
    max_step: Fraction | None = None  # default: 20%, or min_shift when that is more

    @field_validator("utilization_ceiling")
    @classmethod
    def _ceiling(cls, value: float) -> float:
        if value < 0.01:
            raise ValueError("must be at least 1%")
        return value

    @field_validator("min_shift")
    @classmethod
    def _min_shift(cls, value: float) -> float:
        if value > 0.5:
            raise ValueError("must be at most 50%")
        return value

    @field_validator("max_step")
    @classmethod
    def _max_step(cls, value: float | None) -> float | None:
        if value is not None and value < 0.01:
            raise ValueError("must be at least 1%")
        return value

    @model_validator(mode="after")
    def _steps(self) -> WeightedConfig:
        if self.max_step is not None and self.max_step < self.min_shift:
            raise ValueError(f".max_step: {self.max_step:.0%} is below min_shift ({self.min_shift:.0%}): a weight "
                             f"change smaller than min_shift is never made")
        return self

    @property
    def max_step_value(self) -> float:
        return self.max_step if self.max_step is not None else max(0.20, self.min_shift)


class DestinationTemplate(Section):
    """What destinations made by pathsteer share (a gateway's auto destinations, BGP-learned
    ones): the policy and its settings; each user of it names its own ``paths``."""

    policy: Literal["lowest-latency", "weighted", "failover"] = "lowest-latency"
    hysteresis: HysteresisConfig = HysteresisConfig()
    sla: SlaConfig = SlaConfig()
    weighted: WeightedConfig = WeightedConfig()
    rtt: Literal["robust", "ewma", "p50", "active", "passive", "best"] = "robust"

    def destination(self, prefix, paths: list[str], **extra) -> DestinationConfig:
        """The steering destination for ``prefix`` (``paths``: the template's, else these)."""
        return DestinationConfig(prefix=str(prefix), policy=self.policy, paths=getattr(self, "paths", None) or paths,
                                 hysteresis=self.hysteresis, sla=self.sla, weighted=self.weighted, rtt=self.rtt,
                                 **extra)


class DestinationConfig(Section):
    """``destinations[]``: a prefix, its policy and its paths in order of preference."""

    prefix: Prefix
    policy: Literal["lowest-latency", "weighted", "failover"] = "lowest-latency"
    paths: list[str] = Field(min_length=1)
    hysteresis: HysteresisConfig = HysteresisConfig()
    sla: SlaConfig = SlaConfig()
    weighted: WeightedConfig = WeightedConfig()
    # The probes' statistic (robust | ewma | p50; "active" is robust), or real traffic's RTT
    # (passive: only it; best: it when the path carried traffic in the last second, else the probes').
    rtt: Literal["robust", "ewma", "p50", "active", "passive", "best"] = "robust"
    # bgp: announce this destination (when any destination says true, only those are announced; false: never)
    announce: bool | None = None


class DecisionConfig(Section):
    """``decision``: tuning of the decision loop (all optional)."""

    interval: Seconds = 0.1  # decisions also run at once when a path changes state
    startup_grace: Seconds = 5.0
    events_kept: int = Field(default=1000, ge=1, le=1_000_000)
    load_counters: bool = True  # attach per-path TC counters for utilization (weighted policy)
    # Answered probes a path needs in its window before it can win on latency (become or
    # displace the best, be the weighted policy's RTT reference); fewer: still used when it is
    # the only eligible path.
    min_samples: int = Field(default=5, ge=1, le=100_000)

    @field_validator("interval")
    @classmethod
    def _decide(cls, value: float) -> float:
        if not 0.005 <= value <= 1.0:
            raise ValueError("must be between 5ms and 1s")
        return value

    @field_validator("min_samples", mode="before")
    @classmethod
    def _count(cls, value):
        if isinstance(value, bool):
            raise ValueError("must be a whole number of answered probes (1 or more)")
        return value


MAX_PATHS = 4096  # probe pins: table/mark 0x70730000 + path index (pathsteer.probe.pinning.SLOT_RANGE)


def check_steering(dataplane: DataplaneConfig | None, paths: list[PathConfig] | None,
                   destinations: list[DestinationConfig] | None, decision: DecisionConfig | None = None) -> None:
    """Cross-section rules; raises ValueError with ``field: message``."""
    present = [n for n, v in (("dataplane", dataplane), ("paths", paths), ("destinations", destinations))
               if v is not None]
    if not present:
        return
    missing = [n for n in ("paths", "destinations") if n not in present]
    if missing:
        raise ValueError(f"{missing[0]}: missing (steering needs dataplane, paths and destinations; "
                         f"found only {', '.join(present)})")
    if not paths:
        raise ValueError("paths: needs at least one path")
    if len(paths) > MAX_PATHS:
        raise ValueError(f"paths: {len(paths)} paths; at most {MAX_PATHS}")
    min_samples = decision.min_samples if decision is not None else DecisionConfig().min_samples
    for i, p in enumerate(paths):
        # A path that can never hold min_samples answers in its window would never win on
        # latency: a target's window keeps `window` probes of the last `window_seconds`.
        per_target = max(1, min(p.probe.window, int(p.probe.window_seconds / p.probe.interval + 1e-9)))
        most = per_target * len(p.probe.targets)
        if min_samples > most:
            raise ValueError(f"decision.min_samples: {min_samples} is more than paths[{i}] ({p.name}) can ever "
                             f"have in its window ({per_target} probes × {len(p.probe.targets)} targets = {most})")
    names: dict[str, int] = {}
    for i, p in enumerate(paths):
        if p.name in names:
            raise ValueError(f"paths[{i}].name: {p.name!r} is used twice (also paths[{names[p.name]}])")
        names[p.name] = i
    covers = _gateways_covered(paths, destinations)
    seen: dict = {}
    for i, d in enumerate(destinations):
        where = f"destinations[{i}]"
        if d.prefix in seen:
            raise ValueError(f"{where}.prefix: {str(d.prefix)!r} is listed twice (also destinations[{seen[d.prefix]}])")
        seen[d.prefix] = i
        for j, name in enumerate(d.paths):
            if name not in names:
                raise ValueError(f"{where}.paths[{j}]: unknown path {name!r} (paths: {', '.join(names)})")
            if name in d.paths[:j]:
                raise ValueError(f"{where}.paths[{j}]: {name!r} is listed twice")
        if d.rtt in ("passive", "best") and not any(paths[names[n]].passive for n in d.paths):
            raise ValueError(f"{where}.rtt: {d.rtt!r} needs passive measurement on one of its paths "
                             f"(paths[].passive: true on one of {', '.join(d.paths)})")
        family = [n for n in d.paths if (paths[names[n]].gateway if d.prefix.version == 4
                                         else paths[names[n]].gateway6) is not None]
        if not family:
            raise ValueError(f"{where}.paths: none of {d.paths} has an IPv{d.prefix.version} gateway for {d.prefix}")
        # A destination must not swallow the paths themselves: traffic to a gateway steered
        # onto another path would never reach it (and the route to it would loop).
        if i in covers:
            gw, name = covers[i]
            raise ValueError(f"{where}.prefix: {d.prefix} covers the gateway {gw} of path {name!r}")
    # Nested prefixes are allowed (the longest match wins in both data planes); a default
    # route is allowed; duplicates were refused above.


def _gateways_covered(paths: list[PathConfig], destinations: list[DestinationConfig]) -> dict[int, tuple]:
    """Per destination index covering a path's gateway, the first such (gateway, path name) in
    path order: each gateway looked up once per prefix length present, not against every
    destination (a million destinations × 64 paths were minutes)."""
    by_len: dict[tuple[int, int], dict[int, int]] = {}
    for i, d in enumerate(destinations):
        net = d.prefix
        by_len.setdefault((net.version, net.prefixlen), {}).setdefault(int(net.network_address), i)
    covers: dict[int, tuple] = {}
    for p in paths:
        for gw in (p.gateway, p.gateway6):
            if gw is None:
                continue
            bits, value = gw.max_prefixlen, int(gw)
            for (version, length), nets in by_len.items():
                if version != gw.version:
                    continue
                i = nets.get(value >> (bits - length) << (bits - length))
                if i is not None:
                    covers.setdefault(i, (gw, p.name))
    return covers


__all__ = ["DataplaneConfig", "DestinationConfig", "HysteresisConfig", "PathConfig", "ProbeConfig", "SlaConfig",
           "DecisionConfig", "WeightedConfig", "check_steering"]
