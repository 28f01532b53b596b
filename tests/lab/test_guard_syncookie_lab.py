"""SYN cookies end to end in the lab: the daemon runs the guard on r-a and r-c with the client
*not* in allow; hping3 floods the server's port from the attacker with spoofed sources while
client threads connect again and again (connect, one byte there and back through synproxy).

The scenario is bench/bench_syncookie.py's `run` (the same figures the benchmark prints);
here it asserts generous bounds. Every test stops its daemons and generators and removes its
lab even when it fails (the lab's namespaces take the XDP attachments and nft tables along)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys

import pytest
import yaml

from bench import bench_syncookie as sc
from pathsteer.guard import synproxy

pytestmark = pytest.mark.lab
SOCKET_DIR = "/run/pathsteer/test"


@pytest.fixture
def lab1(lab_factory):
    return lab_factory(1)


@pytest.fixture
def sockets(unique_name):
    os.makedirs(SOCKET_DIR, exist_ok=True)
    made: list[str] = []

    def make() -> str:
        path = f"{SOCKET_DIR}/{unique_name('sc')}.sock"
        made.append(path)
        return path

    yield make
    for path in made:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


@pytest.fixture
def daemons():
    made: list[sc.Daemon] = []
    yield made
    for d in made:
        d.stop()


def router_nft(lab) -> str:
    return lab.run("router", ["nft", "list", "tables"]).stdout


def router_loose(lab) -> int:
    return int(lab.run("router", ["cat", synproxy.TCP_LOOSE]).stdout)


def test_spoofed_syn_flood_clients_complete_handshakes_with_cookies(lab1, sockets, tmp_path):
    with sc.echo_server(lab1):
        off = sc.run(lab1, False, tmp_path / "off", sockets(), seconds=8)
        on = sc.run(lab1, True, tmp_path / "on", sockets(), seconds=8)
    report = (f"cookies on: {on.succeeded}/{on.attempts} IPv4 handshakes ({on.success_pct:.1f}%), IPv6 "
              f"{on.succeeded_v6}/{on.attempts_v6}, flood {on.flood_pps:,.0f} SYN/s answered; cookies off: "
              f"{off.succeeded}/{off.attempts} ({off.success_pct:.1f}%), flood {off.flood_pps:,.0f} SYN/s limited")
    print(report)
    assert on.attempts >= 50, report
    assert on.success_pct >= 97.0, report  # goal 99 %: every failure is named in the report
    assert on.success_pct >= off.success_pct, report
    assert on.attempts_v6 >= 5 and on.succeeded_v6 >= 0.9 * on.attempts_v6, report
    # the good handshakes went through the guard's cookie check and synproxy; a client port the
    # kernel reuses while conntrack still holds its closed entry (TIME_WAIT, 120 s) is passed as a
    # known connection instead (a CI run: 1482 cookies for 1514 handshakes), hence the 10 % margin
    assert on.verdicts["pass-cookie"] >= 0.9 * (on.succeeded + on.succeeded_v6), report
    # hping3 --flood on a shared 2-core machine: 20k-480k SYN/s seen; the SYN-ACKs cost the attacker's side too
    assert on.flood_pps >= 5_000 and off.flood_pps >= 5_000, report
    assert off.verdicts.get("tx-syncookie", 0) == 0 and off.verdicts["drop-syn"] > 0, report


def test_managed_synproxy_set_up_torn_down_and_kept_by_a_crash(lab1, sockets, daemons, tmp_path):
    assert router_loose(lab1) == 1 and synproxy.TABLE not in router_nft(lab1)
    d = sc.Daemon(lab1, sc.guard_config(str(tmp_path / "state"), True), tmp_path, sockets())
    daemons.append(d)
    d.start()
    assert synproxy.TABLE in router_nft(lab1) and router_loose(lab1) == 0
    assert d.stats()["syn_cookies"] == {"ports": str(sc.PORT), "interfaces": ["r-a", "r-c"], "netfilter": "managed"}
    assert d.stop() == 0
    assert synproxy.TABLE not in router_nft(lab1) and router_loose(lab1) == 1
    assert "xdp" not in lab1.run("router", ["ip", "-d", "link", "show", "dev", "r-a"]).stdout

    # kill -9: XDP keeps answering and synproxy stays; the next daemon adopts and restores 1 on stop
    d.start()
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    assert synproxy.TABLE in router_nft(lab1) and router_loose(lab1) == 0
    os.unlink(d.socket)
    d.start()
    assert d.stop() == 0
    assert synproxy.TABLE not in router_nft(lab1) and router_loose(lab1) == 1


def test_reload_turns_cookies_on_and_off(lab1, sockets, daemons, tmp_path):
    d = sc.Daemon(lab1, sc.guard_config(str(tmp_path / "state"), False), tmp_path, sockets())
    daemons.append(d)
    d.start()
    assert synproxy.TABLE not in router_nft(lab1)
    d.config_path.write_text(yaml.safe_dump({"control": {"socket": d.socket}, **sc.guard_config(str(tmp_path / "state"), True)}))
    assert d.cli("reload").returncode == 0
    assert synproxy.TABLE in router_nft(lab1) and router_loose(lab1) == 0
    assert d.stats()["syn_cookies"]["ports"] == str(sc.PORT)
    d.config_path.write_text(yaml.safe_dump({"control": {"socket": d.socket}, **sc.guard_config(str(tmp_path / "state"), False)}))
    assert d.cli("reload").returncode == 0
    assert synproxy.TABLE not in router_nft(lab1) and router_loose(lab1) == 1
    assert d.stats()["syn_cookies"] is None


def test_external_netfilter_not_set_up_is_refused_at_start(lab1, sockets, tmp_path):
    config = sc.guard_config(str(tmp_path / "state"), True)
    config["guard"]["syn_cookies"]["netfilter"] = "external"
    d = sc.Daemon(lab1, config, tmp_path, sockets())
    proc = lab1.run("router", [sys.executable, "-m", "pathsteer", "run", "--config", str(d.config_path)],
                    check=False, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nf_conntrack_tcp_loose=0" in lines[0], proc.stderr
    assert "xdp" not in lab1.run("router", ["ip", "-d", "link", "show", "dev", "r-a"]).stdout



# A client that reconnects from the same source port: each connection's 4-tuple is still in
# the router's conntrack (TIME_WAIT, 120 s) when the next one starts.
SAME_PORT_CLIENT = r"""
import socket, sys, time
addr, port, sport, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
family = socket.AF_INET6 if ":" in addr else socket.AF_INET
ok = 0
for _ in range(n):
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("", sport))
            s.settimeout(3)
            s.connect((addr, port))
            s.sendall(b"x")
            ok += s.recv(1) == b"x"
            s.recv(1)  # the server closes first: the TIME_WAIT is the server's, not ours
    except OSError as exc:
        print(exc, file=sys.stderr)
    time.sleep(0.2)
