"""rtnetlink by hand — pathsteer's one way to the kernel's routing: routes, nexthop objects,
rules, addresses and neighbours, encoded with `struct`, sent in bulk. The data planes program
and dump their routes with it, the probes pin themselves with it (fwmark rules and per-path
tables), preflight reads links and rules with it; nothing else in the daemon speaks rtnetlink
(`pathsteer.dataplane.netlink_monitor` listens to its multicast groups on a socket of its own).

Why not pyroute2: it has no nexthop objects and programs ~3k routes/s (docs/platform.md). Here a
route is a 28-40 byte message packed from a precompiled `struct.Struct`; `send_batch` packs up
to 256 of them into one ``sendmsg`` without ``NLM_F_ACK``: rtnetlink handles the messages of a
``sendmsg`` synchronously (``netlink_rcv_skb``) and answers only failures
(``netlink_ack`` is called for an error or when ACK was asked), so when ``sendmsg`` returns,
every error is already queued on the socket and one non-blocking drain collects them, each
carrying the sequence number of the message that failed. `ip -batch` waits for one ACK per
route instead.

Kernel names are kept: ``struct rtmsg`` (uapi linux/rtnetlink.h), ``struct nhmsg`` and
``NHA_*`` (uapi linux/nexthop.h), ``struct fib_rule_hdr`` and ``FRA_*`` (uapi linux/fib_rules.h).
"""

from __future__ import annotations

import errno as _errno
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pathsteer.errors import PathsteerError

# netlink (uapi linux/netlink.h)
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_DUMP_INTR = 0x10  # the dump raced with a change: it may be inconsistent, dump again
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLMSG_ERROR = 2
NLMSG_DONE = 3
SOL_NETLINK = 270
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12  # dumps honour the request's filters (table, protocol)

# rtnetlink message types
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWRULE, RTM_DELRULE, RTM_GETRULE = 32, 33, 34
RTM_NEWNEXTHOP, RTM_DELNEXTHOP, RTM_GETNEXTHOP = 104, 105, 106

# struct rtmsg fields and RTA_* attributes
RT_TABLE_COMPAT = 252
RT_TABLE_MAIN = 254
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_NOWHERE = 255
RTN_UNICAST = 1
RTNH_F_ONLINK = 4
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC = 1, 4, 5, 6, 7
RTA_METRICS, RTA_MULTIPATH, RTA_FLOW, RTA_TABLE = 8, 9, 11, 15
RTA_VIA, RTA_PREF, RTA_ENCAP_TYPE, RTA_ENCAP, RTA_NH_ID = 18, 20, 21, 22, 30
# Attributes that describe where a route sends traffic: what a stashed copy keeps.
ROUTE_BODY_ATTRS = frozenset({RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_METRICS,
                              RTA_MULTIPATH, RTA_FLOW, RTA_VIA, RTA_PREF, RTA_ENCAP_TYPE,
                              RTA_ENCAP, RTA_NH_ID})

# nexthop objects (uapi linux/nexthop.h)
NHA_ID, NHA_GROUP, NHA_GROUP_TYPE, NHA_OIF, NHA_GATEWAY, NHA_RES_GROUP = 1, 2, 3, 5, 6, 12
NHA_RES_GROUP_BUCKETS, NHA_RES_GROUP_IDLE_TIMER, NHA_RES_GROUP_UNBALANCED_TIMER = 1, 2, 3
NEXTHOP_GRP_TYPE_RES = 1
NLA_F_NESTED = 0x8000
USER_HZ = 100  # NHA_RES_GROUP_*_TIMER are clock_t

# rules (uapi linux/fib_rules.h)
FRA_PRIORITY, FRA_FWMARK, FRA_TABLE, FRA_FWMASK, FRA_PROTOCOL = 6, 10, 15, 16, 21
FR_ACT_TO_TBL = 1

