"""BPF_PROG_TEST_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES): the generator
program xdpgen redirects real frames out of one veth end; what the other end does with them.

* the generator's XDP_DROP (target 0) sends nothing;
* a veth end without NAPI (no XDP program, GRO off) cannot take redirected frames: dropped;
* with GRO on they become skbs and reach a UDP socket in the peer namespace;
* with the guard attached natively they meet XDP as xdp_frames and are dropped (its counter);
* the option checks: batch_size only with the flag, at most 256.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import socket

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from pathsteer.bpf import XdpMode, ifindex_of, in_netns, load_object
from pathsteer.bpf.testrun import (
    BPF_F_TEST_XDP_LIVE_FRAMES, gro, prog_test_run, prog_test_run_live,
)
from pathsteer.errors import BpfError
from pathsteer.guard.program import GuardProgram
from pathsteer.guard.rules import RuleSet, Verdict

PORT = 40_000
COUNT = 200


@pytest.fixture(scope="module", autouse=True)
def live_frames():
    """Skip the module where the kernel refuses live frames to root with EPERM (a 6.18.44 VM
    kernel did on 12-07, for every live run, before looking at the options; the same kernel
    line had run them earlier). pathsteer itself does not use live frames: only these tests
    and bench_guard's flood generator do."""
    obj = load_object("xdpgen")
    try:
        target = obj.map("xdpgen_target", ctypes.c_uint32, ctypes.c_uint32)
        target.update(0, 0)  # the generator drops: nothing leaves
        frame = bytes(Ether() / IP(dst="192.0.2.1") / UDP(dport=PORT) / (b"x" * 18))
        try:
            prog_test_run_live(obj.program("xdp_gen"), frame, 1)
        except BpfError as exc:
            if exc.errno != errno.EPERM:
                raise
            pytest.skip(f"this kernel refuses BPF_F_TEST_XDP_LIVE_FRAMES to root: {exc}")
        finally:
            target.close()
    finally:
        obj.close()


@pytest.fixture
def gen(netns):
    """The generator loaded in ``netns.ns`` aimed at ``netns.name`` (whose peer receives)."""
    obj = load_object("xdpgen")
    target = obj.map("xdpgen_target", ctypes.c_uint32, ctypes.c_uint32)
    target.update(0, ifindex_of(netns.name))
    yield obj.program("xdp_gen"), target
    target.close()
    obj.close()


def flood_frame(veth) -> bytes:
    peer_mac = veth.in_peer("cat", f"/sys/class/net/{veth.peer}/address").stdout.strip()
    return bytes(Ether(dst=peer_mac) / IP(src=veth.addr4, dst=veth.peer_addr4) / UDP(sport=1234, dport=PORT)
                 / (b"x" * 18))


def peer_rx_packets(veth) -> int:
    """The peer's rx_packets (a fresh link also sees a stray neighbour/router solicitation or two)."""
    return int(veth.in_peer("cat", f"/sys/class/net/{veth.peer}/statistics/rx_packets").stdout)


STRAY = 5


@pytest.fixture
def peer_socket(netns):
    with in_netns(netns.peer_ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((netns.peer_addr4, PORT))
    sock.setblocking(False)
    yield sock
    sock.close()


def received(sock) -> int:
    n = 0
    while True:
        try:
            sock.recv(2048)
        except BlockingIOError:
            return n
        n += 1


def test_generator_drop_sends_nothing(netns, gen, peer_socket):
    prog, target = gen
    target.update(0, 0)
    with in_netns(netns.peer_ns):
        gro(netns.peer, True)
    before = peer_rx_packets(netns)
    prog_test_run_live(prog, flood_frame(netns), COUNT)
    assert peer_rx_packets(netns) - before < STRAY and received(peer_socket) == 0


def test_no_napi_on_the_peer_means_no_delivery(netns, gen, peer_socket):
    prog, _ = gen
    with in_netns(netns.peer_ns):
        assert gro(netns.peer) is False  # veth default
    before = peer_rx_packets(netns)
    prog_test_run_live(prog, flood_frame(netns), COUNT)
    assert peer_rx_packets(netns) - before < STRAY and received(peer_socket) == 0


def test_gro_on_delivers_skbs_to_a_socket(netns, gen, peer_socket):
    prog, _ = gen
    with in_netns(netns.peer_ns):
        assert gro(netns.peer, True) is True and gro(netns.peer) is True
    before = peer_rx_packets(netns)
    prog_test_run_live(prog, flood_frame(netns), COUNT, batch_size=16)
    assert COUNT <= peer_rx_packets(netns) - before < COUNT + STRAY
    assert received(peer_socket) == COUNT


def test_native_guard_drops_the_frames(netns, gen, peer_socket):
    prog, _ = gen
    with in_netns(netns.peer_ns):
        guard = GuardProgram.load()
    try:
        with in_netns(netns.peer_ns):
            guard.apply(RuleSet(deny={ipaddress.ip_network(f"{netns.addr4}/32"): 1}))
            guard.attach([netns.peer], XdpMode.NATIVE)
        prog_test_run_live(prog, flood_frame(netns), 10_000)
        totals = guard.verdict_totals()
        assert totals[Verdict.DROP_DENY].packets == 10_000
        assert received(peer_socket) == 0
    finally:
        with in_netns(netns.peer_ns):
            guard.detach_all()
        guard.close()


def test_option_checks(netns, gen):
    prog, _ = gen
    frame = flood_frame(netns)
    with pytest.raises(BpfError, match="batch_size needs"):
        prog_test_run(prog, frame, batch_size=8)
    with pytest.raises(BpfError, match="beyond"):
        prog_test_run(prog, frame, flags=BPF_F_TEST_XDP_LIVE_FRAMES, batch_size=257)
    result = prog_test_run(prog, frame, repeat=5, flags=BPF_F_TEST_XDP_LIVE_FRAMES)
    assert result.data_out == b""
    # without the flag the same program only reports its verdict (XDP_REDIRECT = 4): nothing sent
    assert prog_test_run(prog, frame).retval == 4
