"""Steering: keep each destination prefix on the best path, measured live.

::

    config ──► build ──► PolicyParams, PathProbeConfig per path, PathLink per path, data plane
                                  │
    ProbeEngine (probe/) ──snapshot──┐
    LoadMeter (TC counters) ─load───┼──► policy.decide(now, …, state) ──► Decision
                                    │        ▲ state                     │ desired      │ events
                                    │        └───────────────────────────┘              ▼
                                    │                      data plane (fib | bpf)   steer.change log lines,
                                    │                      apply / reconcile ≤1 s /  steer.events
                                    │                      heartbeat / adopt / stop
    control socket: steer.status, steer.explain, steer.events (views)

Modules: `build` (config → the parts' inputs), `preflight` (checks against the running
system), `service` (the daemon component and its loops), `views` (what the commands return),
`cli` (``pathsteer status | explain | events``). User documentation: docs/cli.md, docs/dataplanes.md, docs/policies.md.
"""

from pathsteer.steering.service import SteeringService

__all__ = ["SteeringService"]
