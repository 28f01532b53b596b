"""The control server: asyncio on a Unix socket, a registry of typed commands.

    server = ControlServer("/run/pathsteer/pathsteer.sock")
    server.register(Command("guard.block", BlockArgs, guard.block))   # handler(args) -> JSON-able
    await server.start(); ...; await server.close()

A handler gets its pydantic args model, may be async, and returns the result. A
`PathsteerError` becomes an error reply with its exit code; bad args an exit-2 reply naming
the field; any other exception an "internal error" reply, logged — the daemon keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from pathsteer.config.load import format_validation_error
from pathsteer.control.protocol import MAX_LINE, ProtocolError, Request, Response
from pathsteer.errors import PathsteerError, UsageError

log = logging.getLogger("pathsteer.control")


class Args(BaseModel):
    """The base of every command's arguments: an unknown argument is refused, by name."""

    model_config = ConfigDict(extra="forbid")


class NoArgs(Args):
    pass


@dataclass(frozen=True)
class Command:
    """A control command: ``name`` (noun.verb), its ``args`` model, its ``handler``."""

    name: str
    args: type[BaseModel]
    handler: Callable[[Any], Any]
    help: str = ""


class ControlServer:
    def __init__(self, path: str) -> None:
        self.path = path
        self.commands: dict[str, Command] = {}
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self.register(Command("help", NoArgs, self._help, "the commands this daemon knows"))

    def register(self, command: Command) -> None:
        if command.name in self.commands:
            raise ValueError(f"control command {command.name} registered twice")
        self.commands[command.name] = command

    def unregister_command(self, name: str) -> None:
        """Remove one command (a component's, when it stops on a reload); absent is fine."""
        self.commands.pop(name, None)

    def _help(self, _args: NoArgs) -> dict:
        return {name: c.help for name, c in sorted(self.commands.items())}

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen; a stale socket file (nobody answering) is replaced, a live one is an error."""
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o755, exist_ok=True)
        if os.path.exists(self.path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(self.path)
            except OSError as exc:
                if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK):
                    raise
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
            else:
                raise UsageError(f"another pathsteer daemon is listening on {self.path}")
            finally:
                probe.close()
        old = os.umask(0o077)  # the socket is root's: it can change the firewall
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=self.path, limit=MAX_LINE)
        finally:
            os.umask(old)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    # --- serving ----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task:
            self._tasks.add(task)
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as exc:
                    if exc.partial.strip():
                        writer.write(await self.dispatch_line(exc.partial))
                        await writer.drain()
                    return
                except asyncio.LimitOverrunError:
                    writer.write(Response.failure(f"request longer than {MAX_LINE} bytes", 2).encode())
                    await writer.drain()
                    return
                if not line.strip():
                    continue
                writer.write(await self.dispatch_line(line))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if task:
                self._tasks.discard(task)
            writer.close()

    async def dispatch_line(self, line: bytes) -> bytes:
        try:
            request = Request.decode(line)
        except ProtocolError as exc:
            return Response.failure(str(exc), 2).encode()
        return (await self.dispatch(request)).encode()

    async def dispatch(self, request: Request) -> Response:
        command = self.commands.get(request.command)
        if command is None:
            return Response.failure(f"unknown command {request.command!r} (known: {', '.join(sorted(self.commands))})",
                                    2, request.id)
        try:
            args = command.args.model_validate(request.args)
        except ValidationError as exc:
            return Response.failure(f"{request.command}: {format_validation_error(exc)}", 2, request.id)
        try:
            result = command.handler(args)
            if inspect.isawaitable(result):
                result = await result
            return Response.success(result, request.id)
        except PathsteerError as exc:
            return Response.failure(str(exc), exc.exit_code, request.id, exc.kind)
        except Exception as exc:  # noqa: BLE001 - a bug in one command must not stop the daemon
            log.exception("control.error command=%s", request.command)
            return Response.failure(f"internal error in {request.command}: {exc.__class__.__name__}: {exc}", 1, request.id)
