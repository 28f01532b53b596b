"""rtnetlink change notifications for the fib data plane's reconcile: routes, and the rest.

A separate socket from `pathsteer.netlink.RouteSocket` (whose answers must not mix with
multicast), non-blocking, subscribed to the route, rule, nexthop and link groups.
"""

from __future__ import annotations

import errno as _errno
import socket
import struct
from dataclasses import dataclass

from pathsteer.netlink import (
    RTA_DST, RTA_NH_ID, RTA_TABLE, RTM_DELNEXTHOP, RTM_DELROUTE, RTM_DELRULE, RTM_NEWNEXTHOP, RTM_NEWROUTE,
    RTM_NEWRULE, RTMSG, RTN_UNICAST, SOL_NETLINK, attr_u32, messages, parse_attrs)

NETLINK_ADD_MEMBERSHIP = 1
RTNLGRP_LINK, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV4_RULE = 1, 7, 8
RTNLGRP_IPV6_ROUTE, RTNLGRP_IPV6_RULE, RTNLGRP_NEXTHOP = 11, 19, 32
RTM_NEWLINK, RTM_DELLINK = 16, 17


@dataclass(frozen=True)
class RouteEvent:
    """RTM_NEWROUTE / RTM_DELROUTE as multicast to RTNLGRP_IPV4_ROUTE / RTNLGRP_IPV6_ROUTE."""

    deleted: bool
    table: int
    protocol: int
    key: int      # as fib_plan.key (network number << 9 | prefixlen << 1 | is_v6)
    nh_id: int    # 0: none


class MonitorSocket:
    """A NETLINK_ROUTE socket subscribed to route, rule, nexthop and link changes.

    ``drain()`` returns the route events since the last call and whether anything else
    happened (``other``: a nexthop, rule or link change, which the caller answers with a full
    dump). ``overflow``: the kernel dropped notifications (ENOBUFS), so they cannot be trusted.
    Notes from the kernel: IPv4 routes removed with their nexthop object or device
    (nexthop_flush_dev, fib_flush) are removed without RTM_DELROUTE; the nexthop or link
    notification that comes with them (or the device event) is what tells.
    """

    def __init__(self, rcvbuf: int = 32 << 20) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, rcvbuf)   # SO_RCVBUFFORCE (root)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((0, 0))
        for group in (RTNLGRP_LINK, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV4_RULE, RTNLGRP_IPV6_ROUTE,
                      RTNLGRP_IPV6_RULE, RTNLGRP_NEXTHOP):
            self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)

    def close(self) -> None:
        self.sock.close()

    def drain(self) -> tuple[list[RouteEvent], bool, bool]:
        """``(route events, other changes seen, overflow)``; never blocks."""
        events: list[RouteEvent] = []
        other = overflow = False
        rtmsg = struct.Struct("=BBxxBBxB").unpack_from
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                return events, other, overflow
            except OSError as e:
                if e.errno == _errno.ENOBUFS:
                    overflow = True
                    continue
                raise
            if other or overflow:
                continue   # the caller reads the kernel anyway: just empty the queue
            for kind, _seq, mv, off, end in messages(data):
                if kind in (RTM_NEWROUTE, RTM_DELROUTE):
                    fam, dst_len, t8, proto, rtype = rtmsg(mv, off)
                    if rtype != RTN_UNICAST or fam not in (socket.AF_INET, socket.AF_INET6):
                        continue
                    a = parse_attrs(mv, off + RTMSG.size, end)
                    table = attr_u32(a[RTA_TABLE]) if RTA_TABLE in a else t8
                    dst = int.from_bytes(a[RTA_DST], "big") if RTA_DST in a else 0
                    v6 = fam == socket.AF_INET6
                    events.append(RouteEvent(kind == RTM_DELROUTE, table, proto,
                                             ((dst >> ((128 if v6 else 32) - dst_len)) << 9) | (dst_len << 1) | v6,
                                             attr_u32(a[RTA_NH_ID]) if RTA_NH_ID in a else 0))
                elif kind in (RTM_NEWNEXTHOP, RTM_DELNEXTHOP, RTM_NEWRULE, RTM_DELRULE, RTM_DELLINK):
                    other = True
                elif kind == RTM_NEWLINK:
                    other = True   # up/down, carrier: nexthops and routes may have gone silently


RT_TABLE_LOCAL = 255


class LocalTableWatch:
    """Whether the local routing table (255: the addresses the kernel delivers to itself) may
    have changed since the last look: route notifications, non-blocking, in the namespace the
    watch was made in. The bpf plane re-reads the local table only then, instead of every
    reconcile (a router with 64 paths has hundreds of local entries)."""

    def __init__(self, rcvbuf: int = 1 << 20) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((0, 0))
        for group in (RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE):
            self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)

    def close(self) -> None:
        self.sock.close()

    def changed(self) -> bool:
        """A local-table route came or went (or notifications were lost) since the last call."""
        changed = False
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return changed
            except OSError as e:
                if e.errno == _errno.ENOBUFS:
                    changed = True
                    continue
                raise
            if changed:
                continue  # the caller reads the table anyway: just empty the queue
            for kind, _seq, mv, off, end in messages(data):
                if kind in (RTM_NEWROUTE, RTM_DELROUTE) and end - off >= RTMSG.size and mv[off + 4] == RT_TABLE_LOCAL:
                    changed = True
                    break
