"""A synchronous control client for the CLI: one request, one response.

    result = ControlClient(socket_path).call("guard.list")
"""

from __future__ import annotations

import socket
from typing import Any

from pathsteer.config.model import DEFAULT_SOCKET
from pathsteer.control.protocol import MAX_LINE, ProtocolError, Request, Response
from pathsteer.errors import PathsteerError, UsageError


class ControlError(PathsteerError):
    """The daemon answered with an error; ``exit_code`` is the one it gave."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ControlClient:
    def __init__(self, path: str = DEFAULT_SOCKET, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout

    def call(self, command: str, args: dict[str, Any] | None = None) -> Any:
        """Send one request; the result, or ControlError with the daemon's message."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            try:
                sock.connect(self.path)
            except FileNotFoundError:
                raise PathsteerError(f"no pathsteer daemon at {self.path} (start one with 'pathsteer run --config FILE')") from None
            except OSError as exc:
                raise PathsteerError(f"cannot reach the pathsteer daemon at {self.path}: {exc.strerror}") from None
            sock.sendall(Request(command, args or {}, 1).encode())
            buf = b""
            while not buf.endswith(b"\n"):
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    raise PathsteerError(f"the pathsteer daemon at {self.path} did not answer within {self.timeout:g} s") from None
                if not chunk:
                    break
                buf += chunk
                if len(buf) > 64 * MAX_LINE:
                    raise PathsteerError("response too long")
        finally:
            sock.close()
        try:
            response = Response.decode(buf)
        except ProtocolError as exc:
            raise PathsteerError(f"bad answer from {self.path}: {exc}") from None
        if not response.ok:
            if response.exit_code == 2:
                raise UsageError(response.error)
            raise ControlError(response.error, response.exit_code)
        return response.result
