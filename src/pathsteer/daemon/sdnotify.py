"""systemd's notify protocol (sd_notify(3)), pure stdlib: one datagram per notification.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract
socket) and, with ``WatchdogSec=``, ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``: the watchdog is
ours only when it names our pid). The daemon tells it::

    READY=1\\nSTATUS=...       started: every component, steering's first decision applied
    RELOADING=1\\nMONOTONIC_USEC=...   a reload begins (READY=1 again when it ends)
    STOPPING=1                stopping
    WATCHDOG=1                still alive: sent from the asyncio loop, so a hung loop stops it

Without ``NOTIFY_SOCKET`` (run by hand, in the lab) every call does nothing. A send never
raises and never blocks (the socket is non-blocking): a failure is logged once — then again
only after a send has succeeded — and the daemon goes on.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("pathsteer.daemon")


def parse_address(value: str | None) -> str | bytes | None:
    """``NOTIFY_SOCKET`` → a socket address: ``/run/systemd/notify`` as is, ``@name`` → the
    abstract ``b"\\0name"``; None (no notifications) when unset, empty or of another kind
    (``vsock:``, relative paths)."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def parse_watchdog(usec: str | None, pid: str | None, own_pid: int) -> float | None:
    """``WATCHDOG_USEC`` in seconds, or None: unset, not a positive integer, or
    ``WATCHDOG_PID`` naming another process (the watchdog is then not ours)."""
    if pid:
        try:
            if int(pid) != own_pid:
                return None
        except ValueError:
            return None
    try:
        value = int(usec or "")
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None


def message(**fields: object) -> bytes:
    """``message(READY=1, STATUS="ok")`` → ``b"READY=1\\nSTATUS=ok\\n"`` (newlines in a value
    become spaces: one assignment per line)."""
    return "".join(f"{k}={str(v).replace(chr(10), ' ')}\n" for k, v in fields.items()).encode()


class Notifier:
    """Notifications to systemd; `from_env` is the daemon's. ``address`` None: a no-op."""

    def __init__(self, address: str | bytes | None, watchdog_s: float | None = None) -> None:
        self.address = address
        self.watchdog_s = watchdog_s if address is not None else None
        self._sock: socket.socket | None = None
        self._failing = False  # the last send failed (and was logged)
        self.sent = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, pid: int | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        address = parse_address(env.get("NOTIFY_SOCKET"))
        watchdog = parse_watchdog(env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID"),
                                  os.getpid() if pid is None else pid)
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """How often to send WATCHDOG=1: half of ``WATCHDOG_USEC`` (sd_watchdog_enabled(3)'s
        advice), or None when there is no watchdog."""
        return self.watchdog_s / 2 if self.watchdog_s else None

    def ready(self, status: str | None = None) -> bool:
        return self.send(READY=1, **({"STATUS": status} if status is not None else {}))

    def reloading(self) -> bool:
        """RELOADING=1 with the CLOCK_MONOTONIC time systemd (253+) matches the reload by."""
        return self.send(RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def stopping(self, status: str | None = None) -> bool:
        return self.send(STOPPING=1, **({"STATUS": status} if status is not None else {}))

    def status(self, text: str) -> bool:
        return self.send(STATUS=text)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def send(self, **fields: object) -> bool:
        """One datagram; True when it was sent (False: disabled, or failed and logged)."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(message(**fields), self.address)
        except OSError as exc:
            if not self._failing:
                log.warning("daemon.sd-notify-failed socket=%s error=%r", self._shown(), str(exc))
            self._failing = True
            return False
        self._failing = False
        self.sent += 1
        return True

    def _shown(self) -> str:
        a = self.address
        return "@" + a[1:].decode(errors="replace") if isinstance(a, bytes) else str(a)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
