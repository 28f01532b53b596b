"""Shared CLI plumbing: a parser whose errors are one line (exit 2), commands with examples.

Every command module exposes ``register(subparsers)`` and adds its commands with
`add_command`, giving the examples that end its ``--help``. A handler takes the parsed
arguments and returns the exit code; expected failures are raised as `PathsteerError`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence

from pathsteer.errors import NotRootError, UsageError

Handler = Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises `UsageError` instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def add_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    *,
    help: str,
    examples: Sequence[str],
    handler: Handler | None = None,
    description: str | None = None,
) -> Parser:
    """Add a subcommand whose ``--help`` ends with ``examples``."""
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples)
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description or help,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if handler is not None:
        parser.set_defaults(handler=handler)
    return parser


def require_root(what: str) -> None:
    """Raise `NotRootError` unless running with euid 0."""
    if os.geteuid() != 0:
        raise NotRootError(what)


def add_socket_option(p: argparse.ArgumentParser) -> None:
    """``--socket PATH``: the daemon's control socket (every client command has it)."""
    from pathsteer.config.model import DEFAULT_SOCKET
    p.add_argument("--socket", default=DEFAULT_SOCKET, metavar="PATH",
                   help=f"the daemon's control socket (default {DEFAULT_SOCKET})")
