"""``pathsteer run`` (the daemon) and ``pathsteer reload``."""

from __future__ import annotations

import argparse
import asyncio
import json

from pathsteer.cli.base import add_command, add_socket_option, require_root

RELOAD_TIMEOUT_S = 300.0


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "run", handler=cmd_run,
        help="run the daemon with a config file (steering: dataplane, paths, destinations; guard: guard)",
        examples=["pathsteer run --config /etc/pathsteer.yaml",
                  "pathsteer run --config lab.yaml              # inside: ip netns exec ROUTER-NS ...",
                  "pathsteer run --config guard.yaml --check     # validate only, touch nothing",
                  "kill -HUP $(pidof pathsteer)                    # reload; a bad file is refused"])
    p.add_argument("--config", required=True, metavar="FILE", help="YAML config (sections: control, dataplane, paths, destinations, steering, guard)")
    p.add_argument("--check", action="store_true", help="validate the config and exit")

    p = add_command(
        sub, "reload", handler=cmd_reload,
        help="make the running daemon read its config again (refused if the new one is bad)",
        examples=["pathsteer reload", "pathsteer reload --socket /run/pathsteer/lab.sock"])
    add_socket_option(p)


def cmd_run(args: argparse.Namespace) -> int:
    from pathsteer.daemon.reactor import Daemon, setup_logging
    daemon = Daemon(args.config)
    if args.check:
        config = daemon.check()
        print(json.dumps({"ok": True, "sections": config.sections}))
        return 0
    require_root("pathsteer run")
    setup_logging()
    asyncio.run(daemon.run())
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    from pathsteer.control.client import ControlClient
    # A reload waits for the commit (1M prefixes take tens of seconds): systemctl reload is its result.
    result = ControlClient(args.socket, timeout=RELOAD_TIMEOUT_S).call("daemon.reload")
    print(f"reloaded: {', '.join(result['sections'])}")
    return 0