_NLMSGHDR = struct.Struct("=IHHII")
_NLATTR = struct.Struct("=HH")
RTMSG = struct.Struct("=BBBBBBBBI")
_NHMSG = struct.Struct("=BBBBI")
_FIB_RULE_HDR = struct.Struct("=BBBBBBBBI")
_NEXTHOP_GRP = struct.Struct("=IBBH")
# One whole route message of ours: nlmsghdr, rtmsg, RTA_TABLE u32, RTA_NH_ID u32, then RTA_DST.
_ROUTE_HEAD = struct.Struct("=IHHII" "BBBBBBBBI" "HHI" "HHI" "HH")
_ROUTE_DEL_HEAD = struct.Struct("=IHHII" "BBBBBBBBI" "HHI" "HH")
BATCH = 256
# A dumped IPv4 route of ours as the kernel lays it out (rtnl_fill_info: RTA_TABLE, RTA_DST,
# RTA_NH_ID, then the nexthop's own attributes): nlmsghdr, rtmsg (family, dst_len, protocol,
# type), then the three attributes (length, type, value).
_FAST4 = struct.Struct("=16xBBxxxBxB4x" "HHI" "HH4s" "HHI")
ROUTE_BATCH = 1024  # route messages per sendmsg in send_routes (~50-70 kB)


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return _NLATTR.pack(n, kind) + payload + b"\0" * (_align(n) - n)


def parse_attrs(data: bytes | memoryview, offset: int, end: int) -> dict[int, memoryview]:
    out: dict[int, memoryview] = {}
    mv = memoryview(data)
    while offset + 4 <= end:
        length, kind = _NLATTR.unpack_from(mv, offset)
        if length < 4:
            break
        out[kind & 0x3FFF] = mv[offset + 4: offset + length]
        offset += _align(length)
    return out


def attr_u32(v: memoryview) -> int:
    return struct.unpack_from("=I", v)[0]


@dataclass(frozen=True)
class RouteMsg:
    """One route as dumped: ``struct rtmsg`` fields we use and the attributes as raw bytes."""

    family: int
    dst_len: int
    table: int
    protocol: int
    type: int
    dst: ipaddress.IPv4Network | ipaddress.IPv6Network
    nh_id: int | None
    attrs: dict[int, bytes]
    flags: int = 0
    scope: int = 0
    tos: int = 0


@dataclass(frozen=True)
class NexthopMsg:
    """One nexthop object as dumped (``struct nhmsg`` + NHA_*)."""

    id: int
    family: int
    protocol: int
    oif: int | None = None
    gateway: str | None = None
    group: tuple[tuple[int, int], ...] = ()   # (member id, weight 1..256)
    group_type: int = 0
    buckets: int = 0
    idle_timer: float = 0.0
    unbalanced_timer: float = 0.0


@dataclass(frozen=True)
class RuleMsg:
    family: int
    priority: int
    table: int
    protocol: int
    action: int
    fwmark: int | None = None
    fwmask: int | None = None


class NetlinkError(PathsteerError):
    """The kernel refused a request: ``errno`` and the request's ``what``."""

    def __init__(self, what: str, err: int, extack: str = "") -> None:
        detail = f" ({extack})" if extack else ""
        super().__init__(f"{what}: {os.strerror(err)}{detail}")
        self.errno = err
        self.what = what


def _extack(data: memoryview, offset: int, end: int) -> str:
    # NLMSGERR_ATTR_MSG = 1 after the echoed header (NLM_F_CAPPED: header only).
    a = parse_attrs(data, offset, end)
    return bytes(a[1]).rstrip(b"\0").decode(errors="replace") if 1 in a else ""


