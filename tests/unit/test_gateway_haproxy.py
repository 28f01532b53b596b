"""HAProxy's HTTP log lines and `show servers state`, read to records. Pure; no HAProxy runs.

The example lines are the configuration manual's (doc/configuration.txt, 8.2.3 "HTTP log format"
and 8.9 "Examples of logs"), joined where the manual wraps them.
"""

from __future__ import annotations

import calendar
import time

import pytest
from hypothesis import given, settings, strategies as st

from pathsteer.gateways.haproxy import (MALFORMED_KINDS, HaproxyParser, ServerState, parse_servers_state,
                                        servers_map)

# 8.2.3, with the syslog header the manual shows.
DOC_HTTP = ('Feb  6 12:14:14 localhost haproxy[14389]: 10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in '
            'static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 {1wt.eu} {} "GET /index.html HTTP/1.1"')
# 8.9 (the syslog part removed by the manual, as it says).
DOC_EXAMPLES = [
    'haproxy[674]: 127.0.0.1:33318 [15/Oct/2003:08:31:57.130] px-http px-http/srv1 6559/0/7/147/6723 '
    '200 243 - - ---- 5/3/3/1/0 0/0 "HEAD / HTTP/1.0"',
    'haproxy[674]: 127.0.0.1:33319 [15/Oct/2003:08:31:57.149] px-http px-http/srv1 6559/1230/7/147/6870 '
    '200 243 - - ---- 324/239/239/99/0 0/9 "HEAD / HTTP/1.0"',
    'haproxy[674]: 127.0.0.1:33320 [15/Oct/2003:08:32:17.654] px-http px-http/srv1 9/0/7/14/+30 '
    '200 +243 - - ---- 3/3/3/1/0 0/0 "GET /image.iso HTTP/1.0"',
    'haproxy[674]: 127.0.0.1:33320 [15/Oct/2003:08:32:17.925] px-http px-http/srv1 9/0/7/14/30 '
    '502 243 - - PH-- 3/2/2/0/0 0/0 "GET /cgi-bin/bug.cgi? HTTP/1.0"',
    'haproxy[18113]: 127.0.0.1:34548 [15/Oct/2003:15:18:55.798] px-http px-http/<NOSRV> -1/-1/-1/-1/8490 '
    '-1 0 - - CR-- 2/2/2/0/0 0/0 ""',
    'haproxy[18113]: 127.0.0.1:34549 [15/Oct/2003:15:19:06.103] px-http px-http/<NOSRV> -1/-1/-1/-1/50001 '
    '408 0 - - cR-- 2/2/2/0/0 0/0 ""',
    'haproxy[18989]: 10.0.0.1:34552 [15/Oct/2003:15:26:31.462] px-http px-http/srv1 3183/-1/-1/-1/11215 '
    '503 0 - - SC-- 205/202/202/115/3 0/0 "HEAD / HTTP/1.0"',
]
DOC_TCP = ('haproxy[18989]: 127.0.0.1:34550 [15/Oct/2003:15:24:28.312] px-tcp px-tcp/srv1 0/0/5007 0 cD '
           '0/0/0/0/0 0/0')
BODY = DOC_HTTP.split(": ", 1)[1]


def utc(text: str) -> float:
    return calendar.timegm(time.strptime(text, "%d/%b/%Y:%H:%M:%S"))


def parser(**kw) -> HaproxyParser:
    return HaproxyParser(utc_offset_s=0, **kw)


def test_the_manuals_http_example():
    p = parser(servers={("static", "srv1"): "127.0.0.1:8000"})
    r = p.parse(DOC_HTTP)
    assert r is not None
    assert r.at_s == pytest.approx(utc("06/Feb/2009:12:14:14") + 0.655)
    assert (r.client, r.upstream, r.backend, r.server) == ("10.0.1.2", "127.0.0.1:8000", "static", "srv1")
    assert (r.status, r.bytes_in, r.bytes_out) == (200, None, 2750)
    assert r.upstream_time_s == pytest.approx(0.069)   # Tr
    assert r.total_time_s == pytest.approx(0.109)      # Ta
    assert r.auth_failed is None
    assert p.parsed == 1 and not p.malformed


