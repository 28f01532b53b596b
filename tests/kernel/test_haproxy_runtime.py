"""`HaproxyRuntime` against a real HAProxy (Debian 12: 2.6): every test starts its own process
with a config, sockets and ACL file under its tmp_path, and the finalizer kills it."""

from __future__ import annotations

import asyncio
import http.client
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pathsteer.gateways.runtime import HaproxyRuntime, RuntimeApiError, RuntimeApiRefused

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed (make deps)")]

DRAIN = 0x08  # srv_admin_state: forced drain


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Haproxy:
    tmp: Path
    sock: Path
    acl: Path
    http_port: int
    s1_port: int
    s2_port: int
    tcp_port: int | None
    proc: subprocess.Popen | None = None

    def runtime(self, **kw: float) -> HaproxyRuntime:
        return HaproxyRuntime(f"unix:{self.sock}", **kw)

    def config(self) -> str:
        tcp = f"    stats socket 127.0.0.1:{self.tcp_port} level admin\n" if self.tcp_port else ""
        return (f"global\n    stats socket {self.sock} mode 600 level admin\n{tcp}"
                "defaults\n    mode http\n    retries 0\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n"
                f"frontend fe\n    bind 127.0.0.1:{self.http_port}\n"
                f"    acl blocked src -f {self.acl}\n    http-request deny if blocked\n    default_backend be_app\n"
                f"backend be_app\n    server s1 127.0.0.1:{self.s1_port} weight 100\n"
                f"    server s2 127.0.0.1:{self.s2_port} weight 50\n")


def start(tmp: Path, tcp: bool = False) -> Haproxy:
    h = Haproxy(tmp, tmp / "admin.sock", tmp / "blocked.acl", free_port(), free_port(), free_port(),
                free_port() if tcp else None)
    h.acl.write_text("")
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(h.config())
    with open(tmp / "haproxy.log", "wb") as log:  # Popen keeps its own copy of the fd
        h.proc = subprocess.Popen(["haproxy", "-f", str(cfg), "-db"], stdout=subprocess.DEVNULL,
                                  stderr=log, cwd=tmp)
    try:
        wait_ready(h)
    except BaseException:
        stop(h.proc)  # the fixture never sees h: no process may outlive a failed start
        raise
    return h


def wait_ready(h: Haproxy) -> None:
    assert h.proc is not None
    deadline = time.monotonic() + 10
    while True:  # up when the socket answers, not when it exists
        if h.proc.poll() is not None:
            raise RuntimeError(f"haproxy exited {h.proc.returncode}: {(h.tmp / 'haproxy.log').read_text()[-500:]}")
        if h.sock.exists():
            try:
                if asyncio.run(h.runtime(timeout_s=1).command("show info")).startswith("Name: HAProxy"):
                    return
            except RuntimeApiError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError("haproxy's stats socket did not answer within 10 s")
        time.sleep(0.05)


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Haproxy]:
    h = None
    try:
        h = start(tmp_path)
        yield h
    finally:
        stop(h.proc if h else None)


@pytest.fixture
def haproxy_tcp(tmp_path: Path) -> Iterator[Haproxy]:
    h = None
    try:
        h = start(tmp_path, tcp=True)
        yield h
    finally:
        stop(h.proc if h else None)


def test_servers_state_lists_both_servers(haproxy: Haproxy) -> None:
    states = asyncio.run(haproxy.runtime().servers_state())
    assert states[("be_app", "s1")].weight == 100
    assert states[("be_app", "s2")].weight == 50
    assert states[("be_app", "s1")].upstream == f"127.0.0.1:{haproxy.s1_port}"
    assert states[("be_app", "s2")].upstream == f"127.0.0.1:{haproxy.s2_port}"
    assert set(asyncio.run(haproxy.runtime().servers_state("be_app"))) == {("be_app", "s1"), ("be_app", "s2")}


def test_tcp_socket(haproxy_tcp: Haproxy) -> None:
    rt = HaproxyRuntime(f"tcp:127.0.0.1:{haproxy_tcp.tcp_port}")
    assert rt.address == f"tcp:127.0.0.1:{haproxy_tcp.tcp_port}"

    async def go() -> dict:
        await rt.set_weight("be_app", "s2", 7)
        return await HaproxyRuntime(f"127.0.0.1:{haproxy_tcp.tcp_port}").servers_state("be_app")
    assert asyncio.run(go())[("be_app", "s2")].weight == 7