print(ok)
"""


@pytest.mark.parametrize("server", [sc.SERVER, sc.SERVER6], ids=["IPv4", "IPv6"])
def test_reused_four_tuple_connects_again(lab1, sockets, daemons, tmp_path, server):
    d = sc.Daemon(lab1, sc.guard_config(str(tmp_path / "state"), True), tmp_path, sockets())
    daemons.append(d)
    d.start()
    with sc.echo_server(lab1):
        proc = lab1.run("client", [sys.executable, "-c", SAME_PORT_CLIENT, server, str(sc.PORT), "45123", "4"],
                        check=False, timeout=60)
    assert proc.stdout.strip() == "4", proc.stderr
    verdicts = d.stats()["verdicts"]
    # the first connection went through the cookie; the later ones met conntrack's old entry
    assert verdicts["tx-syncookie"]["packets"] >= 1 and verdicts["pass-cookie"]["packets"] >= 1


def test_spoofed_ipv6_syn_flood_clients_complete_handshakes_with_cookies(lab1, sockets, tmp_path):
    """The same with an IPv6 flood from trafgen (hping3 has no IPv6) and IPv6 clients."""
    six = dict(seconds=6, flood="ipv6", workers=1, workers6=sc.WORKERS)
    with sc.echo_server(lab1):
        off = sc.run(lab1, False, tmp_path / "off", sockets(), **six)
        on = sc.run(lab1, True, tmp_path / "on", sockets(), **six)
    report = (f"cookies on: {on.succeeded_v6}/{on.attempts_v6} IPv6 handshakes ({on.success6_pct:.1f}%), "
              f"flood {on.flood_pps:,.0f} SYN/s answered; cookies off: {off.succeeded_v6}/{off.attempts_v6} "
              f"({off.success6_pct:.1f}%), flood {off.flood_pps:,.0f} SYN/s limited")
    print(report)
    assert on.attempts_v6 >= 50 and on.success6_pct >= 97.0, report
    assert on.success6_pct >= off.success6_pct, report
    assert on.verdicts["pass-cookie"] >= on.succeeded_v6, report
    assert on.flood_pps >= 5_000 and off.flood_pps >= 5_000, report
