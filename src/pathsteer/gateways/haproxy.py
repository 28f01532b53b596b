"""HAProxy: its HTTP log lines (``option httplog``) and the runtime API's ``show servers state``.

The HTTP log format is HAProxy's ``%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc
%ac/%fc/%bc/%sc/%rc %sq/%bq %hr %hs %{+Q}r`` (configuration.txt, 8.2.3 "HTTP log format"; before
2.x the first timer was ``Tq``, same place). Timers are milliseconds, ``-1`` when the stream
never got there; ``Ta`` and the byte count take a leading ``+`` under ``option logasap``; the
server is ``<NOSRV>`` when none was reached; the header captures ``{...}`` appear only when
configured, and the quoted request line, last, may be cut at the syslog buffer's end. Lines come
over syslog with an RFC 3164 header (``<134>Feb  6 12:14:14 [host] haproxy[pid]: ``), an RFC 5424
one (``<134>1 2026-12-03T14:19:26.123Z host haproxy 674 - - ``), a syslog daemon's file header
(no ``<PRI>``, any timestamp) or none at all: the parser does not check the header, it reads
the line from the client address before the request date's `` [dd/``.

The line carries the backend and server *names*, not the server's address: `HaproxyParser`
resolves ``(backend, server)`` to ``"ip:port"`` through its ``servers`` mapping, which the
daemon fills from ``show servers state`` (`parse_servers_state`, `servers_map`).

The request date has no time zone: it is the HAProxy host's local time. ``utc_offset_s`` says
the offset when it is not this host's zone.
"""

from __future__ import annotations

import calendar
import re
import time
from collections import Counter
from collections.abc import Mapping
from typing import NamedTuple

from pathsteer.gateways.records import Record

_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
                                       "Oct", "Nov", "Dec"), start=1)}

# The syslog header, optional: <PRI>, then RFC 5424 (VERSION TIMESTAMP HOST APP PROCID MSGID SD)
# or RFC 3164 / a log file's (TIMESTAMP [HOST] TAG[PID]:), either one also without <PRI>. The hot
# path does not match it (alternatives cost more than the rest of the line): it finds the date's
# " [dd/" and reads the line from the client before it; this is for saying why a line is bad.
_PREFIX = (r"(?:<\d{1,3}>)?"
           r"(?:1 \S+ \S+ \S+ \S+ \S+ (?:-|(?:\[[^\]]*\])+) (?:\ufeff)?"
           r"|(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d )?(?:\S+ )?[^\s\[:]+(?:\[\d+\])?: )?")
# From the client to the queues; what follows (captures, the request line) is not needed.
_BODY = re.compile(
    r"([^ \[]+):\d+ \[(\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d)\.(\d{3})\] [^ ]+ "  # client, date, frontend
    r"([^/ ]+)/([^ ]+) "                                                              # backend/server
    r"-?\d+/-?\d+/-?\d+/(-?\d+)/\+?(-?\d+) "                                          # TR/Tw/Tc/Tr/Ta
    r"(-?\d+) \+?(\d+) [^ ]+ [^ ]+ [^ ]+ \d+/\d+/\d+/\d+/\+?\d+ \d+/\d+(?: |$)")     # ST B CC CS tsc conns q
