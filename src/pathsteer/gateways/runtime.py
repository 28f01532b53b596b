"""An asyncio client for HAProxy's runtime API, the "stats socket" (management.txt 9.3, HAProxy 2.6).

Each command opens its own connection in non-interactive mode: the client sends one line and
reads until HAProxy closes the connection, which it does right after the answer. No prompt, no
session state, no ``;``-chained commands: one call is one command, bounded by ``timeout_s`` in all.

The socket is a Unix stream socket (``stats socket /run/haproxy.sock``) or TCP
(``stats socket 127.0.0.1:9999``). Writes need ``level admin`` (``operator`` for some).

What HAProxy 2.6.12 answers, as verified against the real process (tests/kernel/test_haproxy_runtime.py):

- ``set server B/S weight N`` and ``set server B/S state ready|drain|maint``: ``"\\n"`` on success;
  ``"No such server.\\n\\n"``, ``"No such backend.\\n\\n"``, ``"Require 'backend/server'.\\n\\n"``,
  ``"Absolute weight can only be between 0 and 256 inclusive.\\n\\n"``,
  ``"'set server <srv> state' expects 'ready', 'drain' and 'maint'.\\n\\n"``, and on a
  ``level user`` socket ``"Permission denied\\n\\n"``.
- ``add acl F V``: ``"\\n"`` on success, also when V is already there (it is then listed twice);
  ``"Unknown ACL identifier. Please use #<id> or <file>.\\n\\n"`` for an unknown file or id;
  ``"'x' is not a valid IPv4 or IPv6 address.\\n\\n"`` for a bad value in an ``src`` ACL.
- ``del acl F V``: ``"\\n"`` on success (every copy of V goes); ``"Key not found.\\n\\n"`` when V
  is not there; ``"Unknown map identifier. Please use #<id> or <file>.\\n\\n"`` (sic: "map")
  for an unknown file.
- ``show acl F``: one ``0x<ref> <value>`` line per entry, then an empty line; the unknown
  identifier message as for ``add acl``.
- ``show servers state B``: format 1 (`parse_servers_state`); ``"Can't find backend.\\n\\n"``.
- ``show stat``: CSV, ``# pxname,svname,...`` header; both header and rows end with a ``,``.

So any non-blank answer to a write is a refusal (`RuntimeApiRefused`, carrying the text), and a
read whose answer is not its format is one too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re

from pathsteer.errors import PathsteerError
from pathsteer.gateways.haproxy import ServerState, parse_servers_state

SERVER_STATES = ("ready", "drain", "maint")
MAX_WEIGHT = 256  # management.txt "set server <backend>/<server> weight": 0 to 256

_SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})")
_ACL_ENTRY = re.compile(r"0x[0-9a-fA-F]+ (.*)")


class RuntimeApiError(PathsteerError):
    """Could not talk to HAProxy: socket missing, connection refused, timeout, I/O error."""


class RuntimeApiRefused(RuntimeApiError):
    """HAProxy answered, with an error (``No such server.``, ``Permission denied``...).
    ``answer`` is HAProxy's text as it came; the message is one line."""

    def __init__(self, message: str, answer: str) -> None:
        super().__init__(message)
        self.answer = answer


