"""Builders for the policy tests (no tests here): telemetry snapshots, params, a driver.

Imported by the test_policy_* modules as ``test_policy_fixtures`` (pytest puts tests/unit on
sys.path: tests/unit has no __init__.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from pathsteer.policy import (Decision, DestinationParams, Hysteresis, PathParams, PolicyKind, PolicyParams,
                              PolicyState, Sla, WeightedParams, decide)
from pathsteer.telemetry.snapshot import PathSnapshot, PathState, RttStats, TargetSnapshot, TargetState, \
    TelemetrySnapshot
from pathsteer.telemetry.snapshot import Counters as ProbeCounters

PREFIX = ipaddress.ip_network("198.51.100.0/24")
PREFIX6 = ipaddress.ip_network("2001:db8:100::/48")


def target(address: str, up: bool = True) -> TargetSnapshot:
    return TargetSnapshot(address=address, state=TargetState.UP if up else TargetState.DOWN, since=0.0,
                          rtt=RttStats(), jitter_s=None, loss_pct=0.0, window_probes=0, consecutive_lost=0,
                          last_answer_at=None, counters=ProbeCounters())


def path(name: str, rtt_ms: float | None = 20.0, *, state: PathState = PathState.UP, loss: float = 0.0,
         jitter_ms: float = 0.5, failing: int = 0, targets: int = 3, p95_ms: float | None = None,
         samples: int = 100, base_ms: float | None = None) -> PathSnapshot:
    """A path whose EWMA and p50 are ``rtt_ms`` (p95 ``p95_ms`` or 1.2 × rtt), from ``samples``
    answered probes in its window; its base RTT (the lowest over minutes) ``base_ms``, or rtt."""
    rtt = RttStats() if rtt_ms is None else RttStats(
        ewma_s=rtt_ms / 1e3, min_s=rtt_ms / 1e3, avg_s=rtt_ms / 1e3, p50_s=rtt_ms / 1e3,
        p95_s=(p95_ms if p95_ms is not None else rtt_ms * 1.2) / 1e3, p99_s=rtt_ms * 1.3 / 1e3,
        max_s=rtt_ms * 1.5 / 1e3, samples=samples)
    if state is PathState.UNKNOWN:
        return PathSnapshot(name, state, 0.0, RttStats(), None, None, 0, 2,
                            tuple(target(f"192.0.2.{i}") for i in range(targets)))
    return PathSnapshot(name=name, state=state, since=0.0, rtt=rtt, jitter_s=jitter_ms / 1e3, loss_pct=loss,
                        failing=failing, quorum=2,
                        targets=tuple(target(f"192.0.2.{i}", i >= failing) for i in range(targets)),
                        base_rtt_s=None if rtt_ms is None else (base_ms if base_ms is not None else rtt_ms) / 1e3)


def snap(now: float, *paths: PathSnapshot) -> TelemetrySnapshot:
    return TelemetrySnapshot(taken_at=now, paths=tuple(paths))


def params(policy: PolicyKind = PolicyKind.LOWEST_LATENCY, paths: tuple[str, ...] = ("p1", "p2"), *,
           capacities: Mapping[str, int] | None = None, min_improvement: float = 0.10, hold_down_s: float = 1.0,
           sla: Sla = Sla(), weighted: WeightedParams = WeightedParams(), prefix=PREFIX,
           min_samples: int = 5, **dest_kw) -> PolicyParams:
    caps = capacities or {}
    return PolicyParams(
        paths=tuple(PathParams(n, caps.get(n)) for n in paths),
        destinations=(DestinationParams(prefix, policy, paths, Hysteresis(min_improvement, hold_down_s), sla,
                                        weighted, **dest_kw),), min_samples=min_samples)


@dataclass(frozen=True)
class Load:
    in_bps: float = 0.0
    out_bps: float = 0.0
    peak_bps: float | None = None
    recent_peak_bps: float | None = None


class Driver:
    """Calls `decide` like the daemon does: feeds the state back, keeps every decision."""

    def __init__(self, p: PolicyParams, state: PolicyState | None = None) -> None:
        self.params = p
        self.state = state or PolicyState()
        self.decisions: list[Decision] = []

    def __call__(self, now: float, *paths: PathSnapshot, load: Mapping[str, Load] | None = None,
                 params: PolicyParams | None = None) -> Decision:
        if params is not None:
            self.params = params
        d = decide(now, snap(now, *paths), load, self.params, self.state)
        self.state = d.state
        self.decisions.append(d)
        return d

    @property
    def events(self):
        return [e for d in self.decisions for e in d.events]

    def route(self, prefix=PREFIX):
        return self.decisions[-1].route(prefix)

    def paths(self, prefix=PREFIX) -> tuple[str, ...]:
        return tuple(nh.path for nh in self.decisions[-1].desired.routes[prefix].nexthops)
