"""TWAMP-light test packets, unauthenticated mode (RFC 5357 §4.1.2 and §4.2.1). Pure codecs.

Sender packet (§4.1.2)::

    0                   1                   2                   3
    |        Sequence Number (4)        |  Timestamp (8, NTP format) ...
    |  Error Estimate (2)  |  Packet Padding ...

Reflector packet (§4.2.1)::

    Sequence Number (4) | Timestamp (8) | Error Estimate (2) | MBZ (2)
    Receive Timestamp (8) | Sender Sequence Number (4) | Sender Timestamp (8)
    Sender Error Estimate (2) | MBZ (2) | Sender TTL (1) | Packet Padding

The reflector header is 41 octets, the sender's 14; §4.1.2 has the sender pad with at
least 27 octets so that both directions carry the same size, and the reflector drops 27
octets of the sender's padding (RFC 6038 §4.2 symmetric size), so a reply is never larger
than its request once the request is 41 octets or more.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SENDER_HEADER = struct.Struct("!IQH")  # 14 octets
REFLECTOR_HEADER = struct.Struct("!IQHHQIQHHB")  # 41 octets
SENDER_MIN = SENDER_HEADER.size
REFLECTOR_MIN = REFLECTOR_HEADER.size
SYMMETRIC_PADDING = REFLECTOR_MIN - SENDER_MIN  # 27
MAX_PACKET = 65507

NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01 (RFC 5905 §6)


class MalformedPacket(ValueError):
    """Bytes that are not a TWAMP test packet of the expected kind."""


def to_ntp(unix_s: float) -> int:
    """64-bit NTP timestamp (RFC 5905 §6: 32-bit seconds since 1900, 32-bit fraction)."""
    seconds = int(unix_s)
    fraction = int((unix_s - seconds) * (1 << 32))
    return (((seconds + NTP_UNIX_OFFSET) & 0xFFFFFFFF) << 32) | (fraction & 0xFFFFFFFF)


def from_ntp(ntp: int) -> float:
    return (ntp >> 32) - NTP_UNIX_OFFSET + (ntp & 0xFFFFFFFF) / (1 << 32)


def ntp_delta_s(later: int, earlier: int) -> float:
    """later - earlier in seconds, modulo the 2^64 NTP wrap."""
    d = (later - earlier) & 0xFFFFFFFFFFFFFFFF
    if d >= 1 << 63:
        d -= 1 << 64
    return d / (1 << 32)


def error_estimate(*, synchronized: bool, scale: int, multiplier: int) -> int:
    """RFC 4656 §4.1.2: S (clock synchronized) | Z (0: NTP format) | Scale (6 bits) |
    Multiplier (8 bits, not 0); the error is Multiplier × 2^-32 × 2^Scale seconds."""
    if not 0 <= scale < 64 or not 1 <= multiplier < 256:
        raise ValueError("scale must be 0-63 and multiplier 1-255")
    return (0x8000 if synchronized else 0) | (scale << 8) | multiplier


def error_estimate_s(value: int) -> float:
    return (value & 0xFF) * 2.0 ** (((value >> 8) & 0x3F) - 32)


# Our clocks are not known to be synchronized: S=0; error 1 × 2^(22-32) s ≈ 1 ms.
DEFAULT_ERROR_ESTIMATE = error_estimate(synchronized=False, scale=22, multiplier=1)


@dataclass(frozen=True)
class SenderPacket:
    seq: int
    timestamp: int  # NTP format
    error_estimate: int
    padding: bytes = b""


@dataclass(frozen=True)
class ReflectorPacket:
    seq: int
    timestamp: int  # when the reflector sent it (NTP)
    error_estimate: int
    receive_timestamp: int  # when the reflector received the sender's packet (NTP)
    sender_seq: int
    sender_timestamp: int
    sender_error_estimate: int
    sender_ttl: int
    padding: bytes = b""


def encode_sender(p: SenderPacket) -> bytes:
    return SENDER_HEADER.pack(p.seq, p.timestamp, p.error_estimate) + p.padding


def decode_sender(data: bytes) -> SenderPacket:
    if len(data) < SENDER_MIN:
        raise MalformedPacket(f"{len(data)} octets is shorter than a TWAMP sender packet ({SENDER_MIN})")
    if len(data) > MAX_PACKET:
        raise MalformedPacket(f"{len(data)} octets is longer than a UDP datagram can be")
    seq, ts, err = SENDER_HEADER.unpack_from(data)
    return SenderPacket(seq, ts, err, bytes(data[SENDER_MIN:]))


def encode_reflector(p: ReflectorPacket) -> bytes:
    return (
        REFLECTOR_HEADER.pack(
            p.seq, p.timestamp, p.error_estimate, 0, p.receive_timestamp,
            p.sender_seq, p.sender_timestamp, p.sender_error_estimate, 0, p.sender_ttl,
        )
        + p.padding
    )


def decode_reflector(data: bytes) -> ReflectorPacket:
    if len(data) < REFLECTOR_MIN:
        raise MalformedPacket(f"{len(data)} octets is shorter than a TWAMP reflector packet ({REFLECTOR_MIN})")
    seq, ts, err, _mbz1, rx, sseq, sts, serr, _mbz2, ttl = REFLECTOR_HEADER.unpack_from(data)
    return ReflectorPacket(seq, ts, err, rx, sseq, sts, serr, ttl, bytes(data[REFLECTOR_MIN:]))


def reflect(
    request: SenderPacket,
    *,
    seq: int,
    receive_timestamp: int,
    timestamp: int,
    ttl: int,
    error_estimate_value: int = DEFAULT_ERROR_ESTIMATE,
) -> ReflectorPacket:
    """The reply to ``request`` (§4.2.1), padding cut by 27 octets (RFC 6038 §4.2)."""
    return ReflectorPacket(
        seq=seq & 0xFFFFFFFF,
        timestamp=timestamp,
        error_estimate=error_estimate_value,
        receive_timestamp=receive_timestamp,
        sender_seq=request.seq,
        sender_timestamp=request.timestamp,
        sender_error_estimate=request.error_estimate,
        sender_ttl=ttl & 0xFF,
        padding=request.padding[SYMMETRIC_PADDING:],
    )
