"""Late, duplicate and foreign replies are counted as such and never taken as answers.

A fake responder in the target namespace answers each probe with: one reply for a
sequence number we never sent, one with our sequence number but not our packet (wrong
ICMP token / wrong TWAMP sender timestamp), then the real reply twice — except probes
2, 5 and 8, answered once, after their timeout.
"""

import pytest
from test_probe_netns import GW, PYTHON, TARGET4, TARGET6, two_paths  # noqa: F401 - fixture

LATE = {2, 5, 8}
COUNT = 20
TIMEOUT = 0.3
LATE_AFTER = 0.45

UDP_RESPONDER = r"""
import socket, sys, threading, time
from pathsteer.probe import twamp
addr, port, late_after = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
late = {int(x) for x in sys.argv[4].split(",")}
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind((addr, port))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(2048)
    req = twamp.decode_sender(data)
    def rep(**kw):
        p = twamp.reflect(req, seq=0, receive_timestamp=twamp.to_ntp(time.time()),
                          timestamp=twamp.to_ntp(time.time()), ttl=255)
        return twamp.encode_reflector(p.__class__(**{**p.__dict__, **kw}))
    s.sendto(rep(sender_seq=req.seq + 100000), peer)             # a sequence number never sent
    s.sendto(rep(sender_timestamp=req.timestamp ^ 1), peer)      # our seq, not our packet
    good = rep()
    if req.seq in late:
        threading.Timer(late_after, s.sendto, (good, peer)).start()
    else:
        s.sendto(good, peer)
        s.sendto(good, peer)                                     # duplicate
"""

ICMP_RESPONDER = r"""
import socket, struct, sys, threading
from pathsteer.probe import icmp
addr, late_after = sys.argv[1], float(sys.argv[2])
late = {int(x) for x in sys.argv[3].split(",")}
v6 = ":" in addr
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW,
                  socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
s.bind((addr, 0))
print("ready", flush=True)
def reply(ident, seq, data):
    kind = icmp.ECHO_REPLY_V6 if v6 else icmp.ECHO_REPLY_V4
    msg = struct.pack("!BBHHH", kind, 0, 0, ident, seq & 0xFFFF) + data
    if not v6:
        msg = msg[:2] + struct.pack("!H", icmp.checksum(msg)) + msg[4:]
    return msg
while True:
    pkt, peer = s.recvfrom(2048)
    msg = pkt if v6 else icmp.strip_ipv4_header(pkt)
    kind, code, _c, ident, seq = struct.unpack_from("!BBHHH", msg)
    if kind != (icmp.ECHO_REQUEST_V6 if v6 else icmp.ECHO_REQUEST_V4):
        continue
    data = msg[8:]
    dest = (peer[0], 0)
    s.sendto(reply(ident, seq + 1000, data), dest)                 # a sequence number never sent
    s.sendto(reply(ident, seq, data[:4] + bytes(4) + data[8:]), dest)  # our seq, wrong token
    good = reply(ident, seq, data)
    if seq in late:
        threading.Timer(late_after, s.sendto, (good, dest)).start()
    else:
        s.sendto(good, dest)
        s.sendto(good, dest)                                       # duplicate
"""


def check(r):
    late, answered = len(LATE), COUNT - len(LATE)
    assert r["sent"] == COUNT
    assert r["received"] == answered, r
    assert r["late"] == late, r
    assert r["duplicate"] == answered, r
    assert r["foreign"] == 2 * COUNT, r
    assert r["loss_pct"] == pytest.approx(100 * late / COUNT)


@pytest.mark.parametrize("family", [4, 6])
def test_udp_late_duplicate_foreign(two_paths, family):
    target = TARGET4 if family == 4 else TARGET6
    p = two_paths.spawn(two_paths.target, PYTHON, "-c", UDP_RESPONDER, target, "8621",
                        str(LATE_AFTER), ",".join(map(str, LATE)))
    assert p.stdout.readline().strip() == "ready"
    rc, r = two_paths.probe_json(target, "--interface", "pb", "--gateway", GW["b"][family == 6],
                                 "--method", "udp", "--port", "8621", "--count", str(COUNT),
                                 "--interval", "50ms", "--timeout", f"{TIMEOUT}s")
    assert rc == 0
    check(r)


@pytest.mark.parametrize("family", [4, 6])
def test_icmp_late_duplicate_foreign(two_paths, family):
    target = TARGET4 if family == 4 else TARGET6
    knob = "net.ipv4.icmp_echo_ignore_all=1" if family == 4 else "net.ipv6.icmp.echo_ignore_all=1"
    two_paths.ns(two_paths.target, "sysctl", "-qw", knob)  # the fake answers instead of the kernel
    p = two_paths.spawn(two_paths.target, PYTHON, "-c", ICMP_RESPONDER, target,
                        str(LATE_AFTER), ",".join(map(str, LATE)))
    assert p.stdout.readline().strip() == "ready"
    rc, r = two_paths.probe_json(target, "--interface", "pb", "--gateway", GW["b"][family == 6],
                                 "--count", str(COUNT), "--interval", "50ms", "--timeout", f"{TIMEOUT}s")
    assert rc == 0
    check(r)
