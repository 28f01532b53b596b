"""The counter programs through BPF_PROG_TEST_RUN, as a fixture table.

Each row: description, input frame (built with scapy), expected verdict, expected output
frame, expected counter change. Every row runs through all three programs (XDP, TC ingress,
TC egress), with the context naming the test's veth, so the row also checks the key: exactly
one counter — (that ifindex, that hook) — moves, by one packet and the frame's length.
"""

from __future__ import annotations

import ctypes
import errno
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from pathsteer.bpf import Btf, ifindex_of
from pathsteer.bpf.btf import KIND_STRUCT, check_type
from pathsteer.bpf.counters import Counters, Hook, Totals
from pathsteer.errors import BpfError
from pathsteer.bpf.testrun import skb_context

MACS = {"src": "02:00:00:00:00:02", "dst": "02:00:00:00:00:01"}
TC_ACT_UNSPEC = 0xFFFFFFFF  # -1 (uapi linux/pkt_cls.h, a #define: not in BTF) as test_run's u32 retval: "next filter"


def xdp_pass() -> int:
    """XDP_PASS from the running kernel's own BTF (enum xdp_action)."""
    with Btf.from_file("/sys/kernel/btf/vmlinux") as vmlinux:
        return vmlinux.constant("xdp_action", "XDP_PASS")


class Verdict:
    PASS = "pass"


def frame(pkt) -> bytes:
    return bytes(pkt)


IPV4_UDP = frame(Ether(**MACS) / IP(src="192.0.2.2", dst="192.0.2.1") / UDP(sport=4000, dport=53) / Raw(b"q" * 18))
IPV4_PING = frame(Ether(**MACS) / IP(src="192.0.2.2", dst="192.0.2.1") / ICMP() / Raw(bytes(56)))
IPV6_SYN = frame(Ether(**MACS) / IPv6(src="2001:db8::2", dst="2001:db8::1") / TCP(sport=4000, dport=443, flags="S"))
IPV6_HBH = frame(Ether(**MACS) / IPv6(src="2001:db8::2", dst="2001:db8::1") / IPv6ExtHdrHopByHop() / UDP())
ARP_REQUEST = frame(Ether(src=MACS["src"], dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="192.0.2.2", pdst="192.0.2.1"))
VLAN_IPV4 = frame(Ether(**MACS) / Dot1Q(vlan=10) / IP(src="192.0.2.2", dst="192.0.2.1") / UDP())
TRUNCATED_IPV4 = frame(Ether(type=0x0800, **MACS)) + frame(IP())[:6]  # says IPv4, has 6 of 20 header bytes
TRUNCATED_PING = IPV4_PING[:40]  # IP header says 84 bytes, the frame holds 26 of them
BARE_ETHERNET = frame(Ether(type=0x88B5, **MACS))  # 14 bytes: the least test_run accepts (ETH_HLEN)
FULL_SIZE = frame(Ether(**MACS) / IP(src="192.0.2.2", dst="192.0.2.1") / UDP() / Raw(bytes(1472)))

# description, input frame, verdict, output frame, counter change (packets, bytes)
TABLE = [
    ("IPv4 UDP datagram", IPV4_UDP, Verdict.PASS, IPV4_UDP, (1, len(IPV4_UDP))),
    ("IPv4 ICMP echo request, ping's 98 bytes", IPV4_PING, Verdict.PASS, IPV4_PING, (1, 98)),
    ("IPv6 TCP SYN", IPV6_SYN, Verdict.PASS, IPV6_SYN, (1, len(IPV6_SYN))),
    ("IPv6 with a hop-by-hop extension header", IPV6_HBH, Verdict.PASS, IPV6_HBH, (1, len(IPV6_HBH))),
    ("ARP request, not IP at all", ARP_REQUEST, Verdict.PASS, ARP_REQUEST, (1, 42)),
    ("802.1Q-tagged IPv4", VLAN_IPV4, Verdict.PASS, VLAN_IPV4, (1, len(VLAN_IPV4))),
    ("truncated IPv4 header: Ethernet + 6 of 20 bytes", TRUNCATED_IPV4, Verdict.PASS, TRUNCATED_IPV4, (1, 20)),
    ("truncated IPv4 packet: total length 84, 26 present", TRUNCATED_PING, Verdict.PASS, TRUNCATED_PING, (1, 40)),
    ("bare Ethernet header, unknown ethertype", BARE_ETHERNET, Verdict.PASS, BARE_ETHERNET, (1, 14)),
    ("full-size 1514-byte frame", FULL_SIZE, Verdict.PASS, FULL_SIZE, (1, 1514)),
]


