"""Annotated field types shared by config sections: each validator raises ValueError with a
message that reads after the value (``'10.0.0.0/33' is not a CIDR``), see load.format_error."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

from pathsteer.errors import UsageError
from pathsteer.guard.rules import PROTOCOLS, Network, parse_cidr, parse_port_range
from pathsteer.units import parse_duration

IFNAME_RE = re.compile(r"[^\s/]{1,15}")


def _cidr(value: object) -> Network:
    try:
        return parse_cidr(value, "")
    except UsageError as exc:
        raise ValueError(str(exc).split(": ", 1)[1].split(" ", 1)[1]) from None  # "is not a CIDR ..."


def _duration(value: object) -> float:
    try:
        seconds = parse_duration(value, "")
    except UsageError:
        raise ValueError("is not a duration (examples: 30s, 10m, 1h)") from None
    if seconds <= 0:
        raise ValueError("must be a duration above 0")
    return seconds


def _pps(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("is not a whole number of packets per second")
    try:
        n = int(str(value).strip().removesuffix("pps").strip())
    except ValueError:
        raise ValueError("is not a whole number of packets per second") from None
    if not 1 <= n <= 1_000_000_000:
        raise ValueError("must be between 1 and 1000000000 packets per second")
    return n


def _interface(value: object) -> str:
    if not isinstance(value, str) or not IFNAME_RE.fullmatch(value):
        raise ValueError("is not an interface name (1-15 characters, no spaces or '/')")
    return value


def _ports(value: object) -> tuple[int, int]:
    try:
        return parse_port_range(value, "")
    except UsageError as exc:
        raise ValueError(str(exc).split(": ", 1)[1].split(" ", 1)[1]) from None


def _proto(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255:
        return value
    if isinstance(value, str) and value.lower() in PROTOCOLS:
        return PROTOCOLS[value.lower()]
    raise ValueError(f"is not a protocol ({', '.join(PROTOCOLS)} or a number 0-255)")


Cidr = Annotated[Network, BeforeValidator(_cidr), PlainSerializer(str)]
Duration = Annotated[float, BeforeValidator(_duration)]
Pps = Annotated[int, BeforeValidator(_pps)]
InterfaceName = Annotated[str, BeforeValidator(_interface)]
PortRange = Annotated[tuple[int, int], BeforeValidator(_ports)]
Protocol = Annotated[int, BeforeValidator(_proto)]