def test_set_weight_and_state(haproxy: Haproxy) -> None:
    rt = haproxy.runtime()

    async def go() -> None:
        await rt.set_weight("be_app", "s1", 30)
        await rt.set_weight("be_app", "s2", 0)
        s = await rt.servers_state("be_app")
        assert (s[("be_app", "s1")].weight, s[("be_app", "s2")].weight) == (30, 0)
        await rt.set_state("be_app", "s1", "drain")
        assert (await rt.servers_state())[("be_app", "s1")].admin_state & DRAIN
        await rt.set_state("be_app", "s1", "ready")
        assert not (await rt.servers_state())[("be_app", "s1")].admin_state & DRAIN
    asyncio.run(go())


def test_refusals_carry_haproxys_message(haproxy: Haproxy) -> None:
    rt = haproxy.runtime()
    where = f"haproxy runtime unix:{haproxy.sock}"
    with pytest.raises(RuntimeApiRefused) as e:
        asyncio.run(rt.set_weight("be_app", "s9", 50))
    assert str(e.value) == f"{where}: set server be_app/s9 weight 50: No such server."
    with pytest.raises(RuntimeApiRefused, match=r": set server nope/s1 state drain: No such backend\.$"):
        asyncio.run(rt.set_state("nope", "s1", "drain"))
    with pytest.raises(RuntimeApiRefused, match=r"Can't find backend\.$"):
        asyncio.run(rt.servers_state("nope"))
    with pytest.raises(RuntimeApiRefused, match=r"Unknown ACL identifier"):
        asyncio.run(rt.add_acl(str(haproxy.tmp / "nope.acl"), "10.0.0.1"))
    with pytest.raises(RuntimeApiRefused, match=r"Unknown ACL identifier"):
        asyncio.run(rt.acl_entries("#99"))
    with pytest.raises(RuntimeApiRefused, match=r"Unknown map identifier"):  # sic, HAProxy 2.6
        asyncio.run(rt.del_acl(str(haproxy.tmp / "nope.acl"), "10.0.0.1"))
    with pytest.raises(RuntimeApiRefused, match=r"Key not found\.$"):
        asyncio.run(rt.del_acl(str(haproxy.acl), "10.9.9.9"))
    with pytest.raises(RuntimeApiRefused, match=r"'nope' is not a valid IPv4 or IPv6 address\.$"):
        asyncio.run(rt.add_acl(str(haproxy.acl), "nope"))
    assert "\n" not in str(e.value)


def test_acl_round_trip(haproxy: Haproxy) -> None:
    rt = haproxy.runtime()
    acl = str(haproxy.acl)

    async def go() -> None:
        assert await rt.acl_entries(acl) == []
        for v in ("10.0.0.1", "192.0.2.0/24", "2001:db8::1"):
            await rt.add_acl(acl, v)
        assert await rt.acl_entries(acl) == ["10.0.0.1", "192.0.2.0/24", "2001:db8::1"]
        assert await rt.acl_entries("#0") == ["10.0.0.1", "192.0.2.0/24", "2001:db8::1"]
        await rt.del_acl(acl, "192.0.2.0/24")
        await rt.del_acl(acl, "2001:db8::1")
        assert await rt.acl_entries(acl) == ["10.0.0.1"]
    asyncio.run(go())


