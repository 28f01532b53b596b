"""The decision as the daemon shows it: JSON-ready dicts for ``status``, ``explain`` and
``events``, one structured log line per change, and the longest-prefix match for ``explain``.

Times in a `Decision` are on the monotonic clock; pass ``wall_offset`` (wall − monotonic, taken
once) to print wall-clock seconds instead. Figures are in ms and percent, as people read them.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable

from pathsteer.dataplane.routes import Address, NextHop
from pathsteer.policy.candidates import Candidate
from pathsteer.policy.state import Decision, Event, RouteStatus


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 3)


def nexthops_json(nexthops: Iterable[NextHop]) -> list[dict]:
    hops = list(nexthops)
    total = sum(nh.weight for nh in hops) or 1
    return [{"path": nh.path, "weight": nh.weight, "share": round(nh.weight / total, 4)} for nh in hops]


def candidate_json(c: Candidate) -> dict:
    return {
        "path": c.path, "state": c.state.value, "eligible": c.eligible, "eligibility": c.eligibility.value,
        "why_not": c.why_not, "rtt_ms": _ms(c.rtt_s), "loss_pct": c.loss_pct, "jitter_ms": _ms(c.jitter_s),
        "utilization": None if c.utilization is None else round(c.utilization, 4), "capacity_bps": c.capacity_bps,
    }


def route_json(r: RouteStatus, wall_offset: float = 0.0) -> dict:
    return {
        "prefix": str(r.prefix), "policy": r.policy.value, "nexthops": nexthops_json(r.nexthops),
        "since": r.since + wall_offset, "kind": r.kind.value, "reason": r.reason, "pending": r.pending,
        "candidates": [candidate_json(c) for c in r.candidates],
    }


def event_json(e: Event, wall_offset: float = 0.0) -> dict:
    return {
        "at": e.at + wall_offset, "prefix": str(e.prefix), "policy": e.policy.value,
        "from": nexthops_json(e.before), "to": nexthops_json(e.after), "kind": e.kind.value, "reason": e.reason,
    }


def _hops_text(nexthops: Iterable[NextHop]) -> str:
    hops = list(nexthops)
    if len(hops) == 1:
        return hops[0].path
    return ",".join(f"{nh.path}:{nh.weight}" for nh in hops) or "-"


def log_line(e: Event) -> str:
    """``policy.change prefix=198.51.100.0/24 policy=lowest-latency kind=left from=p1 to=p2 reason="…"``
    (the reason JSON-quoted; weighted next hops as ``p1:50,p2:25``; ``-`` for none)."""
    return (f"policy.change prefix={e.prefix} policy={e.policy.value} kind={e.kind.value} "
            f"from={_hops_text(e.before)} to={_hops_text(e.after)} reason={json.dumps(e.reason, ensure_ascii=False)}")


def match(decision: Decision, address: str | Address) -> RouteStatus | None:
    """The route ``address`` follows: the longest configured prefix holding it (None: none does,
    the kernel's own routing carries it)."""
    addr = ipaddress.ip_address(address) if isinstance(address, str) else address
    best: RouteStatus | None = None
    for r in decision.routes:
        if r.prefix.version == addr.version and addr in r.prefix:
            if best is None or r.prefix.prefixlen > best.prefix.prefixlen:
                best = r
    return best
