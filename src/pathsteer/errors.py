"""Errors every layer raises, and how the CLI turns them into one line and an exit code.

A `PathsteerError` is an expected failure: bad input, a missing capability, a kernel refusal.
The CLI prints ``pathsteer: error: <message>`` and exits with ``exit_code``; no traceback.
"""

from __future__ import annotations


class PathsteerError(Exception):
    """An expected failure, reported as one line. ``kind`` travels with it over the control
    socket (`by_kind` turns it back into the class), so the HTTP API answers 404 or 503 by type."""

    exit_code = 1
    kind = "error"


class UsageError(PathsteerError):
    """Bad input from the user (CLI argument, config value, unknown name). Exit code 2."""

    exit_code = 2
    kind = "usage"


class NotFoundError(UsageError):
    """The thing named does not exist: an unknown path, a block that is not there (HTTP 404)."""

    kind = "not-found"


class NotReadyError(PathsteerError):
    """The daemon cannot do it now: a component still starting, the daemon stopping (HTTP 503)."""

    kind = "not-ready"


def by_kind(kind: str, exit_code: int = 1) -> type[PathsteerError]:
    """The error class a control response's ``kind`` names (older daemons send none: then the
    exit code decides, 2 = `UsageError`)."""
    for cls in (NotFoundError, NotReadyError, UsageError, PathsteerError):
        if cls.kind == kind:
            return cls
    return UsageError if exit_code == 2 else PathsteerError


class NotRootError(UsageError):
    """The command needs root (CAP_NET_ADMIN, CAP_BPF, CAP_SYS_ADMIN)."""

    def __init__(self, what: str = "this command") -> None:
        super().__init__(f"{what} needs root (run it with sudo or as root)")


class UnsupportedError(UsageError):
    """The kernel or the system lacks something pathsteer needs (BPF, a program type, ...)."""


class BpfError(PathsteerError):
    """libbpf or the kernel refused an operation. ``log`` holds libbpf's output and the verifier log."""

    def __init__(self, message: str, errno: int = 0, log: str = "") -> None:
        super().__init__(message)
        self.errno = errno
        self.log = log


class LabError(PathsteerError):
    """A lab operation failed in the kernel or a tool (not a usage error)."""
