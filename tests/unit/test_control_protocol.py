"""Control socket: codecs, and a live server on a temporary socket that answers garbage with
an error reply and keeps serving."""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import pytest
from pydantic import BaseModel

from pathsteer.control import Command, ControlClient, ControlError, ControlServer, Request, Response
from pathsteer.control.protocol import ProtocolError
from pathsteer.errors import PathsteerError, UsageError


def test_request_roundtrip():
    req = Request("guard.block", {"cidr": "192.0.2.0/24"}, 7)
    assert Request.decode(req.encode()) == req


@pytest.mark.parametrize("line, message", [
    (b"garbage", "not JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[1]", "JSON object"),
    (b'{"command": 5}', "must be a command name"),
    (b'{"command": "Guard Block"}', "must be a command name"),
    (b'{"command": "x", "args": [1]}', "'args' must be a JSON object"),
    (b'{"command": "x", "extra": 1}', "unknown key 'extra'"),
])
def test_bad_requests(line, message):
    with pytest.raises(ProtocolError, match=message):
        Request.decode(line)


def test_response_roundtrip():
    for resp in (Response.success({"a": 1}, 3), Response.failure("bad\nsecond line", 2, 3)):
        back = Response.decode(resp.encode())
        assert back.ok == resp.ok and back.id == 3
    assert Response.decode(Response.failure("bad\nsecond", 2).encode()).error == "bad"


def test_a_failure_carries_its_error_kind_back_to_its_class():
    """The HTTP API answers 404 / 503 by the error's type, not by matching its words."""
    from pathsteer.errors import NotFoundError, NotReadyError, PathsteerError, UsageError, by_kind
    for cls in (NotFoundError, NotReadyError, UsageError, PathsteerError):
        exc = cls("x")
        back = Response.decode(Response.failure(str(exc), exc.exit_code, 1, exc.kind).encode())
        assert by_kind(back.kind, back.exit_code) is cls
    assert issubclass(NotFoundError, UsageError) and NotFoundError.exit_code == 2
    # a reply without a kind (an older daemon): the exit code decides
    legacy = Response.decode(b'{"id": 1, "ok": false, "error": "e", "exit_code": 2}')
    assert legacy.kind == "" and by_kind(legacy.kind, legacy.exit_code) is UsageError
    assert by_kind("", 1) is PathsteerError


class EchoArgs(BaseModel):
    text: str
    times: int = 1


@pytest.fixture
def server(tmp_path):
    path = str(tmp_path / "ctl.sock")
    loop = asyncio.new_event_loop()
    srv = ControlServer(path)

    def boom(_args):
        raise RuntimeError("bug")

    def refuse(_args):
        raise UsageError("refused: bad thing")

    async def echo(args: EchoArgs):
        return {"echo": args.text * args.times}

    srv.register(Command("test.echo", EchoArgs, echo))
    srv.register(Command("test.boom", EchoArgs, boom))
    srv.register(Command("test.refuse", EchoArgs, refuse))
    loop.run_until_complete(srv.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield path
    asyncio.run_coroutine_threadsafe(srv.close(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def raw(path: str, payload: bytes) -> list[dict]:
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    return [json.loads(line) for line in data.splitlines()]


def test_client_call(server):
    assert ControlClient(server).call("test.echo", {"text": "ab", "times": 2}) == {"echo": "abab"}
    assert "test.echo" in ControlClient(server).call("help")


def test_garbage_gets_errors_and_server_keeps_going(server):
    replies = raw(server, b'garbage\n\xff\n{"command": "nope"}\n{"command": "test.echo", "args": {"times": 1}}\n'
                          b'{"command": "test.echo", "args": {"text": "x", "bogus": 1}}\n'
                          b'{"id": 9, "command": "test.echo", "args": {"text": "ok"}}\n')
    assert [r["ok"] for r in replies] == [False, False, False, False, True, True]
    assert "not JSON" in replies[0]["error"] and replies[0]["exit_code"] == 2
    assert "unknown command 'nope'" in replies[2]["error"]
    assert replies[3]["error"] == "test.echo: text: missing (required)"
    assert replies[5] == {"id": 9, "ok": True, "result": {"echo": "ok"}}
    assert ControlClient(server).call("test.echo", {"text": "still"}) == {"echo": "still"}


def test_handler_errors(server):
    with pytest.raises(UsageError, match="refused: bad thing"):
        ControlClient(server).call("test.refuse", {"text": "x"})
    with pytest.raises(ControlError, match="internal error in test.boom: RuntimeError: bug"):
        ControlClient(server).call("test.boom", {"text": "x"})
    assert ControlClient(server).call("test.echo", {"text": "alive"}) == {"echo": "alive"}


def test_no_daemon(tmp_path):
    with pytest.raises(PathsteerError, match="no pathsteer daemon at"):
        ControlClient(str(tmp_path / "none.sock")).call("help")


def test_second_server_on_a_live_socket_is_refused(server):
    with pytest.raises(UsageError, match="another pathsteer daemon is listening"):
        asyncio.run(ControlServer(server).start())
