"""``pathsteer lab``: up, set, down, list."""

from __future__ import annotations

import argparse
import json
import re

from pathsteer.cli.base import add_command
from pathsteer.errors import UsageError
from pathsteer.units import format_duration
from pathsteer_lab import build, impair
from pathsteer_lab.topology import MAX_PATHS, Topology, state_dir, validate_name, validate_paths


def register(sub: argparse._SubParsersAction) -> None:
    lab = add_command(
        sub, "lab", help="build and impair the network lab (namespaces: client, router, paths, server, attacker)",
        examples=["pathsteer lab up --name demo --paths 3 --json",
                  "pathsteer lab set demo p2 --delay 10ms --loss 1%",
                  "pathsteer lab list", "pathsteer lab down demo"])
    lab.set_defaults(help_parser=lab)
    verbs = lab.add_subparsers(dest="lab_command", metavar="VERB", parser_class=type(lab))

    p = add_command(
        verbs, "up", handler=cmd_up,
        help="build a lab: client, router, N paths, server (two IPv4 and two IPv6 prefixes), attacker",
        examples=["pathsteer lab up                         # lab named lab1 (the first free labN), 3 paths",
                  "ip netns exec ps-lab1-client ping 198.51.100.10   # over p1, the router's default",
                  "pathsteer lab up --name demo --paths 3 --json"])
    p.add_argument("--name", help="lab name: 1-32 of a-z 0-9 _ - (default: the first free labN)")
    p.add_argument("--paths", default="3", metavar="N", help=f"number of paths, 1..{MAX_PATHS} (default 3)")
    p.add_argument("--json", action="store_true", help="print the topology as JSON")

    p = add_command(
        verbs, "set", handler=cmd_set,
        help="impair one path; only the options given change, the others keep their values",
        description=(
            "Impair one path of a lab; only the options given change.\n\n"
            "Delay and jitter are one-way on each direction: a ping over the path sees about 2*delay.\n"
            "Jitter is uniform in [delay-jitter, delay+jitter]; packets of one direction are not\n"
            "reordered. Loss applies on each direction, so a ping (a round trip) is lost with\n"
            "probability 1-(1-p)^2 (5% each way: 9.75% of pings); drops are random but evenly spread\n"
            "(gaps of 0.5-1.5x 1/p), so 1000 packets lose p to within a few tenths of a point.\n"
            "A value of 0 clears a setting.\n"
            "--down drops everything forwarded through the path without an ICMP error (the router's\n"
            "link stays up, the gateway address itself still answers); --up restores it.\n"
            "Bare numbers for --delay and --jitter are milliseconds."),
        examples=["pathsteer lab set demo p2 --delay 10ms          # pings over p2 take about 20 ms",
                  "pathsteer lab set demo p2 --jitter 2ms --loss 1%",
                  "pathsteer lab set demo p3 --rate 50mbit",
                  "pathsteer lab set demo p1 --down               # then --up",
                  "pathsteer lab set demo p2 --delay 0 --loss 0   # clear",
                  "pathsteer lab set demo p2                      # show the path's settings"])
    # Let "--delay -5ms" reach the unit parser (which names the value) instead of argparse
    # reading "-5ms" as an option and saying only "expected one argument".
    p._negative_number_matcher = re.compile(r"^-[0-9.]+[a-zA-Z%µ]*$")
    p.add_argument("name", metavar="NAME", help="lab name")
    p.add_argument("path", metavar="PATH", help="path name: p1..pN")
    p.add_argument("--delay", metavar="D", help="one-way delay each direction (10ms, 0.5s; 0 clears)")
    p.add_argument("--jitter", metavar="J", help="± uniform jitter on the delay (2ms)")
    p.add_argument("--loss", metavar="P", help="loss per packet and direction, percent (1%%, 0.5)")
    p.add_argument("--rate", metavar="R", help="rate limit each direction, TBF (100mbit, 1gbit; 0 clears)")
    updown = p.add_mutually_exclusive_group()
    updown.add_argument("--down", action="store_const", const=True, dest="down",
                        help="drop everything through the path")
    updown.add_argument("--up", action="store_const", const=False, dest="down", help="undo --down")
    p.add_argument("--json", action="store_true", help="print the path's settings as JSON")

    p = add_command(
        verbs, "down", handler=cmd_down,
        help="remove a lab: processes, namespaces, state (also half-built or crashed labs)",
        examples=["pathsteer lab down demo"])
    p.add_argument("name", metavar="NAME", help="lab name")

    p = add_command(
        verbs, "list", handler=cmd_list, help="list labs (also broken ones, with what is wrong)",
        examples=["pathsteer lab list", "pathsteer lab list --json"])
    p.add_argument("--json", action="store_true", help="print a JSON list")


def _first_free_name() -> str:
    taken = {lab.name for lab in build.list_labs()}
    for i in range(1, 10000):
        if f"lab{i}" not in taken:
            return f"lab{i}"
    raise UsageError("no free lab name; give one with --name")


def cmd_up(args: argparse.Namespace) -> int:
    if args.name is not None:
        validate_name(args.name)
    npaths = validate_paths(args.paths)
    build.require_root("pathsteer lab up")
    t = build.up(args.name or _first_free_name(), npaths)
    if args.json:
        print(json.dumps(t.to_json(), indent=2))
    else:
        print(f"lab {t.name}: {len(t.paths)} paths; client {t.client_address} in {t.client}, "
              f"server {' '.join(t.server_addresses)} in {t.server}, router {t.router} "
              f"(ingress {t.ingress_interface}), attacker {t.attacker_address} in {t.attacker}")
        for p in t.paths:
            print(f"  {p.name}: {p.router_interface} → gateway {p.gateway}, probe {p.probe_address} ({p.namespace})")
        print(f"remove it with: pathsteer lab down {t.name}")
    return 0


def describe(name: str, s: impair.Impairment) -> str:
    rate = f"{s.rate / 1e6:g}mbit" if s.rate else "none"
    return (f"{name}: delay {format_duration(s.delay) if s.delay else 0} jitter "
            f"{format_duration(s.jitter) if s.jitter else 0} loss {s.loss:g}% rate {rate} "
            f"{'DOWN' if s.down else 'up'}")


def cmd_set(args: argparse.Namespace) -> int:
    validate_name(args.name)
    changes = impair.parse_changes(args.delay, args.jitter, args.loss, args.rate, args.down)
    build.require_root("pathsteer lab set")
    t = Topology.load(args.name)
    p = t.path(args.path)
    settings = impair.apply(t, p, changes) if changes else impair.read_impairments(t)[p.name]
    if args.json:
        print(json.dumps({"lab": t.name, "path": p.name, "delay_ms": settings.delay * 1e3,
                          "jitter_ms": settings.jitter * 1e3, "loss_pct": settings.loss,
                          "rate_bps": settings.rate, "down": settings.down}))
    else:
        print(describe(p.name, settings))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    validate_name(args.name)
    build.require_root("pathsteer lab down")
    build.down(args.name)
    print(f"lab {args.name} removed")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    labs = build.list_labs()
    if args.json:
        print(json.dumps([lab.to_json() for lab in labs], indent=2))
        return 0
    if not labs:
        print("no labs")
        return 0
    print(f"{'NAME':<20} {'PATHS':>5} {'STATE':<7} PROBLEMS")
    for lab in labs:
        print(f"{lab.name:<20} {lab.paths:>5} {lab.state:<7} {'; '.join(lab.problems) or '-'}")
    return 0


__all__ = ["register", "state_dir"]