def test_the_manuals_examples_of_logs():
    p = parser()
    got = [p.parse(line) for line in DOC_EXAMPLES]
    assert all(r is not None for r in got)
    assert [r.status for r in got] == [200, 200, 200, 502, None, 408, 503]
    assert [r.bytes_out for r in got] == [243, 243, 243, 243, 0, 0, 0]
    assert [r.upstream_time_s for r in got] == pytest.approx([0.147, 0.147, 0.014, 0.014, None, None, None])
    assert [r.total_time_s for r in got] == pytest.approx([6.723, 6.870, 0.030, 0.030, 8.490, 50.001, 11.215])
    assert [r.server for r in got] == ["srv1"] * 4 + [None, None, "srv1"]  # <NOSRV>: none reached
    assert all(r.upstream is None for r in got)  # no servers mapping given
    assert got[0].at_s == pytest.approx(utc("15/Oct/2003:08:31:57") + 0.130)


@pytest.mark.parametrize("prefix", [
    "",                                                          # bare
    "haproxy[14389]: ",
    "Feb  6 12:14:14 localhost haproxy[14389]: ",                # a syslog daemon's file
    "<134>Feb  6 12:14:14 haproxy[14389]: ",                     # HAProxy's own RFC 3164 (no host)
    "<134>Feb 16 12:14:14 lb-1 haproxy[14389]: ",
    "<134>1 2009-02-06T12:14:14.655+00:00 lb-1 haproxy 14389 - - ",  # RFC 5424
    '<134>1 2009-02-06T12:14:14.655Z lb-1 haproxy 14389 - [meta sequenceId="1"] ',
    "2009-02-06T12:14:14.655+00:00 lb-1 haproxy[14389]: ",      # rsyslog's file, ISO timestamps
])
def test_syslog_headers(prefix):
    r = parser().parse(prefix + BODY)
    assert r is not None and r.client == "10.0.1.2" and r.status == 200 and r.backend == "static"


def test_ipv6_client_and_bytes():
    line = BODY.replace("10.0.1.2:33317", "2001:db8::1:33317")
    r = parser().parse(("<134>Feb  6 12:14:14 haproxy[1]: " + line + "\n").encode())
    assert r is not None and r.client == "2001:db8::1"
    assert parser().parse(BODY.replace("10.0.1.2:33317", "::ffff:10.0.1.2:33317")).client == "::ffff:10.0.1.2"


def test_without_header_captures_and_with_a_cut_request_line():
    no_captures = BODY.replace(" {1wt.eu} {}", "")
    cut = BODY[: BODY.index('"GET') + 5]  # the request line cut by the syslog buffer: documented
    for line in (no_captures, cut):
        r = parser().parse(line)
        assert r is not None and r.status == 200 and r.bytes_out == 2750


def test_the_servers_mapping_gives_the_upstream_and_can_be_replaced():
    p = parser(servers={("static", "srv1"): "10.0.3.1:8000"})
    assert p.parse(BODY).upstream == "10.0.3.1:8000"
    p.servers = {("static", "srv2"): "10.0.3.2:8000"}
    assert p.parse(BODY).upstream is None


def test_local_time_by_default():
    r = HaproxyParser().parse(BODY)
    assert r.at_s == pytest.approx(time.mktime((2009, 2, 6, 12, 14, 14, 0, 0, -1)) + 0.655)
    assert HaproxyParser(utc_offset_s=3600).parse(BODY).at_s == pytest.approx(utc("06/Feb/2009:11:14:14") + 0.655)


