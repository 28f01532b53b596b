"""JSON access logs, one object a line, read to `Record` through a field mapping.

A mapping names, for each `Record` field, the key that holds it in the gateway's JSON (dotted
for nested objects, ``proxy.0.addr``, a number indexing a list, ``-1`` its last; a tuple of keys
means the first one present), and for the time fields the unit they are written in. Presets:

``apinto`` — Apinto's access_log formatter with its variable names (also what APIPark pushes):
  ``msec`` (epoch **ms**), ``remote_addr`` (the TCP peer; not ``src_ip``, which comes from the
  X-Real-IP header and is forgeable), ``proxy_addr``, ``service``, ``status``,
  ``request_length``, ``response_length`` (a string), ``proxy_time`` and ``request_time``
  (**ms**), ``auth_status`` (``fail``/``success``). (eolinker/apinto
  ``entries/http-entry/reader.go``; the docs say seconds for ``request_time``, the code returns
  integer milliseconds: set ``units={"total_time_s": "s"}`` for a build that differs.)

``nginx`` — a typical ``log_format ... escape=json``: ``msec`` or ``time_iso8601`` (**s**),
  ``remote_addr``, ``upstream_addr``, ``status``, ``request_length``, ``body_bytes_sent``,
  ``upstream_response_time`` and ``request_time`` (**s**, ms resolution). When nginx tried
  several servers these are lists (``"10.0.0.1:80, 10.0.0.2:80"``): the last, the one that
  answered, is taken.

``envoy`` — the usual JSON ``access_log`` keys (Istio's default JSON format):
  ``start_time`` (ISO 8601), ``downstream_direct_remote_address`` else
  ``downstream_remote_address`` (``ip:port``; the port is dropped — note Envoy derives the
  latter from X-Forwarded-For when ``use_remote_address`` trusts it: log
  ``%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%`` for the TCP peer), ``upstream_host``,
  ``upstream_cluster``, ``response_code`` (0, no response, reads as None), ``bytes_received``,
  ``bytes_sent``, ``upstream_service_time`` and ``duration`` (**ms**).

Mistakes in the mapping raise ValueError when the parser is made, one line naming the field and
the value; lines never raise: one that is not a JSON object, or has no client, gives None and
counts in ``malformed``; a value of the wrong type reads as None (unknown).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from pathsteer.gateways.records import FIELDS, Record

Source = str | Sequence[str]
UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}  # the divisor to seconds
TIME_FIELDS = ("at_s", "upstream_time_s", "total_time_s")

PRESETS: dict[str, dict[str, Source]] = {
    "apinto": {"at_s": "msec", "client": "remote_addr", "upstream": "proxy_addr", "backend": "service",
               "status": "status", "bytes_in": "request_length", "bytes_out": "response_length",
               "upstream_time_s": "proxy_time", "total_time_s": "request_time", "auth_failed": "auth_status"},
    "nginx": {"at_s": ("msec", "time_iso8601"), "client": "remote_addr", "upstream": "upstream_addr",
              "status": "status", "bytes_in": "request_length", "bytes_out": "body_bytes_sent",
              "upstream_time_s": "upstream_response_time", "total_time_s": "request_time"},
    # HAProxy with log-format '{"t":%Ts%ms,"ci":"%ci","b":"%b","s":"%s","sa":"%si:%sp","st":%ST,"bu":%U,
    # "bd":%B,"tr":%Tr,"ta":%Ta}' (docs/gateways.md): the server's address is in the record itself.
    "haproxy-json": {"at_s": "t", "client": "ci", "upstream": "sa", "backend": "b", "server": "s", "status": "st",
                     "bytes_in": "bu", "bytes_out": "bd", "upstream_time_s": "tr", "total_time_s": "ta"},
    "envoy": {"at_s": "start_time", "client": ("downstream_direct_remote_address", "downstream_remote_address"),
              "upstream": "upstream_host", "backend": "upstream_cluster", "status": "response_code",
              "bytes_in": "bytes_received", "bytes_out": "bytes_sent",
              "upstream_time_s": "upstream_service_time", "total_time_s": "duration"},
}
PRESET_UNITS: dict[str, dict[str, str]] = {
    "apinto": {"at_s": "ms", "upstream_time_s": "ms", "total_time_s": "ms"},
    "nginx": {"at_s": "s", "upstream_time_s": "s", "total_time_s": "s"},
    "haproxy-json": {"at_s": "ms", "upstream_time_s": "ms", "total_time_s": "ms"},
    "envoy": {"at_s": "s", "upstream_time_s": "ms", "total_time_s": "ms"},
}
_FAILED = {"fail": True, "failed": True, "failure": True, "denied": True,
           "success": False, "succeeded": False, "ok": False, "pass": False, "passed": False}


class JsonLinesParser:
    """``JsonLinesParser("apinto")``, or a preset with some keys changed
    (``fields={"client": "peer.ip"}``, a key of None drops a field), or ``fields`` alone."""

    __slots__ = ("fields", "units", "parsed", "malformed", "_plan")

    def __init__(self, preset: str | None = None, fields: Mapping[str, Source | None] | None = None,
                 units: Mapping[str, str] | None = None) -> None:
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"gateway preset: {preset!r} is not known (have: {', '.join(sorted(PRESETS))})")
        chosen: dict[str, Source] = dict(PRESETS[preset]) if preset else {}
        chosen_units: dict[str, str] = dict(PRESET_UNITS[preset]) if preset else {}
        for name, source in (fields or {}).items():
            _check_field(name, "fields")
            if source is None:
                chosen.pop(name, None)
                continue
            keys = (source,) if isinstance(source, str) else tuple(source) if isinstance(source, (list, tuple)) else ()
            if not keys or not all(isinstance(k, str) and k for k in keys):
                raise ValueError(f"gateway fields.{name}: {source!r} is not a key (a name, dotted for nested)")
            chosen[name] = source
        for name, unit in (units or {}).items():
            _check_field(name, "units")
            if name not in TIME_FIELDS:
                raise ValueError(f"gateway units: {name!r} is not a time field (have: {', '.join(TIME_FIELDS)})")
            if unit not in UNITS:
                raise ValueError(f"gateway units.{name}: {unit!r} is not a unit (have: {', '.join(UNITS)})")
            chosen_units[name] = unit
        if "client" not in chosen:
            raise ValueError("gateway fields: 'client' has no key (records are keyed by the client)")
        self.fields = chosen
        self.units = chosen_units
        self.parsed = 0
        self.malformed: Counter[str] = Counter()
        # Per record field: a plain key (read inline), or a getter for dotted keys and alternatives;
        # and the converter, called on values present only.
        self._plan: tuple[tuple[str | None, Callable[[dict], Any] | None, Callable[[Any], Any]], ...] = tuple(
            ((chosen[f], None) if isinstance(chosen[f], str) and "." not in chosen[f] else (None, _getter(chosen[f])))
            + (_converter(f, UNITS[chosen_units.get(f, "s")]),) if f in chosen else (None, _none, _none)
            for f in FIELDS)

    def parse(self, line: str | bytes, now: float) -> Record | None:
        """The record of one line; ``now`` stands in for a missing or unreadable time. A syslog
        header before the JSON object (``<134>2026-12-07T10:00:00Z host apinto[7]: {...}``, as
        syslog outputs send it) is skipped."""
        if type(line) is str:
            if line[:1] != "{":
                i = line.find("{")
                if i > 0:
                    line = line[i:]
        elif line[:1] != b"{":
            i = line.find(b"{")
            if i > 0:
                line = line[i:]
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            self.malformed["json"] += 1
            return None
        if type(obj) is not dict:
            self.malformed["not_object"] += 1
            return None
        values = []
        for key, get, conv in self._plan:
            value = obj.get(key) if get is None else get(obj)
            values.append(None if value is None else conv(value))
        at, client, upstream, backend, server, status, b_in, b_out, t_up, t_total, auth = values
        if client is None:
            self.malformed["no_client"] += 1
            return None
        self.parsed += 1
        return Record(now if at is None else at, client, upstream, backend, server, status, b_in,
                      0 if b_out is None else b_out, t_up, t_total, auth)


def _check_field(name: object, where: str) -> None:
    if name not in FIELDS:
        raise ValueError(f"gateway {where}: {name!r} is not a record field (have: {', '.join(FIELDS)})")


def _none(_: object = None) -> None:
    return None


def _getter(source: Source) -> Callable[[dict], Any]:
    keys = (source,) if isinstance(source, str) else tuple(source)
    getters = [_path_getter(k) for k in keys]
    if len(getters) == 1:
        return getters[0]

    def first(obj: dict) -> Any:
        for get in getters:
            value = get(obj)
            if value is not None:
                return value
        return None
    return first


def _path_getter(key: str) -> Callable[[dict], Any]:
    if "." not in key:
        return lambda obj: obj.get(key)
    parts = key.split(".")

    def walk(obj: dict) -> Any:
        value = obj.get(key)  # a key with a dot in its name wins
        if value is not None:
            return value
        cur: Any = obj
        for part in parts:
            if type(cur) is dict:
                cur = cur.get(part)
            elif type(cur) is list:
                try:
                    cur = cur[int(part)]
                except (ValueError, IndexError):
                    return None
            else:
                return None
        return cur
    return walk


def _last(text: str) -> str:
    """nginx's lists, one entry per server tried (``a, b`` or ``a : b`` across upstream groups)."""
    if "," in text:
        text = text.rsplit(",", 1)[1]
    if " : " in text:
        text = text.rsplit(" : ", 1)[1]
    return text.strip()


