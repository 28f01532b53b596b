"""``pathsteer status``, ``pathsteer explain ADDRESS``, ``pathsteer events``: the running
daemon's steering, over the control socket."""

from __future__ import annotations

import argparse
import json
import time

from pathsteer.cli.base import add_command, add_socket_option


def _socket(p: argparse.ArgumentParser) -> None:
    add_socket_option(p)
    p.add_argument("--json", action="store_true", help="print the daemon's answer as JSON")


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "status", handler=cmd_status,
                    help="paths (state, rtt, loss, jitter, utilization) and each route's path(s) and reason",
                    examples=["pathsteer status",
                              "pathsteer status --json | jq '.routes[] | {prefix, via, reason}'",
                              "pathsteer status --socket /run/pathsteer/lab.sock"])
    _socket(p)
    p = add_command(sub, "explain", handler=cmd_explain,
                    help="which destination prefix carries ADDRESS, over which path(s), and why (with figures)",
                    examples=["pathsteer explain 198.51.100.10",
                              "pathsteer explain 2001:db8:100::10 --json"])
    p.add_argument("address", metavar="ADDRESS", help="an IPv4 or IPv6 address")
    _socket(p)
    p = add_command(sub, "events", handler=cmd_events, help="the decision history: every change with its reason",
                    examples=["pathsteer events", "pathsteer events --limit 10",
                              "pathsteer events --prefix 198.51.100.0/24 --json"])
    p.add_argument("--limit", type=int, default=50, metavar="N", help="the last N events (default 50)")
    p.add_argument("--prefix", metavar="CIDR", help="only this destination prefix")
    _socket(p)


def _call(args: argparse.Namespace, command: str, params: dict | None = None):
    from pathsteer.control.client import ControlClient
    return ControlClient(args.socket).call(command, params or {})


def _num(v, fmt: str = "{:.1f}", dash: str = "-") -> str:
    return dash if v is None else fmt.format(v)


def _ago(wall: float | None) -> str:
    if wall is None:
        return "-"
    s = max(0.0, time.time() - wall)
    if s < 60:
        return f"{s:.1f}s ago"
    if s < 3600:
        return f"{s / 60:.0f}m ago"
    return f"{s / 3600:.1f}h ago"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _passive_text(p: dict) -> str:
    """'12.31 (250)': real traffic's median RTT over the last second and its sample count."""
    passive = p.get("passive")
    if not passive:
        return "-"
    return f"{_num(passive.get('rtt_p50_ms'), '{:.2f}')} ({passive.get('samples', 0)})"


def path_rows(status: dict) -> list[list[str]]:
    passive = any(p.get("passive") for p in status["paths"])
    return [[p["name"], p["state"], _num(p.get("rtt_ms"), "{:.2f}"), _num(p.get("loss_pct")),
             _num(p.get("jitter_ms"), "{:.2f}"),
             _num(None if p.get("utilization") is None else p["utilization"] * 100, "{:.0f}%")]
            + ([_passive_text(p)] if passive else [])
            for p in status["paths"]]


PATH_HEADER = ["PATH", "STATE", "RTT ms", "LOSS %", "JITTER ms", "UTIL"]
PASSIVE_HEADER = "PASSIVE ms (n)"  # a column of its own when a path is measured passively
ROUTE_HEADER = ["PREFIX", "POLICY", "VIA", "SINCE", "REASON"]


def via_text(r: dict) -> str:
    if len(r["nexthops"]) == 1:
        return r["nexthops"][0]["path"]
    return " ".join(f"{h['path']}({h['share'] * 100:.0f}%)" for h in r["nexthops"])


def route_rows(status: dict, reason_width: int = 90) -> list[list[str]]:
    out = []
    for r in status["routes"]:
        reason = r["reason"] if len(r["reason"]) <= reason_width else r["reason"][:reason_width - 3] + "..."
        out.append([r["prefix"], r["policy"], via_text(r), _ago(r.get("since")), reason])
    return out


def render_status(status: dict) -> str:
    dp = status.get("dataplane", {})
    head = f"data plane: {dp.get('mode', '?')}"
    if dp.get("mode") == "fib":
        head += f" (table {dp.get('table')})"
    elif dp.get("mode") == "bpf":
        head += f" (ingress {', '.join(dp.get('ingress', []))}, stale_after {dp.get('stale_after_s')} s)"
    header = PATH_HEADER + ([PASSIVE_HEADER] if any(p.get("passive") for p in status["paths"]) else [])
    return "\n".join([head, "", table(path_rows(status), header), "",
                      table(route_rows(status), ROUTE_HEADER)])


def cmd_status(args: argparse.Namespace) -> int:
    status = _call(args, "steer.status")
    print(json.dumps(status, indent=2) if args.json else render_status(status))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    out = _call(args, "steer.explain", {"address": args.address})
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(render_explain(out))
    return 0


def render_explain(out: dict) -> str:
    if not out.get("steered"):
        return f"{out['address']}: {out['why']}"
    lines = [f"{out['address']} matches {out['prefix']}, {_ago(out.get('since'))} ({out['kind']})", out["why"]]
    return "\n".join(lines)


def cmd_events(args: argparse.Namespace) -> int:
    params = {"limit": args.limit}
    if args.prefix:
        params["prefix"] = args.prefix
    out = _call(args, "steer.events", params)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    rows = [[time.strftime("%H:%M:%S", time.localtime(e["at"])) + f".{int(e['at'] * 1000) % 1000:03d}",
             e["prefix"], e["from"], e["to"], e["kind"], e["reason"]] for e in out["events"]]
    print(table(rows, ["TIME", "PREFIX", "FROM", "TO", "KIND", "REASON"]) if rows else "no changes yet")
    return 0