class XdpMd(ctypes.Structure):
    """``struct xdp_md`` (uapi linux/bpf.h), the XDP test_run context; checked against BTF below."""
    _fields_ = [("data", ctypes.c_uint32), ("data_end", ctypes.c_uint32), ("data_meta", ctypes.c_uint32),
                ("ingress_ifindex", ctypes.c_uint32), ("rx_queue_index", ctypes.c_uint32),
                ("egress_ifindex", ctypes.c_uint32)]


def context(btf: Btf, hook: Hook, ifindex: int, size: int) -> bytes:
    """The test_run context naming ``ifindex``: xdp_md.ingress_ifindex or __sk_buff.ifindex
    (net/bpf/test_run.c accepts both), laid out from the object's BTF. For XDP the kernel
    takes data_end from the context too: it must be the frame's size."""
    if hook is Hook.XDP:
        check_type(btf, btf.find("xdp_md", KIND_STRUCT), XdpMd, "XDP test_run context")
        return bytes(XdpMd(data_end=size, ingress_ifindex=ifindex))
    return skb_context(btf, ifindex)


@dataclass
class Rig:
    counters: Counters
    btf: Btf
    ifindex: int

    def run(self, hook: Hook, data: bytes, repeat: int = 1):
        ctx = context(self.btf, hook, self.ifindex, len(data))
        return self.counters.programs[hook].test_run(data, repeat=repeat, ctx=ctx)


@pytest.fixture
def rig(netns):
    counters = Counters.load()
    btf = Btf.from_file(Path(counters._obj.path))
    yield Rig(counters, btf, ifindex_of(netns.name))
    btf.close()
    counters.close()


def expected_verdict(verdict: str, hook: Hook) -> int:
    assert verdict == Verdict.PASS
    return xdp_pass() if hook is Hook.XDP else TC_ACT_UNSPEC


@pytest.mark.parametrize("hook", list(Hook), ids=[h.value for h in Hook])
@pytest.mark.parametrize("description, data, verdict, output, change", TABLE, ids=[row[0] for row in TABLE])
def test_table(rig, hook, description, data, verdict, output, change):
    before = rig.counters.read()
    if data is TRUNCATED_IPV4 and hook is not Hook.XDP:
        # net/bpf/test_run.c builds no skb from an IP frame shorter than its IP header: the
        # kernel refuses the run, so this row can only be exercised at XDP.
        with pytest.raises(BpfError) as info:
            rig.run(hook, data)
        assert info.value.errno == errno.EINVAL
        assert rig.counters.read() == before
        return
    result = rig.run(hook, data)
    after = rig.counters.read()
    assert result.retval == expected_verdict(verdict, hook), description
    assert result.data_out == output, description
    moved = {key: after[key] - before.get(key, Totals()) for key in after if after[key] != before.get(key)}
    assert moved == {(rig.ifindex, hook): Totals(*change)}, description


def test_repeat_counts_every_run(rig):
    result = rig.run(Hook.TC_EGRESS, IPV4_UDP, repeat=1000)
    assert result.retval == TC_ACT_UNSPEC and result.duration_ns > 0
    assert rig.counters.totals(rig.ifindex, Hook.TC_EGRESS) == Totals(1000, 1000 * len(IPV4_UDP))


def test_without_context_counts_loopback(rig):
    """No context: test_run's device is the namespace's loopback (ifindex 1)."""
    rig.counters.programs[Hook.XDP].test_run(IPV4_UDP)
    assert rig.counters.totals("lo", Hook.XDP) == Totals(1, len(IPV4_UDP))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(st.binary(min_size=14, max_size=1514).filter(lambda b: b[12:14] not in (b"\x08\x00", b"\x86\xdd")),
                       min_size=1, max_size=5),
       hook=st.sampled_from(list(Hook)))
def test_matches_model(rig, frames, hook):
    """Model: whatever the bytes, the verdict is pass, the frame unchanged, and the counter
    adds one packet and len(frame) bytes. (Random bytes with an IP ethertype are left out:
    test_run refuses short IP frames for TC, see the table.)"""
    before = rig.counters.totals(rig.ifindex, hook)
    for data in frames:
        result = rig.run(hook, data)
        assert result.retval == expected_verdict(Verdict.PASS, hook)
        assert result.data_out == data
    assert rig.counters.totals(rig.ifindex, hook) - before == Totals(len(frames), sum(map(len, frames)))