def _host(value: Any) -> str | None:
    """A client address without its port: ``1.2.3.4:5`` → ``1.2.3.4``, ``[2001:db8::1]:5`` → ``2001:db8::1``."""
    if type(value) is not str or not value or value == "-":
        return None
    if value[0] == "[":
        end = value.find("]")
        return value[1:end] if end > 1 else None
    if value.count(":") == 1:
        return value.split(":", 1)[0] or None
    return value


def _addr(value: Any) -> str | None:
    if type(value) is not str:
        return None
    if "," in value or " : " in value:
        value = _last(value)
    return None if value in ("", "-") or value.startswith("-:") else value  # HAProxy's "-:-": no server


def _name(value: Any) -> str | None:
    if type(value) is not str:
        return None
    return None if value in ("", "-") or (value[0] == "<" and value[-1] == ">") else value  # HAProxy's <NOSRV>


def _int(value: Any) -> int | None:
    t = type(value)
    if t is int:
        return value
    if t is str:
        value = _last(value) if ("," in value or " : " in value) else value
        if value.isdigit() and value.isascii():
            return int(value)
        return None
    if t is float and math.isfinite(value):
        return int(value)
    return None


def _status(value: Any) -> int | None:
    n = _int(value)
    return n if n is not None and 0 < n < 1000 else None


