"""``pathsteer bgp [PREFIX]``: the BGP sessions, ExaBGP's process and what is announced and
learned, or for one prefix what was announced with which MED and communities and why."""

from __future__ import annotations

import argparse
import datetime
import json

from pathsteer.cli.base import add_command, add_socket_option
from pathsteer.control.client import ControlClient


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "bgp", handler=cmd_bgp,
        help="BGP: each session's state, prefixes received, announced and learned; or for PREFIX what was "
             "announced (MED, communities) and why",
        examples=["pathsteer bgp", "pathsteer bgp 198.51.100.0/24", "pathsteer bgp 198.51.100.10 --json",
                  "pathsteer bgp --json | jq '.sessions[] | {name, state}'"])
    p.add_argument("prefix", nargs="?", metavar="PREFIX", help="a destination prefix, or an address in one")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_socket_option(p)


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%H:%M:%S")


def cmd_bgp(args: argparse.Namespace) -> int:
    client = ControlClient(args.socket)
    if args.prefix is not None:
        r = client.call("bgp.prefix", {"prefix": args.prefix})
        if args.json:
            print(json.dumps(r, indent=2))
            return 0
        if r["announced"]:
            print(f"{r['prefix']}: announced to {', '.join(r['peers']) or 'no peer'} with MED {r['med']}")
            print(f"  why: {r['why']}")
            print(f"  large communities: {' '.join(r['large_communities'])}")
            if r["communities"]:
                print(f"  communities: {' '.join(r['communities'])}")
            if r["pending"]:
                print(f"  pending: {r['pending']}")
        else:
            print(f"{r['prefix']}: not announced: {r['why']}")
        if r["learned"]:
            print(f"  learned from {', '.join(r['learned_from'])}")
        if r["last_action"]:
            a = r["last_action"]
            print(f"  last: {a['action']} at {_when(a['at'])}: {a['reason']}")
        return 0
    r = client.call("bgp.status")
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    ex = r["exabgp"]
    state = f"running (pid {ex['pid']})" if ex["running"] else "NOT RUNNING"
    print(f"AS {r['local_as']}, router id {r['router_id']}; ExaBGP {state}, restarts {ex['restarts']}; "
          f"{r['announced']} announced, {r['withdrawn_here']} withdrawn here, {r['learned']} learned")
    rows = [("PEER", "ADDRESS", "AS", "STATE", "SINCE", "RECEIVED", "ANNOUNCED", "LEARNED")]
    for s in r["sessions"]:
        rows.append((s["name"], s["address"], str(s["as"]), s["state"] + (f" ({s['reason']})" if s["reason"] and
                    s["state"] != "up" else ""), _when(s["since"]), str(s["received"]), str(s["announced"]),
                     str(s["learned"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    if r["learn_error"]:
        print(f"learned destinations refused by steering: {r['learn_error']}")
    for e in ex["exits"][-3:]:
        print(f"ExaBGP exited at {_when(e['at'])} (code {e['code']}): {e['why']}")
    return 0
