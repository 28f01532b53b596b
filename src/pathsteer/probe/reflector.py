"""`pathsteer reflector`: a TWAMP-light Session-Reflector (RFC 5357 §4.2, unauthenticated).

Every datagram is judged before it is answered; nothing a sender can put in a packet
raises out of `Reflector.handle`. What is not answered is counted by reason:

- malformed: shorter than a sender packet (14 octets, §4.1.2);
- hostile: from port 0, from a TWAMP port (a reflector answering a reflector would loop),
  or from an address no reply may go to (unspecified, multicast, broadcast).

The reply is never larger than the request once the request carries the 27 octets of
padding §4.1.2 asks for (RFC 6038 §4.2); shorter requests get the 41-octet minimum.
Timestamps: Receive Timestamp from the kernel (SO_TIMESTAMPNS), Timestamp just before
sending, so the sender can take our dwell time out of its RTT.
"""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import socket
import struct
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass

from pathsteer.errors import PathsteerError, UsageError
from pathsteer.probe import sockets, twamp
from pathsteer.telemetry.config import TWAMP_PORT

IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
IP_TTL = socket.IP_TTL  # the control message type carrying the TTL
IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
IPV6_HOPLIMIT = getattr(socket, "IPV6_HOPLIMIT", 52)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
IN6_PKTINFO = struct.Struct("@16sI")  # struct in6_pktinfo { in6_addr ipi6_addr; int ipi6_ifindex; }
CLIENT_MEMORY = 4096
TTL_UNKNOWN = 255
RECEIVE_BUFFER = 4 << 20


@dataclass
class ReflectorStats:
    received: int = 0
    reflected: int = 0
    malformed: int = 0
    hostile: int = 0
    errors: int = 0  # sends the kernel refused

    def line(self) -> str:
        return (
            f"received {self.received}, reflected {self.reflected}, malformed {self.malformed}, "
            f"hostile {self.hostile}, send errors {self.errors}"
        )


def _ttl(ancdata: list) -> int:
    for level, kind, data in ancdata:
        if (level, kind) in ((socket.IPPROTO_IP, IP_TTL), (socket.IPPROTO_IPV6, IPV6_HOPLIMIT)) and len(data) >= 4:
            return struct.unpack("@i", data[:4])[0] & 0xFF
    return TTL_UNKNOWN


def _pktinfo(ancdata: list) -> bytes | None:
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(data) >= IN6_PKTINFO.size:
            return data[: IN6_PKTINFO.size]
    return None


def _big_receive_buffer(sock: socket.socket, size: int = RECEIVE_BUFFER) -> None:
    """Room for bursts from many senders; SO_RCVBUFFORCE passes net.core.rmem_max as root."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def _hostile_source(addr: tuple) -> bool:
    host, port = addr[0], addr[1]
    if port == 0 or port == TWAMP_PORT:
        return True
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_unspecified or ip.is_multicast or (ip.version == 4 and ip == ipaddress.IPv4Address("255.255.255.255"))


class Reflector:
    def __init__(self, listen: str | None = None, port: int = TWAMP_PORT) -> None:
        if listen is not None:
            try:
                self.listen = ipaddress.ip_address(listen)
            except ValueError:
                raise UsageError(f"--listen: {listen!r} is not an IPv4 or IPv6 address") from None
        else:
            self.listen = None
        self.port = port
        self.stats = ReflectorStats()
        self._seq: OrderedDict[tuple, int] = OrderedDict()  # per sender: our own sequence (§4.2.1)
        self.sock: socket.socket | None = None

    def open(self) -> socket.socket:
        dual = self.listen is None
        family = socket.AF_INET if (self.listen is not None and self.listen.version == 4) else socket.AF_INET6
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            _big_receive_buffer(sock)
            sock.setsockopt(socket.SOL_SOCKET, sockets.SO_TIMESTAMPNS, 1)
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
            if family == socket.AF_INET6:
                if dual:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            host = "::" if dual else str(self.listen)
            sock.bind((host, self.port))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            where = f"[{host}]:{self.port}" if family == socket.AF_INET6 else f"{host}:{self.port}"
            raise PathsteerError(f"cannot listen on {where}: {exc.strerror}") from None
        self.sock = sock
        return sock

    def _next_seq(self, client: tuple) -> int:
        seq = self._seq.pop(client, -1) + 1
        self._seq[client] = seq
        if len(self._seq) > CLIENT_MEMORY:
            self._seq.popitem(last=False)
        return seq

    def handle(self, data: bytes, addr: tuple, received_real: float, ttl: int) -> bytes | None:
        """The reply to one datagram, or None (counted) when it gets none."""
        self.stats.received += 1
        if _hostile_source(addr):
            self.stats.hostile += 1
            return None
        try:
            request = twamp.decode_sender(data)
        except twamp.MalformedPacket:
            self.stats.malformed += 1
            return None
        reply = twamp.reflect(
            request,
            seq=self._next_seq(addr[:2]),
            receive_timestamp=twamp.to_ntp(received_real),
            timestamp=twamp.to_ntp(time.time()),
            ttl=ttl,
        )
        return twamp.encode_reflector(reply)

    def on_readable(self) -> None:
        sock = self.sock
        assert sock is not None
        while True:
            try:
                data, anc, _flags, addr = sock.recvmsg(sockets.MAX_DATAGRAM, sockets.ANCILLARY)
            except BlockingIOError:
                return
            except OSError:
                self.stats.errors += 1
                return
            received = sockets.kernel_time(anc) or time.time()
            reply = self.handle(data, addr, received, _ttl(anc))
            if reply is None:
                continue
            info = _pktinfo(anc)
            # Answer from the address the request was sent to (a wildcard socket would
            # otherwise pick the outgoing interface's address): IPV6_PKTINFO, RFC 3542 §6.
            cmsg = [(socket.IPPROTO_IPV6, IPV6_PKTINFO, IN6_PKTINFO.pack(info[:16], 0))] if info else []
            try:
                sock.sendmsg([reply], cmsg, 0, addr)
                self.stats.reflected += 1
            except OSError:
                self.stats.errors += 1

    async def serve(self, stop: asyncio.Event, ready=None) -> ReflectorStats:
        loop = asyncio.get_running_loop()
        sock = self.sock or self.open()
        loop.add_reader(sock.fileno(), self.on_readable)
        if ready is not None:
            ready(sock.getsockname())
        try:
            await stop.wait()
        finally:
            loop.remove_reader(sock.fileno())
            sock.close()
        return self.stats


def run(listen: str | None, port: int) -> ReflectorStats:
    """Serve until SIGTERM or SIGINT; the imperative entry the CLI calls."""
    reflector = Reflector(listen, port)
    reflector.open()

    async def main() -> ReflectorStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        def ready(name: tuple) -> None:
            host = name[0]
            shown = f"[{host}]:{name[1]}" if ":" in host else f"{host}:{name[1]}"
            print(f"pathsteer reflector: listening on {shown} (TWAMP-light, RFC 5357)", file=sys.stderr, flush=True)

        return await reflector.serve(stop, ready)

    return asyncio.run(main())