def _count(value: Any) -> int | None:
    n = _int(value)
    return n if n is not None and n >= 0 else None


def _number(value: Any) -> float | None:
    t = type(value)
    if t is int or t is float:
        v = float(value)
    elif t is str:
        if "," in value or " : " in value:
            value = _last(value)
        try:
            v = float(value)
        except ValueError:
            return None
    else:
        return None
    return v if math.isfinite(v) and v >= 0 else None


def _converter(field: str, scale: float) -> Callable[[Any], Any]:
    if field == "client":
        return _host
    if field == "upstream":
        return _addr
    if field in ("backend", "server"):
        return _name
    if field == "status":
        return _status
    if field in ("bytes_in", "bytes_out"):
        return _count
    if field == "auth_failed":
        def auth(value: Any) -> bool | None:
            if type(value) is bool:
                return value
            return _FAILED.get(value.lower()) if type(value) is str else None
        return auth
    if field == "at_s":
        def at(value: Any) -> float | None:
            if type(value) is str and ("T" in value or "-" in value):  # a date, not a number
                return _iso(value)
            v = _number(value)
            return None if v is None else v / scale
        return at

    def duration(value: Any) -> float | None:
        v = _number(value)
        return None if v is None else v / scale
    return duration


def _iso(text: str) -> float | None:
    """ISO 8601 (``2026-12-03T14:19:26.123Z``, ``...+01:00``); without a zone, UTC."""
    try:
        d = datetime.fromisoformat(text)
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    try:
        return d.timestamp()
    except (OverflowError, OSError, ValueError):
        return None
