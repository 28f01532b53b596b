"""``pathsteer gateways``: each gateway's state through the daemon's control socket, and
``pathsteer gateways apipark-setup``: the access-log output APIPark/Apinto must send pathsteer."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys

from pathsteer.cli.base import add_command, add_socket_option
from pathsteer.control.client import ControlClient
from pathsteer.errors import PathsteerError, UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "gateways", handler=cmd_status,
        help="the API gateways: connection, records read, parse errors, upstreams and their paths, "
             "servers' weights, last actions",
        examples=["pathsteer gateways", "pathsteer gateways --json | jq '.gateways[].servers'",
                  "pathsteer gateways apipark-setup --url http://192.0.2.1:9181/apinto",
                  "pathsteer gateways apipark-setup --url http://192.0.2.1:9181/apinto --admin http://127.0.0.1:9400"])
    p.set_defaults(help_parser=p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_socket_option(p)
    verbs = p.add_subparsers(dest="gateways_command", metavar="VERB", parser_class=type(p))
    s = add_command(
        verbs, "apipark-setup", handler=cmd_apipark_setup,
        help="print (or, with --admin, register in Apinto) the access-log output that sends pathsteer "
             "one JSON record per request",
        examples=["pathsteer gateways apipark-setup --url http://192.0.2.1:9181/apinto",
                  "pathsteer gateways apipark-setup --url http://192.0.2.1:9181/apinto --admin http://127.0.0.1:9400"])
    s.add_argument("--url", required=True, metavar="URL",
                   help="where pathsteer receives the records: the http: address of a 'gateways[].logs' entry")
    s.add_argument("--name", default="pathsteer", metavar="NAME", help="the output's name (default pathsteer)")
    s.add_argument("--admin", metavar="URL", help="Apinto's admin API (port 9400): register the output there")


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%H:%M:%S")


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def cmd_status(args: argparse.Namespace) -> int:
    result = ControlClient(args.socket).call("gateways.status")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if not result["gateways"]:
        print("no gateways configured")
    for g in result["gateways"]:
        conn = {True: "connected", False: "UNREACHABLE", None: "-"}[g["connected"]]
        print(f"{g['name']} ({g['kind']}): {conn}{' via ' + g['via'] if g['via'] else ''}; "
              f"{g['lines_per_s']:g} lines/s, {g['records']} records, {g['parse_errors']} parse errors")
        for r in g["logs"]:
            err = f" (last error: {r['last_error']})" if r["last_error"] else ""
            print(f"  logs {r['listen']}: {r['lines']} lines{err}")
        if g["upstreams"]:
            rows = [("UPSTREAM", "REQ/S", "P50", "P95", "PREFIX", "PATHS")]
            for u in g["upstreams"]:
                rows.append((u["upstream"], f"{u['requests_per_s']:g}", _ms(u["upstream_p50_ms"]),
                             _ms(u["upstream_p95_ms"]), u["prefix"] or "-", ",".join(u["paths"]) or "-"))
            _table([tuple("  " + c if i == 0 else c for i, c in enumerate(r)) for r in rows])
        if g["servers"]:
            rows = [("  SERVER", "ADDRESS", "WEIGHT", "FOUND", "HEALTH", "WHY")]
            for s in g["servers"]:
                rows.append((f"  {s['backend']}/{s['server']}", s["address"] or "-", str(s["weight"]),
                             str(s["found_weight"]), s["health"], s["why"]))
            _table(rows)
        if g["errors"]:
            print("  errors: " + ", ".join(f"{k} {v}" for k, v in sorted(g["errors"].items())))
        for a in g["actions"][-5:]:
            print(f"  {_when(a['at'])} {a['action']}: {a['detail']}")
    return 0


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}ms"


def cmd_apipark_setup(args: argparse.Namespace) -> int:
    from pathsteer.gateways.apipark import ApintoClient, access_log_output
    body = access_log_output(args.url, name=args.name)
    if not args.admin:
        print("# POST this to Apinto's admin API (http://GATEWAY:9400/api/output), then add it to the")
        print("# access_log of its router/service; or run again with --admin to register it:")
        json.dump(body, sys.stdout, indent=2)
        print()
        return 0
    if not args.admin.startswith(("http://", "https://")):
        raise UsageError(f"--admin: {args.admin!r} is not an http:// or https:// URL")

    async def register() -> None:
        client = ApintoClient(args.admin)
        await client._call("POST", "/api/output", body)

    try:
        asyncio.run(register())
    except PathsteerError:
        raise
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback
        raise PathsteerError(f"apipark-setup: {args.admin}: {exc}") from None
    print(f"registered output {args.name!r} in {args.admin}: records go to {args.url}")
    return 0
