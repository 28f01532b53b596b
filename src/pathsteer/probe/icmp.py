"""ICMP and ICMPv6 echo (RFC 792 "Echo or Echo Reply Message"; RFC 4443 §4.1, §4.2). Pure codecs.

Echo: Type (1) | Code (1) | Checksum (2) | Identifier (2) | Sequence Number (2) | Data.
Our data starts with the magic ``PSTR`` and a 4-octet session token, so a reply with our
identifier but someone else's data is recognised as foreign.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

ECHO_REQUEST_V4, ECHO_REPLY_V4 = 8, 0  # RFC 792
ECHO_REQUEST_V6, ECHO_REPLY_V6 = 128, 129  # RFC 4443 §4.1, §4.2
# ICMP errors that quote our probe (RFC 792: the original IP header + 64 bits of data).
ERRORS_V4 = {3, 11, 12}  # destination unreachable, time exceeded, parameter problem
ERRORS_V6 = {1, 2, 3, 4}  # RFC 4443 §3.1-3.4

HEADER = struct.Struct("!BBHHH")
MAGIC = b"PSTR"
DATA_HEADER = struct.Struct("!4sI")  # magic, token


class MalformedPacket(ValueError):
    """Bytes that are not an ICMP message we can read."""


def _sum16(data: bytes) -> int:
    """The sum of ``data``'s 16-bit big-endian words (a zero octet pads an odd length)."""
    if len(data) % 2:
        data += b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def _fold(total: int) -> int:
    """The ones' complement of the ones' complement sum ``total`` (carries folded in)."""
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): ones' complement of the ones' complement sum."""
    return _fold(_sum16(data))


@dataclass(frozen=True)
class Echo:
    type: int
    ident: int
    seq: int
    data: bytes

    @property
    def token(self) -> int | None:
        """Our session token, or None when the data is not ours."""
        if len(self.data) < DATA_HEADER.size:
            return None
        magic, token = DATA_HEADER.unpack_from(self.data)
        return token if magic == MAGIC else None


@dataclass(frozen=True)
class Error:
    """An ICMP error quoting an echo request of ours."""

    type: int
    code: int
    ident: int
    seq: int


def echo_data(token: int, padding: int = 0) -> bytes:
    return DATA_HEADER.pack(MAGIC, token & 0xFFFFFFFF) + bytes(padding)


def encode_echo_request(version: int, ident: int, seq: int, data: bytes) -> bytes:
    """An echo request. IPv4: checksum filled in; IPv6: left 0 because the kernel fills it
    for raw ICMPv6 sockets (RFC 3542 §3.1: the checksum covers a pseudo-header we do not see)."""
    return EchoSession(version, ident, data).request(seq)


class EchoSession:
    """One prober's echo requests and the replies that are surely its own, per packet
    without building objects: the data (``echo_data``: magic, token, padding) is fixed, so a
    request is its header packed over the data with the checksum updated for the sequence
    number (RFC 1624: the sum of the fixed words is kept), and a reply is ours when its type,
    identifier and data head match at fixed offsets. Anything else goes to `decode`."""

    __slots__ = ("version", "ident", "data", "_kind", "_reply", "_sum", "_head")

    def __init__(self, version: int, ident: int, data: bytes) -> None:
        self.version = version
        self.ident = ident & 0xFFFF
        self.data = data
        self._kind = ECHO_REQUEST_V4 if version == 4 else ECHO_REQUEST_V6
        # IPv6: no checksum of ours, the kernel fills it (RFC 3542 §3.1)
        self._sum = _sum16(HEADER.pack(self._kind, 0, 0, self.ident, 0) + data) if version == 4 else 0
        # an echo reply's type, code, (checksum skipped), identifier: then our data's head
        self._reply = ECHO_REPLY_V4 if version == 4 else ECHO_REPLY_V6
        self._head = data[:DATA_HEADER.size]

    def request(self, seq: int) -> bytes:
        """`encode_echo_request(version, ident, seq, data)`, byte for byte."""
        seq &= 0xFFFF
        csum = _fold(self._sum + seq) if self.version == 4 else 0
        return HEADER.pack(self._kind, 0, csum, self.ident, seq) + self.data

    def reply_seq(self, packet: bytes) -> int | None:
        """The 16-bit sequence number when ``packet`` (as the raw socket gives it: IPv4 with
        its IP header, ICMPv6 without) is an echo reply of this session, identifier and token
        both ours; None for anything else, which `decode` then reads."""
        if self.version == 4:
            if len(packet) < 20 or packet[0] >> 4 != 4:
                return None
            at = (packet[0] & 0x0F) * 4
            if at < 20:
                return None
        else:
            at = 0
        head = self._head
        end = at + HEADER.size
        if (len(packet) < end + len(head) or packet[at] != self._reply or packet[at + 1] != 0
                or (packet[at + 4] << 8 | packet[at + 5]) != self.ident
                or packet[end:end + len(head)] != head):
            return None
        return packet[at + 6] << 8 | packet[at + 7]


def strip_ipv4_header(packet: bytes) -> bytes:
    """Raw IPv4 sockets deliver the IP header; drop it (IHL in 32-bit words, RFC 791 §3.1)."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        raise MalformedPacket("not an IPv4 packet")
    ihl = (packet[0] & 0x0F) * 4
    if ihl < 20 or len(packet) < ihl:
        raise MalformedPacket("bad IPv4 header length")
    return packet[ihl:]


def decode(version: int, message: bytes) -> Echo | Error | None:
    """An echo reply, an error quoting one of our echo requests, or None for other ICMP."""
    if len(message) < HEADER.size:
        raise MalformedPacket(f"{len(message)} octets is shorter than an ICMP header")
    kind, code, _csum, ident, seq = HEADER.unpack_from(message)
    if kind == (ECHO_REPLY_V4 if version == 4 else ECHO_REPLY_V6):
        return Echo(kind, ident, seq, bytes(message[HEADER.size:]))
    if kind in (ERRORS_V4 if version == 4 else ERRORS_V6):
        quoted = message[8:]
        try:
            inner = strip_ipv4_header(quoted) if version == 4 else quoted[40:]
        except MalformedPacket:
            return None
        if len(inner) < HEADER.size:
            return None
        ikind, _c, _s, iident, iseq = HEADER.unpack_from(inner)
        if ikind == (ECHO_REQUEST_V4 if version == 4 else ECHO_REQUEST_V6):
            return Error(kind, code, iident, iseq)
    return None
