"""The classic BPF filter on raw ICMP sockets: only our identifier's echo replies wake us."""

import pytest
from test_probe_netns import GW, PYTHON, TARGET4, TARGET6, two_paths  # noqa: F401 - fixture

SNIPPET = r"""
import select, socket, subprocess, sys, time
from pathsteer.probe import icmp, pinning, sockets
target, family = sys.argv[1], int(sys.argv[2])
pin = pinning.Pin("pb", socket.if_nametoindex("pb"), None, family, None, None)
ours = 0x4242
s = sockets.open_icmp(pin, ours)
# someone else's echo (iputils ping picks another identifier) through the same interface
subprocess.run(["ping", f"-{family}", "-c", "3", "-i", "0.05", "-I", "pb", target], capture_output=True)
time.sleep(0.2)
others = len(list(sockets.drain(s)))
s.sendto(icmp.encode_echo_request(family, ours, 1, icmp.echo_data(7)), (target, 0))
select.select([s], [], [], 2.0)
mine = list(sockets.drain(s))
print(others, len(mine))
"""


@pytest.mark.parametrize("family", [4, 6])
def test_filter_passes_only_our_identifier(two_paths, family):
    target = GW["b"][family == 6]  # on-link on pb: no pin needed
    r = two_paths.ns(two_paths.prober, PYTHON, "-c", SNIPPET, target, str(family))
    others, mine = map(int, r.stdout.split())
    assert others == 0 and mine == 1, r.stdout + r.stderr
