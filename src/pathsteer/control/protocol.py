"""JSON-lines messages of the control socket (pure: bytes in, objects out, and back).

A request is one line: ``{"id": ID, "command": "noun.verb", "args": {...}}`` (``id`` optional,
any JSON scalar, echoed back; ``args`` optional). A response is one line:
``{"id": ID, "ok": true, "result": {...}}`` or ``{"id": ID, "ok": false, "error": "one line",
"exit_code": N}`` where ``exit_code`` is what the CLI exits with (2 = bad input).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

MAX_LINE = 1 << 20  # bytes per message
COMMAND_RE = re.compile(r"[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*")


class ProtocolError(Exception):
    """A request that cannot be decoded; the reply says why."""


@dataclass(frozen=True)
class Request:
    command: str
    args: dict[str, Any] = field(default_factory=dict)
    id: Any = None

    def encode(self) -> bytes:
        return json.dumps({"id": self.id, "command": self.command, "args": self.args}).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> Request:
        try:
            data = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            raise ProtocolError("request is not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise ProtocolError(f"request is not JSON ({exc.msg} at column {exc.colno})") from None
        except (ValueError, RecursionError) as exc:  # an integer past 4300 digits; nesting too deep
            raise ProtocolError(f"request is not usable JSON ({str(exc).split(';')[0]})") from None
        if not isinstance(data, dict):
            raise ProtocolError("request must be a JSON object with 'command' and 'args'")
        unknown = set(data) - {"id", "command", "args"}
        if unknown:
            raise ProtocolError(f"request has unknown key {sorted(unknown)[0]!r} (keys: id, command, args)")
        command, args = data.get("command"), data.get("args", {})
        if not isinstance(command, str) or not COMMAND_RE.fullmatch(command):
            raise ProtocolError(f"request 'command' must be a command name, not {command!r}")
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise ProtocolError("request 'args' must be a JSON object")
        req_id = data.get("id")
        if isinstance(req_id, dict | list):
            raise ProtocolError("request 'id' must be a JSON scalar")
        return cls(command, args, req_id)


@dataclass(frozen=True)
class Response:
    ok: bool
    result: Any = None
    error: str = ""
    exit_code: int = 0
    id: Any = None
    kind: str = ""  # a failure's `PathsteerError.kind` ("not-found", "not-ready", ...); "" unknown

    @classmethod
    def success(cls, result: Any, req_id: Any = None) -> Response:
        return cls(True, result, id=req_id)

    @classmethod
    def failure(cls, error: str, exit_code: int = 1, req_id: Any = None, kind: str = "") -> Response:
        return cls(False, None, error.splitlines()[0] if error else "error", exit_code or 1, req_id, kind)

    def encode(self) -> bytes:
        body = {"id": self.id, "ok": self.ok}
        if self.ok:
            body["result"] = self.result
        else:
            body["error"], body["exit_code"] = self.error, self.exit_code
            if self.kind:
                body["kind"] = self.kind
        return json.dumps(body, default=str).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> Response:
        try:
            data = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ProtocolError("response is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
            raise ProtocolError("response has no 'ok'")
        if data["ok"]:
            return cls(True, data.get("result"), id=data.get("id"))
        return cls(False, None, str(data.get("error", "error")), int(data.get("exit_code", 1)), data.get("id"),
                   str(data.get("kind", "")))
