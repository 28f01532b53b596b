"""A steering config for a lab (`pathsteer_lab.Topology`): used by the demo, the lab tests and
the benchmarks. Returns the YAML text's data (a dict) so callers can change any field."""

from __future__ import annotations

from typing import Any


def lab_config(t, *, mode: str = "fib", socket: str, interval: str = "20ms", timeout: str | None = None,
               policy: str = "lowest-latency", hold_down: str = "1s", min_improvement: str = "10%",
               table: int | None = 200, stale_after: str = "10s", paths: list[str] | None = None,
               prefixes: list[str] | None = None, capacities: dict[str, str] | None = None,
               targets: tuple[str, ...] = ("198.51.100.9", "203.0.113.9"), hold: str | None = "0.2s",
               sla: dict | None = None, extra_prefixes: list[str] | None = None,
               timeouts: dict[str, str] | None = None, decision: dict | None = None,
               heartbeat: str | None = None) -> dict[str, Any]:
    names = paths or [p.name for p in t.paths]
    probe = {"targets": list(targets), "method": "icmp", "interval": interval}
    if hold is not None:
        probe["hold"] = hold
    if timeout is not None:  # None: the adaptive default
        probe["timeout"] = timeout
    cfg_paths = []
    for p in t.paths:
        if p.name not in names:
            continue
        entry = {"name": p.name, "interface": p.router_interface, "gateway": p.gateway, "gateway6": p.gateway6,
                 "probe": dict(probe)}
        if timeouts and p.name in timeouts:
            entry["probe"]["timeout"] = timeouts[p.name]
        if capacities and p.name in capacities:
            entry["capacity"] = capacities[p.name]
        cfg_paths.append(entry)
    dataplane: dict[str, Any] = {"mode": mode, "stale_after": stale_after}
    if heartbeat is not None:
        dataplane["heartbeat_interval"] = heartbeat
    if mode == "bpf":
        dataplane["ingress"] = [t.ingress_interface]
    elif table is not None:
        dataplane["table"] = table
    dests = []
    for prefix in (prefixes or [t.prefixes[0], t.prefixes6[0]]) + (extra_prefixes or []):
        d = {"prefix": prefix, "policy": policy, "paths": list(names),
             "hysteresis": {"min_improvement": min_improvement, "hold_down": hold_down}}
        if sla:
            d["sla"] = sla
        dests.append(d)
    out = {"control": {"socket": socket}, "dataplane": dataplane, "paths": cfg_paths, "destinations": dests}
    if decision:
        out["decision"] = decision
    return out