def get_status(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status
    finally:
        conn.close()


def test_add_acl_denies_the_client(haproxy: Haproxy) -> None:
    rt = haproxy.runtime()
    # Not blocked: forwarded to s1/s2, where nothing listens -> 503 (retries 0: at once), never 403.
    assert get_status(haproxy.http_port) == 503
    asyncio.run(rt.add_acl(str(haproxy.acl), "127.0.0.1"))
    assert get_status(haproxy.http_port) == 403
    asyncio.run(rt.del_acl(str(haproxy.acl), "127.0.0.1"))
    assert get_status(haproxy.http_port) == 503


def test_stat_rows(haproxy: Haproxy) -> None:
    rows = asyncio.run(haproxy.runtime().stat())
    s1 = next(r for r in rows if (r["pxname"], r["svname"]) == ("be_app", "s1"))
    assert s1["weight"] == "100"
    assert s1["addr"] == f"127.0.0.1:{haproxy.s1_port}"
    fe = next(r for r in rows if r["svname"] == "FRONTEND")
    assert fe["weight"] == ""
    assert "" not in s1


def test_missing_socket_is_an_error_not_a_refusal(tmp_path: Path) -> None:
    rt = HaproxyRuntime(str(tmp_path / "no.sock"), timeout_s=5)
    t = time.monotonic()
    with pytest.raises(RuntimeApiError) as e:
        asyncio.run(rt.command("show info"))
    assert time.monotonic() - t < 1
    assert not isinstance(e.value, RuntimeApiRefused)
    assert str(e.value).startswith(f"haproxy runtime unix:{tmp_path / 'no.sock'}: show info: ")


def test_silent_server_times_out() -> None:
    async def go() -> float:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # accepts, reads, never answers
            writer.close()
        server = await asyncio.start_server(hold, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            t = time.monotonic()
            with pytest.raises(RuntimeApiError, match=r"no answer within 0\.3 s$") as e:
                await HaproxyRuntime(f"127.0.0.1:{port}", timeout_s=0.3).command("show info")
            assert not isinstance(e.value, RuntimeApiRefused)
            return time.monotonic() - t
        finally:
            server.close()
    elapsed = asyncio.run(go())
    assert 0.25 < elapsed < 2


def one_line_naming(e: pytest.ExceptionInfo, field: str) -> None:
    assert "\n" not in str(e.value)
    assert str(e.value).startswith(f"haproxy runtime {field}: ")


@pytest.mark.parametrize("line", ["show info\nshow stat", "show info; shutdown frontend fe", "show info\r", ""])
def test_bad_command_lines(line: str) -> None:
    with pytest.raises(ValueError) as e:
        asyncio.run(HaproxyRuntime("/nonexistent.sock").command(line))
    one_line_naming(e, "command")


def test_bad_arguments() -> None:
    rt = HaproxyRuntime("/nonexistent.sock")
    cases = [
        (rt.set_weight("be app", "s1", 1), "backend"),
        (rt.set_weight("be/app", "s1", 1), "backend"),
        (rt.set_weight("be_app", "s/1", 1), "server"),
        (rt.set_weight("be_app", "", 1), "server"),
        (rt.set_weight("be_app", "s1", 300), "weight"),
        (rt.set_weight("be_app", "s1", -1), "weight"),
        (rt.set_state("be_app", "s1", "up"), "state"),
        (rt.set_state("be_app", "s1\n", "drain"), "server"),
        (rt.add_acl("/x acl", "10.0.0.1"), "acl"),
        (rt.add_acl("/x.acl", "10.0.0.1;shutdown"), "acl value"),
        (rt.del_acl("/x.acl", "10.0.0.1 10.0.0.2"), "acl value"),
        (rt.acl_entries(""), "acl"),
        (rt.servers_state("be app"), "backend"),
    ]
    for coro, field in cases:
        with pytest.raises(ValueError) as e:
            asyncio.run(coro)
        one_line_naming(e, field)


@pytest.mark.parametrize("address", ["", "unix:", "tcp:127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000",
                                     "300.1.1.1:9999", "::1:9999", "[nope]:9999", "tcp:host name:1",
                                     "relative.sock", "/" + "x" * 200])
def test_bad_addresses(address: str) -> None:
    with pytest.raises(ValueError) as e:
        HaproxyRuntime(address)
    one_line_naming(e, "address")


def test_addresses_normalised() -> None:
    assert HaproxyRuntime("/run/haproxy.sock").address == "unix:/run/haproxy.sock"
    assert HaproxyRuntime("unix:/run/haproxy.sock").address == "unix:/run/haproxy.sock"
    assert HaproxyRuntime("127.0.0.1:9999").address == "tcp:127.0.0.1:9999"
    assert HaproxyRuntime("tcp:[::1]:9999").address == "tcp:[::1]:9999"
    assert HaproxyRuntime("tcp:localhost:9999").address == "tcp:localhost:9999"
