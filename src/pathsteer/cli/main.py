"""Entry point of the ``pathsteer`` command."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pathsteer import __version__
from pathsteer.cli.base import Parser
from pathsteer.errors import PathsteerError

# Modules that add commands; each has ``register(subparsers)``.
COMMAND_MODULES = (
    "pathsteer.lab.cli",
    "pathsteer.probe.cli",
    "pathsteer.daemon.cli",
    "pathsteer.guard.cli",
    "pathsteer.steering.cli",
)

EXAMPLES = """examples:
  pathsteer lab up --paths 3 --json      build a lab with three paths
  pathsteer lab set demo p2 --delay 10ms slow path p2 down to 10 ms each way
  pathsteer lab down demo                remove it
  pathsteer COMMAND --help               each command's options and examples
"""


def build_parser() -> Parser:
    parser = Parser(
        prog="pathsteer",
        description="Measure every path, keep each destination on the best one, "
        "drop hostile traffic in XDP.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pathsteer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        handler = getattr(args, "handler", None)
        if handler is None:
            target = getattr(args, "help_parser", parser)
            target.print_help(sys.stderr)
            return 2
        return int(handler(args) or 0)
    except PathsteerError as exc:
        print(f"pathsteer: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("pathsteer: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
