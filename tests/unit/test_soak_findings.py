"""Regressions for defects the soak (bench/soak.py) found, checked without root."""

from __future__ import annotations

import pytest

from pathsteer.control.protocol import ProtocolError, Request


@pytest.mark.parametrize("line", [
    b'{"command": "daemon.status", "args": {"x": ' + b"9" * 5000 + b"}}",   # int beyond 4300 digits
    b"[" * 100000,                                                          # nesting past the recursion limit
])
def test_control_lines_json_cannot_hold_get_an_error_not_a_dropped_connection(line):
    # the soak's malformed control traffic: each raised past Request.decode (ValueError,
    # RecursionError), asyncio logged "Unhandled exception in client_connected_cb" and the
    # client's connection was closed without a reply
    with pytest.raises(ProtocolError, match="not usable JSON"):
        Request.decode(line)
