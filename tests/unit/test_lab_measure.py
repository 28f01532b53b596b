"""Parsing ping output (iputils) for the lab's measurements."""

from pathsteer_lab.measure import parse_ping, ping_argv

OUTPUT = """PING 10.201.2.2 (10.201.2.2) 56(84) bytes of data.
[1764000000.100000] 64 bytes from 10.201.2.2: icmp_seq=1 ttl=62 time=20.4 ms
[1764000000.150000] 64 bytes from 10.201.2.2: icmp_seq=2 ttl=62 time=20.6 ms
From 10.200.0.1 icmp_seq=3 Destination Host Unreachable

--- 10.201.2.2 ping statistics ---
4 packets transmitted, 2 received, +1 errors, 50% packet loss, time 151ms
"""


def test_parse_ping():
    r = parse_ping(OUTPUT)
    assert (r.sent, r.received, r.errors) == (4, 2, 1)
    assert r.rtts_ms == [20.4, 20.6] and r.loss_pct == 50.0
    assert r.replies[0] == (1764000000.1, 1, 20.4)
    assert abs(r.median - 20.5) < 1e-9


def test_ping_argv():
    assert ping_argv("2001:db8::1", 5, 0.05)[-2:] == ["-6", "2001:db8::1"]
    assert "-D" in ping_argv("10.0.0.1", 5, 0.05, timestamps=True)
