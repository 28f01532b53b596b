"""The sd_notify client against real AF_UNIX datagram sockets (a path in a tmp dir and an abstract
name), the environment it reads (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID) and its failure
handling: a no-op without NOTIFY_SOCKET, a failed send logged once and never raised."""

from __future__ import annotations

import logging
import os
import socket
import uuid

import pytest

from pathsteer.daemon.sdnotify import Notifier, message, parse_address, parse_watchdog


def parse(datagram: bytes) -> dict[str, str]:
    """What systemd does with a notification: one KEY=VALUE a line."""
    return dict(line.split("=", 1) for line in datagram.decode().splitlines() if line)


@pytest.fixture
def receiver(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()


@pytest.fixture
def abstract_receiver():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"pathsteer-test-{uuid.uuid4().hex[:12]}"
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    yield "@" + name, sock
    sock.close()


def test_every_notification_over_a_socket_in_a_directory(receiver):
    path, sock = receiver
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert n.enabled and n.watchdog_interval is None
    assert n.ready(status="running: steer; paths up 2/3")
    assert parse(sock.recv(4096)) == {"READY": "1", "STATUS": "running: steer; paths up 2/3"}
    assert n.reloading()
    reloading = parse(sock.recv(4096))
    assert reloading["RELOADING"] == "1"
    now_us = __import__("time").clock_gettime_ns(__import__("time").CLOCK_MONOTONIC) // 1000
    assert 0 <= now_us - int(reloading["MONOTONIC_USEC"]) < 5_000_000  # CLOCK_MONOTONIC, microseconds
    n.ready()
    assert parse(sock.recv(4096)) == {"READY": "1"}
    n.status("two\nlines")
    assert parse(sock.recv(4096)) == {"STATUS": "two lines"}  # one assignment per line
    n.watchdog()
    assert parse(sock.recv(4096)) == {"WATCHDOG": "1"}
    n.stopping()
    assert parse(sock.recv(4096)) == {"STOPPING": "1"}
    assert n.sent == 6
    n.close()


def test_an_abstract_socket(abstract_receiver):
    name, sock = abstract_receiver
    n = Notifier.from_env({"NOTIFY_SOCKET": name})
    assert n.address == b"\0" + name[1:].encode()
    assert n.ready(status="ok")
    assert parse(sock.recv(4096)) == {"READY": "1", "STATUS": "ok"}
    n.close()


def test_the_watchdog_interval_is_half_of_watchdog_usec_and_only_for_our_pid(receiver):
    path, _ = receiver
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"}
    assert Notifier.from_env(env).watchdog_interval == 15.0
    assert Notifier.from_env({**env, "WATCHDOG_PID": str(os.getpid())}).watchdog_interval == 15.0
    assert Notifier.from_env({**env, "WATCHDOG_PID": "1"}, pid=4242).watchdog_interval is None  # another's
    assert Notifier.from_env({**env, "WATCHDOG_USEC": "0"}).watchdog_interval is None
    assert Notifier.from_env({**env, "WATCHDOG_USEC": "soon"}).watchdog_interval is None
    assert Notifier.from_env({"NOTIFY_SOCKET": path}).watchdog_interval is None
    # No socket to ping: no watchdog either.
    assert Notifier.from_env({"WATCHDOG_USEC": "30000000"}).watchdog_interval is None


def test_without_notify_socket_nothing_is_sent_or_opened():
    n = Notifier.from_env({})
    assert not n.enabled and n.watchdog_interval is None
    assert not n.ready(status="x") and not n.watchdog() and not n.reloading() and not n.stopping()
    assert n._sock is None and n.sent == 0


@pytest.mark.parametrize("value, address", [
    ("/run/systemd/notify", "/run/systemd/notify"),
    ("@abstract", b"\0abstract"),
    ("", None), (None, None), ("vsock:2:1234", None), ("relative/path", None),
])
def test_parse_address(value, address):
    assert parse_address(value) == address


def test_parse_watchdog():
    assert parse_watchdog("2000000", None, 7) == 2.0
    assert parse_watchdog("2000000", "7", 7) == 2.0
    assert parse_watchdog("2000000", "8", 7) is None
    assert parse_watchdog("2000000", "x", 7) is None
    assert parse_watchdog("-1", None, 7) is None
    assert message(READY=1, STATUS="a") == b"READY=1\nSTATUS=a\n"


def test_a_send_that_fails_is_logged_once_and_never_raised(tmp_path, caplog, receiver):
    n = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with caplog.at_level(logging.WARNING, logger="pathsteer.daemon"):
        for _ in range(5):
            assert n.watchdog() is False
    failures = [r for r in caplog.records if "sd-notify-failed" in r.getMessage()]
    assert len(failures) == 1 and "nobody-listens" in failures[0].getMessage()
    # Logged again only after a send succeeded in between.
    path, sock = receiver
    n.address = path
    assert n.watchdog()
    n.address = str(tmp_path / "nobody-listens")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pathsteer.daemon"):
        n.watchdog()
        n.watchdog()
    assert len([r for r in caplog.records if "sd-notify-failed" in r.getMessage()]) == 1
    n.close()


def test_a_full_receiver_does_not_block_the_sender(receiver, caplog):
    path, sock = receiver
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    with caplog.at_level(logging.WARNING, logger="pathsteer.daemon"):
        results = [n.status("x" * 200) for _ in range(2000)]  # nobody reads: the queue fills
    assert results[0] and not all(results)
    assert len([r for r in caplog.records if "sd-notify-failed" in r.getMessage()]) == 1
    n.close()