class HaproxyRuntime:
    """Client of one runtime API socket. ``address``: ``unix:/path`` or ``/path``, or
    ``tcp:HOST:PORT`` / ``HOST:PORT`` (IPv4 or a name; IPv6 as ``[v6]:PORT``)."""

    __slots__ = ("_address", "_path", "_host", "_port", "timeout_s")

    def __init__(self, address: str, *, timeout_s: float = 2.0) -> None:
        if not timeout_s > 0:
            raise ValueError(f"haproxy runtime timeout_s: {timeout_s!r} is not a positive number of seconds")
        self._path, self._host, self._port = _parse_address(address)
        if self._path is not None:
            self._address = f"unix:{self._path}"
        else:
            host = f"[{self._host}]" if ":" in str(self._host) else self._host
            self._address = f"tcp:{host}:{self._port}"
        self.timeout_s = timeout_s

    @property
    def address(self) -> str:
        """The socket, normalised: ``unix:/path`` or ``tcp:host:port``."""
        return self._address

    def __repr__(self) -> str:
        return f"HaproxyRuntime({self._address!r}, timeout_s={self.timeout_s})"

    async def command(self, line: str) -> str:
        """Send one command, return HAProxy's raw answer. ValueError for a line holding a newline
        or ``;`` (HAProxy would run what follows as another command); RuntimeApiError when the
        socket cannot be reached or the whole exchange takes more than ``timeout_s``."""
        _check_line(line)
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._exchange(line)
        except TimeoutError:
            raise RuntimeApiError(f"haproxy runtime {self._address}: {line}: "
                                  f"no answer within {self.timeout_s:g} s") from None
        except OSError as e:  # FileNotFoundError, ConnectionRefusedError, ConnectionResetError...
            raise RuntimeApiError(f"haproxy runtime {self._address}: {line}: "
                                  f"{e.strerror or type(e).__name__}") from None

    async def _exchange(self, line: str) -> str:
        if self._path is not None:
            reader, writer = await asyncio.open_unix_connection(self._path)
        else:
            reader, writer = await asyncio.open_connection(self._host, self._port)
        try:
            writer.write(line.encode() + b"\n")
            await writer.drain()
            # Non-interactive mode: HAProxy closes after the answer, so EOF ends it.
            data = await reader.read()
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:  # a reset on close loses nothing: the answer is read
                pass
        return data.decode("utf-8", "replace")

    async def _write(self, line: str) -> None:
        """A command whose success is a blank answer; anything else is HAProxy's refusal."""
        answer = await self.command(line)
        if answer.strip():
            raise self._refused(line, answer)

    def _refused(self, line: str, answer: str) -> RuntimeApiRefused:
        text = " ".join(part.strip() for part in answer.splitlines() if part.strip())
        if len(text) > 300:  # "Unknown command" lists the help: the start says enough
            text = text[:297] + "..."
        return RuntimeApiRefused(f"haproxy runtime {self._address}: {line}: {text or 'empty answer'}", answer)

    async def servers_state(self, backend: str | None = None) -> dict[tuple[str, str], ServerState]:
        """``show servers state [backend]``: ``(backend, server) -> ServerState``. An unknown
        backend is refused (``Can't find backend.``)."""
        line = "show servers state" if backend is None else f"show servers state {_name('backend', backend)}"
        answer = await self.command(line)
        first = answer.lstrip().split("\n", 1)[0].strip()
        if not first.isdigit():  # not a format version: HAProxy's error text
            raise self._refused(line, answer)
        try:
            return parse_servers_state(answer)
        except ValueError as e:
            raise RuntimeApiError(f"haproxy runtime {self._address}: {line}: {e}") from None

    async def stat(self) -> list[dict[str, str]]:
        """``show stat``: one dict per proxy and server row, keyed by the header's names
        (``pxname``, ``svname``, ``weight``...); empty cells are ``""``."""
        line = "show stat"
        answer = await self.command(line)
        lines = answer.splitlines()
        if not lines or not lines[0].startswith("# "):
            raise self._refused(line, answer)
        # Header and rows end with ","; the empty name that gives is no column.
        names = lines[0][2:].split(",")
        rows = []
        for row in lines[1:]:
            if not row.strip():
                continue
            rows.append({n: v for n, v in zip(names, row.split(","), strict=False) if n})
        return rows

    async def set_weight(self, backend: str, server: str, weight: int) -> None:
        """``set server B/S weight N``, N in 0..256 (0: no new traffic)."""
        if type(weight) is not int or not 0 <= weight <= MAX_WEIGHT:
            raise ValueError(f"haproxy runtime weight: {weight!r} is not an integer in 0..{MAX_WEIGHT}")
        await self._write(f"set server {_server(backend, server)} weight {weight}")

    async def set_state(self, backend: str, server: str, state: str) -> None:
        """``set server B/S state ready|drain|maint``; drain sets the 0x08 admin bit, ready clears it."""
        if state not in SERVER_STATES:
            raise ValueError(f"haproxy runtime state: {state!r} is not one of {', '.join(SERVER_STATES)}")
        await self._write(f"set server {_server(backend, server)} state {state}")

    async def acl_entries(self, acl: str) -> list[str]:
        """``show acl <file or #id>``: the values (``10.0.0.1``, ``192.0.2.0/24``...), in order.
        An unknown ACL is refused."""
        line = f"show acl {_name('acl', acl)}"
        answer = await self.command(line)
        values = []
        for row in answer.splitlines():
            if not row.strip():
                continue
            m = _ACL_ENTRY.fullmatch(row)
            if m is None:  # not "0x<ref> <value>": the error text
                raise self._refused(line, answer)
            values.append(m.group(1))
        return values

    async def add_acl(self, acl: str, value: str) -> None:
        """``add acl <acl> <value>``. HAProxy adds a value already there once more."""
        await self._write(f"add acl {_name('acl', acl)} {_name('acl value', value)}")

    async def del_acl(self, acl: str, value: str) -> None:
        """``del acl <acl> <value>``: removes every copy; a value not there is refused (``Key not found.``)."""
        await self._write(f"del acl {_name('acl', acl)} {_name('acl value', value)}")


