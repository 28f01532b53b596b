"""ExaBGP as pathsteer runs it: its configuration (`render`), its command line and environment
(`command`, `environment`), and the launcher (`python -m pathsteer.bgp.exabgp CONFIG`).

ExaBGP runs one API process, `pathsteer.bgp.relay`, which joins its stdin/stdout to the
daemon's Unix socket: the daemon writes commands (``neighbor P announce attributes ... nlri
...``) and reads ExaBGP's JSON (session states, received updates) and acks.

The launcher runs ExaBGP's own ``main`` after two changes that do not alter what it does,
only how fast (without them ExaBGP takes ~1 800 prefixes/s from its API; with them ~25 000):

* ``ASYNC.LIMIT``: ExaBGP runs 50 steps of the API's commands per loop turn, one step per
  prefix: a command of 1 000 prefixes took 20 turns. Raised to 100 000.
* ``Neighbor.remove_self`` deep-copied every route before looking whether its next hop is
  ``self`` (8 of every 12 s when taking 20k prefixes). pathsteer always gives the next hop
  itself, so the copy is skipped for routes whose next hop is not ``self`` (those that are
  take ExaBGP's own code).

Both are checked at start (`patch`): an ExaBGP without them runs unchanged, only slower. The
pinned version is in requirements.txt.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import shutil
import sys

ENV = {
    "exabgp_api_cli": "false",          # no named pipes: pathsteer is the API
    "exabgp_api_ack": "true",           # "done"/"error" for each command
    "exabgp_api_encoder": "json",
    "exabgp_api_respawn": "true",       # the relay is restarted by ExaBGP if it dies
    "exabgp_daemon_user": "root",       # TCP MD5 and a passive peer's port 179
    "exabgp_daemon_drop": "false",
    "exabgp_daemon_daemonize": "false",
    "exabgp_log_level": "WARNING",
    "exabgp_log_destination": "stderr",
    "exabgp_log_routes": "false",
    "exabgp_log_packets": "false",
    "exabgp_log_message": "false",
    "exabgp_log_processes": "false",
    "exabgp_log_rib": "false",
    "exabgp_tcp_bind": "",              # no listening socket unless a peer is passive
}


def command(configured: str | None, config_path: str) -> list[str]:
    if configured:
        return [configured, config_path]
    if importlib.util.find_spec("exabgp") is not None:
        return [sys.executable, "-m", "pathsteer.bgp.exabgp", config_path]
    found = shutil.which("exabgp")
    if found is None:
        raise FileNotFoundError("exabgp")
    return [found, config_path]


def environment(passive: bool, base: dict | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update(ENV)
    if passive:
        env["exabgp_tcp_bind"] = "0.0.0.0 ::"
    return env


def _quote(text: str) -> str:
    if '"' not in text:
        return f'"{text}"'
    return f"'{text}'"


def render(bgp, relay_argv: list[str], peers_local: dict[str, str | None], passwords: dict[str, str]) -> str:
    """ExaBGP's configuration for ``bgp`` (`pathsteer.config.bgp.BgpConfig`): one neighbor per
    peer, each with pathsteer's API process. ``peers_local``: each peer's local address (None:
    the kernel picks); ``passwords``: each peer's MD5 key, read from its file or the config."""
    run = " ".join(relay_argv)
    lines = ["process pathsteer {", f"    run {run};", "    encoder json;", "}", ""]
    for p in bgp.peers:
        addr = str(p.address)
        family = "ipv4 unicast" if ipaddress.ip_address(addr).version == 4 else "ipv6 unicast"
        hold = int(p.hold_time if p.hold_time is not None else bgp.hold_time)
        lines += [f"neighbor {addr} {{", f"    description {_quote(p.name or addr)};",
                  f"    router-id {bgp.router_id};"]
        if peers_local.get(addr):
            lines.append(f"    local-address {peers_local[addr]};")
        lines += [f"    local-as {bgp.local_as};", f"    peer-as {p.peer_as};", f"    hold-time {hold};"]
        if p.passive:
            lines.append("    passive true;")
            if p.port != 179:
                lines.append(f"    listen {p.port};")
        elif p.port != 179:
            lines.append(f"    connect {p.port};")
        if addr in passwords:
            lines.append(f"    md5-password {_quote(passwords[addr])};")
        lines += ["    group-updates true;", f"    family {{ {family}; }}",
                  "    api { processes [ pathsteer ]; neighbor-changes; receive { parsed; update; } }", "}", ""]
    return "\n".join(lines)


def patch() -> list[str]:
    """The two speed-ups (module doc); the names of those applied."""
    done = []
    try:
        from exabgp.reactor.asynchronous import ASYNC
        if isinstance(getattr(ASYNC, "LIMIT", None), int):
            ASYNC.LIMIT = max(ASYNC.LIMIT, 100_000)
            done.append("async-limit")
    except ImportError:
        pass
    try:
        from exabgp.bgp.neighbor import Neighbor
        original = Neighbor.remove_self

        def remove_self(self, change):
            nexthop = getattr(getattr(change, "nlri", None), "nexthop", None)
            if nexthop is not None and getattr(nexthop, "SELF", True) is False:
                return change
            return original(self, change)

        Neighbor.remove_self = remove_self
        done.append("no-copy-without-self")
    except (ImportError, AttributeError):
        pass
    return done


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    patch()
    from exabgp.application.main import main as exabgp_main
    sys.argv = ["exabgp", *argv]
    return exabgp_main() or 0


if __name__ == "__main__":
    sys.exit(main())
