"""Receivers of gateways' access logs, over real sockets, files and HTTP (no root)."""

from __future__ import annotations

import asyncio
import json
import os
import socket

import pytest
import uvicorn

from pathsteer.gateways.receivers import (LOKI_PUSH, FileTail, ReceiverStats, SyslogReceiver, http_lines,
                                          parse_listen, records_app)

LINE = ('<134>Feb  6 12:14:14 localhost haproxy[14389]: 10.0.1.2:33317 [06/Feb/2009:12:14:14.655] '
        'http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 "GET /index.html HTTP/1.1"')


@pytest.mark.parametrize("text, kind", [("udp:127.0.0.1:5140", "udp"), ("udp:[::1]:5140", "udp"),
                                        ("unix:/run/pathsteer/h.sock", "unix"), ("file:/var/log/h.log", "file"),
                                        ("http:127.0.0.1:9181", "http")])
def test_listen_addresses(text, kind):
    assert parse_listen(text).kind == kind and str(parse_listen(text)) == text


@pytest.mark.parametrize("text, message", [
    ("127.0.0.1:5140", "is not one of"), ("udp", "is not KIND:ADDRESS"), ("udp:127.0.0.1", "needs HOST:PORT"),
    ("udp:127.0.0.1:0", "needs HOST:PORT"), ("udp:example.org:514", "is not an IP address"),
    ("unix:relative.sock", "must be absolute"), ("unix:/" + "x" * 120, "at most 107 bytes")])
def test_bad_listen_addresses_are_one_line_naming_the_field(text, message):
    with pytest.raises(ValueError, match=message) as e:
        parse_listen(text, "gateways[0].log.listen")
    assert str(e.value).startswith("gateways[0].log.listen: ") and "\n" not in str(e.value)


def test_syslog_over_udp_and_a_unix_datagram_socket(tmp_path):
    async def main():
        for listen in (parse_listen("udp:127.0.0.1:1"), parse_listen(f"unix:{tmp_path}/log.sock")):
            got = []
            if listen.kind == "udp":
                listen = type(listen)("udp", "127.0.0.1", 0)  # a free port
            r = SyslogReceiver(listen, got.append)
            await r.start()
            try:
                family = socket.AF_INET if listen.kind == "udp" else socket.AF_UNIX
                with socket.socket(family, socket.SOCK_DGRAM) as s:
                    s.sendto(LINE.encode(), r.address)
                    s.sendto((LINE + "\n" + LINE + "\n").encode(), r.address)
                    s.sendto(b"\xff\xfe garbage", r.address)
                for _ in range(100):
                    if len(got) == 4:
                        break
                    await asyncio.sleep(0.01)
                assert got[:3] == [LINE, LINE, LINE] and got[3].endswith("garbage")
                assert r.stats.datagrams == 3 and r.stats.lines == 4
            finally:
                await r.stop()
        assert not os.path.exists(tmp_path / "log.sock")
    asyncio.run(main())


def test_a_stale_socket_is_replaced_but_another_file_is_not(tmp_path):
    path = tmp_path / "log.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.close()  # a socket file left by a dead run

    async def main():
        r = SyslogReceiver(parse_listen(f"unix:{path}"), lambda _l: None)
        await r.start()
        await r.stop()
        (tmp_path / "plain").write_text("not a socket")
        r = SyslogReceiver(parse_listen(f"unix:{tmp_path}/plain"), lambda _l: None)
        with pytest.raises(OSError):
            await r.start()
        assert (tmp_path / "plain").read_text() == "not a socket"
    asyncio.run(main())


def test_a_file_is_tailed_through_rotation_and_truncation(tmp_path):
    path = tmp_path / "access.log"
    path.write_text("old line, before the start\n")
    got: list[str] = []
    t = FileTail(str(path), got.append)

    async def main():
        await t.start()
        try:
            with open(path, "a") as f:
                f.write("one\ntw")
            t.poll()
            assert got == ["one"]  # "tw" waits for its newline
            with open(path, "a") as f:
                f.write("o\n")
            t.poll()
            os.rename(path, tmp_path / "access.log.1")  # logrotate: rename, then a new file
            with open(tmp_path / "access.log.1", "a") as f:
                f.write("three, written to the old file before it closed\n")
            path.write_text("four\n")
            t.poll()
            with open(path, "w") as f:  # copytruncate: seen when the file is shorter than what was read
                f.write("5\n")
            t.poll()
        finally:
            await t.stop()
    asyncio.run(main())
    assert got == ["one", "two", "three, written to the old file before it closed", "four", "5"]
    assert t.stats.reopened == 2 and t.stats.lines == 5


def test_a_file_that_is_missing_at_start_is_read_whole_once_it_appears(tmp_path, caplog):
    path = tmp_path / "later.log"
    got: list[str] = []
    t = FileTail(str(path), got.append)

    async def main():
        await t.start()
        t.poll()
        path.write_text("a\nb\n")
        t.poll()
        await t.stop()
    asyncio.run(main())
    assert got == ["a", "b"]
    assert sum("gateway.tail-missing" in r.getMessage() for r in caplog.records) == 1


def test_http_bodies_of_apintos_outputs():
    record = {"msec": 1733500000.123, "remote_addr": "198.51.100.7", "status": 401}
    push = {"streams": [{"stream": {"cluster": "c1", "node": "n1"},
                         "values": [["1733500000123000000", json.dumps(record)], ["1733500000124000000", "x"]]}]}
    assert http_lines(LOKI_PUSH, json.dumps(push).encode()) == [json.dumps(record), "x"]
    assert http_lines(LOKI_PUSH, b'{"streams": [{"values": [[1, 2]]}]}') is None
    assert http_lines(LOKI_PUSH, b"not json") is None
    pretty = json.dumps(record, indent=2).encode()
    assert http_lines("/apinto", pretty) == [pretty.decode().strip()]
    assert http_lines("/apinto", b'{"a":1}\n{"a":2}\n') == ['{"a":1}', '{"a":2}']


def test_the_http_receiver_over_real_http():
    import http.client
    got: list[str] = []
    stats = ReceiverStats()

    async def main():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(records_app(got.append, stats, max_body=4096), log_level="warning",
                                access_log=False, lifespan="off", loop="none", http="h11", ws="none")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)

        def post(path: str, body: bytes, method: str = "POST") -> int:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request(method, path, body=body, headers={"Content-Type": "application/json"})
            status = c.getresponse().status
            c.close()
            return status
        try:
            assert await asyncio.to_thread(post, "/apinto", b'{"remote_addr":"198.51.100.7","status":200}') == 204
            push = {"streams": [{"stream": {}, "values": [["1", "l1"], ["2", "l2"]]}]}
            assert await asyncio.to_thread(post, LOKI_PUSH, json.dumps(push).encode()) == 204
            assert await asyncio.to_thread(post, LOKI_PUSH, b"[]") == 400
            assert await asyncio.to_thread(post, "/apinto", b"x" * 5000) == 413
            assert await asyncio.to_thread(post, "/apinto", b"", "GET") == 405
        finally:
            server.should_exit = True
            await task
    asyncio.run(main())
    assert got == ['{"remote_addr":"198.51.100.7","status":200}', "l1", "l2"]
    assert stats.lines == 3 and stats.rejected == 2