def _check_line(line: str) -> None:
    if "\n" in line or "\r" in line or ";" in line:
        raise ValueError(f"haproxy runtime command: {line[:80]!r} holds a newline or ';' (one command at a time)")
    if not line.strip():
        raise ValueError("haproxy runtime command: empty")


def _name(field: str, value: str) -> str:
    """A word of a command: non-empty, no whitespace (HAProxy splits arguments on it)."""
    if type(value) is not str or not value or any(c.isspace() for c in value):
        raise ValueError(f"haproxy runtime {field}: {value!r} is empty or holds whitespace")
    if ";" in value:
        raise ValueError(f"haproxy runtime {field}: {value!r} holds ';'")
    return value


def _server(backend: str, server: str) -> str:
    for field, value in (("backend", backend), ("server", server)):
        if "/" in _name(field, value):
            raise ValueError(f"haproxy runtime {field}: {value!r} holds '/'")
    return f"{backend}/{server}"


def _parse_address(address: str) -> tuple[str | None, str | None, int | None]:
    """``(path, None, None)`` or ``(None, host, port)``; ValueError naming a bad address."""
    bad = f"haproxy runtime address: {address!r} is not unix:/path, /path, tcp:HOST:PORT or HOST:PORT"
    if type(address) is not str or not address or any(c.isspace() or c == "\0" for c in address):
        raise ValueError(bad)
    if address.startswith("unix:") or address.startswith("/"):
        path = address[5:] if address.startswith("unix:") else address
        if not path:
            raise ValueError(bad)
        if len(path.encode()) > _SUN_PATH_MAX:
            raise ValueError(f"haproxy runtime address: {address!r}: a Unix socket path is at most {_SUN_PATH_MAX} bytes")
        return path, None, None
    rest = address[4:] if address.startswith("tcp:") else address
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(bad)
    if host.startswith("[") and host.endswith("]"):
        try:
            host = str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise ValueError(bad) from None
    elif not _HOSTNAME.fullmatch(host) or ":" in host:
        raise ValueError(bad)
    elif host.replace(".", "").isdigit():  # looks like IPv4: must be one
        try:
            host = str(ipaddress.IPv4Address(host))
        except ValueError:
            raise ValueError(bad) from None
    return None, host, int(port)
