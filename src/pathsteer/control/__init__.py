"""The control socket: a Unix stream socket speaking JSON lines.

::

    client ── {"id": 1, "command": "guard.block", "args": {"cidr": "192.0.2.0/24"}}\\n ──► server
           ◄─ {"id": 1, "ok": true, "result": {...}}\\n
           ◄─ {"id": 1, "ok": false, "error": "guard.block: 'x' is not a CIDR", "exit_code": 2}\\n

``protocol`` the messages (pure codecs); ``server`` the asyncio server with a command registry
(`Command`: name, pydantic args model, handler); ``client`` a small synchronous client for the
CLI. Garbage from a client gets an error reply; the daemon keeps running.
"""

from pathsteer.control.client import ControlClient, ControlError
from pathsteer.control.protocol import Request, Response
from pathsteer.control.server import Command, ControlServer, NoArgs

__all__ = ["Command", "ControlClient", "ControlError", "ControlServer", "NoArgs", "Request", "Response"]
