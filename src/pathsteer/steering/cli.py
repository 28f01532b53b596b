"""``pathsteer status``, ``pathsteer explain ADDRESS``, ``pathsteer events``, ``pathsteer drain
PATH`` / ``pathsteer undrain PATH``: the running daemon's steering, over the control socket.

``events`` reads the daemon's history (``history.events``: every event, kept on disk) when the
daemon has one, else steering's own recent decisions (``steer.events``, filtered here)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from pathsteer.cli.base import add_command, add_socket_option
from pathsteer.errors import UsageError


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
    p.add_argument("--since", metavar="D", help="only events of the last D (examples: 30m, 1h, 2d)")
    p.add_argument("--path", metavar="NAME", help="only events about this path")
    _socket(p)
    p = add_command(sub, "drain", handler=cmd_drain,
                    help="take PATH out for maintenance: traffic leaves it as if it failed, its probes go on, "
                         "it comes back on 'pathsteer undrain' (or when --ttl runs out)",
                    examples=["pathsteer drain p1 --reason 'modem swap'",
                              "pathsteer drain p2 --ttl 30m --reason 'ISP maintenance window'",
                              "pathsteer drain p1 --json"])
    p.add_argument("path", metavar="PATH", help="a configured path's name")
    p.add_argument("--ttl", metavar="D", help="undrain by itself after D (examples: 600, 10m, 2h); "
                                              "default: until 'pathsteer undrain'")
    p.add_argument("--reason", metavar="TEXT", help="why (shown in the reasons, status and the history)")
    _socket(p)
    p = add_command(sub, "undrain", handler=cmd_undrain,
                    help="put a drained PATH back: traffic returns under the policy's rules (hold_down)",
                    examples=["pathsteer undrain p1", "pathsteer undrain p1 --json"])
    p.add_argument("path", metavar="PATH", help="a configured path's name")
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


def _upstream_text(p: dict) -> str:
    """'412 (120)': the gateways' upstream p95 over this path (the highest of the destinations
    it carried) and the requests timed; '-' without figures."""
    figures = [f for f in (p.get("upstream_time_ms") or {}).values() if f.get("p95") is not None]
    if not figures:
        return "-"
    return f"{max(f['p95'] for f in figures):.0f} ({sum(f.get('requests') or 0 for f in figures)})"


def path_rows(status: dict) -> list[list[str]]:
    passive = any(p.get("passive") for p in status["paths"])
    upstream = any(p.get("upstream_time_ms") for p in status["paths"])
    return [[p["name"], p["state"], _num(p.get("rtt_ms"), "{:.2f}"), _num(p.get("loss_pct")),
             _num(p.get("jitter_ms"), "{:.2f}"),
             _num(None if p.get("utilization") is None else p["utilization"] * 100, "{:.0f}%")]
            + ([_passive_text(p)] if passive else []) + ([_upstream_text(p)] if upstream else [])
            for p in status["paths"]]


PATH_HEADER = ["PATH", "STATE", "RTT ms", "LOSS %", "JITTER ms", "UTIL"]
PASSIVE_HEADER = "PASSIVE ms (n)"  # a column of its own when a path is measured passively
UPSTREAM_HEADER = "UPSTREAM p95 ms (n)"  # ... and when the gateways report upstream times over a path
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
    header = PATH_HEADER + ([PASSIVE_HEADER] if any(p.get("passive") for p in status["paths"]) else []) \
        + ([UPSTREAM_HEADER] if any(p.get("upstream_time_ms") for p in status["paths"]) else [])
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


MAX_LIMIT = 1_000_000  # what steer.events takes at most


def _since(text: str | None) -> float | None:
    """--since D → seconds before now (None: no bound); a bad D is a usage error naming it."""
    if text is None:
        return None
    from pathsteer.units import parse_duration
    seconds = parse_duration(text, "--since")
    if seconds <= 0:
        raise UsageError(f"--since: {text!r} must be a duration above 0 (examples: 30m, 1h, 2d)")
    return seconds


def _limit(n: int) -> int:
    if not 0 <= n <= MAX_LIMIT:
        raise UsageError(f"--limit: {n} must be between 0 and {MAX_LIMIT}")
    return n


def hop_paths(text: str | None) -> set[str]:
    """The path names in a ``from``/``to`` text: ``p1``, ``p1:60,p2:40``, ``-``."""
    if not text or text == "-":
        return set()
    return {part.split(":", 1)[0] for part in str(text).split(",")}


def about_path(e: dict, path: str) -> bool:
    """Whether a steering event concerns ``path`` (its ``path`` field, or a next hop before/after)."""
    return e.get("path") == path or path in hop_paths(e.get("from")) | hop_paths(e.get("to"))


def fetch_events(args: argparse.Namespace) -> tuple[list[dict], str]:
    """The events asked for, oldest first, and where they came from: ``history.events`` when
    the daemon lists it in ``help``, else ``steer.events`` (filtered here by --since, --path)."""
    limit = _limit(args.limit)
    since_s = _since(getattr(args, "since", None))
    path = getattr(args, "path", None)
    cutoff = None if since_s is None else time.time() - since_s
    commands = _call(args, "help")
    if isinstance(commands, dict) and "history.events" in commands:
        params: dict = {"limit": limit}
        for key, value in (("since", cutoff), ("prefix", args.prefix), ("path", path)):
            if value is not None:
                params[key] = value
        return list(_call(args, "history.events", params)["events"]), "history.events"
    params = {"limit": MAX_LIMIT if (cutoff is not None or path) else limit}
    if args.prefix:
        params["prefix"] = args.prefix
    evs = list(_call(args, "steer.events", params)["events"])
    if cutoff is not None:
        evs = [e for e in evs if e.get("at", 0) >= cutoff]
    if path:
        evs = [e for e in evs if about_path(e, path)]
    return (evs[-limit:] if limit else []), "steer.events"


CHANGE_FIELDS = ("seq", "at", "name", "prefix", "policy", "from", "to", "kind", "reason")


def _clock_text(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"


def _field_text(v: object) -> str:
    s = str(v)
    return repr(s) if isinstance(v, str) and (not s or any(c.isspace() for c in s)) else s


def render_events(evs: list[dict]) -> str:
    """A table of events: steering changes (prefix, from, to, kind, reason); with an EVENT
    column when some are other events (``steer.drain``, ``path.state``, …), whose own fields
    fill the REASON column as key=value."""
    if not evs:
        return "no changes yet"
    named = any(e.get("name", "steer.change") != "steer.change" for e in evs)
    rows = []
    for e in evs:
        name = e.get("name", "steer.change")
        if name == "steer.change":
            reason = e.get("reason", "")
        else:
            extra = [f"{k}={_field_text(v)}" for k, v in e.items() if k not in CHANGE_FIELDS and v is not None]
            reason = " ".join(extra + ([f"reason={_field_text(e['reason'])}"] if e.get("reason") else []))
        rows.append([_clock_text(e["at"]), *([name] if named else []), e.get("prefix") or "-",
                     e.get("from") or "-", e.get("to") or "-", e.get("kind") or "-", reason])
    return table(rows, ["TIME", *(["EVENT"] if named else []), "PREFIX", "FROM", "TO", "KIND", "REASON"])


def cmd_events(args: argparse.Namespace) -> int:
    evs, source = fetch_events(args)
    if args.json:
        print(json.dumps({"events": evs, "source": source}, indent=2))
        return 0
    print(render_events(evs))
    return 0


def _when(wall: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall)) if wall is not None else "-"


def cmd_drain(args: argparse.Namespace) -> int:
    from pathsteer.steering.drains import clean_reason
    from pathsteer.units import parse_ttl
    ttl = parse_ttl(args.ttl, "--ttl")
    params: dict = {"path": args.path}
    if ttl is not None:
        params["ttl"] = ttl
    reason = clean_reason(args.reason, "--reason")
    if reason is not None:
        params["reason"] = reason
    out = _call(args, "steer.drain", params)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    d = out["drained"]
    until = f"until {_when(d['until'])}" if d.get("until") is not None else f"until 'pathsteer undrain {args.path}'"
    note = f" ({d['reason']})" if d.get("reason") else ""
    print(f"{out['path']} drained{note} {until}: traffic leaves it, its probes go on")
    if out.get("warning"):
        print(f"pathsteer: warning: {out['warning']}", file=sys.stderr)
    return 0


def cmd_undrain(args: argparse.Namespace) -> int:
    out = _call(args, "steer.undrain", {"path": args.path})
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    if not out.get("undrained"):
        print(out.get("note") or f"{args.path} was not drained")
        return 0
    print(f"{out['path']} undrained: traffic comes back under the policy's rules (hold_down)")
    if out.get("note"):
        print(f"pathsteer: warning: {out['note']}", file=sys.stderr)
    return 0
