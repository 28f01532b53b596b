"""Opening sockets pinned to a path and reading them with kernel receive timestamps.

Receive times come from SO_TIMESTAMPNS (the time the packet reached the socket layer,
CLOCK_REALTIME), converted to the monotonic clock by the caller, so a busy event loop
does not add its own delay to the RTT.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

from pathsteer.probe.pinning import Pin

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # asm-generic/socket.h (the "old" 64-bit timespec form)
SO_MARK = getattr(socket, "SO_MARK", 36)
TIMESPEC = struct.Struct("@qq")
ANCILLARY = 256
MAX_DATAGRAM = 65535


def _pin_socket(sock: socket.socket, pin: Pin) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, pin.interface.encode())
    if pin.mark is not None:
        sock.setsockopt(socket.SOL_SOCKET, SO_MARK, pin.mark)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setblocking(False)


def open_icmp(pin: Pin) -> socket.socket:
    """A raw ICMP (or ICMPv6) socket pinned to ``pin``. Raw, not the unprivileged ping
    socket: ping sockets need net.ipv4.ping_group_range, "1 0" (off) in a new namespace."""
    if pin.version == 4:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    else:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        # ICMP6_FILTER would save wake-ups; replies and errors are few enough to sort here.
    try:
        _pin_socket(sock, pin)
    except BaseException:
        sock.close()
        raise
    return sock


def open_udp(pin: Pin) -> socket.socket:
    """A UDP socket pinned to ``pin``, sending with TTL / hop limit 255 (RFC 5357 §4.1.2)."""
    family = socket.AF_INET if pin.version == 4 else socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        _pin_socket(sock, pin)
        if pin.version == 4:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        sock.bind(("0.0.0.0", 0) if pin.version == 4 else ("::", 0))
    except BaseException:
        sock.close()
        raise
    return sock


def kernel_time(ancdata: list) -> float | None:
    """CLOCK_REALTIME seconds from an SCM_TIMESTAMPNS control message, if present."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            sec, nsec = TIMESPEC.unpack_from(data)
            return sec + nsec * 1e-9
    return None


def drain(sock: socket.socket) -> Iterator[tuple[bytes, tuple, float]]:
    """Every datagram waiting on ``sock``: (data, source address, receive time on the
    monotonic clock). Socket errors (queued ICMP errors) are raised to the caller."""
    while True:
        try:
            data, anc, _flags, addr = sock.recvmsg(MAX_DATAGRAM, ANCILLARY)
        except BlockingIOError:
            return
        real = kernel_time(anc)
        mono = time.monotonic()
        if real is not None:
            # The packet's age by the realtime clock, taken off the monotonic now.
            mono -= max(0.0, time.time() - real)
        yield data, addr, mono
