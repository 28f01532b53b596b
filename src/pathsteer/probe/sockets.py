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


def open_icmp(pin: Pin, ident: int) -> socket.socket:
    """A raw ICMP (or ICMPv6) socket pinned to ``pin``, woken only for echo replies with
    identifier ``ident`` and ICMP errors. Raw, not the unprivileged ping socket: ping
    sockets need net.ipv4.ping_group_range, "1 0" (off) in a new namespace."""
    if pin.version == 4:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    else:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    try:
        attach_filter(sock, echo_filter(pin.version, ident))
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


# Classic BPF (include/uapi/linux/filter.h, bpf_common.h): struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }
_SOCK_FILTER = struct.Struct("@HBBI")
SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
_LD_B_ABS, _LD_H_ABS = 0x30, 0x28  # BPF_LD|BPF_B|BPF_ABS, BPF_LD|BPF_H|BPF_ABS
_LDX_B_MSH = 0xB1  # BPF_LDX|BPF_B|BPF_MSH: X = 4 * (pkt[k] & 0xf), the IPv4 header length
_LD_B_IND, _LD_H_IND = 0x50, 0x48  # BPF_LD|BPF_B|BPF_IND, BPF_LD|BPF_H|BPF_IND: pkt[X + k]
_JEQ = 0x15  # BPF_JMP|BPF_JEQ|BPF_K
_RET = 0x06  # BPF_RET|BPF_K
_ACCEPT = 0x40000


def echo_filter(version: int, ident: int) -> list[tuple[int, int, int, int]]:
    """A socket filter passing only echo replies with identifier ``ident`` and the ICMP
    errors that may quote our probes, so a raw socket is not woken for every ICMP message
    on the link (other targets' probers, other programs' pings, neighbour discovery).

    IPv4 raw sockets see the IP header (the filter skips IHL words); IPv6 raw sockets see
    the ICMPv6 header first (ip6_protocol_deliver_rcu pulls to the transport header)."""
    if version == 4:
        return [
            (_LDX_B_MSH, 0, 0, 0),       # 0: X = IP header length
            (_LD_B_IND, 0, 0, 0),        # 1: A = ICMP type
            (_JEQ, 0, 2, 0),             # 2: echo reply? -> 3, else -> 5
            (_LD_H_IND, 0, 0, 4),        # 3: A = identifier
            (_JEQ, 3, 4, ident),         # 4: ours -> 8, else -> 9
            (_JEQ, 2, 0, 3),             # 5: destination unreachable -> 8
            (_JEQ, 1, 0, 11),            # 6: time exceeded -> 8
            (_JEQ, 0, 1, 12),            # 7: parameter problem -> 8, else -> 9
            (_RET, 0, 0, _ACCEPT),       # 8
            (_RET, 0, 0, 0),             # 9: drop
        ]
    return [
        (_LD_B_ABS, 0, 0, 0),            # 0: A = ICMPv6 type
        (_JEQ, 0, 2, 129),               # 1: echo reply? -> 2, else -> 4
        (_LD_H_ABS, 0, 0, 4),            # 2: A = identifier
        (_JEQ, 4, 5, ident),             # 3: ours -> 8, else -> 9
        (_JEQ, 3, 0, 1),                 # 4: destination unreachable -> 8
        (_JEQ, 2, 0, 2),                 # 5: packet too big -> 8
        (_JEQ, 1, 0, 3),                 # 6: time exceeded -> 8
        (_JEQ, 0, 1, 4),                 # 7: parameter problem -> 8, else -> 9
        (_RET, 0, 0, _ACCEPT),           # 8
        (_RET, 0, 0, 0),                 # 9: drop
    ]


def attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """SO_ATTACH_FILTER with a classic BPF program (struct sock_fprog: length and pointer)."""
    import ctypes

    code = b"".join(_SOCK_FILTER.pack(*insn) for insn in program)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("@HP", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies the program


def kernel_time(ancdata: list) -> float | None:
    """CLOCK_REALTIME seconds from an SCM_TIMESTAMPNS control message, if present."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            sec, nsec = TIMESPEC.unpack_from(data)
            return sec + nsec * 1e-9
    return None


def receive(sock: socket.socket) -> tuple[bytes, tuple, float] | None:
    """One datagram waiting on ``sock``: (data, source address, receive time on the monotonic
    clock); None when none is waiting. Socket errors (queued ICMP errors) are raised."""
    try:
        data, anc, _flags, addr = sock.recvmsg(MAX_DATAGRAM, ANCILLARY)
    except BlockingIOError:
        return None
    real = kernel_time(anc)
    mono = time.monotonic()
    if real is not None:
        # The packet's age by the realtime clock, taken off the monotonic now.
        mono -= max(0.0, time.time() - real)
    return data, addr, mono


def drain(sock: socket.socket) -> Iterator[tuple[bytes, tuple, float]]:
    """Every datagram waiting on ``sock``, as `receive` gives each."""
    while (got := receive(sock)) is not None:
        yield got
