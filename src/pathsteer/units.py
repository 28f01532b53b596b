"""Parsers for the units users write: durations, percentages, rates, CIDRs, port ranges.

Each parser takes the text and the name of the field it came from, so its error names both:
``--delay: '10xs' is not a duration (examples: 10ms, 1.5s, 250us)``.
"""

from __future__ import annotations

import ipaddress
import math
import re

from pathsteer.errors import UsageError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PROTOCOLS = {"any": 0, "icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58}  # the names a rule's protocol may take

_NUMBER = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_DURATION_RE = re.compile(_NUMBER + r"\s*(us|µs|ms|s|m|h|d)?")
_DURATION_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_RATE_RE = re.compile(_NUMBER + r"\s*(bit|kbit|mbit|gbit|tbit|bps|kbps|mbps|gbps)?", re.IGNORECASE)
# tc's convention: "bit" units are bits per second, "bps" units are bytes per second.
_RATE_UNITS = {
    None: 1, "bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
    "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9,
}


def parse_duration(text: str | float | int, field: str, *, default_unit: str = "s") -> float:
    """Seconds from ``10ms``, ``1.5s``, ``250us``, ``2m``; a bare number is in ``default_unit``."""
    if isinstance(text, bool):
        raise UsageError(f"{field}: {text!r} is not a duration (examples: 10ms, 1.5s, 250us)")
    if isinstance(text, (int, float)):
        value = float(text) * _DURATION_UNITS[default_unit]
    else:
        m = _DURATION_RE.fullmatch(text.strip())
        if not m:
            raise UsageError(f"{field}: {text!r} is not a duration (examples: 10ms, 1.5s, 250us)")
        unit = m.group(2) or default_unit
        value = float(m.group(1)) * _DURATION_UNITS[unit]
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{field}: {text!r} must be a finite duration of 0 or more")
    return value


def parse_ttl(value: str | float | int | None, field: str = "ttl") -> float | None:
    """A time to live in seconds from ``600``, ``"600"``, ``"10m"``, ``"1.5h"`` (drains, guard
    blocks); None stays None (no expiry). Above 0."""
    if value is None:
        return None
    seconds = parse_duration(value, field)
    if seconds <= 0:
        raise UsageError(f"{field}: {value!r} must be a duration above 0 (examples: 30s, 10m, 2h)")
    return seconds


def parse_percent(text: str | float | int, field: str) -> float:
    """A percentage from ``5%``, ``5`` or ``0.5%``; returns percent points (0..100)."""
    if isinstance(text, bool):
        raise UsageError(f"{field}: {text!r} is not a percentage (examples: 5%, 0.5%)")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = re.fullmatch(_NUMBER + r"\s*%?", text.strip())
        if not m:
            raise UsageError(f"{field}: {text!r} is not a percentage (examples: 5%, 0.5%)")
        value = float(m.group(1))
    if not math.isfinite(value) or not 0.0 <= value <= 100.0:
        raise UsageError(f"{field}: {text!r} must be between 0% and 100%")
    return value


def parse_rate(text: str | float | int, field: str) -> int:
    """Bits per second from ``100mbit``, ``1gbit``, ``500kbit`` (tc's units; ``mbps`` is bytes)."""
    if isinstance(text, bool):
        raise UsageError(f"{field}: {text!r} is not a rate (examples: 100mbit, 1gbit)")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = _RATE_RE.fullmatch(text.strip())
        if not m:
            raise UsageError(f"{field}: {text!r} is not a rate (examples: 100mbit, 1gbit)")
        unit = m.group(2).lower() if m.group(2) else None
        value = float(m.group(1)) * _RATE_UNITS[unit]
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{field}: {text!r} must be a rate of 0 or more")
    return int(value)


def format_duration(seconds: float) -> str:
    """Short human form: ``250us``, ``12.5ms``, ``3s``."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:g}us"
    if seconds < 1.0:
        return f"{seconds * 1e3:g}ms"
    return f"{seconds:g}s"


def parse_cidr(text: object, field_name: str) -> Network:
    """``10.0.0.0/8`` or ``2001:db8::/32`` (a bare address is a /32 or /128). Host bits set
    are refused: ``10.0.0.1/8`` is probably a typo, and would be silently widened."""
    if not isinstance(text, str):
        raise UsageError(f"{field_name}: {text!r} is not a CIDR (examples: 192.0.2.0/24, 2001:db8::/48)")
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        detail = " (host bits set)" if "host bits" in str(exc) else ""
        raise UsageError(f"{field_name}: {text!r} is not a CIDR{detail} (examples: 192.0.2.0/24, 2001:db8::/48)") from None


def parse_port_range(text: object, field_name: str) -> tuple[int, int]:
    """``53``, ``1000-2000``, ``any`` (or None) → inclusive (low, high)."""
    if text is None or text == "any":
        return (0, 65535)
    try:
        if isinstance(text, bool):
            raise ValueError
        if isinstance(text, int):
            low = high = text
        else:
            lo, _, hi = str(text).partition("-")
            low, high = int(lo), int(hi or lo)
    except ValueError:
        raise UsageError(f"{field_name}: {text!r} is not a port or port range (examples: 53, 1000-2000, any)") from None
    if not 0 <= low <= high <= 65535:
        raise UsageError(f"{field_name}: {text!r} is not a port range within 0-65535")
    return (low, high)
