"""What ``steer.status``, ``steer.explain`` and ``steer.events`` return, as JSON-able dicts. Pure.

A drained path shows ``state`` "drained" (its probes' verdict stays in ``probe_state``) and
its drain in ``drained``: {since, until, reason}, wall-clock (None: not drained).

Upstream times (the gateways' L7 response time, `pathsteer.policy.upstream`): a path's view
has ``upstream_time_ms``, per destination prefix it carried, ``{p50, p95, requests, age_s,
addresses}`` (times in ms; only the figures still in force); an explained candidate has the
same for its destination (or None) and ``upstream_breach`` (its p95 is over
``sla.max_upstream_time``: the path is not eligible for it).

Times: the policy and telemetry use the monotonic clock; views show wall-clock times
(``since``, seconds since the epoch) and ages (``age_s``), computed from one ``(mono, wall)`` pair.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from collections.abc import Mapping

from pathsteer.routes import NextHop, Prefix
from pathsteer.policy import Candidate, Decision, Event, RouteStatus
from pathsteer.policy.candidates import path_rtt
from pathsteer.policy.params import RttStatistic
from pathsteer.policy.upstream import UpstreamFigure, upstream_text
from pathsteer.telemetry import PathSnapshot, TelemetrySnapshot


@dataclass(frozen=True)
class Clock:
    mono: float
    wall: float

    def wall_of(self, mono: float) -> float:
        return self.wall - (self.mono - mono)

    def age(self, mono: float) -> float:
        return max(0.0, self.mono - mono)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 3)


def hops_text(hops: tuple[NextHop, ...]) -> str:
    """``p1`` for one path, ``p1:2,p2:1`` for weighted ones, ``-`` for none."""
    if not hops:
        return "-"
    if len(hops) == 1:
        return hops[0].path
    return ",".join(f"{h.path}:{h.weight}" for h in hops)


def nexthops(hops: tuple[NextHop, ...]) -> list[dict]:
    total = sum(h.weight for h in hops) or 1
    return [{"path": h.path, "weight": h.weight, "share": round(h.weight / total, 4)} for h in hops]


def path_view(p: PathSnapshot, clock: Clock, *, interface: str, gateway: str | None,
              capacity_bps: int | None, utilization: float | None, load: dict | None) -> dict:
    return {
        "name": p.name, "state": p.state.value, "since": clock.wall_of(p.since), "interface": interface,
        "gateway": gateway, "rtt_ms": _ms(path_rtt(p.rtt, RttStatistic.ROBUST)), "rtt_p50_ms": _ms(p.rtt.p50_s),
        "rtt_p95_ms": _ms(p.rtt.p95_s), "rtt_min_ms": _ms(p.rtt.min_s), "rtt_base_ms": _ms(p.base_rtt_s),
        "rtt_ewma_ms": _ms(p.rtt.ewma_s), "rtt_samples": p.rtt.samples,
        "target_states": [target_view(t, clock) for t in p.targets],
        "loss_pct": None if p.loss_pct is None else round(p.loss_pct, 3), "jitter_ms": _ms(p.jitter_s),
        "failing_targets": p.failing, "targets": len(p.targets), "capacity_bps": capacity_bps,
        "utilization": None if utilization is None else round(utilization, 4), "load": load,
        "passive": passive_view(p.passive) if p.passive is not None else None,
    }


def target_view(t, clock: Clock) -> dict:
    """One probe target of a path: its own state and figures (a path is down on a quorum of them)."""
    return {"address": t.address, "state": t.state.value, "since": clock.wall_of(t.since),
            "rtt_ms": _ms(path_rtt(t.rtt, RttStatistic.ROBUST)), "rtt_p50_ms": _ms(t.rtt.p50_s),
            "jitter_ms": _ms(t.jitter_s), "loss_pct": None if t.loss_pct is None else round(t.loss_pct, 3),
            "sent": t.counters.sent, "lost": t.counters.lost,
            "last_answer_age_s": None if t.last_answer_at is None else round(clock.age(t.last_answer_at), 3)}


def passive_view(p) -> dict:
    """The passive RTT of real traffic over the last ``window_s`` (separate from the probes')."""
    return {"window_s": round(p.window_s, 3), "samples": p.samples, "rtt_p50_ms": _ms(p.p50_s),
            "rtt_mean_ms": _ms(p.mean_s), "rtt_min_ms": _ms(p.min_s), "rtt_p95_ms": _ms(p.p95_s),
            "total_samples": p.total_samples, "age_s": round(p.age_s, 3)}


def upstream_view(f: UpstreamFigure, clock: Clock) -> dict:
    """An upstream figure: its response times in ms, the requests timed, how old it is, and how
    many upstream addresses it combines (the slowest speaks)."""
    return {"p50": _ms(f.p50_s), "p95": _ms(f.p95_s), "requests": f.requests, "age_s": round(clock.age(f.at), 3),
            "addresses": f.addresses}


def candidate_view(c: Candidate, clock: Clock | None = None) -> dict:
    return {"path": c.path, "order": c.order, "state": c.state.value, "eligibility": c.eligibility.value,
            "why_not": c.why_not, "rtt_ms": _ms(c.rtt_s), "loss_pct": c.loss_pct, "jitter_ms": _ms(c.jitter_s),
            "utilization": c.utilization, "capacity_bps": c.capacity_bps, "samples": c.samples,
            "enough_samples": c.enough_samples, "rtt_source": c.rtt_source,
            "upstream_time_ms": upstream_view(c.upstream, clock) if c.upstream is not None and clock else None,
            "upstream_breach": c.upstream_breach}


def route_view(r: RouteStatus, clock: Clock, *, candidates: bool = False) -> dict:
    out = {"prefix": str(r.prefix), "policy": r.policy.value, "nexthops": nexthops(r.nexthops),
           "via": hops_text(r.nexthops), "since": clock.wall_of(r.since), "age_s": round(clock.age(r.since), 3),
           "kind": r.kind.value, "reason": r.reason, "pending": r.pending}
    if candidates:
        out["candidates"] = [candidate_view(c, clock) for c in r.candidates]
    return out


def event_view(e: Event, clock: Clock) -> dict:
    return {"at": clock.wall_of(e.at), "prefix": str(e.prefix), "policy": e.policy.value,
            "from": hops_text(e.before), "to": hops_text(e.after), "kind": e.kind.value, "reason": e.reason}


def drained_view(view: dict, drain: dict | None) -> dict:
    """A path's view with its drain: ``drained`` ({since, until, reason} or None), the probes'
    own verdict in ``probe_state``, and ``state`` "drained" while it is drained."""
    view["probe_state"] = view["state"]
    view["drained"] = drain
    if drain is not None:
        view["state"] = "drained"
    return view


def status(decision: Decision | None, telemetry: TelemetrySnapshot | None, clock: Clock, paths: dict[str, dict],
           dataplane: dict, load: dict, drains: dict[str, dict] | None = None,
           upstream: Mapping[Prefix, Mapping[str, UpstreamFigure]] | None = None) -> dict:
    """``paths``: per name, its interface, gateway and capacity from the config; ``drains``: per
    drained path, its drain's view (`pathsteer.steering.drains.Drain.view`); ``upstream``: per
    prefix and path, the upstream figures in force."""
    drains = drains or {}
    by_path: dict[str, dict[str, dict]] = {}
    for prefix, per_path in (upstream or {}).items():
        for name, figure in per_path.items():
            by_path.setdefault(name, {})[str(prefix)] = upstream_view(figure, clock)
    pviews = []
    for name, info in paths.items():
        snap = None
        if telemetry is not None:
            snap = next((p for p in telemetry.paths if p.name == name), None)
        lf = load.get(name)
        util = None
        load_d = None
        if lf is not None:
            load_d = {"in_bps": round(lf.in_bps), "out_bps": round(lf.out_bps)}
            if info.get("capacity_bps"):
                util = max(lf.in_bps, lf.out_bps) / info["capacity_bps"]
        if snap is None:
            view = {"name": name, "state": "unknown", "interface": info["interface"],
                    "gateway": info.get("gateway"), "rtt_ms": None, "loss_pct": None, "jitter_ms": None,
                    "utilization": util, "capacity_bps": info.get("capacity_bps"), "load": load_d}
        else:
            view = path_view(snap, clock, interface=info["interface"], gateway=info.get("gateway"),
                             capacity_bps=info.get("capacity_bps"), utilization=util, load=load_d)
        view["upstream_time_ms"] = by_path.get(name, {})
        pviews.append(drained_view(view, drains.get(name)))
    routes = [route_view(r, clock) for r in decision.routes] if decision is not None else []
    return {"paths": pviews, "routes": routes, "dataplane": dataplane}


def longest_match(decision: Decision, address: str) -> RouteStatus | None:
    addr = ipaddress.ip_address(address)
    best = None
    for r in decision.routes:
        if r.prefix.version == addr.version and addr in r.prefix:
            if best is None or r.prefix.prefixlen > best.prefix.prefixlen:
                best = r
    return best


def explain(decision: Decision | None, address: str, clock: Clock) -> dict:
    r = longest_match(decision, address) if decision is not None else None
    if r is None:
        return {"address": address, "prefix": None, "steered": False,
                "why": "no configured destination covers this address: the kernel's own routing carries it"}
    out = route_view(r, clock, candidates=True)
    out.update({"address": address, "steered": True, "why": explain_text(r)})
    return out


def explain_text(r: RouteStatus) -> str:
    via = hops_text(r.nexthops)
    lines = [f"{r.prefix} ({r.policy.value}) goes via {via}: {r.reason}"]
    for c in r.candidates:
        mark = "*" if c.path in {h.path for h in r.nexthops} else " "
        if c.why_not:
            verdict = f"; {c.why_not}"
        elif c.eligible and not c.enough_samples:
            verdict = f"; eligible, {c.samples_text()}: cannot win on latency yet"
        else:
            verdict = "; eligible"
        upstream = ""
        if c.upstream is not None:
            p50 = "n/a" if c.upstream.p50_s is None else upstream_text(c.upstream.p50_s)
            upstream = (f" (upstream p50 {p50}, {c.upstream.requests} requests"
                        f"{'' if c.upstream.addresses == 1 else f' to {c.upstream.addresses} upstreams'})")
        lines.append(f" {mark} {c.path}: {c.state.value}, {c.figures()}{upstream}{verdict}")
    if r.pending:
        lines.append(f"pending: {r.pending}")
    return "\n".join(lines)
