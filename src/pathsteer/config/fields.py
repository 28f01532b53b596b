"""Annotated field types shared by config sections: each validator raises ValueError with a
message that reads after the value (``'10.0.0.0/33' is not a CIDR``), see load.format_error."""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

from pathsteer.errors import UsageError
from pathsteer.units import PROTOCOLS, Network, parse_cidr, parse_duration, parse_percent, parse_port_range, parse_rate

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


def _address(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if not isinstance(value, str | ipaddress.IPv4Address | ipaddress.IPv6Address):
        raise ValueError("is not an IP address")
    try:
        return ipaddress.ip_address(value.strip() if isinstance(value, str) else value)
    except ValueError:
        raise ValueError("is not an IPv4 or IPv6 address") from None


def _prefix(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(value, str):
        raise ValueError("is not a prefix (examples: 198.51.100.0/24, 2001:db8:100::/48)")
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError("is not a prefix (examples: 198.51.100.0/24, 2001:db8:100::/48)") from None


def _strict_prefix(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    net = _prefix(value)
    if str(net.network_address) != str(value).strip().split("/")[0] and "/" in str(value):
        raise ValueError(f"has host bits set (did you mean {net}?)")
    return net


def _absolute(value: object) -> str:
    if not isinstance(value, str) or not os.path.isabs(value):
        raise ValueError("must be an absolute path")
    return value


def _short_duration(value: object) -> float:
    """A duration that may be 0 (hold_down: 0 moves at once)."""
    try:
        seconds = parse_duration(value, "")
    except UsageError:
        raise ValueError("is not a duration (examples: 20ms, 1s, 1.5s)") from None
    return seconds


def _rate(value: object) -> int:
    try:
        bps = parse_rate(value, "")
    except UsageError:
        raise ValueError("is not a rate (examples: 100mbit, 1gbit, 500kbit)") from None
    if bps <= 0:
        raise ValueError("must be a rate above 0")
    return bps


def _percent(value: object) -> float:
    """Percent points (0..100) from ``5%`` or ``5``."""
    try:
        return parse_percent(value, "")
    except UsageError as exc:
        raise ValueError(str(exc).removeprefix(f": {value!r} ")) from None


def _fraction(value: object) -> float:
    """A fraction from ``10%`` (0.1); a bare number below 1 is taken as a fraction already."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1:
        return float(value)
    return _percent(value) / 100.0


Cidr = Annotated[Network, BeforeValidator(_cidr), PlainSerializer(str)]
Duration = Annotated[float, BeforeValidator(_duration)]
Pps = Annotated[int, BeforeValidator(_pps)]
InterfaceName = Annotated[str, BeforeValidator(_interface)]
PortRange = Annotated[tuple[int, int], BeforeValidator(_ports)]
Protocol = Annotated[int, BeforeValidator(_proto)]
IpAddress = Annotated[ipaddress.IPv4Address | ipaddress.IPv6Address, BeforeValidator(_address), PlainSerializer(str)]
Prefix = Annotated[ipaddress.IPv4Network | ipaddress.IPv6Network, BeforeValidator(_strict_prefix),
                   PlainSerializer(str)]
AbsolutePath = Annotated[str, BeforeValidator(_absolute)]
Seconds = Annotated[float, BeforeValidator(_short_duration)]  # a duration, 0 allowed
Rate = Annotated[int, BeforeValidator(_rate)]  # bit/s
Percent = Annotated[float, BeforeValidator(_percent)]  # percent points 0..100
Fraction = Annotated[float, BeforeValidator(_fraction)]  # 0..1 from "10%"
