"""Path telemetry: what each path's probes saw, as numbers and a state the decision logic reads.

::

    probe/ (imperative shell)              telemetry/ (pure core, explicit ``now``)
    sockets pinned to a path ─ events ──►  TargetTracker: answer / late / duplicate / foreign,
      sent(seq), reply(seq, t), expire(t)     RTT EWMA, window percentiles, RFC 3550 jitter, loss
                                           PathTracker: quorum k of n, up/degraded/down with
                                              hysteresis and hold time
                                           ──► TelemetrySnapshot (frozen, timestamped)

Metrics (what they mean):
  rtt.ewma_s    exponentially weighted RTT, gain 1/8 (RFC 6298 §2)
  rtt.{min,avg,p50,p95,p99,max}_s   over the sliding window (nearest-rank percentiles)
  jitter_s      RFC 3550 §6.4.1 interarrival jitter of consecutive RTTs: J += (|D| - J)/16
  loss_pct      lost / resolved probes in the window (a probe is lost when its timeout passes;
                with the adaptive timeout a late answer turns it back into an answer)
  since         when the current state was entered
"""

from pathsteer.telemetry.config import (
    MIN_INTERVAL_S,
    AdaptiveTimeout,
    PathProbeConfig,
    ProbeMethod,
    Thresholds,
    WindowConfig,
)
from pathsteer.telemetry.path import PathTracker, snapshot_of
from pathsteer.telemetry.snapshot import (
    Counters,
    PathSnapshot,
    PathState,
    RttStats,
    TargetSnapshot,
    TargetState,
    TelemetrySnapshot,
)
from pathsteer.telemetry.target import ReplyKind, TargetTracker

__all__ = [
    "MIN_INTERVAL_S",
    "AdaptiveTimeout",
    "Counters",
    "PathProbeConfig",
    "PathSnapshot",
    "PathState",
    "PathTracker",
    "ProbeMethod",
    "ReplyKind",
    "RttStats",
    "TargetSnapshot",
    "TargetState",
    "TargetTracker",
    "TelemetrySnapshot",
    "Thresholds",
    "WindowConfig",
    "snapshot_of",
]