@pytest.mark.parametrize(("line", "kind"), [
    ("", "empty"),
    ("   \n", "empty"),
    ("Proxy http-in started.", "other"),
    ("<133>Feb  6 12:14:14 haproxy[1]: Server static/srv1 is DOWN, reason: Layer4 timeout", "other"),
    ("\x00\xff garbage \u2603", "other"),
    (DOC_TCP, "tcplog"),
    (BODY[:60], "truncated"),
    (BODY[: BODY.index(" 0/0 ")], "truncated"),
    (BODY.replace(" 200 ", " OK "), "malformed"),
    (BODY.replace("/30/", "/x/"), "malformed"),
    (BODY.replace("06/Feb/2009", "06/Foo/2009"), "malformed"),
])
def test_malformed_lines_count_by_kind(line, kind):
    p = parser()
    assert p.parse(line) is None
    assert dict(p.malformed) == {kind: 1} and p.parsed == 0


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_never_raises_on_text(text):
    p = parser()
    assert p.parse(text) is None or p.parsed == 1
    assert set(p.malformed) <= set(MALFORMED_KINDS)


@settings(max_examples=300, deadline=None)
@given(st.binary())
def test_never_raises_on_bytes(data):
    parser().parse(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(DOC_HTTP)), st.text(max_size=5), st.integers(0, len(DOC_HTTP)))
def test_never_raises_on_damaged_lines(cut, junk, at):
    p = parser()
    for line in (DOC_HTTP[:cut], DOC_HTTP[:at] + junk + DOC_HTTP[at:]):
        p.parse(line)
    assert p.parsed + sum(p.malformed.values()) == 2


# --- show servers state --------------------------------------------------------------------------
STATE_HEADER = ("# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
                "srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health "
                "srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord "
                "srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port")
STATE = "\n".join([
    "1",
    STATE_HEADER,
    "3 static 1 srv1 10.0.3.1 2 0 100 100 42 6 3 4 6 0 0 0 - 8000 - 0 0 - - 0",
    "3 static 2 srv2 2001:db8::5 0 1 50 100 7 8 2 0 6 0 0 0 - 8080 - 0 0 - - 0",
    "3 static 3 srv3 - 0 32 1 1 7 8 2 0 6 0 0 0 app.example 0 - 0 0 - - 0",
    "",
])


def test_show_servers_state():
    states = parse_servers_state(STATE)
    assert states == {
        ("static", "srv1"): ServerState("10.0.3.1", 8000, 100, 2, 0),
        ("static", "srv2"): ServerState("2001:db8::5", 8080, 50, 0, 1),
        ("static", "srv3"): ServerState(None, None, 1, 0, 32),
    }
    assert servers_map(states) == {("static", "srv1"): "10.0.3.1:8000", ("static", "srv2"): "[2001:db8::5]:8080"}


def test_show_servers_state_of_an_older_haproxy_without_srv_port():
    text = ("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
            "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
            "srv_agent_state bk_f_forced_id srv_f_forced_id\n2 app 1 a 10.0.0.1 2 0 1 1 5 6 3 4 6 0 0 0\n")
    assert parse_servers_state(text) == {("app", "a"): ServerState("10.0.0.1", None, 1, 2, 0)}
    assert servers_map(parse_servers_state(text)) == {}


@pytest.mark.parametrize(("text", "words"), [
    ("", "empty answer"),
    ("Can't find backend.\n", "format version \"Can't find backend.\" is not supported"),
    ("2\n# be_id be_name\n", "format version '2'"),
    ("1\n3 static 1 srv1\n", "no column header"),
    ("1\n# be_id be_name srv_id srv_name srv_addr\n", "'srv_op_state' missing"),
    ("1\n" + STATE_HEADER + "\n3 static 1 srv1 10.0.3.1 2 0\n", "line 3 has 7 fields"),
    ("1\n" + STATE_HEADER + "\n3 static 1 srv1 10.0.3.1 UP 0 100 100 42 6 3 4 6 0 0 0 - 80 - 0 0 - - 0\n",
     "line 3: a number column"),
])
def test_show_servers_state_errors_are_one_line(text, words):
    with pytest.raises(ValueError) as e:
        parse_servers_state(text)
    assert words in str(e.value) and "\n" not in str(e.value)
