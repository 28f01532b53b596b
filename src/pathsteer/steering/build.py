"""From the config to what the parts of steering take: policy params, probe configs, path links,
a data plane. Pure apart from `make_dataplane` (which only constructs, touching nothing)."""

from __future__ import annotations

from pathsteer.config import Config
from pathsteer.config.model import DEFAULT_STATE_DIR
from pathsteer.config.steering import DataplaneConfig, PathConfig
from pathsteer.routes import PathLink, prefix_key
from pathsteer.policy import (DestinationParams, Hysteresis, PathParams, PolicyKind, PolicyParams, RttSource,
                              RttStatistic, Sla, WeightedParams)
from pathsteer.telemetry import PathProbeConfig, ProbeMethod, Thresholds, WindowConfig


SOURCES = {s.value for s in RttSource}  # destinations[].rtt values naming a source (else a statistic)


def policy_params(config: Config) -> PolicyParams:
    paths = tuple(PathParams(p.name, p.capacity, ipv4=p.gateway is not None, ipv6=p.gateway6 is not None)
                  for p in config.paths)
    dests = []
    # Destinations sharing their settings (learned ones share a template's objects) share the
    # params built from them: built once, not once per prefix.
    shared: dict[tuple, dict] = {}
    for d in config.destinations:
        h, s, w = d.hysteresis, d.sla, d.weighted
        key = (id(h), id(s), id(w), d.rtt, d.policy, tuple(d.paths))
        common = shared.get(key)
        if common is None:
            common = shared[key] = dict(
                policy=PolicyKind(d.policy), paths=tuple(d.paths),
                hysteresis=Hysteresis(min_improvement=h.min_improvement, hold_down_s=h.hold_down,
                                      min_improvement_abs_s=h.min_improvement_abs),
                sla=Sla(max_rtt_s=s.max_rtt, max_loss_pct=s.max_loss, max_jitter_s=s.max_jitter,
                        max_upstream_time_s=s.max_upstream_time, upstream_hold_s=s.upstream_hold),
                weighted=WeightedParams(utilization_ceiling=w.utilization_ceiling, min_free=w.min_free,
                                        latency_scale_s=w.latency_scale, min_shift=w.min_shift,
                                        max_step=w.max_step_value),
                rtt_statistic=RttStatistic.ROBUST if d.rtt in SOURCES else RttStatistic(d.rtt),
                rtt_source=RttSource(d.rtt) if d.rtt in SOURCES else RttSource.ACTIVE)
        dests.append(DestinationParams(prefix=prefix_key(d.prefix), **common))
    grace = config.decision.startup_grace if config.decision else 5.0
    min_samples = config.decision.min_samples if config.decision else 5
    return PolicyParams(paths, tuple(dests), startup_grace_s=grace, min_samples=min_samples)


def probe_config(p: PathConfig) -> PathProbeConfig:
    pr = p.probe
    return PathProbeConfig(
        name=p.name, interface=p.interface, targets=tuple(str(t) for t in pr.targets),
        gateway=str(p.probe_gateway), method=ProbeMethod(pr.method), port=pr.port,
        interval_s=pr.interval, timeout_s=pr.timeout_s, adaptive_timeout=pr.adaptive_timeout, quorum=pr.quorum,
        window=WindowConfig(count=pr.window, seconds=pr.window_seconds),
        thresholds=Thresholds(target_down_after_lost=pr.down_after, target_up_after_answered=pr.up_after,
                              degraded_loss_pct=pr.degraded_loss, recover_loss_pct=pr.recover_loss, hold_s=pr.hold))


def probe_configs(config: Config) -> list[PathProbeConfig]:
    return [probe_config(p) for p in config.paths]


def path_links(config: Config, previous: list[PathLink] | None = None) -> list[PathLink]:
    """Ids 1..N in config order (nexthop ids, BPF path slots). On a reload (``previous``) a
    path keeps its id and a new one takes the lowest free id, so what is installed keeps
    meaning the same paths."""
    if not previous:
        return [PathLink(p.name, i, p.interface, p.gateway, p.gateway6) for i, p in enumerate(config.paths, 1)]
    old = {link.name: link.id for link in previous}
    used = {old[p.name] for p in config.paths if p.name in old}
    free = (i for i in range(1, len(config.paths) + len(old) + 2) if i not in used)
    return [PathLink(p.name, old[p.name] if p.name in old else next(free), p.interface, p.gateway, p.gateway6)
            for p in config.paths]


def state_dir(config) -> str:
    """The daemon's state dir (``history.state_dir``): a `SteeringSection` carries it, a whole
    `Config` has it in its history section."""
    section = getattr(config, "state_dir", None)
    if section is not None:
        return section
    history = getattr(config, "history", None)
    return history.state_dir if history is not None else DEFAULT_STATE_DIR


def dataplane_config(config: Config) -> DataplaneConfig:
    return config.dataplane if config.dataplane is not None else DataplaneConfig()


def make_dataplane(config: Config, links: list[PathLink] | None = None):
    """The configured data plane, constructed (nothing installed yet)."""
    dp = dataplane_config(config)
    links = links if links is not None else path_links(config)
    if dp.mode == "bpf":
        from pathsteer.dataplane.bpf_steer import BpfSteerDataPlane
        return BpfSteerDataPlane(links, list(dp.ingress), dp.stale_after)
    from pathsteer.dataplane.fib import FibDataPlane
    from pathsteer.dataplane.fib_plan import GroupParams
    return FibDataPlane(links, dp.table, dp.rule_priority, group=GroupParams(buckets=dp.buckets))
