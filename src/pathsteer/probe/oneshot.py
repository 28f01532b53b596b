"""`pathsteer probe`: one pinned measurement of one target, like ping; and its report.

`report` and `format_text` are pure (snapshot in, dict / text out); `measure` runs the
engine once with ``count`` probes and an unbounded window, so every probe counts.
"""

from __future__ import annotations

import asyncio
import ipaddress
import signal
from dataclasses import dataclass

from pathsteer.probe.engine import ProbeEngine
from pathsteer.telemetry import PathProbeConfig, ProbeMethod, TargetSnapshot, Thresholds, WindowConfig
from pathsteer.units import format_duration

EXIT_ANSWERED = 0
EXIT_NO_ANSWER = 1  # like ping: no reply at all


@dataclass(frozen=True)
class ProbeRequest:
    target: str
    interface: str
    gateway: str | None
    method: ProbeMethod
    port: int
    count: int
    interval_s: float
    timeout_s: float


def config_of(req: ProbeRequest) -> PathProbeConfig:
    return PathProbeConfig(
        name=req.interface,
        interface=req.interface,
        targets=(req.target,),
        gateway=req.gateway,
        method=req.method,
        port=req.port,
        interval_s=req.interval_s,
        timeout_s=req.timeout_s,
        window=WindowConfig(count=req.count, seconds=1e9),
        thresholds=Thresholds(hold_s=0.0),
    )


def measure(req: ProbeRequest) -> TargetSnapshot:
    """Send ``req.count`` probes; returns when each is answered or timed out, or on SIGTERM/SIGINT."""
    engine = ProbeEngine([config_of(req)], own_slots=False)  # may run beside a daemon: never sweep its pins

    async def main() -> TargetSnapshot:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        snap = await engine.run(count=req.count, stop=stop)
        return snap.paths[0].targets[0]

    return asyncio.run(main())


def strict_rp_filter(interface: str) -> bool:
    """True when IPv4 reverse-path filtering is strict on ``interface`` (the kernel uses the
    larger of ``all`` and the interface's value; 1 is strict, RFC 3704 §2.2). Strict mode
    drops replies that arrive on a path the main table does not route the target over."""
    values = []
    for scope in ("all", interface):
        try:
            with open(f"/proc/sys/net/ipv4/conf/{scope}/rp_filter") as f:
                values.append(int(f.read().strip()))
        except (OSError, ValueError):
            pass
    return bool(values) and max(values) == 1


def gateway_neighbour(req: ProbeRequest) -> str | None:
    """The kernel's neighbour state of the gateway on the interface after the run
    (``incomplete``/``failed``: nobody answered ARP or neighbour solicitation), or None."""
    if req.gateway is None:
        return None
    try:
        import socket

        from pathsteer import netlink as nl

        sock = nl.RouteSocket()
        try:
            states = nl.dump_neighbours(sock, socket.if_nametoindex(req.interface))
        finally:
            sock.close()
        return states.get(str(ipaddress.ip_address(req.gateway)))
    except Exception:  # a report, not a measurement: never fail the run over it
        return None


def hint(req: ProbeRequest, r: dict) -> str | None:
    """A line for stderr when nothing was answered and a likely local cause is visible."""
    if r["received"]:
        return None
    if r.get("gateway_neighbour") in ("incomplete", "failed"):
        return (f"hint: gateway {req.gateway} did not answer "
                f"{'neighbour solicitation' if ':' in req.gateway else 'ARP'} on {req.interface}")
    if ":" in req.target or not strict_rp_filter(req.interface):
        return None
    return (
        f"hint: rp_filter is strict (1) on {req.interface}: replies from {req.target} arriving "
        f"there are dropped unless the main table routes {req.target} over {req.interface}; "
        f"loose mode (sysctl net.ipv4.conf.{req.interface}.rp_filter=2) lets them in"
    )


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1e3, 3)


def report(req: ProbeRequest, t: TargetSnapshot) -> dict:
    c = t.counters
    resolved = c.answered + c.lost
    return {
        "target": req.target,
        "interface": req.interface,
        "gateway": req.gateway,
        "method": req.method.value,
        **({"port": req.port} if req.method is ProbeMethod.UDP else {}),
        "sent": c.sent,
        "received": c.answered,
        "lost": c.lost,
        "loss_pct": round(100.0 * c.lost / resolved, 3) if resolved else None,
        "rtt_ms": {
            "min": _ms(t.rtt.min_s),
            "avg": _ms(t.rtt.avg_s),
            "p50": _ms(t.rtt.p50_s),
            "p95": _ms(t.rtt.p95_s),
            "p99": _ms(t.rtt.p99_s),
            "max": _ms(t.rtt.max_s),
            "ewma": _ms(t.rtt.ewma_s),
        },
        "jitter_ms": _ms(t.jitter_s),
        "late": c.late,
        "duplicate": c.duplicate,
        "foreign": c.foreign,
        "errors": c.errors,
        "gateway_neighbour": None,  # filled in by the shell after the run (gateway_neighbour())
    }


def format_text(req: ProbeRequest, r: dict) -> str:
    via = f"{req.interface}" + (f" via {req.gateway}" if req.gateway else "")
    method = req.method.value + (f" port {req.port}" if req.method is ProbeMethod.UDP else "")
    lines = [
        f"--- {req.target} over {via} ({method}), every {format_duration(req.interval_s)}, "
        f"timeout {format_duration(req.timeout_s)} ---",
        f"{r['sent']} sent, {r['received']} received, "
        + (f"{r['loss_pct']:g}% loss" if r["loss_pct"] is not None else "no probe resolved"),
        f"{r['late']} late, {r['duplicate']} duplicate, {r['foreign']} foreign, {r['errors']} errors",
    ]
    rtt = r["rtt_ms"]
    if rtt["min"] is not None:
        lines.append(
            "rtt min/avg/p50/p95/max = "
            + "/".join(f"{rtt[k]:.3f}" for k in ("min", "avg", "p50", "p95", "max"))
            + " ms"
            + (f", jitter {r['jitter_ms']:.3f} ms" if r["jitter_ms"] is not None else "")
        )
    return "\n".join(lines)