_START = re.compile(_PREFIX + r"[^\s\[]+:\d+ \[\d\d/[A-Z][a-z]{2}/\d{4}:[\d:.]+\] (.*)", re.DOTALL)
_DATE = re.compile(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d")
_TCP_TIMERS = re.compile(r"\S+ \S+ -?\d+/-?\d+/\+?-?\d+ ")

MALFORMED_KINDS = ("empty", "other", "tcplog", "truncated", "malformed")


class HaproxyParser:
    """Parses HTTP log lines to `Record`; a line it cannot read gives None and counts in
    ``malformed[kind]``: ``empty``; ``other`` (not a request's log: HAProxy's own messages,
    garbage); ``tcplog`` (``option tcplog``: no HTTP fields); ``truncated`` (cut before the
    queue counters); ``malformed`` (all there but a field is not what the format says).

    ``servers`` maps ``(backend, server)`` to the server's ``"ip:port"`` (replace the attribute
    when ``show servers state`` is read again); unmapped servers give ``upstream=None``.
    ``utc_offset_s``: the zone of the HAProxy host's clock (None: this host's local zone).
    """

    __slots__ = ("servers", "utc_offset_s", "parsed", "malformed", "_seconds")

    def __init__(self, servers: Mapping[tuple[str, str], str] | None = None,
                 utc_offset_s: float | None = None) -> None:
        self.servers: Mapping[tuple[str, str], str] = servers if servers is not None else {}
        self.utc_offset_s = utc_offset_s
        self.parsed = 0
        self.malformed: Counter[str] = Counter()
        self._seconds: dict[str, float] = {}  # "06/Feb/2009:12:14:14" -> epoch: one parse a second

    def parse(self, line: str | bytes) -> Record | None:
        """The record of one line, or None (counted in ``malformed``)."""
        if type(line) is not str:
            line = (line if type(line) is bytes else bytes(line)).decode("utf-8", "replace")
        i = line.find(" [")
        while i >= 0 and line[i + 4:i + 5] != "/":  # not " [dd/": an RFC 5424 structured data
            i = line.find(" [", i + 2)
        m = _BODY.match(line, line.rfind(" ", 0, i) + 1) if i > 0 else None
        if m is None:
            self.malformed[_kind(line)] += 1
            return None
        client, date, ms, backend, server, tr, ta, status, nbytes = m.groups()
        try:
            second = self._seconds.get(date)
            if second is None:
                second = self._epoch(date)
        except (ValueError, KeyError):
            self.malformed["malformed"] += 1
            return None
        if server[0] == "<":
            server = None
            upstream = None
        else:
            upstream = self.servers.get((backend, server))
        st = int(status)
        trn = int(tr)
        tan = int(ta)
        self.parsed += 1
        return Record(second + int(ms) / 1000.0, client, upstream, backend, server,
                      st if st >= 0 else None, None, int(nbytes),
                      trn / 1000.0 if trn >= 0 else None, tan / 1000.0 if tan >= 0 else None, None)

    def _epoch(self, date: str) -> float:
        """Epoch seconds of ``06/Feb/2009:12:14:14``; ValueError if it is not one."""
        if not _DATE.fullmatch(date):
            raise ValueError(date)
        day, mon, year = int(date[0:2]), _MONTHS[date[3:6]], int(date[7:11])
        hh, mm, ss = int(date[12:14]), int(date[15:17]), int(date[18:20])
        try:
            if self.utc_offset_s is None:
                value = time.mktime((year, mon, day, hh, mm, ss, 0, 0, -1))
            else:
                value = calendar.timegm((year, mon, day, hh, mm, ss, 0, 0, 0)) - self.utc_offset_s
        except (OverflowError, ValueError):
            raise ValueError(date) from None
        if len(self._seconds) >= 4096:  # a second per entry: only a backlog of old lines fills it
            self._seconds.clear()
        self._seconds[date] = value
        return value


def _kind(line: str) -> str:
    """Why a line is not an HTTP log line (only on the failure path: cost does not matter)."""
    if not line.strip():
        return "empty"
    start = _START.match(line)
    if start is None:
        return "other"
    rest = start.group(1)
    if _TCP_TIMERS.match(rest) and len(rest.split()) <= 7:
        return "tcplog"
    return "truncated" if len(rest.split()) < 10 else "malformed"


class ServerState(NamedTuple):
    """One server of ``show servers state``: its address (None before a name resolves), port
    (None in formats without ``srv_port``), current weight (``srv_uweight``), operational state
    (0 stopped, 1 starting, 2 running, 3 stopping) and administrative mask (0x01 forced
    maintenance, 0x04 configured maintenance, 0x08 forced drain, 0x20 resolution failure, ...)."""

    addr: str | None
    port: int | None
    weight: int
    op_state: int
    admin_state: int

    @property
    def upstream(self) -> str | None:
        """``"ip:port"`` (``"[v6]:port"``) as records carry it; None without an address or port."""
        if self.addr is None or self.port is None:
            return None
        return f"[{self.addr}]:{self.port}" if ":" in self.addr else f"{self.addr}:{self.port}"


_STATE_COLUMNS = ("be_name", "srv_name", "srv_addr", "srv_op_state", "srv_admin_state", "srv_uweight")


def parse_servers_state(text: str) -> dict[tuple[str, str], ServerState]:
    """``show servers state [backend]`` (format version 1, management.txt 9.3): the first line is
    the version, the second the ``#``-prefixed column names (read, so added columns do not
    matter), then one line per server. Raises ValueError, one line naming what is wrong, on an
    answer that is not this format (an error reply such as ``Can't find backend.``)."""
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ValueError("show servers state: empty answer")
    version = lines[0].strip()
    if version != "1":
        raise ValueError(f"show servers state: format version {version[:60]!r} is not supported (know: 1)")
    if len(lines) < 2 or not lines[1].startswith("#"):
        raise ValueError("show servers state: no column header on line 2")
    columns = lines[1].lstrip("#").split()
    missing = [c for c in _STATE_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"show servers state: column {missing[0]!r} missing from the header")
    at = {c: columns.index(c) for c in (*_STATE_COLUMNS, "srv_port") if c in columns}
    out: dict[tuple[str, str], ServerState] = {}
    for n, row in enumerate(lines[2:], start=3):
        if not row.strip() or row.startswith("#"):
            continue
        f = row.split()
        if len(f) < len(columns):
            raise ValueError(f"show servers state: line {n} has {len(f)} fields, the header {len(columns)}")
        addr = f[at["srv_addr"]]
        port = f[at["srv_port"]] if "srv_port" in at else None
        try:
            state = ServerState(None if addr == "-" else addr,
                                int(port) if port not in (None, "-", "0") else None,
                                int(f[at["srv_uweight"]]), int(f[at["srv_op_state"]]),
                                int(f[at["srv_admin_state"]]))
        except ValueError:
            raise ValueError(f"show servers state: line {n}: a number column is not a number: {row[:120]!r}") from None
        out[(f[at["be_name"]], f[at["srv_name"]])] = state
    return out


def servers_map(states: Mapping[tuple[str, str], ServerState]) -> dict[tuple[str, str], str]:
    """The ``servers`` mapping `HaproxyParser` takes: ``(backend, server) -> "ip:port"``."""
    return {key: s.upstream for key, s in states.items() if s.upstream is not None}
