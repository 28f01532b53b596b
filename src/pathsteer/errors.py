"""Errors every layer raises, and how the CLI turns them into one line and an exit code.

A `PathsteerError` is an expected failure: bad input, a missing capability, a kernel refusal.
The CLI prints ``pathsteer: error: <message>`` and exits with ``exit_code``; no traceback.
"""

from __future__ import annotations


class PathsteerError(Exception):
    """An expected failure, reported as one line."""

    exit_code = 1


class UsageError(PathsteerError):
    """Bad input from the user (CLI argument, config value, unknown name). Exit code 2."""

    exit_code = 2


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
