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
    "pathsteer.probe.cli",
    "pathsteer.daemon.cli",
    "pathsteer.guard.cli",
    "pathsteer.steering.cli",
    "pathsteer.gateways.cli",
    "pathsteer.bgp.cli",
)

# Commands that live outside the runtime package, in the lab tools (package pathsteer_lab):
# the dev venv (`make venv`) has them, `make install` does not. Each entry: command, package,
# module with ``register``, the top-level --help examples it adds. Where the package is not
# importable the command is left out of --help, and running it says so (exit 2).
OPTIONAL_COMMANDS = (
    ("lab", "pathsteer_lab", "pathsteer_lab.cli", (
        "  pathsteer lab up --paths 3 --json      build a lab with three paths",
        "  pathsteer lab set demo p2 --delay 10ms slow path p2 down to 10 ms each way",
        "  pathsteer lab down demo                remove it",
    )),
)
NOT_INSTALLED = {
    "lab": "pathsteer lab: the lab tools are not installed "
           "(they are the pathsteer_lab package of a source checkout: make venv)",
}

EXAMPLES = (
    "  pathsteer run --config pathsteer.yaml  the daemon (foreground)",
    "  pathsteer status                       paths and each route's path(s) and reason",
    "  pathsteer COMMAND --help               each command's options and examples",
)


def build_parser() -> Parser:
    parser = Parser(
        prog="pathsteer",
        description="Measure every path, keep each destination on the best one, "
        "drop hostile traffic in XDP.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pathsteer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    examples: list[str] = []
    for command, package, module, command_examples in OPTIONAL_COMMANDS:
        try:
            importlib.import_module(package)
        except ModuleNotFoundError as exc:
            if exc.name != package:  # the package is there but needs something missing: say so
                raise
            _add_not_installed(sub, command)
            continue
        importlib.import_module(module).register(sub)
        examples += command_examples
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    parser.epilog = "examples:\n" + "\n".join([*examples, *EXAMPLES]) + "\n"
    return parser


def _add_not_installed(sub: argparse._SubParsersAction, command: str) -> None:
    """``command``, not listed in --help: whatever its arguments (even --help), it says that it
    is not installed and exits 2."""
    p = sub.add_parser(command, add_help=False, prefix_chars="\0")  # no options: all positional
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(handler=lambda args: _not_installed(command))


def _not_installed(command: str) -> int:
    print(NOT_INSTALLED[command], file=sys.stderr)
    return 2


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
