"""`pathsteer reflector` over the network: hostile input is counted, never crashes it;
SIGTERM and SIGINT stop it cleanly with its counters."""

import re
import signal

import pytest
from test_probe_netns import GW, PYTHON, TARGET4, TARGET6, two_paths  # noqa: F401 - fixture

BLASTER = r"""
import os, random, socket, sys, time
target, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if ":" in target else socket.AF_INET
rnd = random.Random(7)
s = socket.socket(fam, socket.SOCK_DGRAM)
for size in [0, 1, 13]:
    s.sendto(bytes(size), (target, port))                   # malformed: 3
for i in range(200):
    if i % 20 == 0:
        time.sleep(0.005)  # paced: the test counts packets, it does not measure buffer sizes
    s.sendto(rnd.randbytes(rnd.randrange(14, 1400)), (target, port))  # garbage, but long enough: reflected
h = socket.socket(fam, socket.SOCK_DGRAM)
h.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", 862))
h.sendto(bytes(41), (target, port))                         # from a TWAMP port: hostile: 1
big = socket.socket(fam, socket.SOCK_DGRAM)
big.sendto(os.urandom(60000), (target, port))               # large: reflected, never larger
print("sent", flush=True)
"""


def counters(text: str) -> dict:
    return {k: int(v) for k, v in re.findall(r"(received|reflected|malformed|hostile) (\d+)", text)}


@pytest.mark.parametrize("family, sig", [(4, signal.SIGTERM), (6, signal.SIGINT)])
def test_hostile_packets_are_counted_and_it_keeps_reflecting(two_paths, family, sig):
    target = TARGET4 if family == 4 else TARGET6
    refl = two_paths.start_reflector()  # default port 862, every address
    blast = two_paths.ns(two_paths.prober, PYTHON, "-c", BLASTER, target, "862")
    assert "sent" in blast.stdout, blast.stderr
    rc, r = two_paths.probe_json(target, "--interface", "pb", "--gateway", GW["b"][family == 6],
                                 "--method", "udp", "--count", "5", "--interval", "10ms")
    assert rc == 0 and r["received"] == 5, r
    assert refl.poll() is None  # still running
    refl.send_signal(sig)
    _, err = refl.communicate(timeout=10)
    assert refl.returncode == 0, err
    assert "Traceback" not in err
    c = counters(err)
    assert c["malformed"] == 3 and c["hostile"] == 1, err
    assert c["received"] == 3 + 200 + 1 + 1 + 5
    assert c["reflected"] == 200 + 1 + 5


def test_listen_on_one_address(two_paths):
    refl = two_paths.start_reflector("--listen", TARGET4, "--port", "9862")
    rc, r = two_paths.probe_json(TARGET4, "--interface", "pb", "--gateway", GW["b"][0],
                                 "--method", "udp", "--port", "9862", "--count", "3", "--interval", "10ms")
    assert rc == 0 and r["received"] == 3, r
    refl.terminate()
    refl.communicate(timeout=10)
    assert refl.returncode == 0


def test_listen_on_a_foreign_address_is_one_line(two_paths):
    r = two_paths.pathsteer("reflector", "--listen", "203.0.113.200", ns=two_paths.target, timeout=20)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pathsteer: error: cannot listen on 203.0.113.200:862"), r.stderr
