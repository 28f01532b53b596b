"""The operator surface's sections: ``api`` (HTTP API, dashboard, /metrics), ``metrics`` and
``history`` (SQLite under ``state_dir``). All three are on by default: a file without them gets
the API on 127.0.0.1:9180 and a Unix socket beside the control socket, and a history."""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Annotated

from pydantic import BeforeValidator, Field, field_validator, model_validator

from pathsteer.config.fields import AbsolutePath, Duration
from pathsteer.config.sections import Section

DEFAULT_LISTEN = "127.0.0.1:9180"
DEFAULT_STATE_DIR = "/var/lib/pathsteer"
_SIZE_RE = re.compile(r"([0-9]+(?:\.[0-9]*)?)\s*([kmgt]i?b?|b)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "ki": 1024, "kib": 1024, "m": 1e6, "mb": 1e6, "mi": 1 << 20,
               "mib": 1 << 20, "g": 1e9, "gb": 1e9, "gi": 1 << 30, "gib": 1 << 30, "t": 1e12, "tb": 1e12,
               "ti": 1 << 40, "tib": 1 << 40}


def _size(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str) and (m := _SIZE_RE.fullmatch(value.strip())):
        n = int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()])
    else:
        raise ValueError("is not a size (examples: 65536, 64KiB, 256MiB, 1GB)")
    if n <= 0:
        raise ValueError("must be a size above 0")
    return n


Size = Annotated[int, BeforeValidator(_size)]  # bytes


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9180`` for IPv6) → (host, port); raises ValueError."""
    if not isinstance(value, str):
        raise ValueError("is not host:port (examples: 127.0.0.1:9180, [::1]:9180, 0.0.0.0:9180)")
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:([0-9]{1,5})|([0-9.]+|localhost):([0-9]{1,5})", value.strip())
    if not m:
        raise ValueError("is not host:port (examples: 127.0.0.1:9180, [::1]:9180, 0.0.0.0:9180)")
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"has {host!r}, not an IP address") from None
    port_n = int(port)
    if not 1 <= port_n <= 65535:
        raise ValueError("has a port outside 1-65535")
    return host, port_n


def is_loopback(host: str) -> bool:
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


class ApiConfig(Section):
    """``api``: the HTTP API (``/api/v1/``), the dashboard (``/``) and ``/metrics``.

    ``listen`` is TCP (null: none); ``socket`` a Unix socket (default: beside the control
    socket, ``<control socket without .sock>-api.sock``; null: none). Reads are open; writes
    need the bearer token in ``token_file``. Listening beyond loopback needs a token."""

    enabled: bool = True
    listen: str | None = DEFAULT_LISTEN
    socket: str | None = "auto"
    token_file: AbsolutePath | None = None
    cert: AbsolutePath | None = None
    key: AbsolutePath | None = None
    max_body: Size = 65536

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value

    @field_validator("socket")
    @classmethod
    def _socket(cls, value: str | None) -> str | None:
        if value not in (None, "auto") and (not value.startswith("/") or len(value.encode()) > 107):
            raise ValueError("must be 'auto' or an absolute path of at most 107 bytes")
        return value

    @model_validator(mode="after")
    def _rules(self) -> ApiConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError(".cert and .key: TLS needs both (or neither)")
        if self.listen is not None and not is_loopback(parse_listen(self.listen)[0]) and self.token_file is None:
            raise ValueError(f".listen: {self.listen!r} is beyond loopback: set api.token_file (writes need a token) "
                             "or listen on 127.0.0.1")
        return self

    def socket_path(self, control_socket: str) -> str | None:
        if self.socket != "auto":
            return self.socket
        return control_socket.removesuffix(".sock") + "-api.sock"

    @property
    def address(self) -> tuple[str, int] | None:
        return parse_listen(self.listen) if self.listen is not None else None


class MetricsConfig(Section):
    """``metrics``: Prometheus ``/metrics`` on the API's listeners. Per-prefix series stop at
    ``per_prefix_limit`` prefixes (the rest are summed into ``prefix="_other"``)."""

    enabled: bool = True
    per_prefix_limit: int = Field(default=1000, ge=0, le=1_000_000)


class HistoryConfig(Section):
    """``history``: every event and per-path rollups (every ``rollup_interval``) in SQLite at
    ``<state_dir>/history.sqlite``, kept for ``retention`` and within ``max_size``."""

    enabled: bool = True
    state_dir: AbsolutePath = DEFAULT_STATE_DIR
    retention: Duration = 7 * 86400.0
    max_size: Size = 256 << 20
    rollup_interval: Duration = 10.0

    @field_validator("rollup_interval")
    @classmethod
    def _rollup(cls, value: float) -> float:
        if not 1.0 <= value <= 3600.0:
            raise ValueError("must be between 1s and 1h")
        return value

    @field_validator("max_size")
    @classmethod
    def _max_size(cls, value: int) -> int:
        if value < 1 << 20:
            raise ValueError("must be at least 1MiB")
        return value

    @property
    def path(self) -> str:
        return os.path.join(self.state_dir, "history.sqlite")
