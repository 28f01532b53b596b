"""Steering policies: which path(s) carry each destination prefix, and why. Pure.

::

    TelemetrySnapshot ─┐
    per-path load ─────┤
    upstream times ────┤  (gateways' L7 response time per prefix and path: policy.upstream)
    PolicyParams ──────┼─► decide(now, …, previous: PolicyState) ─► Decision
    PolicyState ───────┘        │                                    ├─ desired: Desired ─► data plane (fib | bpf)
                                │ per prefix:                        ├─ state: PolicyState (feed it back next call)
                                │  candidates.evaluate               ├─ routes: RouteStatus (status / explain)
                                │  lowest_latency | weighted | failover └─ events: Event (events / log)

The daemon calls `decide` on every telemetry snapshot, applies ``decision.desired`` and keeps
``decision.state`` for the next call; on reload it passes the new `PolicyParams` with the old
state (a prefix whose config is unchanged keeps its state); after a restart it seeds the state
with `PolicyState.adopt` from what the data plane found installed.
"""

from pathsteer.policy.candidates import Candidate, Eligibility, LoadFigures, path_rtt
from pathsteer.policy.decide import decide
from pathsteer.policy.params import (DestinationParams, Hysteresis, PathParams, PolicyKind, PolicyParams,
                                     RttSource, RttStatistic, Sla, WeightedParams)
from pathsteer.policy.state import ChangeKind, Decision, Event, PolicyState, PrefixState, RouteStatus
from pathsteer.policy.upstream import UpstreamFigure, UpstreamTime

__all__ = [
    "Candidate", "ChangeKind", "Decision", "DestinationParams", "Eligibility", "Event", "Hysteresis",
    "LoadFigures", "PathParams", "PolicyKind", "PolicyParams", "PolicyState", "PrefixState", "RouteStatus",
    "RttSource", "RttStatistic", "Sla", "UpstreamFigure", "UpstreamTime", "WeightedParams", "decide", "path_rtt",
]