class RouteSocket:
    """A NETLINK_ROUTE socket, opened in the caller's network namespace (which it keeps)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        self.sock.bind((0, 0))
        self.seq = 1
        self.interrupted = False

    def close(self) -> None:
        self.sock.close()

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFFFFFF or 1
        return self.seq

    # -- sending ------------------------------------------------------------------------------

    def send_batch(self, messages: Iterable[tuple[bytes, str]]) -> list[NetlinkError]:
        """Send ``(message without its sequence number, what)`` pairs, 256 per sendmsg.

        Each message must come with ``nlmsg_seq`` 0; it is stamped here. Returns the kernel's
        refusals (no exception: the caller decides which errors are fatal).
        """
        errors: list[NetlinkError] = []
        whats: dict[int, str] = {}
        chunk: list[bytes] = []
        for msg, what in messages:
            seq = self.next_seq()
            whats[seq] = what
            chunk.append(msg[:8] + struct.pack("=I", seq) + msg[12:])
            if len(chunk) == BATCH:
                self._send_chunk(chunk, whats, errors)
                chunk = []
        if chunk:
            self._send_chunk(chunk, whats, errors)
        return errors

    def _send_chunk(self, chunk: list[bytes], whats: dict[int, str], errors: list[NetlinkError]) -> None:
        data = b"".join(chunk)
        while True:
            try:
                self.sock.send(data)
                break
            except OSError as e:
                if e.errno == _errno.ENOBUFS:
                    continue
                raise
        self._drain(whats, errors)

    def _drain(self, whats: dict[int, str], errors: list[NetlinkError]) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 20, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            for kind, seq, mv, off, end in messages(data):
                if kind == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", mv, off)[0]
                    if err:
                        inner_len = _NLMSGHDR.unpack_from(mv, off + 4)[0]
                        ext = _extack(mv, off + 4 + _align(inner_len), end) if inner_len <= end - off - 4 else ""
                        errors.append(NetlinkError(whats.get(seq, f"message {seq}"), err, ext))

    def send_routes(self, routes: Iterable[tuple[int, int]], table: int, protocol: int, *,
                    delete: bool = False) -> list[NetlinkError]:
        """`send_batch` for many routes of ours: ``(prefix key, nh_id)`` pairs (keys as
        `fib_plan.key`), each an `encode_route` create-or-replace (or with ``delete`` an
        RTM_DELROUTE, ``nh_id`` ignored), `ROUTE_BATCH` per sendmsg.

        Written for 1M routes: a message is a cached head (everything but the destination, per
        prefix length, family and nexthop) plus the address bytes; every message of one call
        carries the same sequence number, and a refusal is told apart by the request the kernel
        echoes in its error (rtnetlink copies the whole request unless NETLINK_CAP_ACK), so no
        description is made for a route that went in.
        """
        seq = self.next_seq()
        heads: dict[int, tuple[bytes, int, int]] = {}
        errors: list[NetlinkError] = []
        chunk: list[bytes] = []
        append = chunk.append
        for k, nh in routes:
            hk = (k & 511) | (nh << 9)
            h = heads.get(hk)
            if h is None:
                m = encode_route(k, table, protocol, nh, delete=delete)
                size = 16 if k & 1 else 4
                h = heads[hk] = (m[:8] + struct.pack("=I", seq) + m[12:len(m) - size], size,
                                 size * 8 - ((k >> 1) & 0xFF))
            append(h[0] + ((k >> 9) << h[2]).to_bytes(h[1], "big"))
            if len(chunk) == ROUTE_BATCH:
                self._send_routes_chunk(chunk, seq, delete, errors)
                chunk.clear()
        if chunk:
            self._send_routes_chunk(chunk, seq, delete, errors)
        return errors

    def _send_routes_chunk(self, chunk: list[bytes], seq: int, delete: bool, errors: list[NetlinkError]) -> None:
        data = b"".join(chunk)
        while True:
            try:
                self.sock.send(data)
                break
            except OSError as e:
                if e.errno == _errno.ENOBUFS:
                    continue
                raise
        while True:
            try:
                got = self.sock.recv(1 << 20, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            for kind, rseq, mv, off, end in messages(got):
                if kind != NLMSG_ERROR or rseq != seq:
                    continue
                err = -struct.unpack_from("=i", mv, off)[0]
                if not err:
                    continue
                inner = off + 4
                inner_len = _NLMSGHDR.unpack_from(mv, inner)[0]
                ext = _extack(mv, inner + _align(inner_len), end) if inner_len <= end - inner else ""
                errors.append(NetlinkError(_echoed_route(mv, inner, min(inner + inner_len, end), delete), err, ext))

    def request(self, msg: bytes, what: str) -> None:
        """Send one message with ACK and raise `NetlinkError` if the kernel refuses it."""
        msg = msg[:6] + struct.pack("=H", struct.unpack_from("=H", msg, 6)[0] | NLM_F_ACK) + msg[8:]
        seq = self.next_seq()
        self.sock.send(msg[:8] + struct.pack("=I", seq) + msg[12:])
        while True:
            data = self.sock.recv(1 << 16)
            for kind, rseq, mv, off, end in messages(data):
                if kind == NLMSG_ERROR and rseq == seq:
                    err = -struct.unpack_from("=i", mv, off)[0]
                    if err:
                        inner_len = _NLMSGHDR.unpack_from(mv, off + 4)[0]
                        ext = _extack(mv, off + 4 + _align(inner_len), end) if inner_len <= end - off - 4 else ""
                        raise NetlinkError(what, err, ext)
                    return

    def dump(self, msg: bytes) -> Iterator[tuple[int, memoryview, int, int]]:
        """Yield ``(type, buffer, payload offset, message end)`` for every answer of a dump.

        Afterwards ``interrupted`` tells whether the kernel flagged the dump NLM_F_DUMP_INTR
        (the table changed under it; `dumped` repeats such a dump).
        """
        seq = self.next_seq()
        self.interrupted = False
        self.sock.send(msg[:8] + struct.pack("=I", seq) + msg[12:])
        while True:
            data = self.sock.recv(4 << 20)
            for kind, rseq, mv, off, end in messages(data):
                if rseq != seq:
                    continue
                if struct.unpack_from("=H", mv, off - 10)[0] & NLM_F_DUMP_INTR:
                    self.interrupted = True
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", mv, off)[0]
                    if err:
                        raise NetlinkError("dump", err)
                    return
                yield kind, mv, off, end


def _echoed_route(mv: memoryview, offset: int, end: int, delete: bool) -> str:
    """What a route request echoed in an error was: ``route PFX nhid 0x…`` / ``delete route PFX``
    (`send_routes`'s description of it, as `send_batch` callers write theirs)."""
    if end - offset < 16 + RTMSG.size:
        return "route (request not echoed)"
    fam, dst_len = mv[offset + 16], mv[offset + 17]
    a = parse_attrs(mv, offset + 16 + RTMSG.size, end)
    raw = bytes(a.get(RTA_DST, b""))
    if fam == socket.AF_INET6:
        dst: object = ipaddress.IPv6Network((int.from_bytes(raw.ljust(16, b"\0"), "big"), dst_len))
    else:
        dst = ipaddress.IPv4Network((int.from_bytes(raw.ljust(4, b"\0"), "big"), dst_len))
    if delete:
        return f"delete route {dst}"
    nh = attr_u32(a[RTA_NH_ID]) if RTA_NH_ID in a else 0
    return f"route {dst} nhid {nh:#x}"


def messages(data: bytes) -> Iterator[tuple[int, int, memoryview, int, int]]:
    mv = memoryview(data)
    offset = 0
    n = len(data)
    while offset + 16 <= n:
        length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(mv, offset)
        if length < 16:
            return
        yield kind, seq, mv, offset + 16, offset + length
        offset += _align(length)


def _header(kind: int, flags: int, body: bytes) -> bytes:
    return _NLMSGHDR.pack(16 + len(body), kind, flags | NLM_F_REQUEST, 0, 0) + body


# -- routes ---------------------------------------------------------------------------------------

def encode_route(k: int, table: int, protocol: int, nh_id: int, *, delete: bool = False) -> bytes:
    """RTM_NEWROUTE of prefix key ``k`` (`fib_plan.key`) via nexthop ``nh_id``, create or
    replace (atomic per prefix); or with ``delete`` RTM_DELROUTE of the route of ``protocol``
    at that prefix (``nh_id`` ignored)."""
    plen = (k >> 1) & 0xFF
    if k & 1:
        family, dst = socket.AF_INET6, ((k >> 9) << (128 - plen)).to_bytes(16, "big")
    else:
        family, dst = socket.AF_INET, ((k >> 9) << (32 - plen)).to_bytes(4, "big")
    t8 = RT_TABLE_COMPAT if table > 255 else table
    if delete:
        return _ROUTE_DEL_HEAD.pack(_ROUTE_DEL_HEAD.size + len(dst), RTM_DELROUTE, NLM_F_REQUEST, 0, 0,
                                    family, plen, 0, 0, t8, protocol, RT_SCOPE_NOWHERE,
                                    RTN_UNICAST, 0, 8, RTA_TABLE, table, 4 + len(dst), RTA_DST) + dst
    return _ROUTE_HEAD.pack(_ROUTE_HEAD.size + len(dst), RTM_NEWROUTE,
                            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE, 0, 0,
                            family, plen, 0, 0, t8, protocol, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0,
                            8, RTA_TABLE, table, 8, RTA_NH_ID, nh_id, 4 + len(dst), RTA_DST) + dst


def encode_route_copy(route: RouteMsg, table: int, *, protocol: int | None = None) -> bytes:
    """RTM_NEWROUTE (create or replace) of ``route`` as dumped, into ``table``."""
    body = RTMSG.pack(route.family, route.dst_len, 0, route.tos, RT_TABLE_COMPAT if table > 255 else table,
                       route.protocol if protocol is None else protocol, route.scope, route.type,
                       route.flags & RTNH_F_ONLINK)
    body += attr(RTA_TABLE, struct.pack("=I", table))
    if route.dst_len:
        body += attr(RTA_DST, route.dst.network_address.packed)
    for kind in sorted(route.attrs):
        if kind in ROUTE_BODY_ATTRS:
            body += attr(kind, route.attrs[kind])
    return _header(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, body)


def encode_route_delete_exact(route: RouteMsg) -> bytes:
    """RTM_DELROUTE of exactly ``route`` (its table, protocol, metric and nexthop)."""
    body = RTMSG.pack(route.family, route.dst_len, 0, route.tos, RT_TABLE_COMPAT if route.table > 255 else route.table,
                       route.protocol, RT_SCOPE_NOWHERE, route.type, 0)
    body += attr(RTA_TABLE, struct.pack("=I", route.table))
    if route.dst_len:
        body += attr(RTA_DST, route.dst.network_address.packed)
    for kind in (RTA_PRIORITY, RTA_NH_ID):
        if kind in route.attrs:
            body += attr(kind, route.attrs[kind])
    return _header(RTM_DELROUTE, 0, body)


def encode_gateway_route(family: int, table: int, protocol: int, gateway: str, oif: int, *,
                         onlink: bool = True) -> bytes:
    """``ip route replace default via GATEWAY dev OIF [onlink] table T proto P``."""
    body = RTMSG.pack(family, 0, 0, 0, RT_TABLE_COMPAT if table > 255 else table, protocol,
                      RT_SCOPE_UNIVERSE, RTN_UNICAST, RTNH_F_ONLINK if onlink else 0)
    body += attr(RTA_TABLE, struct.pack("=I", table))
    body += attr(RTA_GATEWAY, ipaddress.ip_address(gateway).packed)
    body += attr(RTA_OIF, struct.pack("=I", oif))
    return _header(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, body)


def dump_routes(sock: RouteSocket, table: int | None, protocol: int = 0,
                family: int = socket.AF_UNSPEC) -> list[RouteMsg]:
    """Every unicast route in ``table`` (every table when None; of ``protocol`` when non-zero):
    one filtered dump."""
    if table is None:
        body = RTMSG.pack(family, 0, 0, 0, 0, protocol, 0, 0, 0)
    else:
        body = RTMSG.pack(family, 0, 0, 0, RT_TABLE_COMPAT if table > 255 else table, protocol, 0, 0, 0)
        body += attr(RTA_TABLE, struct.pack("=I", table))
    out: list[RouteMsg] = []
    append = out.append
    rtmsg = RTMSG.unpack_from
    for kind, mv, off, end in sock.dump(_header(RTM_GETROUTE, NLM_F_DUMP, body)):
        if kind != RTM_NEWROUTE:
            continue
        fam, dst_len, _src_len, tos, _t8, proto, scope, rtype, flags = rtmsg(mv, off)
        if rtype != RTN_UNICAST or (protocol and proto != protocol):
            continue
        a = parse_attrs(mv, off + RTMSG.size, end)
        in_table = attr_u32(a[RTA_TABLE]) if RTA_TABLE in a else _t8
        if table is not None and in_table != table:
            continue  # the kernel without strict checking: filter here
        raw = bytes(a[RTA_DST]) if RTA_DST in a else b""
        if fam == socket.AF_INET:
            dst = ipaddress.IPv4Network((int.from_bytes(raw.ljust(4, b"\0"), "big"), dst_len))
        elif fam == socket.AF_INET6:
            dst = ipaddress.IPv6Network((int.from_bytes(raw.ljust(16, b"\0"), "big"), dst_len))
        else:
            continue
        nh = attr_u32(a[RTA_NH_ID]) if RTA_NH_ID in a else None
        append(RouteMsg(fam, dst_len, in_table, proto, rtype, dst, nh,
                        {k: bytes(v) for k, v in a.items() if k in ROUTE_BODY_ATTRS}, flags, scope, tos))
    return out


def dump_route_nhids(sock: RouteSocket, table: int, protocol: int, attempts: int = 3) -> dict[int, int]:
    """`_dump_route_nhids`, again while the kernel says the dump raced with a change."""
    for _ in range(attempts - 1):
        out = _dump_route_nhids(sock, table, protocol)
        if not sock.interrupted:
            return out
    return _dump_route_nhids(sock, table, protocol)


def _dump_route_nhids(sock: RouteSocket, table: int, protocol: int) -> dict[int, int]:
    """The fast form for our own routes: ``{prefix key: nh_id}`` (0: a route without nhid).

    Keys as `fib_plan.key`. Written for 1M routes: one loop over the received buffers, an IPv4
    route in the kernel's usual layout read with one unpack (others: attributes walked in
    place), no object made per route but its key.
    """
    body = RTMSG.pack(0, 0, 0, 0, RT_TABLE_COMPAT if table > 255 else table, protocol, 0, 0, 0)
    body += attr(RTA_TABLE, struct.pack("=I", table))
    out: dict[int, int] = {}
    msghdr = struct.Struct("=IHHI").unpack_from            # nlmsghdr without its pid
    rtmsg = struct.Struct("=BBxxxBxB").unpack_from        # family, dst_len, protocol, type
    fast4 = _FAST4.unpack_from
    u32 = struct.Struct("=I").unpack_from
    be32 = struct.Struct(">I").unpack_from
    nla = _NLATTR.unpack_from
    from_bytes = int.from_bytes
    seq = sock.next_seq()
    sock.interrupted = False
    msg = _header(RTM_GETROUTE, NLM_F_DUMP, body)
    sock.sock.send(msg[:8] + struct.pack("=I", seq) + msg[12:])
    recv = sock.sock.recv
    while True:
        data = recv(4 << 20)
        n = len(data)
        offset = 0
        while offset + 16 <= n:
            length, kind, flags, rseq = msghdr(data, offset)
            if length < 16:
                break
            end = offset + length
            if rseq == seq:
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", data, offset + 16)[0]
                    if err:
                        raise NetlinkError("route dump", err)
                    return out
                if flags & NLM_F_DUMP_INTR:
                    sock.interrupted = True
                if kind != RTM_NEWROUTE:
                    offset = (end + 3) & ~3
                    continue
                if length >= 52:
                    # the layout the kernel dumps our IPv4 routes in (rtnl_fill_info / fib_dump_info:
                    # RTA_TABLE, RTA_DST, RTA_NH_ID first): one unpack instead of walking attributes
                    (fam, dst_len, proto, rtype, tl, tt, tab, dl, dt, dst, nl_, nt, nh) = fast4(data, offset)
                    if (tt == RTA_TABLE and tl == 8 and dt == RTA_DST and dl == 8 and nt == RTA_NH_ID and nl_ == 8
                            and fam == socket.AF_INET):
                        if proto == protocol and rtype == RTN_UNICAST and tab == table:
                            out[((from_bytes(dst, "big") >> (32 - dst_len)) << 9) | (dst_len << 1)] = nh
                        offset = (end + 3) & ~3
                        continue
                fam, dst_len, proto, rtype = rtmsg(data, offset + 16)
                if proto == protocol and rtype == RTN_UNICAST:
                    a = offset + 28
                    dst, nh, tab = 0, 0, -1
                    while a + 4 <= end:
                        alen, akind = nla(data, a)
                        if alen < 4:
                            break
                        if akind == RTA_DST:
                            dst = be32(data, a + 4)[0] if alen == 8 else from_bytes(data[a + 4: a + alen], "big")
                        elif akind == RTA_NH_ID:
                            nh = u32(data, a + 4)[0]
                        elif akind == RTA_TABLE:
                            tab = u32(data, a + 4)[0]
                        a += (alen + 3) & ~3
                    if tab == table:   # (a kernel without strict dump checking sends every table)
                        if fam == socket.AF_INET:
                            out[((dst >> (32 - dst_len)) << 9) | (dst_len << 1)] = nh
                        elif fam == socket.AF_INET6:
                            out[((dst >> (128 - dst_len)) << 9) | (dst_len << 1) | 1] = nh
            offset = (end + 3) & ~3


# -- nexthop objects ------------------------------------------------------------------------------

def encode_nexthop(nh_id: int, protocol: int, *, family: int = 0, oif: int = 0, gateway: str | None = None,
                   group: tuple[tuple[int, int], ...] = (), buckets: int = 0, idle_timer: float = 0.0,
                   unbalanced_timer: float = 0.0, delete: bool = False) -> bytes:
    """RTM_NEWNEXTHOP (create or replace in place) or RTM_DELNEXTHOP.

    A path nexthop: ``family``, ``oif``, ``gateway``. A resilient group: ``group`` of
    (member id, weight 1..256) and ``buckets``; its family is AF_UNSPEC (nexthop.c).
    """
    if delete:
        body = _NHMSG.pack(0, 0, 0, 0, 0) + attr(NHA_ID, struct.pack("=I", nh_id))
        return _header(RTM_DELNEXTHOP, 0, body)
    if group:
        body = _NHMSG.pack(socket.AF_UNSPEC, 0, protocol, 0, 0) + attr(NHA_ID, struct.pack("=I", nh_id))
        body += attr(NHA_GROUP, b"".join(_NEXTHOP_GRP.pack(m, w - 1, 0, 0) for m, w in group))
        body += attr(NHA_GROUP_TYPE, struct.pack("=H", NEXTHOP_GRP_TYPE_RES))
        res = attr(NHA_RES_GROUP_BUCKETS, struct.pack("=H", buckets))
        res += attr(NHA_RES_GROUP_IDLE_TIMER, struct.pack("=I", round(idle_timer * USER_HZ)))
        res += attr(NHA_RES_GROUP_UNBALANCED_TIMER, struct.pack("=I", round(unbalanced_timer * USER_HZ)))
        body += attr(NHA_RES_GROUP | NLA_F_NESTED, res)
    else:
        body = _NHMSG.pack(family, 0, protocol, 0, 0) + attr(NHA_ID, struct.pack("=I", nh_id))
        body += attr(NHA_OIF, struct.pack("=I", oif))
        if gateway is not None:
            body += attr(NHA_GATEWAY, ipaddress.ip_address(gateway).packed)
    return _header(RTM_NEWNEXTHOP, NLM_F_CREATE | NLM_F_REPLACE, body)


def dump_nexthops(sock: RouteSocket) -> list[NexthopMsg]:
    out: list[NexthopMsg] = []
    for kind, mv, off, end in sock.dump(_header(RTM_GETNEXTHOP, NLM_F_DUMP, _NHMSG.pack(0, 0, 0, 0, 0))):
        if kind != RTM_NEWNEXTHOP:
            continue
        fam, _scope, proto, _r, _flags = _NHMSG.unpack_from(mv, off)
        a = parse_attrs(mv, off + _NHMSG.size, end)
        group: tuple[tuple[int, int], ...] = ()
        if NHA_GROUP in a:
            g = bytes(a[NHA_GROUP])
            members = []
            for i in range(0, len(g), _NEXTHOP_GRP.size):
                m, w, whigh, _ = _NEXTHOP_GRP.unpack_from(g, i)
                members.append((m, (w | (whigh << 8)) + 1))
            group = tuple(members)
        buckets, idle, unbal = 0, 0.0, 0.0
        if NHA_RES_GROUP in a:
            r = parse_attrs(a[NHA_RES_GROUP], 0, len(a[NHA_RES_GROUP]))
            buckets = struct.unpack_from("=H", r[NHA_RES_GROUP_BUCKETS])[0] if NHA_RES_GROUP_BUCKETS in r else 0
            idle = attr_u32(r[NHA_RES_GROUP_IDLE_TIMER]) / USER_HZ if NHA_RES_GROUP_IDLE_TIMER in r else 0.0
            unbal = (attr_u32(r[NHA_RES_GROUP_UNBALANCED_TIMER]) / USER_HZ
                     if NHA_RES_GROUP_UNBALANCED_TIMER in r else 0.0)
        gw = None
        if NHA_GATEWAY in a:
            gw = str(ipaddress.ip_address(bytes(a[NHA_GATEWAY])))
        out.append(NexthopMsg(
            id=attr_u32(a[NHA_ID]), family=fam, protocol=proto,
            oif=attr_u32(a[NHA_OIF]) if NHA_OIF in a else None, gateway=gw, group=group,
            group_type=struct.unpack_from("=H", a[NHA_GROUP_TYPE])[0] if NHA_GROUP_TYPE in a else 0,
            buckets=buckets, idle_timer=idle, unbalanced_timer=unbal))
    return out


# -- rules ----------------------------------------------------------------------------------------

def encode_rule(family: int, priority: int, table: int, protocol: int, *, fwmark: int | None = None,
                fwmask: int = 0xFFFFFFFF, delete: bool = False) -> bytes:
    """``ip rule add priority P [fwmark M/MASK] lookup T protocol X`` (RTM_NEWRULE, failing with
    EEXIST when that rule is there) or its RTM_DELRULE (which removes the first rule matching
    every attribute given)."""
    body = _FIB_RULE_HDR.pack(family, 0, 0, 0, RT_TABLE_COMPAT if table > 255 else table, 0, 0, FR_ACT_TO_TBL, 0)
    body += attr(FRA_PRIORITY, struct.pack("=I", priority))
    body += attr(FRA_TABLE, struct.pack("=I", table))
    if fwmark is not None:
        body += attr(FRA_FWMARK, struct.pack("=I", fwmark))
        body += attr(FRA_FWMASK, struct.pack("=I", fwmask))
    body += attr(FRA_PROTOCOL, struct.pack("=B", protocol))
    if delete:
        return _header(RTM_DELRULE, 0, body)
    return _header(RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, body)


def dump_rules(sock: RouteSocket, family: int) -> list[RuleMsg]:
    out: list[RuleMsg] = []
    body = _FIB_RULE_HDR.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
    for kind, mv, off, end in sock.dump(_header(RTM_GETRULE, NLM_F_DUMP, body)):
        if kind != RTM_NEWRULE:
            continue
        fam, _d, _s, _tos, table8, _r1, _r2, action, _flags = _FIB_RULE_HDR.unpack_from(mv, off)
        a = parse_attrs(mv, off + _FIB_RULE_HDR.size, end)
        out.append(RuleMsg(
            family=fam, priority=attr_u32(a[FRA_PRIORITY]) if FRA_PRIORITY in a else 0,
            table=attr_u32(a[FRA_TABLE]) if FRA_TABLE in a else table8,
            protocol=a[FRA_PROTOCOL][0] if FRA_PROTOCOL in a else 0, action=action,
            fwmark=attr_u32(a[FRA_FWMARK]) if FRA_FWMARK in a else None,
            fwmask=attr_u32(a[FRA_FWMASK]) if FRA_FWMASK in a else None))
    return out


# -- addresses -------------------------------------------------------------------------------------

RTM_NEWADDR, RTM_GETADDR = 20, 22
IFA_ADDRESS, IFA_LOCAL = 1, 2
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index


def dump_addresses(sock: RouteSocket, index: int) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """The addresses of interface ``index`` with their subnets (``ip addr show dev``), both
    families. IFA_LOCAL is the local address (IFA_ADDRESS is the peer on point-to-point links)."""
    out = []
    for kind, mv, off, end in sock.dump(_header(RTM_GETADDR, NLM_F_DUMP, _IFADDRMSG.pack(0, 0, 0, 0, 0))):
        if kind != RTM_NEWADDR:
            continue
        family, plen, _flags, _scope, idx = _IFADDRMSG.unpack_from(mv, off)
        if idx != index:
            continue
        a = parse_attrs(mv, off + _IFADDRMSG.size, end)
        raw = a.get(IFA_LOCAL, a.get(IFA_ADDRESS))
        if raw is None:
            continue
        out.append(ipaddress.ip_interface((bytes(raw), plen)))
    return out


# -- neighbours ------------------------------------------------------------------------------------

RTM_NEWNEIGH, RTM_GETNEIGH = 28, 30
NDA_DST = 1
_NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
# NUD states (uapi linux/neighbour.h)
NUD_STATES = {0x01: "incomplete", 0x02: "reachable", 0x04: "stale", 0x08: "delay", 0x10: "probe",
              0x20: "failed", 0x40: "noarp", 0x80: "permanent"}


def dump_neighbours(sock: RouteSocket, index: int) -> dict[str, str]:
    """``{address: NUD state name}`` of the neighbour entries on interface ``index`` (``ip neigh
    show dev``), both families."""
    out: dict[str, str] = {}
    for kind, mv, off, end in sock.dump(_header(RTM_GETNEIGH, NLM_F_DUMP, _NDMSG.pack(0, 0, 0, 0, 0))):
        if kind != RTM_NEWNEIGH:
            continue
        _family, idx, state, _flags, _type = _NDMSG.unpack_from(mv, off)
        if idx != index:
            continue
        a = parse_attrs(mv, off + _NDMSG.size, end)
        if NDA_DST in a:
            out[str(ipaddress.ip_address(bytes(a[NDA_DST])))] = NUD_STATES.get(state, str(state))
    return out


def ifindex(name: str) -> int:
    """The index of interface ``name`` in the calling thread's namespace (if_nametoindex(3))."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise PathsteerError(f"no interface {name!r}") from None

