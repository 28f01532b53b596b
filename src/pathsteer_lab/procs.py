"""Small helpers for the lab's child processes (HAProxy, BIRD, FRR, backends): stop one, show
the end of its log, remove a socket file. Standard library only (the harnesses' children
import their module)."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_process(proc: subprocess.Popen | None, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; always reaped."""
    if proc is None:
        return
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL not reaped in 5 s
        pass


def tail(path: str, n: int = 8) -> str:
    """The last ``n`` non-empty lines of a log, joined with `` | `` (for error messages)."""
    try:
        with open(path, errors="replace") as f:
            lines = [line.rstrip() for line in f if line.strip()]
    except OSError:
        return "(no output)"
    return " | ".join(lines[-n:]) or "(no output)"


def unlink(path: str | None) -> None:
    """Remove a file if it is there."""
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
