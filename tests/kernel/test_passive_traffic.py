"""Real TCP through the passive RTT programs on a veth, next to the counters; picking them up
and detaching them from another `ip netns exec`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from pathsteer.bpf import TcDirection, tc_program_id
from pathsteer.bpf.counters import Counters, Hook
from pathsteer.errors import BpfError
from pathsteer.bpf.passive import PassiveRtt, tc_place
from pathsteer.telemetry.passive import RttMeter


def slot() -> dict[str, int]:
    """Our TC filter's place as the compiled object has it (bpf/common.h): handle=, priority=."""
    place = tc_place()
    return {"handle": place.handle, "priority": place.priority}

SERVER = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], int(sys.argv[2])))
    s.listen(8)
    print('ready', flush=True)
    while True:
        c, _ = s.accept()
        while True:
            data = c.recv(65536)
            if not data:
                break
            c.sendall(data[:1])   # a one-byte answer per read: the client's next write waits for it
        c.close()
""")
CLIENT = textwrap.dedent("""
    import socket, sys, time
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
    for _ in range(int(sys.argv[3])):
        s.sendall(b'x' * 1000)
        s.recv(16)
        time.sleep(0.002)   # > 1 ms: each request carries a new TSval (Linux ticks TSval per ms)
    s.close()
""")


@pytest.fixture
def server(netns):
    """A request/answer TCP server in the peer namespace on both addresses; killed at teardown."""
    procs = []
    for addr in (netns.peer_addr4, netns.peer_addr6):
        proc = subprocess.Popen(["ip", "netns", "exec", netns.peer_ns, sys.executable, "-c", SERVER, addr, "7100"],
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "ready"
    yield
    for proc in procs:
        proc.kill()
        proc.wait()


def exchange(netns, address: str, rounds: int = 50) -> None:
    proc = netns.in_ns(sys.executable, "-c", CLIENT, address, "7100", str(rounds), check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def attached(netns):
    rtt = PassiveRtt.load()
    counters = Counters.load()
    counters.attach(netns.name, [Hook.TC_INGRESS, Hook.TC_EGRESS])
    rtt.attach(netns.name)
    yield rtt, counters
    rtt.detach(netns.name)
    counters.detach(netns.name)
    counters.close()
    rtt.close()


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_request_answer_gives_one_sample_per_round(attached, netns, server, family):
    rtt, counters = attached
    address = netns.peer_addr4 if family == "ipv4" else netns.peer_addr6
    meter = RttMeter(rtt.sub_bits)
    meter.update(rtt.aggregates({"v": netns.name}))
    before = counters.totals(netns.name, Hook.TC_EGRESS)
    exchange(netns, address, rounds=50)
    figures = meter.update(rtt.aggregates({"v": netns.name}))["v"]
    # Each round's request is data with a new TSval and its answer echoes it: a sample per
    # round, plus the SYN's and the FIN's (a few rounds may miss on a busy machine).
    assert 40 <= figures.samples <= 52, figures
    assert 0 < figures.min_ns <= figures.p50_ns <= figures.p95_ns <= figures.max_ns
    assert figures.p50_ns < 20e6  # a veth: microseconds, not tens of ms (a generous bound for a busy machine)
    # The counters after us on the same hook still saw every packet: we return TC_ACT_UNSPEC.
    assert (counters.totals(netns.name, Hook.TC_EGRESS) - before).packets >= 50


def test_handshake_without_timestamps(attached, netns, server):
    rtt, _ = attached
    netns.in_ns("sysctl", "-qw", "net.ipv4.tcp_timestamps=0")  # per namespace: SYNs without the option
    before = rtt.aggregate(netns.name)
    exchange(netns, netns.peer_addr4, rounds=3)
    after = rtt.aggregate(netns.name)
    assert after.handshake_samples - before.handshake_samples == 1
    assert after.samples - before.samples == 1  # nothing else can be timed without timestamps


def run_in_other_invocation(netns, code: str) -> subprocess.CompletedProcess:
    return netns.in_ns(sys.executable, "-c", textwrap.dedent(code), check=False)


def test_find_and_detach_from_another_invocation(attached, netns, server):
    rtt, counters = attached
    exchange(netns, netns.peer_addr4, rounds=10)
    proc = run_in_other_invocation(netns, f"""
        import json
        from pathsteer.bpf.passive import PassiveRtt
        with PassiveRtt.find({netns.name!r}) as found:
            agg = found.aggregate({netns.name!r})
            print(json.dumps({{"samples": agg.samples, "sum_ns": agg.sum_ns,
                              "detached": [d.name for d in found.detach({netns.name!r})]}}))
    """)
    assert proc.returncode == 0, proc.stderr
    theirs = json.loads(proc.stdout)
    ours = rtt.aggregate(netns.name)
    assert (theirs["samples"], theirs["sum_ns"]) == (ours.samples, ours.sum_ns) and ours.samples >= 2
    assert sorted(theirs["detached"]) == ["EGRESS", "INGRESS"]
    for direction in TcDirection:
        assert tc_program_id(netns.name, direction, **slot()) is None
    assert counters.detach(netns.name) == [Hook.TC_INGRESS, Hook.TC_EGRESS]  # the counters were left alone


def test_find_without_programs_is_clear(netns):
    with pytest.raises(BpfError, match=f"no pathsteer passive RTT programs attached to {netns.name}"):
        PassiveRtt.find(netns.name)


def test_attach_twice_is_a_no_op_and_detach_only_ours(netns):
    with PassiveRtt.load() as rtt, PassiveRtt.load() as other:
        first = rtt.attach(netns.name)
        assert rtt.attach(netns.name) == first
        with pytest.raises(BpfError, match="already sits"):
            other.attach(netns.name)
        assert other.detach(netns.name) == []  # not its programs: left in place
        assert sorted(d.name for d in rtt.detach(netns.name)) == ["EGRESS", "INGRESS"]


def test_attach_with_pure_acks_and_find_it(netns):
    with PassiveRtt.load() as rtt:
        rtt.attach(netns.name, pure_acks=True)
        egress = tc_program_id(netns.name, TcDirection.EGRESS, **slot())
        assert egress == rtt.egress_with_acks.id
        with pytest.raises(BpfError, match="already sits"):
            rtt.attach(netns.name)  # the other egress program: detach first
        with PassiveRtt.find(netns.name) as found:
            assert found.rtt_map.id == rtt.rtt_map.id
        assert sorted(d.name for d in rtt.detach(netns.name)) == ["EGRESS", "INGRESS"]
