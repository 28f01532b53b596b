"""``pathsteer guard``: block, unblock, list, stats — through the daemon's control socket."""

from __future__ import annotations

import argparse
import datetime
import json

from pathsteer.cli.base import add_command, add_socket_option
from pathsteer.control.client import ControlClient
from pathsteer.errors import UsageError
from pathsteer.guard.rules import parse_cidr
from pathsteer.units import format_duration, parse_ttl


_socket = add_socket_option


def register(sub: argparse._SubParsersAction) -> None:
    guard = add_command(
        sub, "guard", help="the XDP guard: block and unblock CIDRs, list blocks, show counters",
        examples=["pathsteer guard block 192.0.2.0/24 --ttl 10m --reason 'scanner'",
                  "pathsteer guard unblock 192.0.2.0/24",
                  "pathsteer guard list --json", "pathsteer guard stats"])
    guard.set_defaults(help_parser=guard)
    verbs = guard.add_subparsers(dest="guard_command", metavar="VERB", parser_class=type(guard))

    p = add_command(verbs, "block", handler=cmd_block,
                    help="drop every packet from CIDR (IPv4 or IPv6); persists across restarts",
                    examples=["pathsteer guard block 192.0.2.0/24",
                              "pathsteer guard block 2001:db8:bad::/48 --ttl 1h --reason 'abuse report #12'",
                              "pathsteer guard block 203.0.113.7 --ttl 30s    # a bare address is a /32"])
    p.add_argument("cidr", metavar="CIDR")
    p.add_argument("--ttl", metavar="D", help="expire after D (30s, 10m, 1h); default: until unblocked")
    p.add_argument("--reason", default="", metavar="TEXT", help="why; shown by 'guard list'")
    _socket(p)

    p = add_command(verbs, "unblock", handler=cmd_unblock, help="remove a manual or automatic block",
                    examples=["pathsteer guard unblock 192.0.2.0/24"])
    p.add_argument("cidr", metavar="CIDR")
    _socket(p)

    p = add_command(verbs, "list", handler=cmd_list,
                    help="blocks (manual, auto) and the config's deny list: CIDR, origin, reason, expiry, hits",
                    examples=["pathsteer guard list", "pathsteer guard list --json | jq '.entries[].cidr'"])
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _socket(p)

    p = add_command(verbs, "stats", handler=cmd_stats,
                    help="packets per verdict and per rule, top sources",
                    examples=["pathsteer guard stats", "pathsteer guard stats --json --top 20"])
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--top", default="10", metavar="N", help="top sources to show (default 10)")
    _socket(p)


def cmd_block(args: argparse.Namespace) -> int:
    cidr = parse_cidr(args.cidr, "CIDR")
    ttl = parse_ttl(args.ttl, "--ttl")
    entry = ControlClient(args.socket).call("guard.block", {"cidr": str(cidr), "ttl": ttl, "reason": args.reason})
    until = f" for {format_duration(ttl)}" if ttl else ""
    print(f"blocked {entry['cidr']}{until}")
    return 0


def cmd_unblock(args: argparse.Namespace) -> int:
    cidr = parse_cidr(args.cidr, "CIDR")
    ControlClient(args.socket).call("guard.unblock", {"cidr": str(cidr)})
    print(f"unblocked {cidr}")
    return 0


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def cmd_list(args: argparse.Namespace) -> int:
    result = ControlClient(args.socket).call("guard.list")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    rows = [("CIDR", "ORIGIN", "EXPIRES", "HITS", "REASON")]
    for e in result["entries"]:
        rows.append((e["cidr"], e["origin"], _when(e["expires"]), str(e["hits"]), e["reason"]))
    _table(rows)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    try:
        top = int(args.top)
    except ValueError:
        raise UsageError(f"--top: {args.top!r} is not a whole number") from None
    result = ControlClient(args.socket).call("guard.stats", {"top": top})
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"passed {result['passed']}  dropped {result['dropped']}  blocks {result['blocks']}  "
          f"interfaces {','.join(result['interfaces'])}")
    sc = result.get("syn_cookies")
    if sc:
        print(f"syn cookies: ports {sc['ports']} on {','.join(sc['interfaces'])} (netfilter {sc['netfilter']}), "
              f"{result.get('answered', 0)} SYN-ACK cookies sent")
    _table([("VERDICT", "PACKETS", "BYTES")] +
           [(v, str(c["packets"]), str(c["bytes"])) for v, c in result["verdicts"].items()])
    if result["rules"]:
        print()
        _table([("RULE", "KIND", "PACKETS", "WHAT")] +
               [(str(r["rule_id"]), r["kind"], str(r["packets"]), r["rule"]) for r in result["rules"]])
    if result["top_sources"]:
        print()
        _table([("SOURCE", "PACKETS", "RATE-LIMITED")] +
               [(s["source"], str(s["packets"]), str(s["rate_limited"])) for s in result["top_sources"]])
    return 0


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
